"""Weights made elsewhere, into our models: torchvision's AlexNet state_dict (.pth) into the `alexnet-owt` layout.

Read as untrusted files (alexnet.store.safeload: weights_only, bounded before unpickling); a layer that does not fit is
refused by name.
"""

from __future__ import annotations

from pathlib import Path

import torch

from alexnet.errors import CheckpointError, clip
from alexnet.models.alexnet import AlexNet
from alexnet.store.safeload import check_archive, check_torch_version


def load_torchvision_weights(model: AlexNet, path: str | Path, *, skip_head: bool = False) -> AlexNet:
    """Load a local `torchvision.models.alexnet` state_dict (.pth) into an `alexnet-owt`-layout model, in place.

    With in_channels=1, conv1's RGB filters are summed over their input channels (a gray image g seen as
    (g, g, g) gives the same conv1 output). With skip_head=True, fc8 keeps its fresh init (fine-tuning to a
    different num_classes). The file is read with weights_only=True: a pickle that needs more is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    check_torch_version(torch.__version__)
    check_archive(path, path.stat().st_size)  # the same bounds as a checkpoint: no zip bomb, no huge pickle
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of several kinds; all mean: not a plain weights file
        raise CheckpointError(f"{path}: cannot be read as a weights-only state_dict ({type(e).__name__}: {clip(str(e))})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state_dict of tensors")
    state = dict(state)

    own = model.state_dict()
    conv1 = state.get("features.0.weight")
    if conv1 is not None and conv1.dim() == 4 and model.config.in_channels == 1 and conv1.shape[1] == 3:
        state["features.0.weight"] = conv1.sum(dim=1, keepdim=True)  # (64, 3, 11, 11) -> (64, 1, 11, 11)
    if skip_head:
        fc8 = next(k for k, m in model.named_modules() if m is model.layer("fc8"))
        state = {k: v for k, v in state.items() if not k.startswith(fc8 + ".")}
        own = {k: v for k, v in own.items() if not k.startswith(fc8 + ".")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected {', '.join(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatch {'; '.join(mismatched)}")
        raise CheckpointError(
            f"{path}: does not fit {model.config.name} (torchvision weights need the alexnet-owt layout at "
            f"width_mult=1; use skip_head for another num_classes): {' / '.join(problems)}"
        )
    model.load_state_dict(state, strict=not skip_head)
    return model
