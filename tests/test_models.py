"""Contract tests over every registered variant, the exact parameter counts, the switches and weight import.

The contract (shape, finite output, gradients, the features/head split, summary shapes, torch.export, ONNX, rebuild
from a checkpoint's model_args) iterates the registry, so a new variant is tested by registering it; only the
numbers of the shipped variants (EXACT_PARAMS, SHIPPED_MIN_INPUT) are pinned by name.
"""

import dataclasses
import json

import pytest
import torch
import torchvision
from torch import nn

from alexnet.errors import CheckpointError, ConfigError
from alexnet.models import (
    AlexNet,
    AlexNetConfig,
    build_model,
    count_parameters,
    describe_variants,
    list_models,
    min_input_size,
    model_config,
    num_params,
    parameter_count,
)
from alexnet.models.lrn import LocalResponseNorm
from alexnet.models.pretrained import load_torchvision_weights
from alexnet.models.summary import summarize
from alexnet.store.checkpoint import Checkpoint


def onnx_export():
    """The package's ONNX export function: imported in this one place, so that moving it between modules is one line.
    Skips the calling test when the export extra (onnx, onnxscript, onnxruntime) is not installed."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason="the ONNX contract needs the export extra: pip install 'alexnet[export]'")
    from alexnet.export import export_onnx

    return export_onnx


VARIANTS = list_models(family="alexnet")  # the cuda-convnet nets have their own tests (test_cuda_convnet.py)
ALL = list_models()
SMALL = {"width_mult": 0.125}  # 12-32-48-48-32 channels, fc 512: a forward takes milliseconds

# The shipped variants' numbers, pinned by name; a variant added later is held to arithmetic instead.
EXACT_PARAMS = {
    "alexnet": 60_965_224,
    "alexnet-1gpu": 62_378_344,
    "alexnet-owt": 61_100_840,
    "alexnet-bn": 58_292_290,  # with its 2 classes
    "alexnet-d2l": 46_764_746,  # 1 channel, 10 classes, 224
}


def small(name: str, **overrides) -> AlexNet:
    torch.manual_seed(0)
    cfg = model_config(name, **SMALL, **overrides)
    return AlexNet(dataclasses.replace(cfg, image_size=overrides.get("image_size", 99)))


def batch(model: AlexNet, n: int = 3, size: int | None = None) -> torch.Tensor:
    torch.manual_seed(1)
    size = size or model.config.image_size
    return torch.randn(n, model.config.in_channels, size, size)


SHIPPED_MIN_INPUT = {"alexnet": 67, "alexnet-1gpu": 67, "alexnet-bn": 67, "alexnet-d2l": 67, "alexnet-owt": 63}


def test_registry_holds_the_shipped_variants_paper_first():
    assert VARIANTS[0] == "alexnet"  # the paper first, as `alexnet models` lists them
    assert set(EXACT_PARAMS) <= set(VARIANTS) and len(set(VARIANTS)) == len(VARIANTS)
    for name in VARIANTS:
        assert model_config(name).name == name  # each name builds the config it names


@pytest.mark.parametrize("name", list(EXACT_PARAMS))
def test_exact_parameter_count(name):
    model = build_model(name)  # full width, default config, real CPU tensors
    assert num_params(model) == EXACT_PARAMS[name]


def test_defaults_of_the_config_are_the_paper():
    assert AlexNetConfig() == model_config("alexnet")
    assert num_params(AlexNet()) == EXACT_PARAMS["alexnet"]


# --- contract: every variant ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_output_shape_and_finite(name):
    model = small(name).eval()
    x = batch(model)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (3, model.config.num_classes)
    assert torch.isfinite(y).all()
    # the timm-style split is the same computation
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.dim() == 4 and features.shape[1] == model.config.conv_channels[-1]
        torch.testing.assert_close(model.forward_head(features), y)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_parameter_gets_a_gradient(name):
    model = small(name).train()
    x = batch(model, n=4)
    target = torch.arange(4) % model.config.num_classes
    nn.functional.cross_entropy(model(x), target).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"


@pytest.mark.parametrize("name", VARIANTS)
def test_summary_shapes_are_the_forward_shapes(name):
    # `alexnet summary` computes its shapes by arithmetic on a meta model: every row must be what the layer gives.
    model = small(name).eval()
    seen: dict[str, tuple[int, ...]] = {}
    for lname, module in model.named_layers():
        module.register_forward_hook(lambda m, i, o, lname=lname: seen.__setitem__(lname, tuple(o.shape[1:])))
    with torch.no_grad():
        model(batch(model, n=1))
    rows = summarize(model.config).layers
    assert [(r.name, r.out_shape) for r in rows] == list(seen.items())
    assert rows[-1].out_shape == (model.config.num_classes,)


@pytest.mark.parametrize("name", VARIANTS)
def test_torch_export_round_trip_gives_the_same_logits(name, tmp_path):
    model = small(name).eval()
    dim = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (batch(model, n=2),), dynamic_shapes=({0: dim},))
    torch.export.save(program, tmp_path / "model.pt2")
    loaded = torch.export.load(tmp_path / "model.pt2").module()
    x = batch(model, n=3)  # not the traced batch size: the batch axis really is dynamic
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)


# 5-10 s a variant on 2 cores (the dynamo exporter): the paper's in the quick suite, every variant under -m slow.
@pytest.mark.parametrize("name", [VARIANTS[0], *(pytest.param(n, marks=pytest.mark.slow) for n in VARIANTS[1:])])
def test_onnx_export_runs_in_onnxruntime_with_the_same_logits(name, tmp_path):
    export = onnx_export()
    import onnxruntime

    model = small(name).eval()
    report = export(model, tmp_path / "model.onnx")
    assert report["onnxruntime_max_abs_diff"] <= 1e-3  # the export's own check, on its own batch
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = batch(model, n=5)  # and ours, on a batch size neither the trace nor the export's check used
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", VARIANTS)
def test_dropout_is_random_in_train_and_off_in_eval(name):
    model = small(name)
    x = batch(model, n=2)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), model(x))
        model.train()
        torch.manual_seed(2)
        a = model(x)
        torch.manual_seed(3)
        b = model(x)
    assert not torch.allclose(a, b), "dropout did nothing in train mode"


@pytest.mark.parametrize("name", VARIANTS)
def test_without_dropout_train_mode_is_deterministic_except_batchnorm(name):
    model = small(name, dropout=0.0).train()
    x = batch(model, n=2)
    with torch.no_grad():
        torch.manual_seed(2)
        a = model(x)
        torch.manual_seed(3)
        b = model(x)
    torch.testing.assert_close(a, b)


def test_batchnorm_uses_batch_statistics_in_train_and_running_ones_in_eval():
    model = small("alexnet-bn")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 5
    x = batch(model, n=4)
    with torch.no_grad():
        model.train()
        before = bns[0].running_mean.clone()
        model(x)
        assert not torch.equal(bns[0].running_mean, before), "train mode must update running stats"
        # in train mode an image's output depends on the rest of its batch
        assert not torch.allclose(model(x)[1], model(x[1:3])[0], atol=1e-5)
        model.eval()
        frozen = bns[0].running_mean.clone()
        torch.testing.assert_close(model(x)[1:2], model(x[1:2]))
        assert torch.equal(bns[0].running_mean, frozen), "eval mode must not touch running stats"


@pytest.mark.parametrize("name", VARIANTS)
def test_rebuild_from_asdict_and_through_json_and_a_weights_only_checkpoint(name, tmp_path):
    model = small(name)
    with torch.no_grad():  # BatchNorm statistics away from their initial values, so that buffers must travel too
        model.train()(batch(model, n=4))
    args = dataclasses.asdict(model.config)
    rebuilt = AlexNet(AlexNetConfig(**args))
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())  # same keys and shapes
    # YAML/JSON turn tuples into lists: still accepted
    from_json = AlexNet(AlexNetConfig.from_dict(json.loads(json.dumps(args))))
    assert from_json.config == model.config
    torch.save({"model_args": args, "model": model.state_dict()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    again = AlexNet(AlexNetConfig(**ckpt["model_args"]))
    again.load_state_dict(ckpt["model"])
    x = batch(model, n=2)
    with torch.no_grad():
        expected = model.eval()(x)
        torch.testing.assert_close(again.eval()(x), expected, rtol=0, atol=0)
        # and as eval/predict rebuild it (the checkpoint record): the same architecture and weights, bit-identical
        record = Checkpoint(model_name=model.config.name, model_args=args, weights=ckpt["model"], class_names=[],
                            preprocessing=None, data={}, config={}, train_state={})
        torch.testing.assert_close(record.build_model()(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_too_small_input_names_the_smallest_size(name):
    cfg = model_config(name, **SMALL)
    smallest = min_input_size(cfg)
    with pytest.raises(ConfigError, match=f"smallest valid input is {smallest}x{smallest}"):
        model_config(name, image_size=smallest - 1)
    model = AlexNet(dataclasses.replace(cfg, image_size=smallest))
    with torch.no_grad():
        assert model(batch(model, n=1, size=smallest)).shape[0] == 1
        with pytest.raises(ConfigError, match=f"smallest valid input is {smallest}x{smallest}"):
            model(batch(model, n=1, size=smallest - 1))
    # and min_input_size is really the smallest: the bare conv stack fails one pixel below it
    with pytest.raises(RuntimeError):
        model.features(batch(model, n=1, size=smallest - 1))


def test_min_input_sizes_of_the_shipped_variants():
    assert {n: min_input_size(model_config(n)) for n in SHIPPED_MIN_INPUT} == SHIPPED_MIN_INPUT


def test_flatten_head_refuses_another_size_and_says_what_to_do():
    model = small("alexnet", image_size=99)
    with pytest.raises(ConfigError, match="image_size"):
        model(batch(model, n=1, size=160))


def test_adaptive_head_takes_any_valid_size():
    model = small("alexnet-owt").eval()
    with torch.no_grad():
        for size in (63, 99, 250):
            assert model(batch(model, n=1, size=size)).shape == (1, 1000)


def test_wrong_channel_count_is_a_config_error():
    model = small("alexnet")
    with pytest.raises(ConfigError, match="1 input channel"):
        small("alexnet-d2l")(torch.randn(1, 3, 99, 99))
    with pytest.raises(ConfigError, match="3 input channel"):
        model(torch.randn(1, 1, 99, 99))


# --- the layouts and switches ----------------------------------------------------------------------------------------


def _layer_types(model: AlexNet) -> list[str]:
    return [name for name, _ in model.named_layers()]


def test_paper_layout():
    model = build_model("alexnet", **SMALL)
    assert _layer_types(model) == [
        "conv1", "relu1", "lrn1", "pool1", "conv2", "relu2", "lrn2", "pool2", "conv3", "relu3", "conv4", "relu4",
        "conv5", "relu5", "pool5", "flatten", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8",
    ]
    groups = {n: model.layer(n).groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3
    lrn = model.layer("lrn1")
    assert isinstance(lrn, LocalResponseNorm)
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k, lrn.alpha_convention) == (5, 1e-4, 0.75, 2.0, "per_size")
    assert model.conv1 is model.features[0] and model.conv1.kernel_size == (11, 11)
    assert build_model("alexnet").conv1.out_channels == 96


def test_paper_init():
    torch.manual_seed(0)
    model = build_model("alexnet")
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        m = model.layer(name)
        assert m.weight.mean().abs() < 1e-3 and abs(m.weight.std().item() - 0.01) < 5e-4, name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(m.bias == expected_bias), name


def test_default_and_kaiming_init_differ_from_paper():
    torch.manual_seed(0)
    default = build_model("alexnet", init="default", **SMALL)
    kaiming = build_model("alexnet", init="kaiming", **SMALL)
    assert default.layer("conv2").bias.abs().max() < 1  # PyTorch's uniform, not the paper's ones
    fan_out = kaiming.layer("conv3").out_channels * 9
    assert abs(kaiming.layer("conv3").weight.std().item() - (2 / fan_out) ** 0.5) < 0.2 * (2 / fan_out) ** 0.5
    assert torch.all(kaiming.layer("conv2").bias == 0)


def test_bn_and_d2l_and_owt_layouts():
    bn = build_model("alexnet-bn", **SMALL)
    assert _layer_types(bn)[:4] == ["conv1", "bn1", "relu1", "pool1"]
    assert _layer_types(bn)[-7:] == ["drop6", "fc6", "relu6", "drop7", "fc7", "relu7", "fc8"]
    assert not any(isinstance(m, LocalResponseNorm) for m in bn.modules())
    d2l = build_model("alexnet-d2l")
    assert d2l.layer("fc6").in_features == 6400 and d2l.conv1.in_channels == 1 and d2l.conv1.padding == (0, 0)
    owt = build_model("alexnet-owt", **SMALL)
    assert isinstance(owt.avgpool, nn.AdaptiveAvgPool2d)


def test_switches_change_what_they_say():
    tanh = build_model("alexnet", activation="tanh", **SMALL)
    assert not any(isinstance(m, nn.ReLU) for m in tanh.modules())
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 7
    plain = build_model("alexnet", pooling="plain", **SMALL)
    assert all(m.kernel_size == 2 and m.stride == 2 for m in plain.modules() if isinstance(m, nn.MaxPool2d))
    none = build_model("alexnet", norm="none", **SMALL)
    assert not any(isinstance(m, LocalResponseNorm) for m in none.modules())
    literal = build_model("alexnet", lrn_alpha_convention="literal", **SMALL)
    assert literal.layer("lrn2").alpha_convention == "literal"
    p = build_model("alexnet", dropout=0.3, **SMALL)
    assert [m.p for m in p.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    one_tower = build_model("alexnet", groups=1, **SMALL)
    assert all(m.groups == 1 for m in one_tower.modules() if isinstance(m, nn.Conv2d))


def test_paper_bias0_init_keeps_the_paper_weights_and_zeroes_every_bias():
    torch.manual_seed(0)
    paper = build_model("alexnet", **SMALL)
    torch.manual_seed(0)
    bias0 = build_model("alexnet", init="paper-bias0", **SMALL)
    assert paper.layer("conv2").bias.eq(1).all() and paper.layer("fc7").bias.eq(1).all()
    for name, m in bias0.named_layers():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert m.bias.eq(0).all(), name
            assert torch.equal(m.weight, paper.layer(name).weight), name  # the same N(0, 0.01) draws
    with pytest.raises(ConfigError, match="field 'init' must be one of"):
        AlexNetConfig(init="bias0")


def test_half_kernel_one_tower_is_channels_with_groups_1():
    # Section 3.2's one-GPU net: half the kernels of every conv but conv5, one tower; no field of its own.
    half = build_model("alexnet", channels=(48, 128, 192, 192, 256), groups=1, num_classes=10)
    assert [half.layer(f"conv{i}").out_channels for i in range(1, 6)] == [48, 128, 192, 192, 256]
    assert all(m.groups == 1 for m in half.modules() if isinstance(m, nn.Conv2d))
    assert half.layer("fc6").in_features == 256 * 6 * 6
    assert num_params(half) == parameter_count(half.config) < num_params(build_model("alexnet", num_classes=10))


def test_width_mult_scales_convs_and_fcs():
    model = build_model("alexnet", width_mult=0.25)
    assert model.config.conv_channels == (24, 64, 96, 96, 64)
    assert model.layer("fc6").out_features == 1024 and model.layer("fc6").in_features == 64 * 6 * 6
    # channels stay divisible by groups whatever the multiplier
    odd = build_model("alexnet", width_mult=0.07)
    assert all(c % 2 == 0 for c in odd.config.conv_channels)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"norm": "layer"}, "norm"),
        ({"activation": "gelu"}, "activation"),
        ({"pooling": "avg"}, "pooling"),
        ({"dropout": 1.0}, "dropout"),
        ({"width_mult": 0}, "width_mult"),
        ({"num_classes": 0}, "num_classes"),
        ({"in_channels": True}, "in_channels"),
        ({"image_size": 227.0}, "image_size"),
        ({"channels": (96, 256, 384)}, "channels"),
        ({"channels": (96, 255, 384, 384, 256)}, "groups"),
        ({"init": "xavier"}, "init"),
        ({"head": "gap"}, "head"),
        ({"lrn_alpha": "literal"}, "lrn_alpha_convention"),
        ({"lrn_alpha_convention": "paper"}, "lrn_alpha_convention"),
        ({"dropout_position": "middle"}, "dropout_position"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        model_config("alexnet", **overrides)


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(ConfigError, match=f"valid names: {', '.join(ALL)}$"):
        build_model("alexnet-v2")
    with pytest.raises(ConfigError, match="num_clases"):
        build_model("alexnet", num_clases=3)
    with pytest.raises(ConfigError, match="bogus"):
        AlexNetConfig.from_dict({"bogus": 1})


def test_every_variant_documents_source_and_deviations():
    rows = describe_variants()
    assert [r["name"] for r in rows] == ALL
    for r in rows:
        assert r["params"] == EXACT_PARAMS.get(r["name"], count_parameters(model_config(r["name"])))
        assert len(r["source"]) > 20 and len(r["deviations"]) > 20 and r["summary"]
    one_tower = {r["name"]: r for r in rows}["alexnet-1gpu"]
    assert "1,413,120" in one_tower["deviations"]
    assert EXACT_PARAMS["alexnet-1gpu"] - EXACT_PARAMS["alexnet"] == 1_413_120


class NotATensor:
    """Something a weights-only load must refuse to unpickle."""


# --- torchvision weights ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torchvision_pth(tmp_path_factory):
    torch.manual_seed(0)
    tv = torchvision.models.alexnet().eval()  # random init: no download
    path = tmp_path_factory.mktemp("tv") / "alexnet.pth"
    torch.save(tv.state_dict(), path)
    return tv, path


def test_owt_is_state_dict_compatible_and_loads_torchvision_weights(torchvision_pth):
    tv, path = torchvision_pth
    model = build_model("alexnet-owt")
    assert list(model.state_dict()) == list(tv.state_dict())
    load_torchvision_weights(model, path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), tv(x), rtol=0, atol=0)


def test_owt_loads_into_one_channel_by_summing_conv1(torchvision_pth):
    tv, path = torchvision_pth
    gray = load_torchvision_weights(build_model("alexnet-owt", in_channels=1), path).eval()
    g = torch.randn(2, 1, 120, 120)
    with torch.no_grad():
        torch.testing.assert_close(gray(g), tv(g.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_owt_fine_tuning_head_is_kept_with_skip_head(torchvision_pth):
    tv, path = torchvision_pth
    torch.manual_seed(5)
    model = build_model("alexnet-owt", num_classes=10)
    fresh_fc8 = model.layer("fc8").weight.clone()
    with pytest.raises(CheckpointError, match="classifier.6.weight"):
        load_torchvision_weights(model, path)
    load_torchvision_weights(model, path, skip_head=True)
    assert torch.equal(model.layer("fc8").weight, fresh_fc8)
    assert torch.equal(model.layer("fc6").weight, tv.classifier[1].weight)


def test_weight_loading_refuses_what_it_cannot_use(torchvision_pth, tmp_path):
    _, path = torchvision_pth
    with pytest.raises(CheckpointError, match="does not fit"):
        load_torchvision_weights(build_model("alexnet", **SMALL), path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_torchvision_weights(build_model("alexnet-owt", **SMALL), tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_torchvision_weights(build_model("alexnet-owt", **SMALL), garbage)
    pickled = tmp_path / "pickled.pth"
    torch.save({"features.0.weight": torch.zeros(1), "hook": NotATensor()}, pickled)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_torchvision_weights(build_model("alexnet-owt", **SMALL), pickled)


def test_a_plain_dict_config_is_accepted_and_checked():
    args = dataclasses.asdict(model_config("alexnet-d2l", width_mult=0.125))
    assert AlexNet(args).config.name == "alexnet-d2l"
    with pytest.raises(ConfigError, match="bogus"):
        AlexNet({**args, "bogus": 1})


# --- bounds: a config is refused by arithmetic before anything is built (issue 9) ---------------------------------


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("overrides", [{}, SMALL, {"image_size": 300, "num_classes": 7}, {"norm": "bn", "groups": 1},
                                       {"head": "adaptive", "width_mult": 0.5}, {"pooling": "plain", "conv1_padding": 3}])
def test_parameter_count_by_arithmetic_matches_the_built_model(name, overrides):
    cfg = model_config(name, **overrides)
    with torch.device("meta"):
        model = AlexNet(cfg)
    assert parameter_count(cfg) == num_params(model)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width_mult": 1e6}, r"field 'width_mult' must be a finite number in \(0, 64\], got 1000000\.0"),
        ({"width_mult": float("inf")}, r"field 'width_mult' must be a finite number in \(0, 64\], got inf"),
        ({"image_size": 10**7}, r"field 'image_size' must be an integer in \[1, 4096\], got 10000000"),
        ({"lrn_size": 10**9}, r"field 'lrn_size' must be an integer in \[1, 4096\]"),
        ({"lrn_size": 97}, r"lrn_size=97 is larger than the 96 channels it normalises across"),
        ({"num_classes": 10**9}, r"field 'num_classes' must be an integer in \[1, 100000\]"),
        ({"conv1_padding": 10**6}, r"field 'conv1_padding' must be an integer in \[0, 10\]"),
        ({"channels": (10**9, 256, 384, 384, 256)}, r"field 'channels\[conv1\]' must be an integer in \[1, 65536\]"),
        ({"fc_width": 2**40}, r"field 'fc_width' must be an integer in \[1, 65536\]"),
        ({"width_mult": 30.0}, r"would have 51,265,640,680 parameters \(limit 2,147,483,648\)"),
        ({"image_size": 4096, "head": "adaptive", "width_mult": 16.0, "fc_width": 64},
         r"would need 1,604,327,424 values for one image's largest feature map"),
        ({"lrn_k": float("nan")}, r"field 'lrn_k' must be a finite number in \[0, inf\], got nan"),
        ({"lrn_beta": 10**400}, r"field 'lrn_beta' must be a finite number in \[0, inf\], got <an int of 1329 bits>"),
        ({"name": "x" * 10**6}, r"field 'name' must be a non-empty string of at most 256 characters, got 'xxx"),
    ],
)
def test_absurd_configs_are_refused_before_building(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        AlexNetConfig(**overrides)
    assert len(str(err.value)) < 400


def test_lrn_size_is_only_bounded_by_channels_when_lrn_is_used():
    assert model_config("alexnet-bn", lrn_size=500).lrn_size == 500  # no LRN layer: nothing to normalise across


def test_from_dict_refuses_what_is_not_a_mapping():
    with pytest.raises(ConfigError, match=r"model config must be a mapping of fields, got \[1, 2\]"):
        AlexNetConfig.from_dict([1, 2])


def test_paper_he_init_keeps_the_signal_through_the_net_where_the_others_shrink_it():
    """paper-he (the paper-imagenette recipe's init) draws conv2-fc7 from N(0, 2 / fan_in), so fc7's output keeps
    the scale of conv1's; the paper's N(0, 0.01), the fan_out form and PyTorch's default shrink it by orders of
    magnitude, which is why none of them left chance on Imagenette without BatchNorm. conv1 and fc8 keep the
    paper's N(0, 0.01)."""
    images = torch.randn(16, 3, 131, 131)

    def scales(init: str) -> tuple[float, float]:
        torch.manual_seed(0)
        model = build_model("alexnet", init=init, width_mult=0.5, image_size=131, num_classes=10).eval()
        out: dict[str, float] = {}
        for name in ("conv1", "fc7"):
            model.layer(name).register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, o.std().item()))
        model(images)
        return out["conv1"], out["fc7"]

    conv1, fc7 = scales("paper-he")
    assert 0.25 < fc7 / conv1 < 4
    for other in ("kaiming", "paper-bias0", "default"):
        conv1, fc7 = scales(other)
        assert fc7 / conv1 < 0.05, other
    torch.manual_seed(0)
    model = build_model("alexnet", init="paper-he", **SMALL)
    fan_in = model.layer("fc6").in_features
    assert abs(model.layer("fc6").weight.std().item() - (2 / fan_in) ** 0.5) < 0.1 * (2 / fan_in) ** 0.5
    for name in ("conv1", "fc8"):
        assert abs(model.layer(name).weight.std().item() - 0.01) < 2e-3, name
    assert all(m.bias.eq(0).all() for _, m in model.named_layers() if isinstance(m, (nn.Conv2d, nn.Linear)))
