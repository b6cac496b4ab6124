"""Bounds: an absurd LRN window or a bad argument is refused (or clamped to the same numbers) by every kernel.

Before issue 9 a window of 2**31 reached the C kernel as a truncated int and wrote outside its buffer, and the Python
kernel looped over every shift of it for hours. The timeouts below are limits, not measurements: each test takes
milliseconds when the bound holds and would hang or crash without it.
"""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from alexnet.errors import ConfigError
from alexnet.models import native
from alexnet.models.lrn import MAX_SIZE, LocalResponseNorm, _FastLRN, fast_local_response_norm, local_response_norm

needs_cc = pytest.mark.skipif(native.compiler() is None, reason="no C compiler on PATH: the native LRN cannot be built")
ABSURD = 2**31 + 5  # wraps to a negative C int


@pytest.mark.timeout(10)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["native-path", "python-path"])
@pytest.mark.parametrize("function", [fast_local_response_norm, local_response_norm], ids=["fast", "reference"])
def test_an_absurd_size_is_refused_by_the_functions(function, dtype):
    x = torch.randn(2, 7, 4, 4, dtype=dtype)
    with pytest.raises(ConfigError, match=f"field 'size' must be an integer in \\[1, {MAX_SIZE}\\], got {ABSURD}"):
        function(x, ABSURD, 1e-4, 0.75, 2.0)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["native", "python"])
def test_the_widest_size_allowed_runs_at_once_and_matches_torch(dtype):
    # A window wider than the channels is clamped to them: the same numbers (torch pads all 4096), no 4096 passes.
    torch.manual_seed(0)
    x = (torch.randn(3, 7, 5, 4, dtype=dtype) * 3).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y = LocalResponseNorm(MAX_SIZE, 500.0, 0.75, 1.0)(x)
    ref = F.local_response_norm(x_ref, MAX_SIZE, 500.0, 0.75, 1.0)
    grad = torch.randn_like(y)
    y.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(x.grad, x_ref.grad)


@pytest.mark.timeout(10)
def test_the_python_kernel_clamps_a_huge_window_itself():
    # Called directly (past the size check) with a window of 2**31 each side: one pass per channel, not per shift.
    x = (torch.randn(2, 6, 3, 3, dtype=torch.float64) * 3).requires_grad_()
    y = _FastLRN.apply(x, 2**31, 2**31, 0.1, 0.75, 1.0)
    torch.testing.assert_close(y, local_response_norm(x, 11, 0.1, 0.75, 1.0, "literal"))  # window 11 covers all 6
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@needs_cc
@pytest.mark.timeout(10)
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_native_kernel_clamps_a_window_wider_than_the_channels(channels_last):
    x = torch.randn(2, 6, 3, 3) * 3
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = native.lrn(x, native.C_INT_MAX, native.C_INT_MAX, 0.1, 0.75, 1.0)
    torch.testing.assert_close(y, local_response_norm(x, 11, 0.1, 0.75, 1.0, "literal"))
    g = native.lrn(x, native.C_INT_MAX, native.C_INT_MAX, 0.1, 0.75, 1.0, grad=torch.ones_like(x))
    assert torch.isfinite(g).all()


@needs_cc
@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"before": ABSURD}, "before .* must be an int in \\[0, 2147483647\\]"),
        ({"after": -1}, "after .* must be an int"),
        ({"before": 2.0}, "before .* must be an int"),
        ({"scale": float("nan")}, "scale must be a finite number >= 0"),
        ({"beta": float("inf")}, "beta must be a finite number"),
        ({"k": -1.0}, "k must be a finite number >= 0"),
        ({"k": 1e39}, "k must be a finite number >= 0 in float32"),  # finite in Python, inf in C's float
        ({"grad": torch.ones(2, 7, 4)}, "grad must be a float32 CPU tensor of x's shape"),  # would read past it
        ({"grad": torch.ones(2, 7, 4, 4, dtype=torch.float64)}, "grad must be a float32"),
        ({"x": torch.ones(2, 7, 4, 4, dtype=torch.bfloat16)}, "x must be a float32 CPU tensor"),  # half the bytes
        ({"x": torch.ones(2, 7, 4, 4).transpose(1, 3)}, "contiguous or channels_last"),
        ({"x": torch.ones(0, 7, 4, 4)}, "non-empty"),
    ],
)
def test_the_native_entry_point_checks_its_own_arguments(change, says):
    args = {"x": torch.randn(2, 7, 4, 4), "before": 2, "after": 2, "scale": 0.1, "beta": 0.75, "k": 1.0, "grad": None}
    args.update(change)
    with pytest.raises(ConfigError, match=says):
        native.lrn(args.pop("x"), **args)


CTYPES_SCRIPT = textwrap.dedent("""
    import json, torch
    from alexnet.models import native
    lib = native.load()
    x = torch.randn(2, 7, 3, 3)
    y = torch.empty_like(x)
    def call(x=x.data_ptr(), g=None, y=y.data_ptr(), N=2, C=7, L=9, channels_last=0, before=2, after=2, scale=0.1,
             beta=0.75, k=1.0, threads=2):
        return lib.alexnet_lrn(x, g, y, N, C, L, channels_last, before, after, scale, beta, k, threads)
    cases = {
        "fine": {}, "negative before": {"before": -3}, "negative after": {"after": -1}, "negative N": {"N": -1},
        "zero C": {"C": 0}, "negative L": {"L": -9}, "zero threads": {"threads": 0}, "layout 2": {"channels_last": 2},
        "NULL x": {"x": None}, "NULL y": {"y": None}, "NaN scale": {"scale": float("nan")},
        "inf beta": {"beta": float("inf")}, "negative k": {"k": -1.0},
        "N*C*L overflows": {"N": 2**40, "C": 2**20, "L": 2**10}, "C too large": {"N": 1, "C": 2**60, "L": 1},
        "window wider than C": {"before": 2**31 - 1, "after": 2**31 - 1},
    }
    codes = {name: call(**kw) for name, kw in cases.items()}
    wide = y.clone()
    call(before=6, after=6)
    codes["same numbers as the clamped window"] = int(torch.equal(wide, y))
    print(json.dumps(codes))
""")


@needs_cc
def test_the_c_entry_point_refuses_bad_widths_and_counts(tmp_path):
    # Straight through ctypes, past every Python check, in a child process: an unchecked argument would crash it
    # (or scribble over its memory), not this test run.
    run = subprocess.run([sys.executable, "-c", CTYPES_SCRIPT], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    codes = json.loads(run.stdout.strip().splitlines()[-1])
    assert codes.pop("fine") == 0 and codes.pop("window wider than C") == 0
    assert codes.pop("same numbers as the clamped window") == 1
    assert codes.pop("N*C*L overflows") == native.TOO_LARGE and codes.pop("C too large") == native.TOO_LARGE
    assert codes == dict.fromkeys(codes, native.BAD_ARGUMENT)
