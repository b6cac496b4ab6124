"""Prediction: files, folders and globs in; top-k with probabilities out; unreadable files reported, not fatal."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.predict import expand_inputs, format_csv, format_json, format_table, predict_files
from alexnet.store.checkpoint import load_checkpoint


def test_expand_files_folders_globs_and_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for p in ("a/1.jpg", "a/b/2.PNG", "a/.hidden/3.jpg", "a/._4.jpg", "a/notes.txt", "c.png"):
        (tmp_path / p).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    got = expand_inputs([str(tmp_path / "a"), str(tmp_path / "*.png"), str(tmp_path / "missing.jpg"),
                         str(tmp_path / "empty"), str(tmp_path / "*.gif")])
    assert got == [
        (str(tmp_path / "a" / "1.jpg"), None),
        (str(tmp_path / "a" / "b" / "2.PNG"), None),
        (str(tmp_path / "c.png"), None),
        (str(tmp_path / "missing.jpg"), "no such file"),
        (str(tmp_path / "empty"), "folder holds no image files"),
        (str(tmp_path / "*.gif"), "pattern matches no files"),
    ]


def test_predict_mixed_inputs(trained, tmp_path):
    data, run = trained
    ckpt = load_checkpoint(run)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((50, 30), 128, np.uint8)).save(grey)  # 1 channel: converted to the model's 3
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((40, 40, 4), 200, np.uint8)).save(rgba)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    results = predict_files(ckpt, [str(grey), str(bad), str(rgba), str(data / "val" / "dog")], top_k=5)
    assert [r.file for r in results][:3] == [str(grey), str(bad), str(rgba)] and len(results) == 6
    assert results[1].error and "bad.jpg" in results[1].error and results[1].top == []
    for r in results[:1] + results[2:]:
        assert r.error is None and len(r.top) == 2  # top-5 of 2 classes
        assert sum(p for _, p in r.top) == pytest.approx(1.0, rel=1e-5) and r.top[0][1] >= r.top[1][1]
    # The photos' probabilities are the model's softmax on the checkpoint's own transform, computed here directly.
    from alexnet.data.transforms import build_transform

    pre, model = ckpt.preprocessing, ckpt.build_model()
    transform = build_transform(pre.preset, pre.image_size, False, pre.mean, pre.std, pre.in_channels)
    for r in results[3:]:
        with Image.open(r.file) as img, torch.inference_mode():
            probs = torch.softmax(model(transform(img.convert("RGB"))[None]), dim=1)[0]
        assert dict(r.top) == pytest.approx(
            {name: float(p) for name, p in zip(ckpt.class_names, probs, strict=True)}, abs=1e-5)
    doc = json.loads(format_json(results))
    assert doc[1] == {"file": str(bad), "error": results[1].error}
    assert set(doc[0]) == {"file", "top"} and set(doc[0]["top"][0]) == {"label", "prob"}
    rows = format_csv(results).splitlines()
    assert rows[0] == "file,label1,prob1,label2,prob2,error" and len(rows) == 7
    assert "ERROR" in format_table(results).splitlines()[1]


@pytest.mark.slow
def test_predict_cli_exit_status(trained, tmp_path):
    data, run = trained
    ok = subprocess.run([sys.executable, "-m", "alexnet", "predict", "--checkpoint", str(run), "--csv", "--top-k", "1",
                         str(data / "val" / "cat" / "*.jpg")], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == "file,label1,prob1,error" and len(ok.stdout.splitlines()) == 3
    missing = subprocess.run([sys.executable, "-m", "alexnet", "predict", "--checkpoint", str(run),
                              str(tmp_path / "nope.jpg"), str(data / "val" / "cat" / "cat.0.jpg")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    assert "nope.jpg: ERROR no such file" in missing.stdout and "cat.0.jpg: " in missing.stdout


def test_expand_follows_symlinked_folders_once_and_lists_each_real_file_once(tmp_path):
    import os

    a = tmp_path / "a"
    (a / "b").mkdir(parents=True)
    (a / "1.jpg").write_bytes(b"x")
    (a / "b" / "2.jpg").write_bytes(b"x")
    (a / "link.jpg").symlink_to(a / "1.jpg")  # a second name for the same file
    (a / "loop").symlink_to(a)  # a folder loop
    (a / "b" / "up").symlink_to(a)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "3.png").write_bytes(b"x")
    (a / "linked").symlink_to(tmp_path / "elsewhere")  # a symlinked folder outside: searched
    got = expand_inputs([str(a), str(a / "1.jpg")])
    assert got == [(str(a / "1.jpg"), None), (str(a / "b" / "2.jpg"), None), (str(a / "linked" / "3.png"), None)]
    assert len({os.path.realpath(p) for p, _ in got}) == len(got)


def test_recursive_glob_through_two_symlink_loops_is_bounded(tmp_path):
    a = tmp_path / "a"
    (a / "b").mkdir(parents=True)
    (a / "1.jpg").write_bytes(b"x")
    (a / "b" / "2.jpg").write_bytes(b"x")
    (a / ".hidden").mkdir()
    (a / ".hidden" / "3.jpg").write_bytes(b"x")
    (a / "l1").symlink_to(a)  # with two loops, glob's ** visits 2**40 paths before the OS says ELOOP
    (a / "b" / "l2").symlink_to(a)
    got = expand_inputs([str(a / "**" / "*.jpg")])
    assert got == [(str(a / "1.jpg"), None), (str(a / "b" / "2.jpg"), None)]  # ** never enters hidden folders
    assert expand_inputs([str(a / "**" / ".hidden" / "*.jpg")]) == [(str(a / ".hidden" / "3.jpg"), None)]
    assert expand_inputs([str(a / "**" / "*.gif")]) == [(str(a / "**" / "*.gif"), "pattern matches no files")]


def test_relative_recursive_glob_gives_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "x" / "y" / "p.jpg").write_bytes(b"x")
    (tmp_path / "top.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert expand_inputs(["**/*.jpg"]) == [("top.jpg", None), ("x/y/p.jpg", None)]
    import glob

    assert sorted(glob.glob("**/*.jpg", recursive=True)) == ["top.jpg", "x/y/p.jpg"]  # the same as glob's answer


def test_a_very_deep_folder_is_cut_at_the_depth_cap_with_an_entry(tmp_path):
    import os
    import subprocess

    from alexnet.predict import MAX_DEPTH

    root = tmp_path / "deep"
    root.mkdir()
    path = str(root)
    try:
        for _ in range(200):  # a loop: os.makedirs recurses, and the walk must not
            path = os.path.join(path, "d")
            os.mkdir(path)
        (root / "d" / "near.jpg").write_bytes(b"x")
        (tmp_path / "deep" / path[len(str(root)) + 1 :] / "far.jpg").write_bytes(b"x")
        for items in ([str(root)], [str(root / "**" / "*.jpg")]):
            got = expand_inputs(items)
            assert got[0] == (str(root / "d" / "near.jpg"), None)
            assert len(got) == 2 and got[1][1] == f"folder more than {MAX_DEPTH} levels below {root}, not searched"
    finally:
        subprocess.run(["rm", "-rf", str(root)], timeout=60)


def test_a_glob_whose_files_were_already_listed_is_not_called_empty(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert expand_inputs([str(tmp_path / "a.jpg"), str(tmp_path / "*.jpg")]) == [(str(tmp_path / "a.jpg"), None)]
