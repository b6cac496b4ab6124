"""See inside a trained AlexNet: Grad-CAM, every layer's activations, the units' top images, fc7 maps.

The same functions back `alexnet serve` (the local page), `alexnet report` (one HTML file) and `alexnet inspect`
(PNG files for scripts and notebooks):

    from alexnet.inspect import open_run, gradcam_png, activation_pngs
    run = open_run("runs/demo")                 # the checkpoint, its model and (when found) its data
    png = gradcam_png(run, "photo.jpg", target="cat")   # PNG bytes: Grad-CAM over the image the model saw

Modules: loaded (a run opened for inspection: model, transform, data, ids), pictures (PNG rendering), activations
(forward hooks over conv1 ... pool5, channel grids), gradcam (captum's LayerGradCam, upsampled), units (top images
per channel with the receptive region), index (the per-checkpoint cache of fc7 vectors, predictions and top
activations), embedding (PCA and t-SNE of fc7).
"""

from __future__ import annotations

from alexnet import lazy_exports

_EXPORTS = {
    "open_run": "loaded",
    "LoadedRun": "loaded",
    "gradcam_png": "gradcam",
    "activation_pngs": "activations",
    "load_index": "index",
    "InspectIndex": "index",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, {name: f"alexnet.inspect.{module}" for name, module in _EXPORTS.items()})
