"""`alexnet data check | make-shapes | cache`: counts per class, skipped files with reasons, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import data_factories as f
from alexnet.cli import main


@pytest.fixture
def dirty(tmp_path):
    root = f.image_folder(tmp_path / "pets", ("cat", "dog"), per_class=4)
    f.truncated_jpeg(root / "dog" / "cut.jpg")
    f.write_bytes(root / "cat" / ".DS_Store", b"junk")
    f.html_page(root / "cat" / "page.jpg")
    return root


def test_check_prints_counts_and_skipped_files(dirty, capsys):
    assert main(["data", "check", str(dirty), "--val-split", "0.25"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "cut.jpg" not in captured.err  # listed once, on stdout, not again by the log
    assert "classes (split 0.25, seed 0), 2 classes, 6 train / 2 val images" in out
    assert "  cat          3        1" in out
    assert "skipped 2 files:" in out
    assert f"{dirty}/dog/cut.jpg: cannot decode the image, the file is damaged or truncated" in out
    assert f"{dirty}/cat/page.jpg: not an image file" in out
    assert "1 x hidden file" in out


def test_check_json(dirty, capsys):
    assert main(["data", "check", str(dirty), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in report["classes"]] == ["cat", "dog"]
    assert {os.path.basename(s["path"]) for s in report["skipped"]} == {"cut.jpg", "page.jpg"}
    assert report["train"] + report["val"] == 8


def test_check_strict_fails_with_one_line_naming_the_file(dirty, capsys):
    assert main(["data", "check", str(dirty), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("alexnet data: error: ") and "page.jpg: not an image file" in err
    assert "\n" not in err and "Traceback" not in err


def test_check_empty_class_and_missing_folder(tmp_path, capsys):
    root = f.image_folder(tmp_path / "x", ("a",), per_class=2)
    (root / "b").mkdir()
    assert main(["data", "check", str(root)]) == 2
    assert "class folder 'b' holds no image files" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_make_shapes_and_cache(tmp_path, capsys):
    out_dir = tmp_path / "shapes"
    args = ["data", "make-shapes", "--output-dir", str(out_dir), "--image-size", "24", "--train-per-class", "3",
            "--val-per-class", "1"]  # fmt: skip
    assert main(args) == 0
    assert "24 images of 24x24 px, classes circle, cross, ring, square, star, triangle" in capsys.readouterr().out
    assert len(list((out_dir / "train" / "star").iterdir())) == 3
    assert main(["data", "cache", str(out_dir), "--image-size", "20", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert "train: 18 images x 3x23x23 uint8" in out and "built" in out
    assert main(["data", "cache", str(out_dir), "--image-size", "20", "--preset", "paper"]) == 0
    assert "reused" in capsys.readouterr().out


@pytest.mark.slow
def test_check_prints_non_utf8_names_in_a_real_process(tmp_path):
    root = f.image_folder(tmp_path / "data", ("cat",), per_class=2)
    f.write_bytes(f.non_utf8_name(root / "cat", b"caf\xe9"), b"")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run([sys.executable, "-m", "alexnet", "data", "check", str(root)], capture_output=True,
                            text=True, env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "cat/caf\\xe9.jpg: empty file (0 bytes)" in result.stdout
    assert "Traceback" not in result.stderr
