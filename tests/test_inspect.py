"""alexnet.inspect (Grad-CAM, activations, units, the cached index), `alexnet inspect` and `alexnet report`, on a
real tiny trained run (conftest's `trained`): no mocks."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def opened(trained):
    from alexnet.inspect.index import load_index
    from alexnet.inspect.loaded import open_run

    run = open_run(trained[1])
    messages = []
    index = load_index(run, progress=False, say=messages.append)
    return run, index, messages


def test_activations_have_the_summary_shapes_and_equal_the_layers_outputs(opened):
    from alexnet.inspect.activations import activations

    run, _, _ = opened
    maps = activations(run, "val:0")
    assert list(maps)[0] == "conv1" and list(maps)[-1] == "pool5"
    for name, m in maps.items():
        assert m.shape == tuple(run.layer_rows[name].out_shape), name
    x = run.to_input(run.dataset_image("val:0"))
    with run.model() as model, torch.no_grad():
        conv1 = model.features[0](x)[0].numpy()
    np.testing.assert_allclose(maps["conv1"], conv1, rtol=1e-5, atol=1e-5)
    assert "floor((67 + 2*0 - 11) / 4) + 1 = 15" in run.layer_rows["conv1"].formula


def test_gradcam_is_captums_and_matches_the_formula(opened):
    """Grad-CAM by hand (weights = spatial mean of the gradients, ReLU of the weighted maps, bilinear upsampling)
    equals the captum-based map."""
    from alexnet.inspect.gradcam import default_layer, gradcam

    run, _, _ = opened
    layer = default_layer(run)
    assert layer == "relu5"
    heat, index, x = gradcam(run, "val:1", target="dog")
    assert index == run.class_names.index("dog") and heat.shape == (67, 67)
    with run.model() as model:
        caught = {}
        handle = model.layer(layer).register_forward_hook(lambda _m, _i, out: caught.setdefault("a", out))
        x = x.clone()
        score = model(x)[0, index]
        handle.remove()
        grad = torch.autograd.grad(score, caught["a"])[0]
    a = caught["a"].detach()
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=(67, 67), mode="bilinear")[0, 0]
    expected = (cam / cam.max()).numpy() if cam.max() > 0 else cam.numpy()
    np.testing.assert_allclose(heat, expected, atol=1e-4)


def test_class_names_and_indexes_are_checked(opened):
    from alexnet.inspect.gradcam import class_index

    run, _, _ = opened
    assert class_index(run, "dog") == 1 and class_index(run, "0") == 0 and class_index(run, 1) == 1
    with pytest.raises(ConfigError, match="no class 'horse'"):
        class_index(run, "horse")
    with pytest.raises(ConfigError, match="out of range"):
        class_index(run, 7)


def test_receptive_fields_agree_with_the_summary(opened):
    from alexnet.inspect.units import geometry, region

    run, _, _ = opened
    with run.model() as model:
        g = geometry(model)
    for name, row in run.layer_rows.items():
        if name in g:
            assert g[name].rf == row.receptive_field, name
    assert g["conv1"].rf == 11 and g["conv1"].jump == 4 and g["conv1"].start == 5.0
    assert region(g["conv1"], 0, 0, 67) == [0.0, 0.0, round(11 / 67, 4), round(11 / 67, 4)]


def test_running_top_units_equal_a_full_sort():
    from alexnet.inspect.units import TopUnits

    torch.manual_seed(0)
    maps = torch.randn(40, 5, 3, 4)
    top = TopUnits(5, k=9)
    for start in range(0, 40, 7):
        top.update(maps[start : start + 7], torch.arange(start, min(start + 7, 40)))
    values, rows, yx = top.tensors()
    best = maps.reshape(40, 5, 12).max(dim=2).values  # (N, C)
    expected = best.T.topk(9, dim=1)
    torch.testing.assert_close(values, expected.values)
    torch.testing.assert_close(rows, expected.indices)
    for c in range(5):
        y, x = yx[c, 0].tolist()
        assert maps[rows[c, 0], c, y, x] == values[c, 0]


def test_the_index_holds_the_models_answers_and_is_read_back(opened):
    from alexnet.inspect.index import load_index

    run, index, _ = opened
    assert index.built and index.saved and index.path.name == "best.inspect.safetensors"
    assert len(index["val_rows"]) == len(run.bundle.val) == 6 and len(index["train_rows"]) == 16
    x = torch.cat([run.to_input(run.dataset_image(f"val:{i}")) for i in range(6)])
    with run.model() as model, torch.no_grad():
        probs = model(x).softmax(dim=1)
    torch.testing.assert_close(index["val_probs"], probs, rtol=1e-4, atol=1e-5)
    from safetensors import safe_open

    with safe_open(str(index.path), framework="pt") as f:
        assert f.get_tensor("train_fc7").dtype == torch.float16  # half the disk; rounded in memory too
    again = load_index(run, progress=False)
    assert not again.built
    for name, tensor in index.tensors.items():
        torch.testing.assert_close(again[name], tensor)


def test_a_damaged_or_stale_index_is_rebuilt_with_a_message(opened):
    from safetensors.torch import save_file

    from alexnet.inspect.index import load_index

    run, index, _ = opened
    path = index.path
    good = path.read_bytes()
    try:
        path.write_bytes(good[: len(good) // 3])
        said = []
        assert load_index(run, progress=False, say=said.append).built
        assert "unreadable" in said[0] and str(path) in said[0] and "rebuilding" in said[0]

        tampered = {k: v.half() if k.endswith("_fc7") else v for k, v in index.tensors.items()}  # as stored
        tampered["units.conv2.rows"] = tampered["units.conv2.rows"] + 1000  # points past the validation set
        save_file(tampered, str(path), metadata={"alexnet_inspect_index": json.dumps(index.meta)})
        said = []
        assert load_index(run, progress=False, say=said.append).built
        assert "units.conv2.rows has values outside" in said[0]

        os.utime(run.ckpt.path, ns=(1, 1))  # the checkpoint "changed": the index is stale
        said = []
        assert load_index(run, progress=False, say=said.append).built
        assert "stale" in said[0] and "checkpoint_mtime_ns" in said[0]
    finally:
        path.write_bytes(good)


def test_uploads_are_decoded_by_the_training_decoder(tmp_path):
    from alexnet.inspect.loaded import decode_bytes
    from data_factories import decompression_bomb_png, truncated_jpeg

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, "PNG")
    assert decode_bytes(buf.getvalue(), "red.png").size == (40, 30)
    with pytest.raises(DataError, match=r"^notes\.txt: not an image file"):
        decode_bytes(b"just some text", "notes.txt")
    with pytest.raises(DataError, match=r"^bomb\.png: decompression bomb refused"):
        decode_bytes(decompression_bomb_png(tmp_path / "b.png").read_bytes(), "bomb.png")
    with pytest.raises(DataError, match=r"^cut\.jpg: .*truncated"):
        decode_bytes(truncated_jpeg(tmp_path / "c.jpg").read_bytes(), "cut.jpg")
    with pytest.raises(DataError, match="empty"):
        decode_bytes(b"", "nothing.png")


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "val:-1", "val:1/../2", "test:3", "val:",
                                 "val:1234567890", "file:///etc/passwd", " val:1"])
def test_image_ids_never_name_paths(bad):
    from alexnet.inspect.loaded import UnknownImage, parse_id

    with pytest.raises(UnknownImage, match="not an image id"):
        parse_id(bad)


def test_inspect_cli_writes_pngs_and_names_bad_inputs(trained, tmp_path, capsys):
    data, run = trained
    image = str(sorted((data / "val" / "cat").glob("*.jpg"))[0])  # cat.0.jpg
    assert main(["inspect", "gradcam", "--checkpoint", str(run), image, "--class", "dog",
                 "--output-dir", str(tmp_path)]) == 0
    written = tmp_path / "cat.0.gradcam-dog.png"
    assert Image.open(written).size[0] >= 67
    assert main(["inspect", "activations", "--checkpoint", str(run), image, "--layer", "conv1", "--layer", "pool5",
                 "--output-dir", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.glob("cat.0.*.png")} == {"cat.0.gradcam-dog.png", "cat.0.conv1.png",
                                                              "cat.0.pool5.png"}
    (tmp_path / "notes.jpg").write_text("not an image")
    capsys.readouterr()
    assert main(["inspect", "gradcam", "--checkpoint", str(run), image, str(tmp_path / "notes.jpg"),
                 "--output-dir", str(tmp_path)]) == 1
    assert "notes.jpg: not an image file" in capsys.readouterr().err
    assert main(["inspect", "activations", "--checkpoint", str(run), image, "--layer", "fc6"]) == 2
    assert "no spatial layer 'fc6'" in capsys.readouterr().err
    assert main(["inspect", "gradcam", "--checkpoint", str(run), image, "--class", "horse"]) == 2
    assert "no class 'horse'" in capsys.readouterr().err


def test_report_is_one_self_contained_file(opened, trained, tmp_path):
    from alexnet.inspect.report import build_report

    run, index, _ = opened
    out = tmp_path / "report.html"
    assert main(["report", str(trained[1]), "--output", str(out), "--samples", "2", "--no-progress"]) == 0
    text = out.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text and "src=\"/" not in text
    assert text.count('src="data:image/png;base64,') >= 2 + 2 * 2  # curves, filters, samples with Grad-CAM
    for needle in ("Training curves", "Confusion matrix", "conv1 filters", "Grad-CAM", "Resolved config",
                   "recall (top-1)", "width_mult: 0.125", "filters are structured, not noise"):
        assert needle in text
    run.ckpt.class_names[0] = "<script>alert(1)</script>"
    try:
        hostile = build_report(run, index, samples=0)
    finally:
        run.ckpt.class_names[0] = "cat"
    assert "<script>" not in hostile and "&lt;script&gt;" in hostile


def test_the_commands_parsers_import_neither_torch_nor_fastapi():
    code = ("import sys; from alexnet.cli import build_parser; build_parser(); "
            "print(any(m in sys.modules for m in ('torch', 'fastapi', 'uvicorn', 'captum', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("n", [0, 1, 3, 12])
def test_maps_of_any_size_fit_the_unit_square(n):
    from alexnet.inspect.embedding import pca_2d, tsne_2d

    vectors = np.random.default_rng(0).normal(size=(n, 16))
    for points in (pca_2d(vectors), tsne_2d(vectors)):
        assert points.shape == (n, 2) and np.isfinite(points).all() and (np.abs(points) <= 1).all()
        if n > 1:
            assert np.abs(points).max() == pytest.approx(1.0)


def test_a_report_without_the_runs_data_says_so(trained):
    from alexnet.inspect.loaded import open_run
    from alexnet.inspect.report import build_report

    run = open_run(trained[1], data=False)
    text = build_report(run, None, samples=4)
    assert "the run's data is not available: not asked for" in text and "conv1 filters" in text and "Grad-CAM" not in text
