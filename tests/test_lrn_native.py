"""The native LRN kernel (csrc/lrn.c via alexnet.models.native): its numbers, when it runs, and how it is built and cached."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from alexnet.models import native
from alexnet.models.lrn import LocalResponseNorm, fast_local_response_norm, local_response_norm, lrn_kernel

needs_cc = pytest.mark.skipif(native.compiler() is None, reason="no C compiler on PATH: the native LRN cannot be built")


@pytest.fixture
def fresh_native(tmp_path, monkeypatch):
    """An empty cache folder and a process that has not loaded the library yet; forgotten again afterwards."""
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    native.reset()
    yield tmp_path
    native.reset()


def _check_against_reference(x, size, alpha, beta, k, convention="per_size"):
    """Native output and gradient vs the reference formula in float64."""
    x = x.detach().requires_grad_()
    y = fast_local_response_norm(x, size, alpha, beta, k, convention)
    assert type(y.grad_fn).__name__ == "_NativeLRNBackward"  # the C kernel ran, not the Python one
    x_ref = x.detach().double().requires_grad_()
    ref = local_response_norm(x_ref, size, alpha, beta, k, convention)
    grad = torch.randn_like(y)
    y.backward(grad)
    ref.backward(grad.double())
    assert y.dtype == x.grad.dtype == torch.float32
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad.double(), x_ref.grad, rtol=1e-5, atol=1e-6)
    return y


# Strong normalisation (large alpha, small k) so that a wrong window, scale or exponent cannot hide in the
# tolerance; beta 0.75 takes the kernel's square-root path, 0.6 its powf path, 0.5 and 1.0 their own.
PARAMS = [(5, 1e-4, 0.75, 2.0), (5, 0.9, 0.75, 1.0), (3, 1.5, 0.6, 0.7), (3, 0.8, 0.5, 1.0), (5, 2.0, 1.0, 1.3)]


@needs_cc
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("size", "alpha", "beta", "k"), PARAMS)
@pytest.mark.parametrize("shape", [(1, 7, 5, 3), (3, 7, 9, 1), (2, 16, 3, 5)])
def test_native_matches_reference_forward_and_backward(shape, size, alpha, beta, k, channels_last):
    torch.manual_seed(size + shape[1])
    x = torch.randn(shape) * 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = _check_against_reference(x, size, alpha, beta, k)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)


@needs_cc
@pytest.mark.parametrize("size", [1, 2, 4, 9])
@pytest.mark.parametrize("convention", ["per_size", "literal"])
def test_native_windows_of_any_size_and_both_conventions(size, convention):
    # Even sizes have an uneven window under per_size (2 before, 1 after at size 4); 9 is wider than the 6 channels.
    torch.manual_seed(size)
    x = torch.randn(2, 6, 4, 3) * 3
    _check_against_reference(x, size, 0.7, 0.75, 1.0, convention)
    _check_against_reference(x.contiguous(memory_format=torch.channels_last), size, 0.7, 0.75, 1.0, convention)


@needs_cc
@pytest.mark.parametrize("shape", [(2, 7, 11), (1, 5, 3, 2, 4)])
def test_native_takes_3d_and_5d_contiguous_inputs(shape):
    _check_against_reference(torch.randn(shape) * 3, 5, 0.9, 0.75, 1.0)


@needs_cc
@pytest.mark.parametrize("channels_last", [False, True])
def test_native_gives_the_same_bits_on_one_and_two_threads(channels_last):
    # 25 x 25 = 625 positions span two of the kernel's 512-position NCHW tiles; 3 x 625 pixels make five NHWC tiles
    # of 372 pixels (at 7 channels, size 5) and a short last one; 3 images do not split evenly over 2 threads.
    x = torch.randn(3, 7, 25, 25) * 3
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    grad = torch.randn_like(x)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            xg = x.detach().requires_grad_()
            y = fast_local_response_norm(xg, 5, 0.9, 0.75, 1.0)
            y.backward(grad)
            results.append((y, xg.grad))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    _check_against_reference(x, 5, 0.9, 0.75, 1.0)


@needs_cc
def test_native_backward_takes_a_gradient_in_another_layout():
    # A channels_last output whose gradient comes back contiguous (or as an expanded scalar, from .sum()).
    x = (torch.randn(2, 7, 5, 5) * 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.detach().double().requires_grad_()
    (fast_local_response_norm(x, 3, 0.9, 0.75, 1.0) * torch.arange(5.0)).sum().backward()
    (local_response_norm(x_ref, 3, 0.9, 0.75, 1.0) * torch.arange(5.0)).sum().backward()
    torch.testing.assert_close(x.grad.double(), x_ref.grad, rtol=1e-5, atol=1e-6)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


@needs_cc
def test_the_paper_model_runs_the_native_kernel():
    model = LocalResponseNorm()  # the paper's n=5, alpha=1e-4, beta=0.75, k=2
    x = torch.randn(2, 96, 5, 5, requires_grad=True)
    assert lrn_kernel(x) == "native"
    assert type(model(x).grad_fn).__name__ == "_NativeLRNBackward"
    assert type(model(x.contiguous(memory_format=torch.channels_last)).grad_fn).__name__ == "_NativeLRNBackward"


@needs_cc
def test_second_derivative_is_refused():
    x = torch.randn(1, 5, 2, 2, requires_grad=True)
    y = fast_local_response_norm(x, 3, 0.9, 0.75, 1.0)
    (g,) = torch.autograd.grad(y, x, torch.randn_like(y, requires_grad=True), create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()


# --- when the Python kernel runs instead -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(2, 7, 4, 4).bfloat16(),  # bf16 stays on the Python kernel
        lambda: torch.randn(2, 7, 4, 4, dtype=torch.float64),
        lambda: torch.randn(2, 7, 4, 4).transpose(2, 3),  # neither contiguous nor channels_last
        lambda: torch.randn(2, 7, 4, 4)[:, ::2],
    ],
    ids=["bf16", "float64", "transposed", "strided"],
)
def test_other_tensors_run_the_python_kernel(make):
    x = make().requires_grad_()
    assert lrn_kernel(x) == "python"
    y = fast_local_response_norm(x, 3, 0.9, 0.75, 1.0)
    assert type(y.grad_fn).__name__ == "_FastLRNBackward"


def test_switched_off_by_the_environment(monkeypatch, fresh_native):
    monkeypatch.setenv("ALEXNET_NATIVE_LRN", "0")
    x = torch.randn(2, 7, 4, 4, requires_grad=True)
    assert lrn_kernel(x) == "python"
    assert type(fast_local_response_norm(x, 3, 0.9, 0.75, 1.0).grad_fn).__name__ == "_FastLRNBackward"
    assert native.compiles == 0 and not list(fresh_native.rglob("*.so"))  # switched off means not even built


@pytest.mark.parametrize("cc", ["", "false"], ids=["no-compiler", "compiler-fails"])
def test_no_compiler_or_a_failing_one_falls_back_quietly(cc, monkeypatch, fresh_native):
    if cc:
        monkeypatch.setenv("CC", cc)  # `false` answers every call, the build included, with exit status 1
    else:
        monkeypatch.delenv("CC", raising=False)
        monkeypatch.setenv("PATH", str(fresh_native))  # no cc, gcc or clang in an empty folder
    assert native.load() is None
    x = torch.randn(2, 7, 4, 4, requires_grad=True)
    assert lrn_kernel(x) == "python"
    y = LocalResponseNorm(3, 0.9, 0.75, 1.0)(x)
    torch.testing.assert_close(y, local_response_norm(x, 3, 0.9, 0.75, 1.0))
    assert not [p for p in fresh_native.rglob("*") if p.is_file()]  # no temporary left behind


def test_tracing_sees_the_reference_formula():
    model = LocalResponseNorm(3, 0.9, 0.75, 1.0)
    x = torch.randn(2, 7, 4, 4)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), local_response_norm(x, 3, 0.9, 0.75, 1.0))


# --- building and caching -------------------------------------------------------------------------------------------


@needs_cc
def test_a_fresh_process_reuses_the_cached_library(tmp_path):
    script = textwrap.dedent("""
        import os
        from alexnet.models import native
        assert native.load() is not None
        path = native.library_path(native.compiler())
        print(native.compiles, path, os.stat(path).st_mtime_ns)
    """)
    env = {**os.environ, "ALEXNET_CACHE": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    (built, path1, mtime1), (again, path2, mtime2) = (r.stdout.split() for r in runs)
    assert (built, again) == ("1", "0")
    assert path1 == path2 and mtime1 == mtime2
    # the library and the record of its hash, no temporary left
    names = sorted(p.name for p in (tmp_path / "native").iterdir())
    assert names == [os.path.basename(path1), os.path.basename(path1) + native.DIGEST_SUFFIX]


@needs_cc
def test_two_processes_building_at_once_both_load_a_whole_file(tmp_path):
    script = "from alexnet import native; assert native.load() is not None; print(native.compiles)"
    env = {**os.environ, "ALEXNET_CACHE": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len(list((tmp_path / "native").iterdir())) == 2  # one library and its record, no temporaries
    assert sorted(outs) == ["0\n", "1\n"]  # the folder lock: one process built, the other loaded its build


@needs_cc
def test_a_library_with_another_abi_is_rebuilt(fresh_native):
    # Our own earlier build (recorded, so trusted) of a source with another ABI: rebuilt in place.
    path = native.library_path(native.compiler())
    path.parent.mkdir(mode=0o700)
    stale = fresh_native / "stale.c"
    stale.write_text(f"int alexnet_lrn_abi(void) {{ return {native.ABI + 1}; }}\n")
    subprocess.run([*native.compiler(), "-shared", "-fPIC", str(stale), "-o", str(path)], check=True)
    native.digest_path(path).write_text(native.digest_record(path, path.read_bytes()))
    assert native.load() is not None
    assert native.compiles == 1 and native.load().alexnet_lrn_abi() == native.ABI


@needs_cc
def test_the_key_follows_the_source_and_the_flags(fresh_native, monkeypatch):
    cc = native.compiler()
    first = native.library_path(cc)
    monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-DSOMETHING"))
    second = native.library_path(cc)
    assert second != first
    monkeypatch.setenv("ALEXNET_NATIVE_SANITIZE", "1")  # the sanitized build never replaces the plain one
    assert native.library_path(cc) not in (first, second, None)


@needs_cc
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the process's mappings from /proc")
def test_the_library_shares_torchs_openmp_runtime():
    # Two OpenMP runtimes would mean two thread pools spinning on the same cores.
    assert native.load() is not None
    with open("/proc/self/maps") as f:
        runtimes = {line.split()[-1] for line in f if "libgomp" in line or "libiomp" in line}
    assert len(runtimes) == 1, runtimes  # -fopenmp makes the kernel need one: torch's, not a second
