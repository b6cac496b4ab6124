"""Grad-CAM (Selvaraju et al., 2017) with captum's LayerGradCam: where in the image the evidence for a class is.

The gradients of the class score with respect to a conv layer's maps are averaged per channel into weights; the
weighted sum of the maps, through a ReLU, is the class's map at that layer's resolution, upsampled bilinearly to
the input and drawn over the image the model saw. The default layer is the last map before pool5 (conv5's ReLU:
the highest resolution at which the classifier's evidence is still spatial). captum's implementation is used
rather than a hand-written one: it is the reference users compare against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from alexnet.errors import ConfigError
from alexnet.inspect import pictures
from alexnet.inspect.activations import as_input


def default_layer(run) -> str:
    """The last spatial layer before the final pool (relu5, or bn5/conv5 when the variant has no ReLU there)."""
    spatial = run.spatial_layers()
    before_pool = [name for name in spatial if not name.startswith("pool")]
    return before_pool[-1]


def class_index(run, target: int | str | None, logits: torch.Tensor | None = None) -> int:
    """A class given by name or index; None means the predicted class."""
    names = run.class_names
    if target is None:
        if logits is None:
            raise ConfigError("no class given and no prediction to take it from")
        return int(logits.argmax())
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in names:
            raise ConfigError(f"no class {target!r} in this run; classes: {', '.join(names[:20])}"
                              + (" ..." if len(names) > 20 else ""))
        return names.index(target)
    index = int(target)
    if not 0 <= index < len(names):
        raise ConfigError(f"class index {index} out of range: the run has {len(names)} classes")
    return index


def cam_on(model: torch.nn.Module, x: torch.Tensor, targets: Sequence[int], layer: str) -> np.ndarray:
    """(len(targets), S, S) maps in [0, 1], one backward pass per target class, on a model this caller owns."""
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(model, model.layer(layer))
    batch = x.expand(len(targets), *x.shape[1:]).contiguous()
    with torch.enable_grad():
        attr = cam.attribute(batch, target=list(targets), relu_attributions=True)  # (T, 1, h, w)
    up = LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
    maps = up[:, 0].clamp_min(0).numpy()
    peak = maps.reshape(len(targets), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, maps / np.maximum(peak, 1e-12), 0.0).astype(np.float32)


def gradcam(run, image, target: int | str | None = None, layer: str | None = None,
            timeout: float | None = None) -> tuple[np.ndarray, int, torch.Tensor]:
    """(map (S, S) in [0, 1], the class index explained, the model's input) for one image."""
    layer = layer or default_layer(run)
    if layer not in run.spatial_layers():
        raise ConfigError(f"Grad-CAM needs a spatial layer; {layer!r} is not one of {', '.join(run.spatial_layers())}")
    x = as_input(run, image)
    with run.model(timeout) as model:
        logits = None
        if target is None:
            with torch.no_grad():
                logits = model(x)[0]
        index = class_index(run, target, logits)
        heat = cam_on(model, x, [index], layer)[0]
    return heat, index, x


def gradcam_png(run, image, target: int | str | None = None, layer: str | None = None, scale: int = 0) -> bytes:
    """PNG bytes: the Grad-CAM map of `target` (default: the predicted class) over the image the model saw."""
    heat, _, x = gradcam(run, image, target, layer)
    view = run.view(x)
    return pictures.png_bytes(pictures.overlay(view, heat), scale or pictures.scale_for(*view.shape[:2], 320))
