"""The native kernel under AddressSanitizer and UBSan (ALEXNET_NATIVE_SANITIZE=1).

The slow test builds the sanitized kernel in a child Python with the compiler's ASan runtime preloaded and runs
forward and backward over the shapes and layouts whose index arithmetic differs (contiguous and channels_last,
odd sizes, several tiles, size 1, size equal to and wider than the channels), against torch's own LRN. A read or
write one float outside a buffer, or undefined behaviour such as a signed overflow, aborts the child with a report.
"""

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from alexnet.models import native


def _libasan() -> str | None:
    """The compiler's ASan runtime, or None: `cc -print-file-name` echoes the bare name when it has none."""
    cc = native.compiler()
    if cc is None:
        return None
    try:
        found = subprocess.run([*cc, "-print-file-name=libasan.so"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    path = found.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


CHILD = textwrap.dedent("""
    import torch, torch.nn.functional as F
    from alexnet.models import native
    from alexnet.models.lrn import fast_local_response_norm
    assert native.sanitized() and native.load() is not None, "the sanitized kernel did not load"
    assert native._asan_runtime_loaded(), "no ASan runtime in this process: nothing would be caught"
    torch.manual_seed(0)
    cases = [  # (shape, channels_last, size)
        ((2, 7, 5, 3), False, 5), ((2, 7, 5, 3), True, 5), ((3, 5, 11), False, 3), ((1, 5, 3, 2, 4), False, 4),
        ((2, 6, 25, 25), False, 1), ((2, 6, 25, 25), True, 1),  # size 1; 625 positions: two NCHW tiles
        ((3, 7, 9, 1), False, 7), ((3, 7, 9, 1), True, 7),  # size == channels
        ((1, 3, 3, 3), True, 9), ((2, 96, 13, 13), True, 5), ((1, 1, 2, 2), False, 2),  # wider; the paper's; C=1
    ]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for shape, channels_last, size in cases:
            x = torch.randn(shape) * 3
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            y = fast_local_response_norm(x, size, 0.9, 0.75, 1.0)
            assert type(y.grad_fn).__name__ == "_NativeLRNBackward"
            grad = torch.randn_like(y)
            y.backward(grad)
            x_ref = x.detach().clone().requires_grad_()
            ref = F.local_response_norm(x_ref, size, 0.9, 0.75, 1.0)
            ref.backward(grad)
            torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    print("sanitized kernel: all cases clean")
""")


@pytest.mark.slow
def test_the_kernel_is_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    libasan = _libasan()
    if libasan is None:
        pytest.skip("the C compiler has no AddressSanitizer runtime (cc -print-file-name=libasan.so)")
    env = {
        **os.environ,
        "ALEXNET_CACHE": str(tmp_path),
        native.ENV_SANITIZE: "1",
        "LD_PRELOAD": libasan,
        "ASAN_OPTIONS": "detect_leaks=0",  # CPython and torch keep their allocations until exit
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }
    run = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "all cases clean" in run.stdout, run.stderr[-6000:]
    assert "ERROR: AddressSanitizer" not in run.stderr and "runtime error" not in run.stderr, run.stderr[-6000:]


@pytest.mark.skipif(native.compiler() is None, reason="no C compiler: the kernel is never built, sanitized or not")
def test_the_sanitized_build_without_its_runtime_falls_back_with_a_warning(tmp_path, monkeypatch, caplog):
    # dlopen of an ASan library without the runtime preloaded would abort this process: refused before building.
    if native._asan_runtime_loaded():
        pytest.skip("this process has the ASan runtime loaded")
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    monkeypatch.setenv(native.ENV_SANITIZE, "1")
    native.reset()
    try:
        with caplog.at_level(logging.WARNING, logger="alexnet.models.native"):
            assert native.load() is None
    finally:
        native.reset()
    assert any("LD_PRELOAD" in r.getMessage() for r in caplog.records)
    assert native.compiles == 0 and not list(tmp_path.rglob("*.so"))
