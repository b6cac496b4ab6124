"""The authors' CIFAR-10 networks (models/cuda_convnet.py): their sizes from the files' own arithmetic, cuda-convnet's
layers (locally-connected, rnorm, cmrnorm, ceil pooling) against direct loops, and a real run through the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from alexnet.cli import main
from alexnet.errors import ConfigError
from alexnet.models import (
    CudaConvnetConfig,
    LocallyConnected2d,
    build_from_config,
    build_model,
    config_from_dict,
    count_parameters,
    list_models,
    model_config,
    num_params,
)
from alexnet.models.cuda_convnet_model import ResponseNormWithinMap
from alexnet.models.summary import summarize
from data_factories import make_folder
from tiny_runs import run_cli

NETS = list_models(family="cuda-convnet")


def conv(c_in, filters, k=5):  # weights + one shared bias per filter (sharedBiases=1)
    return filters * c_in * k * k + filters


def local(c_in, filters, side, k=3):  # weights and biases at every output position
    return side * side * (filters * c_in * k * k + filters)


# Each net's parameters, written out from its layers-*.cfg: 32x32 inputs pool to 16, 8, 4 (pools round up);
# 24x24 crops to 12 and 6.
FILE_ARITHMETIC = {
    "cc-80sec": conv(3, 32) + conv(32, 32) + conv(32, 64) + (64 * 4 * 4 * 64 + 64) + (64 * 10 + 10),
    "cc-18pct": conv(3, 32) + conv(32, 32) + conv(32, 64) + (64 * 4 * 4 * 10 + 10),
    "cc-19pct": conv(3, 32) + conv(32, 32) + conv(32, 64) + (64 * 4 * 4 * 10 + 10),
    "cc-conv-local-11pct": conv(3, 64) + conv(64, 64) + local(64, 64, 6) + local(64, 32, 6) + (32 * 6 * 6 * 10 + 10),
    "cc-conv-local-13pct": conv(3, 64) + conv(64, 64) + local(64, 32, 6) + local(32, 32, 6) + (32 * 6 * 6 * 10 + 10),
}


def test_the_registry_holds_the_five_files():
    assert list(FILE_ARITHMETIC) == NETS
    assert FILE_ARITHMETIC["cc-80sec"] == 145_578  # worked by hand from layers-80sec.cfg


@pytest.mark.parametrize("name", NETS)
def test_parameters_are_the_files_arithmetic(name):
    cfg = model_config(name)
    assert count_parameters(cfg) == num_params(build_model(name)) == FILE_ARITHMETIC[name]


@pytest.mark.parametrize("name", NETS)
def test_summary_matches_a_real_forward(name):
    cfg = model_config(name)
    model = build_model(name).eval()
    shapes = {}
    for layer, module in model.named_layers():
        module.register_forward_hook(lambda m, i, o, layer=layer: shapes.__setitem__(layer, tuple(o.shape[1:])))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        logits = model(torch.randn(2, 3, cfg.image_size, cfg.image_size))
    summary = summarize(cfg)
    assert logits.shape == (2, 10)
    assert [r.name for r in summary.layers] == list(shapes)
    assert all(r.out_shape == shapes[r.name] for r in summary.layers)
    assert summary.params == FILE_ARITHMETIC[name]
    assert abs(summary.macs - counter.get_total_flops() // 4) <= 0.01 * summary.macs  # 2 images, 2 FLOPs a MAC


def test_pools_round_up_and_average_the_pixels_inside():
    model = build_model("cc-80sec").eval()
    sides = [m(torch.ones(1, 1, s, s)).shape[-1] for m, s in ((model.layer("pool1"), 32), (model.layer("pool2"), 16),
                                                              (model.layer("pool3"), 8))]
    assert sides == [16, 8, 4]  # ceil((32 - 3) / 2) + 1 = 16, not PyTorch's default 15
    out = model.layer("pool2")(torch.ones(1, 1, 16, 16))
    assert torch.allclose(out, torch.ones_like(out))  # the last window, cut by the border, averages 2x3 pixels


def test_locally_connected_is_a_loop_over_positions_with_its_own_weights():
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 4, 3, input_size=5, stride=2, padding=1).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    side = layer.output_size
    assert side == 3 and out.shape == (2, 4, 3, 3)
    loop = torch.empty_like(out)
    for y in range(side):
        for x_ in range(side):
            patch = padded[:, :, 2 * y:2 * y + 3, 2 * x_:2 * x_ + 3].reshape(2, -1)  # (B, C*k*k)
            loop[:, :, y, x_] = patch @ layer.weight[y * side + x_].T + layer.bias[:, y, x_]
    assert torch.allclose(out, loop)
    grads = torch.autograd.grad(out.square().sum(), (x, layer.weight))
    loop_grads = torch.autograd.grad(loop.square().sum(), (x, layer.weight))
    assert all(torch.allclose(a, b) for a, b in zip(grads, loop_grads, strict=True))
    with torch.no_grad():  # unshared: one position's filters change that position's output only
        layer.weight[4] += 1.0
    changed = (layer(x) - out).abs().sum(dim=(0, 1)) > 0
    assert changed.tolist() == [[False, False, False], [False, True, False], [False, False, False]]
    with pytest.raises(ConfigError, match="built for 5x5"):
        layer(torch.randn(1, 3, 6, 6, dtype=torch.float64))


def test_rnorm_normalises_within_one_map_and_cmrnorm_across_maps():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64) * 30
    out = ResponseNormWithinMap(3, 5e-5, 0.75)(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    want = torch.empty_like(x)
    for c in range(2):
        for i in range(4):
            for j in range(4):
                total = padded[0, c, i:i + 3, j:j + 3].square().sum()  # layer.py: scale / size^2
                want[0, c, i, j] = x[0, c, i, j] / (1 + 5e-5 / 9 * total) ** 0.75
    assert torch.allclose(out, want)
    cmr = build_model("cc-conv-local-11pct").layer("rnorm1")
    y = torch.randn(1, 64, 2, 2, dtype=torch.float64) * 10
    got = cmr(y)
    window = torch.stack([y[0, max(0, c - 4):c + 5].square().sum(0) for c in range(64)])  # 9 maps, centred
    assert torch.allclose(got[0], y[0] / (1 + 0.001 / 9 * window) ** 0.75)  # layer.py: scale / size


def test_the_files_init_and_the_switches():
    torch.manual_seed(0)
    model = build_model("cc-conv-local-11pct")
    assert abs(model.layer("local3").weight.std().item() - 0.04) < 0.002  # initW
    assert abs(model.conv1.weight.std().item() - 1e-4) < 1e-5
    assert all(float(m.bias.detach().abs().max()) == 0 for _, m in model.named_layers()
               if getattr(m, "bias", None) is not None)
    plain = build_model("cc-conv-local-11pct", norm="none")
    assert "rnorm1" not in dict(plain.named_layers()) and "rnorm1" in dict(model.named_layers())
    bn = build_model("cc-19pct", norm="bn", activation="tanh")
    names = [n for n, _ in bn.named_layers()]
    assert names[:3] == ["conv1", "bn_conv1", "pool1"] and "tanh_conv2" in names
    assert count_parameters(model_config("cc-19pct", norm="bn")) == num_params(bn)
    with pytest.raises(ConfigError, match="no response normalisation"):
        model_config("cc-80sec", norm="lrn")
    with pytest.raises(ConfigError, match="pooling"):
        model_config("cc-80sec", pooling="plain")
    with pytest.raises(ConfigError, match="takes 32x32 inputs"):
        build_model("cc-80sec")(torch.randn(1, 3, 36, 36))
    with pytest.raises(ConfigError, match="smallest valid input"):
        model_config("cc-80sec", image_size=2)
    assert build_model("cc-80sec", width_mult=0.5).layer("fc64").out_features == 32


def test_freezing_the_features_freezes_the_spatial_layers_of_a_cuda_convnet_net():
    from alexnet.training.finetune import frozen_modules

    names = [n for n, _ in frozen_modules(build_model("cc-conv-local-13pct", norm="bn"), "features")]
    assert names[0] == "conv1" and names[-1] == "bn_local4" and "fc10" not in names
    assert [n for n, _ in frozen_modules(build_model("cc-80sec"), "features")][-1] == "conv3"


@pytest.mark.parametrize("name", NETS)
def test_a_checkpoint_rebuilds_the_same_net(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3).eval()
    args = json.loads(json.dumps(dataclasses.asdict(model.config)))
    assert args["family"] == "cuda-convnet" and isinstance(config_from_dict(args), CudaConvnetConfig)
    again = build_from_config(args).eval()
    again.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, model.config.image_size, model.config.image_size)
    assert torch.equal(model(x), again(x))
    with pytest.raises(ConfigError, match="unknown model family"):
        config_from_dict({**args, "family": "lenet"})


@pytest.mark.slow
def test_train_eval_and_summary_through_the_cli(tmp_path):
    data = make_folder(tmp_path / "photos", size=32)
    out = tmp_path / "runs"
    result = run_cli("train", "--model", "cc-80sec", "--data", str(data), "--epochs", "2", "--batch-size", "8",
                     "--output-dir", str(out), "--no-progress", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    run = next(p for p in out.iterdir() if p.is_dir())
    evaluated = run_cli("eval", "--checkpoint", str(run / "best.pt"), "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert 0.0 <= json.loads(evaluated.stdout)["top1"] <= 1.0
    assert main(["summary", "cc-conv-local-11pct"]) == 0
    # features and neighbours default to the net's last hidden layer (fc64 here), not AlexNet's fc7
    vectors = tmp_path / "f.npy"
    assert main(["features", "--checkpoint", str(run), str(data / "val"), "--output", str(vectors)]) == 0
    assert np.load(vectors).shape[1] == 64 and json.loads(vectors.with_suffix(".json").read_text())["layer"] == "fc64"
    query = str(next((data / "val").rglob("*.png")))
    assert main(["neighbours", "--checkpoint", str(run), "--data", str(data / "train"), query, "--top-k", "2",
                 "--output-dir", str(tmp_path / "nn")]) == 0
    assert json.loads((tmp_path / "nn" / "neighbours.json").read_text())["layer"] == "fc64"
