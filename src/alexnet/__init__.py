"""alexnet: train, evaluate, inspect, export and reproduce AlexNet (Krizhevsky, Sutskever and Hinton, 2012).

Importing the package is cheap on purpose: torch and torchvision are imported by the modules that need them,
so that `alexnet --help` answers at once.
"""

__version__ = "0.1.0"
