"""Scanning image folders: the three layouts (split folder names, case, a wrapper, what reads two ways), the seeded stratified split, junk, bad files, links, strict mode."""

from __future__ import annotations

import logging
import os
from collections import Counter

import pytest

import data_factories as f
from alexnet.data import build_datasets, build_from_description
from alexnet.data.folders import scan_folder
from alexnet.errors import ConfigError, DataError


def reasons(scan) -> dict[str, str]:
    return {os.path.basename(p): r for p, r in scan.skipped + scan.ignored}


def test_train_val_class_folders_keep_the_given_split(tmp_path):
    f.image_folder(tmp_path / "train", ("dog", "cat"), per_class=4)
    f.image_folder(tmp_path / "val", ("dog", "cat"), per_class=2)
    scan = scan_folder(tmp_path)
    assert scan.layout == "train/val (classes)"
    assert scan.class_names == ["cat", "dog"]  # sorted, like ImageFolder
    assert len(scan.train) == 8 and len(scan.val) == 4
    assert all("/train/" in p for p, _ in scan.train) and all("/val/" in p for p, _ in scan.val)
    assert all(os.path.basename(os.path.dirname(p)) == scan.class_names[y] for p, y in scan.train + scan.val)


def test_class_folders_without_split_are_split_stratified_and_seeded(tmp_path):
    f.image_folder(tmp_path, ("a", "b", "c"), per_class=10)
    scan = scan_folder(tmp_path, val_split=0.2, seed=1)
    assert scan.layout == "classes"
    assert Counter(y for _, y in scan.val) == {0: 2, 1: 2, 2: 2}
    assert Counter(y for _, y in scan.train) == {0: 8, 1: 8, 2: 8}
    assert not {p for p, _ in scan.train} & {p for p, _ in scan.val}
    again = scan_folder(tmp_path, val_split=0.2, seed=1)
    other = scan_folder(tmp_path, val_split=0.2, seed=2)
    assert again.val == scan.val
    assert other.val != scan.val


def test_small_classes_still_get_one_validation_image(tmp_path):
    f.image_folder(tmp_path, ("few", "many"), per_class=2)
    scan = scan_folder(tmp_path, val_split=0.2)
    assert Counter(y for _, y in scan.val) == {0: 1, 1: 1}


def test_flat_kaggle_folder_takes_labels_from_file_names(tmp_path):
    for i in range(3):
        f.write_jpeg(tmp_path / f"cat.{i}.jpg", f.noise(seed=i))
        f.write_jpeg(tmp_path / f"dog.{i + 10}.jpg", f.noise(seed=10 + i))
    f.write_jpeg(tmp_path / "golden_retriever_7.JPG", f.noise(seed=99))
    f.write_jpeg(tmp_path / "1234.jpg", f.noise(seed=98))  # Kaggle's test1/ style: no label
    scan = scan_folder(tmp_path, val_split=0.34)
    assert scan.layout == "flat"
    assert scan.class_names == ["cat", "dog", "golden_retriever"]
    assert reasons(scan)["1234.jpg"].startswith("no label in the file name")
    assert len(scan.train) + len(scan.val) == 7


def test_kaggle_train_folder_alone_is_split(tmp_path):
    for i in range(5):
        f.write_jpeg(tmp_path / "train" / f"cat.{i}.jpg", f.noise(seed=i))
        f.write_jpeg(tmp_path / "train" / f"dog.{i}.jpg", f.noise(seed=50 + i))
    f.write_jpeg(tmp_path / "test1" / "1.jpg", f.noise(seed=7))
    scan = scan_folder(tmp_path, val_split=0.2)
    assert scan.layout == "train only, split (flat)"
    assert len(scan.val) == 2 and len(scan.train) == 8
    assert [(os.path.basename(p), n.split(" (")[0]) for p, n in scan.notes] == [("test1", "folder beside train/ not used")]


def test_dirty_folder_skips_and_ignores_each_file_with_its_reason(tmp_path, caplog):
    root = f.image_folder(tmp_path / "data", ("cat", "dog"), per_class=3)
    cat = root / "cat"
    f.write_bytes(cat / "empty.jpg", b"")
    f.html_page(cat / "download.jpg")
    f.appledouble(cat / "._cat_0.jpg")
    f.write_bytes(cat / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    f.write_bytes(cat / "Thumbs.db", b"\xd0\xcf\x11\xe0")
    f.write_bytes(cat / "notes.txt", b"hello")
    f.truncated_jpeg(cat / "cut.jpg")
    f.write_png(cat / "tiny.png", f.solid((0, 0, 0), (3, 3)))
    f.decompression_bomb_png(cat / "bomb.png")
    f.write_jpeg(cat / "jpeg_named.png", f.noise(seed=5))  # fine: decoded by content
    f.cmyk_jpeg(cat / "cmyk.jpg")  # fine: converted
    f.animated_gif(cat / "anim.gif")  # fine: first frame, noted
    f.image_folder(root / ".ipynb_checkpoints", ("cat",), per_class=1)
    f.image_folder(root / "__MACOSX", ("cat",), per_class=1)
    with caplog.at_level(logging.INFO, logger="alexnet.data"):
        scan = scan_folder(root)
    assert scan.class_names == ["cat", "dog"]  # hidden and system folders are never classes
    why = reasons(scan)
    assert why["empty.jpg"] == "empty file (0 bytes)"
    assert why["download.jpg"].startswith("not an image file")
    assert why["._cat_0.jpg"] == "macOS AppleDouble metadata file, not an image"
    assert why[".DS_Store"] == "hidden file"
    assert why["Thumbs.db"] == "system file"
    assert why["notes.txt"] == "not an image extension (.txt)"
    assert "truncated" in why["cut.jpg"]
    assert why["tiny.png"].startswith("image too small")
    assert why["bomb.png"].startswith("decompression bomb refused")
    assert why[".ipynb_checkpoints"] == "hidden folder, never a class"
    used = {os.path.basename(p) for p in scan.files()}
    assert {"jpeg_named.png", "cmyk.jpg", "anim.gif"} <= used
    assert not used & {"empty.jpg", "download.jpg", "cut.jpg", "tiny.png", "bomb.png", "._cat_0.jpg"}
    assert [n for p, n in scan.notes if p.endswith("anim.gif")] == ["animated GIF with 3 frames: the first frame is used"]
    # Reported once per file: a second scan in the same process logs nothing new.
    logged = [r.getMessage() for r in caplog.records]
    assert sum("cut.jpg" in m for m in logged) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alexnet.data"):
        scan_folder(root)
    assert not [r for r in caplog.records if "cut.jpg" in r.getMessage()]


def test_strict_makes_the_first_bad_file_an_error(tmp_path):
    root = f.image_folder(tmp_path, ("cat", "dog"), per_class=2)
    f.write_bytes(root / ".DS_Store", b"junk")  # not data: never an error, even in strict mode
    assert scan_folder(root, strict=True).class_names == ["cat", "dog"]
    f.truncated_jpeg(root / "dog" / "cut.jpg")
    with pytest.raises(DataError, match=r"dog/cut\.jpg: cannot decode .* \(strict mode"):
        scan_folder(root, strict=True)


def test_empty_class_folder_is_an_error_naming_the_class(tmp_path):
    root = f.image_folder(tmp_path, ("cat", "dog"), per_class=2)
    (root / "bird").mkdir()
    f.write_bytes(root / "bird" / ".DS_Store", b"junk")
    with pytest.raises(DataError, match=r"class folder 'bird' holds no image files"):
        scan_folder(root)


def test_class_whose_every_file_is_bad_is_an_error(tmp_path):
    root = f.image_folder(tmp_path, ("cat",), per_class=2)
    f.write_bytes(root / "dog" / "a.jpg", b"")
    with pytest.raises(DataError, match=r"class 'dog' has no usable images \(all 1 skipped"):
        scan_folder(root)


@pytest.mark.parametrize("content", ["nothing", "junk only", "files no label"])
def test_root_with_no_classes_or_no_images(tmp_path, content):
    if content == "junk only":
        f.write_bytes(tmp_path / ".DS_Store", b"x")
        f.write_bytes(tmp_path / "readme.txt", b"x")
    elif content == "files no label":
        f.write_jpeg(tmp_path / "1.jpg")
    with pytest.raises(DataError, match="no classes found"):
        scan_folder(tmp_path)


def test_missing_root_and_val_class_not_in_train(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        scan_folder(tmp_path / "nope")
    f.image_folder(tmp_path / "train", ("cat",), per_class=2)
    f.image_folder(tmp_path / "val", ("cat", "cow"), per_class=1)
    with pytest.raises(DataError, match=r"classes \['cow'\] are not in"):
        scan_folder(tmp_path)


def test_symlink_loops_do_not_hang_or_duplicate(tmp_path):
    root = f.image_folder(tmp_path / "data", ("cat", "dog"), per_class=3)
    os.symlink("..", root / "cat" / "up")  # cat/up -> data: a loop back to the root
    os.symlink(root / "dog", root / "cat" / "sub")  # a second path to dog's images
    os.symlink("self", root / "dog" / "self")  # a link to itself (ELOOP)
    os.symlink("missing.jpg", root / "dog" / "gone.jpg")
    os.symlink(root / "cat" / "cat_0.jpg", root / "cat" / "again.jpg")
    scan = scan_folder(root, val_split=0.0)
    paths = [p for p, _ in scan.train]
    assert len(paths) == 6
    assert len({os.path.realpath(p) for p in paths}) == 6
    why = reasons(scan)
    assert why["gone.jpg"] == "broken symlink"
    assert why["self"] == "symlink loop"
    # again.jpg sorts first, so it is the one used and cat_0.jpg is the second path to the same file.
    assert why["cat_0.jpg"].startswith("same file as ") and why["cat_0.jpg"].endswith("again.jpg (a link), counted once")


def test_non_utf8_names_are_scanned_and_reported_safely(tmp_path):
    root = f.image_folder(tmp_path, ("cat",), per_class=2)
    good = f.non_utf8_name(root / "cat")
    f.write_jpeg(good, f.noise(seed=42))
    bad = f.non_utf8_name(root / "cat", b"caf\xe9_bad")
    f.write_bytes(bad, b"")
    scan = scan_folder(root, val_split=0.0)
    assert good in [p for p, _ in scan.train]
    assert [r for p, r in scan.skipped if p == bad] == ["empty file (0 bytes)"]


def test_verification_is_remembered_by_size_and_mtime(tmp_path):
    root = f.image_folder(tmp_path, ("cat", "dog"), per_class=2)
    target = root / "dog" / "dog_1.jpg"
    assert scan_folder(root, val_split=0.0).skipped == []
    # Same size and mtime, different bytes: the remembered verdict is used (no second decode of a large folder)...
    st = target.stat()
    target.write_bytes(b"\x00" * st.st_size)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert scan_folder(root, val_split=0.0).skipped == []
    # ...and any change of mtime makes the file checked again.
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert [os.path.basename(p) for p, _ in scan_folder(root, val_split=0.0).skipped] == ["dog_1.jpg"]


def test_verdicts_are_keyed_by_the_real_path_through_linked_folders_and_files(tmp_path, monkeypatch):
    """The key resolves the folder once per folder and a linked file whole: the same file reached through a linked
    folder, or as a link of its own, is the one verdict (decoded once), and a link to another file is not."""
    from alexnet.data import verify

    root = f.image_folder(tmp_path / "real", ("cat", "dog"), per_class=2)
    (tmp_path / "via").symlink_to(root, target_is_directory=True)
    decoded: list[str] = []
    check = verify._check
    monkeypatch.setattr(verify, "_check", lambda path, checks: decoded.append(path) or check(path, checks))
    real_files = sorted(str(p) for p in root.rglob("*.jpg"))
    linked_folder = [str(tmp_path / "via" / os.path.relpath(p, root)) for p in real_files]
    assert verify.verify_files(str(root), real_files, verify.FileChecks()) and len(decoded) == 4
    assert all(v == (None, []) for v in verify.verify_files(str(root), linked_folder, verify.FileChecks()).values())
    assert len(decoded) == 4  # the same store entries: same real paths
    (tmp_path / "alias.jpg").symlink_to(real_files[0])
    (tmp_path / "other.jpg").symlink_to(f.write_jpeg(tmp_path / "elsewhere" / "x.jpg"))
    verify.verify_files(str(root), [str(tmp_path / "alias.jpg"), str(tmp_path / "other.jpg")], verify.FileChecks())
    assert [os.path.basename(p) for p in decoded[4:]] == ["other.jpg"]


# --- layouts as people have them: split folder names, case, one wrapper, refusals of what reads two ways ----------


def _splits(root, train_name: str, val_name: str, classes=("cats", "dogs"), train=3, val=2):
    f.image_folder(root / train_name, classes, per_class=train)
    f.image_folder(root / val_name, classes, per_class=val)
    return root


@pytest.mark.parametrize("train_name, val_name", [
    ("train", "val"), ("train", "valid"), ("train", "validation"), ("train", "test"), ("training_set", "test_set"),
    ("training", "testing"), ("Train", "Val"), ("TRAIN", "TEST"), ("Training_Set", "Test_Set"), ("Training", "Testing"),
])  # fmt: skip
def test_split_folder_names_and_their_case_variants_are_recognised(tmp_path, train_name, val_name):
    root = _splits(tmp_path / "pets", train_name, val_name)
    bundle = build_datasets(str(root), image_size=24)
    assert bundle.class_names == ["cats", "dogs"]
    assert len(bundle.train) == 6 and len(bundle.val) == 4
    assert all(f"/{train_name}/" in p for p, _ in bundle.train.samples)
    assert all(f"/{val_name}/" in p for p, _ in bundle.val.samples)
    plain = train_name == "train" and val_name in ("val", "valid", "validation")
    assert bundle.layout == ("train/val (classes)" if plain else f"train/val (classes: {train_name}/ + {val_name}/)")


def test_kaggle_cats_and_dogs_is_two_classes_not_training_set_vs_test_set(tmp_path):
    # Kaggle's popular download: training_set/{cats,dogs}, test_set/{cats,dogs}. It was read as the classes
    # "test_set" and "training_set"; those names are splits.
    root = _splits(tmp_path / "kaggle", "training_set", "test_set", train=4, val=2)
    scan = scan_folder(root)
    assert scan.class_names == ["cats", "dogs"]
    assert Counter(y for _, y in scan.train) == {0: 4, 1: 4} and Counter(y for _, y in scan.val) == {0: 2, 1: 2}


def test_val_is_preferred_to_test_and_test_is_noted(tmp_path):
    root = _splits(tmp_path / "d", "train", "val")
    f.image_folder(root / "test", ("cats", "dogs"), per_class=1)
    scan = scan_folder(root)
    assert scan.layout == "train/val (classes)" and all("/val/" in p for p, _ in scan.val)
    assert [os.path.basename(p) for p, n in scan.notes if n.startswith("folder beside train/ not used")] == ["test"]


@pytest.mark.parametrize("train_name, val_name", [
    ("dataset/training_set", "dataset/test_set"),  # the Kaggle zip, unpacked
    ("cats_and_dogs/train", "cats_and_dogs/val"),
    ("training_set/training_set", "test_set/test_set"),  # the same zip's inner folders: one wrapper per split
])  # fmt: skip
def test_one_wrapper_folder_is_looked_through(tmp_path, train_name, val_name):
    root = _splits(tmp_path / "dl", train_name, val_name)
    bundle = build_datasets(str(root), image_size=24)
    assert bundle.class_names == ["cats", "dogs"] and len(bundle.train) == 6 and len(bundle.val) == 4
    assert bundle.layout == f"train/val (classes: {train_name}/ + {val_name}/)"


def test_a_wrapper_around_class_folders_is_looked_through(tmp_path):
    root = f.image_folder(tmp_path / "dl" / "PetImages", ("Cat", "Dog"), per_class=5)  # Microsoft's Kaggle zip
    bundle = build_datasets(str(tmp_path / "dl"), image_size=24, val_split=0.2)
    assert bundle.class_names == ["Cat", "Dog"] and len(bundle.train) == 8 and len(bundle.val) == 2
    assert bundle.layout == "classes (in PetImages/) (split 0.2, seed 0)"
    assert root.is_dir()


def test_only_one_wrapper_is_looked_through(tmp_path):
    _splits(tmp_path / "a" / "b" / "c", "training_set", "test_set")  # a/ holds b/ (a wrapper) holds c/ (a second)
    with pytest.raises(DataError, match=r"a/b/c: class folder 'test_set' holds class folders \(cats, dogs\)"):
        scan_folder(tmp_path / "a")


def test_a_single_class_folder_is_not_taken_for_a_wrapper(tmp_path):
    f.image_folder(tmp_path / "d", ("cat",), per_class=3)  # d/cat/*.jpg: one class, not a wrapper around images
    assert scan_folder(tmp_path / "d", val_split=0.0).class_names == ["cat"]


def _nested(root):
    f.image_folder(root / "mammals", ("cat", "dog"), per_class=2)
    f.image_folder(root / "birds", ("crow", "owl"), per_class=2)
    return root


def test_class_folders_inside_class_folders_are_refused_with_both_readings(tmp_path):
    root = _nested(tmp_path / "zoo")
    with pytest.raises(DataError) as e:
        scan_folder(root)
    lines = str(e.value).splitlines()
    assert lines == [
        f"{root}: class folder 'birds' holds class folders (crow, owl); the folder can be read two ways, pick one:",
        "  --layout classes: 2 classes (birds, mammals), the images below each counted for it",
        "  --layout leaves: 4 classes (birds/crow, birds/owl, mammals/cat, mammals/dog), one per folder that holds "
        "images",
    ]


def test_layout_classes_and_leaves_read_nested_folders_as_they_say(tmp_path):
    root = _nested(tmp_path / "zoo")
    top = build_datasets(str(root), image_size=24, val_split=0.25, layout="classes")
    assert top.class_names == ["birds", "mammals"] and len(top.train) + len(top.val) == 8
    assert top.layout_option == "classes" and top.describe()["layout_option"] == "classes"
    leaves = build_datasets(str(root), image_size=24, val_split=0.5, layout="leaves")
    assert leaves.class_names == ["birds/crow", "birds/owl", "mammals/cat", "mammals/dog"]
    assert leaves.layout == "leaves (split 0.5, seed 0)"
    assert all(p.split("/")[-3:-1] == leaves.class_names[y].split("/") for p, y in leaves.train.samples)
    # A checkpoint's description rebuilds the same reading (eval and ONNX calibration use it).
    again = build_from_description({**leaves.describe(), "class_names": leaves.class_names})
    assert again.class_names == leaves.class_names and again.val.samples == leaves.val.samples


def test_the_refusal_names_the_classes_layout_leaves_gives_where_one_folder_is_deeper(tmp_path):
    # birds/ holds one folder of images (not nested by itself), mammals/ two: leaves makes birds/owl a class,
    # and the refusal must say so, not "birds"; an empty class folder stays a class in both readings.
    root = f.image_folder(tmp_path / "zoo" / "birds", ("owl",), per_class=2).parent
    f.image_folder(root / "mammals", ("cat", "dog"), per_class=2)
    (root / "fish").mkdir()
    with pytest.raises(DataError) as e:
        scan_folder(root)
    said = str(e.value).splitlines()[2]
    assert said == ("  --layout leaves: 4 classes (birds/owl, fish, mammals/cat, mammals/dog), one per folder that "
                    "holds images")
    with pytest.raises(DataError, match="class folder 'fish' holds no image files"):  # what leaves then reads
        scan_folder(root, layout="leaves")
    (root / "fish").rmdir()
    assert scan_folder(root, layout="leaves", val_split=0.0).class_names == ["birds/owl", "mammals/cat", "mammals/dog"]


def test_nested_class_folders_inside_a_split_folder_are_refused_there(tmp_path):
    _nested(tmp_path / "d" / "train")
    _nested(tmp_path / "d" / "val")
    with pytest.raises(DataError, match=r"d/train: class folder 'birds' holds class folders"):
        scan_folder(tmp_path / "d")
    assert scan_folder(tmp_path / "d", layout="leaves").layout == "train/val (leaves)"


def test_images_of_its_own_or_one_subfolder_keep_a_class_folder_a_class(tmp_path):
    root = f.image_folder(tmp_path / "d", ("cat", "dog"), per_class=2)
    f.image_folder(root / "cat", ("kittens", "lions"), per_class=1)  # cat/ holds images and folders: one class
    f.image_folder(root / "dog" / "photos", ("2020",), per_class=2)  # dog/photos/2020/: one folder of images
    scan = scan_folder(root, val_split=0.0)
    assert scan.layout == "classes" and Counter(y for _, y in scan.train) == {0: 4, 1: 4}


@pytest.mark.parametrize("names, role", [(("train", "training_set"), "training"), (("Train", "train"), "training"),
                                         (("val", "valid"), "validation"), (("test", "testing"), "validation")])
def test_two_folders_for_one_split_are_refused_naming_both(tmp_path, names, role):
    root = tmp_path / "d"
    f.image_folder(root / ("train" if role == "validation" else names[0]), ("cat",), per_class=2)
    for name in names:
        f.image_folder(root / name, ("cat",), per_class=1)
    with pytest.raises(DataError, match=rf"{sorted(names)[0]}/ and {sorted(names)[1]}/ could each be the {role} set"):
        scan_folder(root)


def test_an_unknown_layout_is_refused_naming_the_field(tmp_path):
    root = f.image_folder(tmp_path / "d", ("cat", "dog"), per_class=2)
    with pytest.raises(ConfigError, match=r"field 'data.layout' must be one of auto, classes, leaves, got 'tree'"):
        build_datasets(str(root), image_size=24, layout="tree")


def test_data_check_shows_the_layout_read_and_refuses_with_the_readings(tmp_path, capsys):
    from alexnet.cli import main

    kaggle = _splits(tmp_path / "kaggle" / "dataset", "training_set", "test_set", train=3, val=1).parent
    assert main(["data", "check", str(kaggle)]) == 0
    out = capsys.readouterr().out
    assert (f"{kaggle}: train/val (classes: dataset/training_set/ + dataset/test_set/), 2 classes, 6 train / 2 val "
            "images") in out
    assert "  cats         3        1" in out
    zoo = _nested(tmp_path / "zoo")
    assert main(["data", "check", str(zoo)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"alexnet data: error: {zoo}: class folder 'birds' holds class folders")
    assert "\n  --layout classes: 2 classes" in err and "\n  --layout leaves: 4 classes" in err
    assert "Traceback" not in err
    assert main(["data", "check", str(zoo), "--layout", "leaves", "--val-split", "0.5"]) == 0
    assert "leaves (split 0.5, seed 0), 4 classes, 4 train / 4 val images" in capsys.readouterr().out


@pytest.mark.slow
def test_train_reads_a_kaggle_zip_and_takes_layout_from_the_command_line(tmp_path):
    from alexnet.store.checkpoint import load_checkpoint
    from tiny_runs import TINY, run_cli

    data = f.make_folder(tmp_path / "dl", train=6, val=2)  # train/, val/ -> dataset/training_set/, dataset/test_set/
    (data / "dataset").mkdir()
    (data / "train").rename(data / "dataset" / "training_set")
    (data / "val").rename(data / "dataset" / "test_set")
    run = tmp_path / "run"
    result = run_cli("train", "--data", str(data), *TINY, "--epochs", "1", "--output-dir", str(run), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    ckpt = load_checkpoint(run)
    assert ckpt.class_names == ["cat", "dog"]
    assert ckpt.data["layout"] == "train/val (classes: dataset/training_set/ + dataset/test_set/)"
    assert ckpt.data["num_train"] == 12 and ckpt.data["num_val"] == 4
    # A folder that reads two ways stops `train` before any model is built; --layout picks the reading.
    zoo = _nested(tmp_path / "zoo")
    refused = run_cli("train", "--data", str(zoo), *TINY, "--epochs", "1", "--output-dir", str(tmp_path / "r2"))
    assert refused.returncode == 2 and "--layout leaves: 4 classes" in refused.stderr
    assert "Traceback" not in refused.stderr
    picked = run_cli("train", "--data", str(zoo), *TINY, "--epochs", "1", "--output-dir", str(tmp_path / "r3"),
                     "--layout", "classes", "--val-split", "0.25")
    assert picked.returncode == 0, picked.stderr
    assert load_checkpoint(tmp_path / "r3").class_names == ["birds", "mammals"]
    # eval on a folder reads it with the run's --layout (auto would refuse this one).
    evaluated = run_cli("eval", "--checkpoint", str(tmp_path / "r3"), "--data", str(zoo))
    assert evaluated.returncode == 0, evaluated.stderr
