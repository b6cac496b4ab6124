"""Mixed precision: the `--amp` names as autocast dtypes, and the one autocast-or-nothing context.

Every forward pass that honours `--amp` (training, validation, `alexnet eval`, `alexnet predict`, `alexnet bench`)
enters `autocast(device_type, dtype)`; with dtype None (fp32) it is a context that does nothing, so callers never
write the conditional themselves. Whether a reduced precision is *fast* here is alexnet.runtime.precision's question.
"""

from __future__ import annotations

import contextlib

import torch

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # for config.AMP_MODES


def autocast(device_type: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast on `device_type` ("cpu", "cuda", ...) in `dtype`; a no-op context when dtype is None."""
    return torch.autocast(device_type=device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
