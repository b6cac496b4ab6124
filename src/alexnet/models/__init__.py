"""The model layer: the AlexNet family and everything that describes its layers. Reads no data and no run folders.

    from alexnet.models import build_model, AlexNet, AlexNetConfig
    model = build_model("alexnet-bn", num_classes=2)

Modules: architecture (AlexNetConfig, checked, and its cost by arithmetic), shapes (the layer arithmetic), alexnet
(the one configurable class), registry (the named variants, each with its source and deviations), lrn (local
response normalisation, the paper's section 3.3) and native (its C kernel, compiled on first use), cuda_convnet
(the authors' CIFAR-10 networks from their cuda-convnet files, no torch) and cuda_convnet_model (their module), local
(the locally-connected layer), summary (the
per-layer shapes and costs of `alexnet summary`), pretrained (torchvision's weights into `alexnet-owt`).
"""

from __future__ import annotations

from alexnet import lazy_exports

# name -> module. Looked up on first use (PEP 562): the registry and the config are light (no torch), so the CLI can
# list the variants without paying for torch; the class itself imports torch.
_EXPORTS = {
    "AlexNet": "alexnet.models.alexnet",
    "build_model": "alexnet.models.alexnet",
    "build_from_config": "alexnet.models.alexnet",
    "CudaConvNet": "alexnet.models.cuda_convnet_model",
    "CudaConvnetConfig": "alexnet.models.cuda_convnet",
    "LocallyConnected2d": "alexnet.models.local",
    "config_from_dict": "alexnet.models.registry",
    "count_parameters": "alexnet.models.registry",
    "describe_variants": "alexnet.models.alexnet",
    "num_params": "alexnet.models.alexnet",
    "AlexNetConfig": "alexnet.models.architecture",
    "largest_activation": "alexnet.models.architecture",
    "parameter_count": "alexnet.models.architecture",
    "VARIANTS": "alexnet.models.registry",
    "Variant": "alexnet.models.registry",
    "get_variant": "alexnet.models.registry",
    "list_models": "alexnet.models.registry",
    "model_config": "alexnet.models.registry",
    "ADAPTIVE_SIZE": "alexnet.models.shapes",
    "GROUPED_CONVS": "alexnet.models.shapes",
    "Window": "alexnet.models.shapes",
    "feature_size": "alexnet.models.shapes",
    "feature_windows": "alexnet.models.shapes",
    "min_input_size": "alexnet.models.shapes",
    "out_size": "alexnet.models.shapes",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
