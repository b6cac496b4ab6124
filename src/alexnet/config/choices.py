"""The choice lists and fixed names of a run's configuration: the only copies. Validation, the CLI and the library
modules that take the same names import them from here. No imports beyond the standard library.
"""

from __future__ import annotations

from pathlib import Path

# The named recipes ship inside the package (package data), so they are there however alexnet was installed.
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"

# The run that `alexnet train` with no --data and `alexnet demo` do.
DEFAULT_RECIPE = "demo"

# Choice lists, in the order help texts list them.
NORMS = ("lrn", "bn", "none")
ACTIVATIONS = ("relu", "tanh")  # the paper's section 3.1: ReLU, and tanh its saturating baseline
POOLINGS = ("overlap", "plain")  # overlap: 3x3 windows, stride 2 (the paper, section 3.4); plain: 2x2, stride 2
# paper: N(0, 0.01), bias 1 on conv2/4/5, fc6/7 (section 5); paper-bias0: the same weights, every bias 0;
# default: PyTorch's; kaiming: He et al. as torchvision's VGG (fan_out convs, N(0, 0.01) linears); paper-he: the
# paper's N(0, 0.01) in conv1 and fc8, He et al.'s fan_in between (keeps the signal's scale without BatchNorm)
INITS = ("paper", "paper-bias0", "default", "kaiming", "paper-he")
IN_CHANNELS = (1, 3)  # grayscale (the d2l note) or RGB
PRESETS = ("seed", "d2l", "paper")  # transform presets (alexnet.data.transforms)
LOADERS = ("cache", "pil")
SPLITS = ("train", "val")  # the splits a dataset is divided into (and the folders of an image-folder dataset)
# How an image folder's class folders are read (alexnet.data.folders): auto refuses a class folder that holds class
# folders; classes: the top folders are the classes (images below them counted for them); leaves: each folder that
# holds images is a class, named by its path ("mammals/cat")
LAYOUTS = ("auto", "classes", "leaves")
# how the normalised pixels are scaled: by the channels' std (unit variance), or as the paper feeds them: 0-255
# values less the mean (section 2: "subtracting the mean activity over the training set from each pixel")
PIXEL_SCALES = ("std", "255")
CLASS_WEIGHTS = ("none", "auto")  # or one positive weight per class, "w1,w2,...": alexnet.training.balance
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("plateau", "step", "cosine", "none")
AMP_MODES = ("bf16", "fp16", "none")  # autocast dtypes, for training and for inference
# a run's --amp: one of AMP_MODES, or auto: the one measured fastest on this machine (runtime.precision.auto_amp)
TRAIN_AMP_MODES = (*AMP_MODES, "auto")
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")  # inference runtimes; onnxrt runs RUNTIMES[1:]
EXPORT_FORMATS = ("hub", "onnx", "onnx-int8", "torch-export")
# fields a recipe may leave to the run, which chooses them from its length (alexnet.training.adapt)
ADAPTABLE = ("data.image_size", "model.width_mult", "data.crop_scale", "optim.label_smoothing", "optim.ema_decay",
             "data.tta")
CONV1_INITS = ("random", "patches")  # conv1's start: the init's, or the training patches' whitening filters
TTA_MODES = ("none", "flip")  # eval's test-time augmentation: none, or the image and its mirror averaged in probability
FEATURE_FORMATS = ("safetensors", "npy")  # the files `alexnet features` writes
# --freeze: everything up to and including this layer stays fixed ("features": the whole conv stack)
FREEZE_POINTS = ("none", "features", "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}  # --time-budget 1h30m
INIT_TORCHVISION = "torchvision"  # --init-from's name for torchvision's ImageNet weights (through torch.hub's cache)
BENCH_SECTIONS = ("ceilings", "train_step", "lrn", "data", "end_to_end", "inference")  # in the order bench runs them,
# each named by the key of its results (alexnet.speed.sections.REGISTRY)
BENCH_SECTION_ALIASES = {"train": "train_step"}  # the name `bench --only` took before

MAX_CONFIG_BYTES = 1 << 20  # a run YAML (the shipped recipes are under 2 KB); larger files are refused unread
MAX_YAML_DEPTH = 16  # nesting of a run YAML (sections of fields: 2); deeper is refused before it can recurse

__all__ = [
    "CONFIGS_DIR",
    "DEFAULT_RECIPE",
    "NORMS",
    "ACTIVATIONS",
    "POOLINGS",
    "INITS",
    "IN_CHANNELS",
    "PRESETS",
    "LOADERS",
    "SPLITS",
    "LAYOUTS",
    "CLASS_WEIGHTS",
    "OPTIMIZERS",
    "LR_SCHEDULES",
    "AMP_MODES",
    "TRAIN_AMP_MODES",
    "RUNTIMES",
    "EXPORT_FORMATS",
    "TTA_MODES",
    "ADAPTABLE",
    "CONV1_INITS",
    "FEATURE_FORMATS",
    "FREEZE_POINTS",
    "DURATION_UNITS",
    "INIT_TORCHVISION",
    "BENCH_SECTIONS",
    "BENCH_SECTION_ALIASES",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_DEPTH",
]
