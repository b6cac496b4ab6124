"""`alexnet export`: the Hub folder round-trips, ONNX Runtime reproduces PyTorch, torch.export reloads; bad input;
the ONNX pieces (alexnet.runtime.onnxrt) stay below the exporter."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.export import export_checkpoint, load_hub
from alexnet.train import fit
from data_factories import make_folder
from tiny_runs import tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = make_folder(root / "data", train=6, val=2)
    # the paper model (LRN, groups) so that the exported graph holds the LRN formula
    fit(tiny_config(data, root / "run", **{"run.epochs": 1, "model.name": "alexnet"}), progress=False)
    return root / "run"


def test_every_format_reproduces_the_checkpoint(run_dir, tmp_path):
    import onnxruntime

    from alexnet.store.checkpoint import load_checkpoint

    report = export_checkpoint(run_dir, tmp_path / "out", ["hub", "onnx", "torch-export"])
    ckpt = load_checkpoint(run_dir)
    model = ckpt.build_model()
    x = torch.randn(5, model.config.in_channels, model.config.image_size, model.config.image_size)
    with torch.inference_mode():
        expected = model(x)

    reloaded, config = load_hub(tmp_path / "out")
    assert config["class_names"] == list(ckpt.class_names)
    assert config["preprocessing"]["image_size"] == ckpt.preprocessing.image_size
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(x), expected, rtol=0, atol=0)

    session = onnxruntime.InferenceSession(report["onnx"]["path"], providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]  # batch 5: not the traced batch
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=1e-4)

    program = torch.export.load(report["torch_export"]["path"]).module()
    torch.testing.assert_close(program(x), expected, atol=1e-5, rtol=1e-5)


def test_export_cli_writes_into_the_run_folder(run_dir):
    result = subprocess.run([sys.executable, "-m", "alexnet", "export", "--checkpoint", str(run_dir), "--format", "hub",
                             "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (run_dir / "export" / "model.safetensors").is_file() and (run_dir / "export" / "config.json").is_file()
    assert report["hub"]["max_abs_diff"] == 0.0


def test_export_of_a_non_checkpoint_is_one_line(tmp_path):
    bogus = tmp_path / "weights.pt"
    bogus.write_bytes(b"not a checkpoint")
    result = subprocess.run([sys.executable, "-m", "alexnet", "export", "--checkpoint", str(bogus)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert str(bogus) in result.stderr and "Traceback" not in result.stderr


def test_exported_files_are_ordinary_readable_files(run_dir, tmp_path):
    # written through a private temporary file, then renamed: the result must not stay private (0600)
    import stat

    export_checkpoint(run_dir, tmp_path / "perm", ["hub"])
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json"):
        mode = stat.S_IMODE((tmp_path / "perm" / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))
    assert not [p for p in (tmp_path / "perm").iterdir() if p.name.startswith(".")]  # no temporaries left


def other_checkpoint(run_dir, path):
    """A second, different checkpoint (the same run's weights, scaled): its export must not mix with the first."""
    raw = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    raw["model"] = {k: v * 1.5 if v.is_floating_point() else v for k, v in raw["model"].items()}
    torch.save(raw, path)
    return path


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("fmt, module, tolerance", [("onnx", "alexnet.runtime.onnxrt", "ONNX_TOLERANCE"),
                                                     ("torch-export", "alexnet.export", "PROGRAM_TOLERANCE")])
def test_a_failed_parity_check_leaves_the_old_export_as_it_was(run_dir, tmp_path, monkeypatch, fmt, module, tolerance):
    import importlib

    import alexnet.export

    out = tmp_path / "out"
    export_checkpoint(run_dir, out, ["hub", fmt])
    before = folder_bytes(out)
    # no difference passes: the check fails for real
    monkeypatch.setattr(importlib.import_module(module), tolerance, -1.0)
    with pytest.raises(alexnet.export.ExportError, match=rf"{out}.* differ .*nothing was exported"):
        export_checkpoint(other_checkpoint(run_dir, tmp_path / "other.pt"), out, ["hub", fmt], force=True)
    assert folder_bytes(out) == before  # safetensors and config.json of the old checkpoint, together
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt", "out"]  # no temporary folder left


def test_an_existing_export_is_refused_without_force_and_with_it_only_the_formats_asked_are_replaced(run_dir, tmp_path):
    import stat

    out = tmp_path / "out"
    export_checkpoint(run_dir, out, ["hub"])
    before = folder_bytes(out)
    (out / "model.onnx").write_bytes(b"from an older export")
    other = other_checkpoint(run_dir, tmp_path / "other.pt")
    result = subprocess.run([sys.executable, "-m", "alexnet", "export", "--checkpoint", str(other), "--format", "hub",
                             "--output-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "already holds files" in result.stderr and "--force" in result.stderr
    assert folder_bytes(out)["model.safetensors"] == before["model.safetensors"]
    report = export_checkpoint(other, out, ["hub"], force=True)
    assert report["hub"]["files"] == [str(out / "model.safetensors"), str(out / "config.json")]
    assert report["kept"] == ["model.onnx"]
    after = folder_bytes(out)
    assert set(after) == {"model.safetensors", "config.json", "model.onnx"}  # not asked for: kept, as it was
    assert after["model.onnx"] == b"from an older export"
    assert after["model.safetensors"] != before["model.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask  # an ordinary folder, not the private temporary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt", "out"]


@pytest.mark.slow
def test_force_with_int8_adds_it_and_keeps_every_other_format(run_dir, tmp_path):
    # the README's sequence, on a copy of the run: the default export, then int8 "added" with --force
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("export"))
    first = subprocess.run([sys.executable, "-m", "alexnet", "export", "--checkpoint", str(run)],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    out = run / "export"
    old = {p.name: (p.read_bytes(), p.stat()) for p in out.iterdir()}
    assert set(old) == {"model.safetensors", "config.json", "model.onnx", "model.pt2"}
    (out / "NOTES.txt").write_text("a user's own file\n")
    second = subprocess.run([sys.executable, "-m", "alexnet", "export", "--checkpoint", str(run), "--format",
                             "onnx-int8", "--force"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    now = {p.name: p for p in out.iterdir()}
    assert set(now) == {*old, "model.int8.onnx", "NOTES.txt"}
    for name in ("model.safetensors", "config.json", "model.pt2"):  # not asked for: byte-identical, untouched
        assert now[name].read_bytes() == old[name][0]
        assert now[name].stat().st_mtime_ns == old[name][1].st_mtime_ns
    assert now["NOTES.txt"].read_text() == "a user's own file\n"
    assert "kept from the earlier export: NOTES.txt, config.json, model.pt2, model.safetensors" in second.stdout
    assert now["model.onnx"].stat().st_ino != old["model.onnx"][1].st_ino  # written again, by this export
    load_hub(out)  # the kept Hub pair still loads
    assert not [p for p in run.iterdir() if p.name.startswith(".export")]  # no temporary folder left


def test_the_onnx_module_never_imports_the_exporter():
    # alexnet.export builds on alexnet.runtime.onnxrt; an import back (even inside a function) would make the two a cycle.
    import alexnet.runtime.onnxrt

    imported = set()
    for node in ast.walk(ast.parse(Path(alexnet.runtime.onnxrt.__file__).read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):  # onnxrt sits in the package root: `from . import x` is alexnet.x
            base = ".".join(filter(None, ["alexnet" if node.level else None, node.module]))
            imported |= {base, *(f"{base}.{a.name}" for a in node.names)}
    assert "alexnet.data.cache" in imported  # the walk sees imports inside functions
    assert not [m for m in imported if m == "alexnet.export" or m.startswith("alexnet.export.")], sorted(imported)
    code = ("import sys, alexnet.runtime.onnxrt, alexnet.runtime.inference, alexnet.evaluate, alexnet.predict; "
            "print(sorted(m for m in sys.modules if m == 'alexnet.export'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
