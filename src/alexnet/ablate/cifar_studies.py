"""The paper's own CIFAR-10 experiments as studies (issue 24): their nets (cuda-convnet's files: alexnet.models.
cuda_convnet) and their settings, so `alexnet ablate all`, which runs on any data, leaves them out. Run one by name
with CIFAR-10 as --data: `alexnet ablate figure1 --data CIFAR10`.
"""

from __future__ import annotations

from alexnet.ablate.studies import Claim, Study, _train

_FOUR_LAYER_CIFAR = {
    "model.name": "cc-19pct", "model.width_mult": 1.0, "model.init": "default", "model.norm": "none",
    "data.image_size": 32, "data.preset": "seed", "data.augment": False, "data.tta": "none",
    "optim.opt": "sgd", "optim.momentum": 0.9, "optim.weight_decay": 0.0, "optim.lr_schedule": "none",
    "optim.label_smoothing": 0.0, "run.batch_size": 128, "run.curve_points": 10, "run.amp": "auto",
    "run.channels_last": True, "run.epochs": 10,
}
CIFAR_STUDIES = [
    Study(
        "figure1", "Figure 1: ReLU reaches 25% training error six times faster than tanh",
        (_train("relu", "ReLU (solid)", model__activation="relu"),
         _train("tanh", "tanh (dashed)", model__activation="tanh", run__epochs=30)),
        ("epochs_to_threshold", "train_acc", "val_top1"),
        (Claim("tanh", "relu", "epochs_to_threshold", 6.0, op="/", section="3.1, Figure 1",
               paper_text="a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster "
                          "than with tanh"),),
        base=_FOUR_LAYER_CIFAR,
        paper="A four-layer convolutional neural network with ReLUs (solid line) reaches a 25% training error rate "
              "on CIFAR-10 six times faster than an equivalent network with tanh neurons (dashed line). The "
              "learning rates for each network were chosen independently to make training as fast as possible. "
              "No regularization of any kind was employed. (Section 3.1, Figure 1.)",
        notes="The four-layer net is cuda-convnet's layers-19pct (cc-19pct: 3 convs and fc10, no normalisation), "
              "its relu switched to tanh in the dashed arm. Deviations: PyTorch's default init instead of the "
              "file's N(0, initW^2), which assumes inputs on a 0-255 scale; the mean/std normalisation of the seed "
              "preset instead of the mean image. SGD with momentum 0.9 and batches of 128 (cuda-convnet's), a "
              "constant rate per arm from the sweep; no weight decay, dropout or augmentation. The training error "
              "is the running error of the training batches, 10 points per epoch (train_curve.csv); runs of an arm "
              "that stop above 25% count at their last epoch, as a bound.",
        threshold_arm="relu", lr_sweep=(0.005, 0.01, 0.02, 0.05), sweep_epochs=2, figure="figure1",
    ),
]
