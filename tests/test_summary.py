"""`alexnet summary`'s numbers against a real forward pass and torch.utils.flop_counter."""

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from alexnet.errors import ConfigError
from alexnet.models import AlexNet, feature_size, list_models, min_input_size, model_config, num_params, out_size
from alexnet.models.summary import exact_sizes, summarize, target_map

VARIANTS = list_models(family="alexnet")  # the cuda-convnet nets: tests/test_cuda_convnet.py


def real_forward(cfg, size: int) -> tuple[dict[str, tuple[int, ...]], int, int]:
    """Per-layer output shapes from hooks, MACs from the flop counter, and the parameter count of the real model."""
    if cfg.head == "flatten":
        cfg = dataclasses.replace(cfg, image_size=size)
    torch.manual_seed(0)
    model = AlexNet(cfg).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    for name, module in model.named_layers():
        module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    x = torch.randn(1, cfg.in_channels, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return shapes, counter.get_total_flops() // 2, num_params(model)


def assert_summary_matches_reality(cfg, size):
    summary = summarize(cfg, size)
    shapes, macs, params = real_forward(cfg, size)
    assert [r.name for r in summary.layers] == list(shapes)
    for row in summary.layers:
        assert row.out_shape == shapes[row.name], row.name
    assert abs(summary.macs - macs) <= 0.01 * macs
    assert summary.params == params
    assert summary.to_dict()["input"] == [cfg.in_channels, size, size]


@pytest.mark.parametrize("name", VARIANTS)
def test_default_summary_matches_a_real_forward_at_full_width(name):
    cfg = model_config(name)
    assert_summary_matches_reality(cfg, cfg.image_size)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("size", ["min", 100, 224, 231])
def test_summary_matches_a_real_forward_at_odd_sizes(name, size):
    cfg = model_config(name, width_mult=0.125)
    assert_summary_matches_reality(cfg, min_input_size(cfg) if size == "min" else size)


def test_switches_are_summarised_too():
    for overrides in ({"norm": "bn", "pooling": "plain"}, {"activation": "tanh", "head": "adaptive"}):
        cfg = model_config("alexnet", width_mult=0.125, **overrides)
        assert_summary_matches_reality(cfg, 150)


def test_paper_numbers():
    summary = summarize(model_config("alexnet"), 227)
    rows = {r.name: r for r in summary.layers}
    assert rows["conv1"].formula == "floor((227 + 2*0 - 11) / 4) + 1 = 55"
    assert rows["pool1"].formula == "floor((55 - 3) / 2) + 1 = 27"
    assert rows["flatten"].formula == "256*6*6 = 9216"
    assert rows["fc6"].formula == "9216 -> 4096"
    assert [rows[n].receptive_field for n in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5")] == [
        11, 19, 51, 67, 163, 195,
    ]
    assert rows["fc6"].receptive_field is None
    assert summary.params == 60_965_224
    assert rows["conv2"].macs == 256 * 27 * 27 * 48 * 25  # grouped: each filter sees 48 of conv1's 96 maps
    assert summary.warnings == []  # 227 fits every layer exactly
    assert any("224 vs 227" in note for note in summary.notes)


def test_224_truncates_under_floor_and_gives_55_under_ceil():
    floor = summarize(model_config("alexnet"), 224)
    rows = {r.name: r for r in floor.layers}
    assert rows["conv1"].out_shape == (96, 54, 54) and rows["pool5"].out_shape == (256, 5, 5)
    assert any(w.startswith("conv1:") and "drops the last 1" in w for w in floor.warnings)
    assert any("227" in note for note in floor.notes)

    ceil = summarize(model_config("alexnet"), 224, ceil=True)
    rows = {r.name: r for r in ceil.layers}
    assert rows["conv1"].formula == "ceil((224 + 2*0 - 11) / 4) + 1 = 55"
    assert rows["pool5"].out_shape == (256, 6, 6)
    assert ceil.params == 60_965_224  # the paper's network at the paper's 224, as cuda-convnet builds it
    assert ceil.to_dict()["input"] == [3, 224, 224]


def test_no_224_note_where_it_does_not_matter():
    assert summarize(model_config("alexnet"), 300).notes[0].startswith("Input sizes near")
    assert summarize(model_config("alexnet-owt", width_mult=0.125), 255).notes == []  # fits exactly, not 224/227


def test_json_has_exactly_the_documented_schema():
    d = summarize(model_config("alexnet-bn"), 227).to_dict()
    assert set(d) == {"model", "input", "params", "macs", "layers"}
    assert d["model"] == "alexnet-bn" and d["params"] == 58_292_290
    for layer in d["layers"]:
        assert set(layer) == {"name", "type", "out_shape", "params", "macs", "formula"}
    assert d["macs"] == sum(layer["macs"] for layer in d["layers"])


def test_out_size_both_roundings():
    assert out_size(227, 11, 4) == 55 and out_size(224, 11, 4) == 54 and out_size(224, 11, 4, ceil=True) == 55
    assert out_size(224, 11, 4, padding=2) == 55
    assert out_size(10, 11, 4) == 0  # the window does not fit


def test_target_map_answers_for_conv1_and_the_stack():
    cfg = model_config("alexnet")
    answer = target_map(cfg, 55)
    assert answer["conv1"]["sizes"] == [227, 230] and answer["conv1"]["exact"] == [227]
    assert 224 in range(*target_map(cfg, 55, ceil=True)["conv1"]["sizes"])
    six = target_map(cfg, 6)["pool5"]
    lo, hi = six["sizes"]
    assert lo == 227 and six["exact"][0] == 227
    # the range is tight: checked with the real conv stack on either side of both ends
    model = AlexNet(dataclasses.replace(cfg, width_mult=0.0625, head="adaptive"))
    with torch.no_grad():
        for size, side in ((lo - 1, 5), (lo, 6), (hi, 6), (hi + 1, 7)):
            assert model.forward_features(torch.zeros(1, 3, size, size)).shape[-1] == side
            assert feature_size(cfg, size) == side


def test_target_map_flags_sizes_below_the_network_minimum():
    answer = target_map(model_config("alexnet"), 3)
    assert answer["conv1"]["sizes"] == [19, 22] and answer["conv1"]["valid_for_model"] == []


def test_exact_sizes_really_drop_nothing():
    cfg = model_config("alexnet")
    for size in exact_sizes(cfg, 60, 400):
        s = size
        for w in (11, 4, 0), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2, 0):
            assert (s + 2 * w[2] - w[0]) % w[1] == 0
            s = out_size(s, *w)
    assert exact_sizes(cfg, 60, 400) == [67, 99, 131, 163, 195, 227, 259, 291, 323, 355, 387]


@pytest.mark.parametrize("size", [-5, 0, 66, 2.5])
def test_bad_sizes_are_config_errors(size):
    with pytest.raises(ConfigError, match="67x67" if size == 66 else "positive int"):
        summarize(model_config("alexnet"), size)
    with pytest.raises(ConfigError):
        target_map(model_config("alexnet"), -1)


@pytest.mark.parametrize("name", ["alexnet", "alexnet-bn"])
def test_seen_input_is_what_a_real_backward_pass_reaches(name):
    from alexnet.models.shapes import seen_input

    cfg = model_config(name, width_mult=0.125)
    for size in (67, 91, 95, 96, 99, 224, 227):
        x = torch.randn(1, cfg.in_channels, size, size, requires_grad=True)
        AlexNet(dataclasses.replace(cfg, image_size=size)).eval().features(x).sum().backward()
        reached = x.grad.abs().sum(dim=(0, 1))
        rows, cols = reached.sum(1).nonzero().max().item() + 1, reached.sum(0).nonzero().max().item() + 1
        assert seen_input(cfg, size) == rows == cols, size


def test_the_demo_size_says_what_it_loses_all_told_and_what_the_exact_sizes_change():
    # 96 px (the demo's and the fast recipe's) warns at four layers; the notes say what that costs all told and
    # that the sizes that drop nothing are other networks, so that a user can see why the demo keeps 96.
    notes = summarize(model_config("alexnet-bn", width_mult=0.25), 96).notes
    assert notes == [
        "Input sizes near this one that drop no pixel anywhere in the conv stack: 67 (pool5 1x1), 99 (pool5 2x2); "
        "this one: pool5 1x1",
        "All told, the last 5 rows and columns of the 96x96 input reach no output: the network sees its first 91x91 "
        "pixels (90% of them).",
    ]
    # pool2 and pool5 drop a row at 91, yet later windows cover it: no input pixel is lost
    assert summarize(model_config("alexnet-bn"), 91).notes[-1].startswith("All told, every input pixel still")
    assert summarize(model_config("alexnet-bn"), 99).notes == []
