"""The model layer: the AlexNet family and everything that describes its layers. Reads no data and no run folders.

    from alexnet.models import build_model, AlexNet, AlexNetConfig
    model = build_model("alexnet-bn", num_classes=2)

Modules: alexnet (the one configurable class, its config and the registry of named variants), lrn (local
response normalisation, the paper's section 3.3) and native (its C kernel, compiled on first use), summary (the
per-layer shapes and costs of `alexnet summary`), pretrained (torchvision's weights into `alexnet-owt`).
"""

from alexnet.models.alexnet import (
    ADAPTIVE_SIZE,
    GROUPED_CONVS,
    VARIANTS,
    AlexNet,
    AlexNetConfig,
    Variant,
    Window,
    build_model,
    describe_variants,
    feature_size,
    feature_windows,
    get_variant,
    largest_activation,
    list_models,
    min_input_size,
    model_config,
    num_params,
    out_size,
    parameter_count,
)

__all__ = [
    "ADAPTIVE_SIZE", "GROUPED_CONVS", "VARIANTS", "AlexNet", "AlexNetConfig", "Variant", "Window", "build_model",
    "describe_variants", "feature_size", "feature_windows", "get_variant", "largest_activation", "list_models",
    "min_input_size", "model_config", "num_params", "out_size", "parameter_count",
]
