"""LocalResponseNorm: torch's convention (alpha / n) and the paper's printed formula, forward and backward."""

import pytest
import torch

from alexnet.errors import ConfigError
from alexnet.models.lrn import LocalResponseNorm


def literal_lrn(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """The first note's formula, channel by channel, in float64:
    b^i = a^i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} (a^j)^2)^beta."""
    a = a.double()
    num_channels = a.shape[1]
    out = torch.empty_like(a)
    for i in range(num_channels):
        lo, hi = max(0, i - n // 2), min(num_channels - 1, i + n // 2)
        s = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, i] = a[:, i] / (k + alpha * s) ** beta
    return out


# Large alpha and k=1 make the normalisation strong, so a wrong window or scale cannot hide in the tolerance.
PARAMS = [(5, 1e-4, 0.75, 2.0), (5, 0.5, 0.75, 1.0), (3, 1.0, 0.5, 1.0), (4, 0.8, 0.75, 1.5), (1, 2.0, 1.0, 0.5)]


@pytest.mark.parametrize(("size", "alpha", "beta", "k"), PARAMS)
@pytest.mark.parametrize("shape", [(2, 7, 5, 4), (3, 6, 9), (2, 8, 3, 2, 2)])
def test_per_size_matches_torch_forward_and_backward(size, alpha, beta, k, shape):
    torch.manual_seed(0)
    x = (torch.randn(shape, dtype=torch.float64) * 3).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    ours = LocalResponseNorm(size, alpha, beta, k, alpha_convention="per_size")(x)
    ref = torch.nn.LocalResponseNorm(size, alpha, beta, k)(x_ref)
    torch.testing.assert_close(ours, ref)
    grad = torch.randn_like(ours)
    ours.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_per_size_matches_torch_in_float32():
    x = torch.randn(4, 96, 13, 13) * 5
    torch.testing.assert_close(LocalResponseNorm()(x), torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(x))


@pytest.mark.parametrize(("size", "alpha", "beta", "k"), PARAMS)
def test_literal_matches_the_papers_formula_in_float64(size, alpha, beta, k):
    torch.manual_seed(1)
    x = torch.randn(2, 9, 4, 3) * 3
    ours = LocalResponseNorm(size, alpha, beta, k, alpha_convention="literal")(x.double())
    torch.testing.assert_close(ours, literal_lrn(x, size, alpha, beta, k), rtol=1e-12, atol=1e-12)
    # float32 input stays float32 and close to the float64 reference
    ours32 = LocalResponseNorm(size, alpha, beta, k, alpha_convention="literal")(x)
    assert ours32.dtype == torch.float32
    torch.testing.assert_close(ours32.double(), literal_lrn(x, size, alpha, beta, k), rtol=1e-5, atol=1e-6)


def test_conventions_differ_by_the_factor_n_for_odd_sizes():
    x = torch.randn(2, 10, 3, 3, dtype=torch.float64)
    literal = LocalResponseNorm(5, 0.2, 0.75, 1.0, alpha_convention="literal")(x)
    per_size = LocalResponseNorm(5, 0.2 * 5, 0.75, 1.0, alpha_convention="per_size")(x)
    torch.testing.assert_close(literal, per_size)
    assert not torch.allclose(literal, LocalResponseNorm(5, 0.2, 0.75, 1.0)(x))


def test_literal_gradient_is_exact():
    x = torch.randn(1, 6, 2, 2, dtype=torch.float64, requires_grad=True)
    module = LocalResponseNorm(3, 0.7, 0.75, 1.0, alpha_convention="literal")
    assert torch.autograd.gradcheck(module, (x,))


def test_module_has_no_parameters_and_says_its_convention():
    m = LocalResponseNorm()
    assert list(m.parameters()) == []
    assert "alpha_convention='per_size'" in repr(m) and "k=2.0" in repr(m)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"size": 0}, "field 'size' must be an integer in \\[1, 4096\\], got 0"),
        ({"size": -3}, "size. .* got -3"),
        ({"size": 2.5}, "size. .* got 2.5"),
        ({"size": True}, "size. .* got True"),
        ({"size": "5"}, "size. .* got '5'"),
        ({"size": 4097}, "size. .* got 4097"),
        ({"size": 2**31 + 5}, "size. .* got 2147483653"),  # wrapped to a negative C int in the native kernel
        ({"alpha": float("nan")}, "field 'alpha' must be a finite number in \\[0, inf\\], got nan"),
        ({"alpha": -1e-4}, "field 'alpha' must be a finite number in \\[0, inf\\], got -0.0001"),
        ({"beta": float("inf")}, "field 'beta' must be a finite number in \\[0, inf\\], got inf"),
        ({"k": -2.0}, "field 'k' must be a finite number in \\[0, inf\\], got -2.0"),
        ({"k": "2"}, "field 'k' must be a finite number in \\[0, inf\\], got '2'"),
        ({"alpha_convention": "per-size"}, "field 'alpha_convention' must be one of"),
    ],
)
def test_bad_arguments_are_config_errors_naming_the_field_and_value(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        LocalResponseNorm(**kwargs)


def test_an_echoed_value_is_cut_short():
    with pytest.raises(ConfigError) as err:
        LocalResponseNorm(size="5" * 100_000)
    assert len(str(err.value)) < 250 and "..." in str(err.value)


@pytest.mark.timeout(10)  # a limit, not a measurement: the check is immediate, the unchecked padding is not
def test_an_absurd_size_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="size"):
        LocalResponseNorm(size=10**12)


def test_accepted_boundaries_still_build():
    # The config's own rule is >= 0 for the constants; size 1 and the widest size are valid windows.
    for kwargs in ({"size": 1}, {"size": 4096}, {"alpha": 0.0, "beta": 0.0, "k": 0.0}, {"alpha": 1, "k": 2}):
        LocalResponseNorm(**kwargs)


def test_too_few_dims_is_a_clear_error():
    with pytest.raises(ConfigError, match="3 or more dims"):
        LocalResponseNorm()(torch.randn(4, 5))


@pytest.mark.parametrize(("alpha", "k"), [(1e-4, 2.0), (0.5, 1.0), (1.0, 0.5)])
def test_half_precision_input_is_normalised_in_float32(alpha, k):
    # bf16 in, bf16 out, and no error beyond the final rounding (half a bf16 ulp, 2**-8 relative): a sum of squares taken
    # in bf16 more than doubles it.
    torch.manual_seed(0)
    x = (torch.randn(4, 32, 8, 8) * 4).bfloat16()
    y = LocalResponseNorm(5, alpha, 0.75, k, alpha_convention="literal")(x)
    assert y.dtype == torch.bfloat16
    ref = literal_lrn(x.float(), 5, alpha, 0.75, k)
    assert ((y.double() - ref).abs() / ref.abs().clamp_min(1e-6)).max() <= 2**-8


# --- the fast kernel the module runs, against the reference formula -------------------------------------------------


@pytest.mark.parametrize("convention", ["per_size", "literal"])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7])
def test_fast_kernel_matches_reference_forward_and_backward(convention, size):
    from alexnet.models.lrn import fast_local_response_norm, local_response_norm

    torch.manual_seed(size)
    # 9 images: two full chunks and a partial one; 6 channels: windows wider than the channel count at size 7.
    x = (torch.randn(9, 6, 5, 4, dtype=torch.float64) * 3).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    ours = fast_local_response_norm(x, size, 0.7, 0.75, 1.0, convention)
    ref = local_response_norm(x_ref, size, 0.7, 0.75, 1.0, convention)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(ours)
    ours.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


def test_fast_kernel_gradcheck_per_size():
    x = torch.randn(5, 7, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(LocalResponseNorm(5, 0.9, 0.75, 1.0), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_kernel_keeps_channels_last_and_dtype(dtype):
    x = (torch.randn(6, 16, 7, 7) * 4).to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = LocalResponseNorm()(x)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(y)
    y.backward(grad)
    assert x.grad.dtype == dtype and x.grad.is_contiguous(memory_format=torch.channels_last)
    # the same numbers as torch's LRN, taken in float32 on a contiguous copy
    x_ref = x.detach().float().contiguous().requires_grad_()
    ref = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(x_ref)
    ref.backward(grad.float())
    tol = {"rtol": 1.3e-6, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2**-7, "atol": 2**-7}
    torch.testing.assert_close(y.float(), ref, **tol)
    torch.testing.assert_close(x.grad.float(), x_ref.grad, **tol)
