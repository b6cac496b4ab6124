"""The model layer: the AlexNet family and everything that describes its layers. Reads no data and no run folders.

    from alexnet.models import build_model, AlexNet, AlexNetConfig
    model = build_model("alexnet-bn", num_classes=2)

Modules: architecture (AlexNetConfig, checked, and its cost by arithmetic), shapes (the layer arithmetic), alexnet
(the one configurable class), registry (the named variants, each with its source and deviations), lrn (local
response normalisation, the paper's section 3.3) and native (its C kernel, compiled on first use), summary (the
per-layer shapes and costs of `alexnet summary`), pretrained (torchvision's weights into `alexnet-owt`).
"""

from alexnet.models.alexnet import AlexNet
from alexnet.models.architecture import AlexNetConfig, largest_activation, parameter_count
from alexnet.models.registry import (
    VARIANTS,
    Variant,
    build_model,
    describe_variants,
    get_variant,
    list_models,
    model_config,
    num_params,
)
from alexnet.models.shapes import (
    ADAPTIVE_SIZE,
    GROUPED_CONVS,
    Window,
    feature_size,
    feature_windows,
    min_input_size,
    out_size,
)

__all__ = [
    "ADAPTIVE_SIZE", "GROUPED_CONVS", "VARIANTS", "AlexNet", "AlexNetConfig", "Variant", "Window", "build_model",
    "describe_variants", "feature_size", "feature_windows", "get_variant", "largest_activation", "list_models",
    "min_input_size", "model_config", "num_params", "out_size", "parameter_count",
]
