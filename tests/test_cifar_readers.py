"""CIFAR-10 as users have it: the python and binary batch folders (or the folder they were extracted into), and PNG
class folders with train/ + test/. Every file is written here in the exact official format, then damaged on purpose."""

from __future__ import annotations

import logging
import os
import pickle
import re

import numpy as np
import pytest

import data_factories as f
from alexnet.data import build_datasets, build_from_description, cifar
from alexnet.data.cifar import CIFAR10_CLASSES, read_cifar10, read_cifar10_bin, read_cifar_folder
from alexnet.errors import DataError

N = 4  # records per batch in these tests (the real files hold 10,000)


@pytest.fixture
def small_bin(monkeypatch):
    """The binary reader with N records per file, so that six files are 73 KB instead of 184 MB."""
    monkeypatch.setattr(cifar, "RECORDS_PER_FILE", N)


def expected(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the factories wrote: batches 0..4 (seeds seed..seed+4) are the training set, batch 5 the test set."""
    train = [f.cifar_batch(N, seed + i) for i in range(5)]
    test = f.cifar_batch(N, seed + 5)
    return np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]), test[0], test[1]


def check_arrays(arrays, seed: int = 0) -> None:
    tr_x, tr_y, te_x, te_y = expected(seed)
    assert arrays.train_images.shape == (5 * N, 32, 32, 3) and arrays.train_images.dtype == np.uint8
    assert np.array_equal(arrays.train_images, tr_x) and np.array_equal(arrays.train_labels, tr_y)
    assert np.array_equal(arrays.test_images, te_x) and np.array_equal(arrays.test_labels, te_y)
    assert arrays.train_labels.dtype == np.int64 and arrays.class_names == CIFAR10_CLASSES


# --- reading ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["py", "bin"])
def test_a_cifar_folder_is_read_directly_and_through_the_folder_it_was_extracted_into(tmp_path, small_bin, form):
    parent = tmp_path / "downloads"
    if form == "py":
        folder = f.write_cifar10_folder(parent / "cifar-10-batches-py", n_per_batch=N)
    else:
        folder = f.write_cifar10_bin_folder(parent / "cifar-10-batches-bin", n_per_batch=N)
    f.write_bytes(parent / f"cifar-10-{'python' if form == 'py' else 'binary'}.tar.gz", b"\x1f\x8b" + b"\0" * 64)
    f.write_bytes(parent / "__MACOSX" / "._data_batch_1", b"\0" * 8)  # ignored beside it, as folders.py does
    for given in (folder, parent):
        arrays = read_cifar_folder(str(given))
        check_arrays(arrays)
        assert arrays.folder == str(folder) and arrays.notes == []


def test_build_datasets_reads_a_binary_folder_as_cifar10_and_a_checkpoint_rebuilds_it(tmp_path, small_bin):
    folder = f.write_cifar10_bin_folder(tmp_path / "cifar-10-batches-bin", n_per_batch=N)
    bundle = build_datasets(str(tmp_path), image_size=32)
    assert (bundle.kind, bundle.layout, bundle.source) == ("cifar10", "train/test files", str(tmp_path))
    assert len(bundle.train) == 5 * N and len(bundle.val) == N and bundle.class_names == CIFAR10_CLASSES
    assert bundle.root is None and bundle.train.origin == f"{folder}:train"
    x, y = bundle.train[0]
    assert tuple(x.shape) == (3, 32, 32) and y == expected()[1][0]
    again = build_from_description(bundle.describe())
    assert again.source == bundle.source and again.class_names == bundle.class_names
    assert np.array_equal(again.val.images, bundle.val.images) and again.val.targets == bundle.val.targets


def test_a_relative_path_to_a_cifar_parent_is_stored_absolute(tmp_path, monkeypatch):
    f.write_cifar10_folder(tmp_path / "data" / "cifar-10-batches-py", n_per_batch=N)
    monkeypatch.chdir(tmp_path)
    bundle = build_datasets("data", image_size=32)
    assert bundle.kind == "cifar10" and bundle.source == str(tmp_path / "data")  # absolute, for the checkpoint
    assert len(bundle.train) == 5 * N and len(bundle.val) == N


@pytest.mark.parametrize("form", ["py", "bin"])
def test_pixels_are_planes_of_r_then_g_then_b_and_labels_come_with_them(tmp_path, small_bin, form):
    """A record whose first 1024 pixel bytes are 255 is red; the next plane green; a row-major ramp stays a ramp."""
    images = np.zeros((N, 32, 32, 3), np.uint8)
    images[0, ..., 0] = 255  # red
    images[1, ..., 1] = 255  # green
    images[2, ..., 2] = np.arange(1024).reshape(32, 32) % 256  # blue ramp along the rows
    planes = f.cifar_planes(images)
    assert planes[0, :1024].min() == 255 and planes[0, 1024:].max() == 0  # the file's own byte order
    labels = [3, 9, 0, 7]
    folder = tmp_path / "c"
    for name in f.CIFAR10_BATCHES:
        if form == "py":
            f.write_bytes(folder / name, f.cifar_py_batch(images, labels))
        else:
            f.write_bytes(folder / f"{name}.bin", f.cifar_bin_batch(images, labels))
    arrays = read_cifar_folder(str(folder))
    red, green, ramp = arrays.test_images[0], arrays.test_images[1], arrays.test_images[2]
    assert (red == [255, 0, 0]).all() and (green == [0, 255, 0]).all()
    assert ramp[0, 1, 2] == 1 and ramp[1, 0, 2] == 32 and ramp[..., :2].max() == 0
    assert arrays.test_labels.tolist() == labels and arrays.train_labels.tolist() == labels * 5
    assert build_datasets(str(folder), image_size=32).val.load_pil(0).getpixel((5, 7)) == (255, 0, 0)


def test_a_real_size_binary_file_is_read(tmp_path):
    """The real 30,730,000-byte file (sparse: zeros but one red record), with the reader's own record count."""
    path = tmp_path / "data_batch_1.bin"
    with open(path, "wb") as out:
        out.truncate(10_000 * 3_073)
        out.seek(9_999 * 3_073)
        out.write(bytes([7]) + b"\xff" * 1024)
    images, labels = cifar._read_bin_batch(str(path))
    assert images.shape == (10_000, 32, 32, 3) and labels.shape == (10_000,)
    assert labels[9_999] == 7 and labels[:9_999].max() == 0
    assert (images[9_999] == [255, 0, 0]).all() and images[:9_999].max() == 0


def test_class_names_come_from_the_meta_files(tmp_path, small_bin):
    names = [f"class {i}" for i in range(10)]
    py = f.write_cifar10_folder(tmp_path / "py", n_per_batch=N)
    f.write_bytes(py / "batches.meta", pickle.dumps({b"label_names": [n.encode() for n in names]}, protocol=2))
    assert read_cifar10(str(py)).class_names == names
    binary = f.write_cifar10_bin_folder(tmp_path / "bin", n_per_batch=N)
    f.write_bytes(binary / "batches.meta.txt", ("\n".join(names) + "\n\n\n").encode())
    assert read_cifar10_bin(str(binary)).class_names == names
    os.remove(binary / "batches.meta.txt")  # optional: the standard names
    assert read_cifar10_bin(str(binary)).class_names == CIFAR10_CLASSES


BAD_PY_META = {
    "not a pickle": (b"<html>404</html>", r"not CIFAR-10's batches.meta \(UnpicklingError"),
    "five names": (pickle.dumps({"label_names": CIFAR10_CLASSES[:5]}), "expected 10 class names, found 5"),
    "no names": (pickle.dumps({"num_vis": 3072}), "expected 'label_names' as a list, found NoneType"),
    "an empty name": (pickle.dumps({"label_names": ["", *CIFAR10_CLASSES[1:]]}), "class name 0 is not a short"),
    "a repeat": (pickle.dumps({"label_names": ["cat", *CIFAR10_CLASSES[1:]]}), r"class names repeat \(cat\)"),
    "code": (b"cos\nsystem\n(S'true'\ntR.", "refusing to load os.system"),
}
BAD_BIN_META = {
    "nine lines": (("\n".join(CIFAR10_CLASSES[:9]) + "\n").encode(), "expected 10 class names, found 9"),
    "binary garbage": (bytes(range(256)) * 4, "found bytes that are not UTF-8"),
    "a long name": (("x" * 200 + "\n" + "\n".join(CIFAR10_CLASSES[1:])).encode(), "class name 0 is not a short"),
    "too big": (b"a\n" * 40_000, "expected ten class names, found 80,000 bytes"),
}


@pytest.mark.parametrize("case", [("py", k) for k in BAD_PY_META] + [("bin", k) for k in BAD_BIN_META])
def test_a_damaged_meta_file_falls_back_to_the_standard_names_with_a_note(tmp_path, small_bin, caplog, case):
    """The labels say which class is which; the meta file only names them, so damage there is a warning."""
    form, name = case
    if form == "py":
        folder, meta = f.write_cifar10_folder(tmp_path / "c", n_per_batch=N), "batches.meta"
        data, why = BAD_PY_META[name]
    else:
        folder, meta = f.write_cifar10_bin_folder(tmp_path / "c", n_per_batch=N), "batches.meta.txt"
        data, why = BAD_BIN_META[name]
    f.write_bytes(folder / meta, data)
    with caplog.at_level(logging.WARNING, logger="alexnet.data"):
        bundle = build_datasets(str(folder), image_size=32)
    assert bundle.class_names == CIFAR10_CLASSES and len(bundle.train) == 5 * N
    [(path, note)] = bundle.notes
    assert path == str(folder / meta) and note.endswith("the standard CIFAR-10 class names are used")
    assert re.search(why, note), note
    assert not note.startswith(str(folder))  # the path is said once, beside the note
    assert any(meta in r.getMessage() and "standard CIFAR-10 class names" in r.getMessage() for r in caplog.records)


# --- damaged batches: each error names the file and the cause --------------------------------------------------------


def test_a_binary_file_of_the_wrong_size_is_refused_with_the_real_size(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    for name in f.CIFAR10_BATCHES:
        f.write_bytes(folder / f"{name}.bin", f.cifar_bin_batch(*f.cifar_batch(2, 0)))  # 2 records: 6,146 bytes
    with pytest.raises(DataError, match=r"data_batch_1\.bin: expected 30,730,000 bytes \(10,000 records of 3,073\), "
                                        r"found 6,146 \(2 whole records\)"):
        build_datasets(str(tmp_path), image_size=32)
    f.write_bytes(folder / "data_batch_1.bin", b"\0" * 100)
    with pytest.raises(DataError, match=r"data_batch_1\.bin: .* found 100 \(not a whole number of records\)"):
        read_cifar10_bin(str(folder))


def test_a_binary_file_cut_short_is_refused(tmp_path, small_bin):
    folder = f.write_cifar10_bin_folder(tmp_path / "b", n_per_batch=N)
    data = (folder / "data_batch_4.bin").read_bytes()
    f.write_bytes(folder / "data_batch_4.bin", data[:-10])
    with pytest.raises(DataError, match=rf"data_batch_4\.bin: expected {N * 3073:,} bytes .*found {N * 3073 - 10:,}"):
        read_cifar10_bin(str(folder))


def test_a_binary_label_out_of_range_names_the_record_and_value(tmp_path, small_bin):
    folder = f.write_cifar10_bin_folder(tmp_path / "b", n_per_batch=N)
    data = bytearray((folder / "test_batch.bin").read_bytes())
    data[2 * 3073] = 10
    data[3 * 3073] = 255
    f.write_bytes(folder / "test_batch.bin", bytes(data))
    with pytest.raises(DataError, match=r"test_batch\.bin: expected labels in 0\.\.9, found label 10 in record 2 "
                                        r"\(byte 6,146; 2 bad records in all\)"):
        build_datasets(str(folder), image_size=32)


@pytest.mark.parametrize("form", ["py", "bin"])
def test_missing_batches_are_all_listed(tmp_path, small_bin, form):
    if form == "py":
        folder, ext = f.write_cifar10_folder(tmp_path / "c", n_per_batch=N), ""
    else:
        folder, ext = f.write_cifar10_bin_folder(tmp_path / "c", n_per_batch=N), ".bin"
    os.remove(folder / f"data_batch_2{ext}")
    os.remove(folder / f"test_batch{ext}")
    with pytest.raises(DataError, match=rf"c: incomplete CIFAR-10, missing data_batch_2{ext}, test_batch{ext}$"):
        build_datasets(str(folder), image_size=32)


def py_batch(data=None, labels=None, **extra) -> bytes:
    batch = {b"data": np.zeros((N, 3072), np.uint8) if data is None else data,
             b"labels": list(range(N)) if labels is None else labels, **extra}
    return pickle.dumps({k: v for k, v in batch.items() if v is not ...}, protocol=2)


BAD_PY_BATCHES = {
    "cut short": (py_batch()[:-200], r"expected a CIFAR-10 batch \(about 31 MB\), found a pickle cut short at"),
    "not a pickle": (b"<!DOCTYPE html><html>403</html>", r"not a CIFAR-10 batch \(UnpicklingError"),
    "empty": (b"", r"expected a CIFAR-10 batch \(about 31 MB\), found a pickle cut short at 0 bytes"),
    "not a dict": (pickle.dumps([1, 2, 3]), r"expected a dict, found list"),
    "float data": (py_batch(np.zeros((N, 3072), np.float32)), r"expected 'data' as uint8 \(N, 3072\), found float32 "
                                                              r"\(4, 3072\)"),
    "image-shaped data": (py_batch(np.zeros((N, 32, 32, 3), np.uint8)), r"expected 'data' as uint8 \(N, 3072\), "
                                                                r"found uint8 \(4, 32, 32, 3\)"),
    "data as a list": (py_batch([[0] * 3072] * N), r"expected 'data' as uint8 \(N, 3072\), found list"),
    "no data": (py_batch(data=...), r"expected 'data' as uint8 \(N, 3072\), found no 'data' entry \(keys: labels\)"),
    "labels too few": (py_batch(labels=[0, 1, 2]), r"expected as many labels as images \(4\), found 3"),
    "labels too many": (py_batch(labels=[0] * 5), r"expected as many labels as images \(4\), found 5"),
    "float labels": (py_batch(labels=[0.5, 1, 2, 3]), r"expected 'labels' as a list of integers, found float64"),
    "text labels": (py_batch(labels=["cat"] * N), r"expected 'labels' as a list of integers, found <U3"),
    "no labels": (py_batch(labels=...), r"expected 'labels' as a list of integers, found NoneType"),
    "label 10": (py_batch(labels=[0, 1, 10, 3]), r"expected labels in 0\.\.9, found 0\.\.10 \(label 10 at index 2; "
                                                 r"1 bad label in all\)"),
    "label -1": (py_batch(labels=[0, -1, 2, -1]), r"expected labels in 0\.\.9, found -1\.\.2 \(label -1 at index 1; "
                                                    r"2 bad labels in all\)"),
}


@pytest.mark.parametrize("name", BAD_PY_BATCHES)
def test_a_damaged_python_batch_is_named_with_its_cause(tmp_path, name):
    folder = f.write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_per_batch=N)
    data, why = BAD_PY_BATCHES[name]
    f.write_bytes(folder / "data_batch_3", data)
    with pytest.raises(DataError, match=rf"cifar-10-batches-py/data_batch_3: {why}"):
        build_datasets(str(tmp_path), image_size=32)


def test_a_python_batch_in_a_newer_pickle_protocol_is_read(tmp_path):
    folder = f.write_cifar10_folder(tmp_path / "c", n_per_batch=N)
    images, labels = f.cifar_batch(N, 99)
    f.write_bytes(folder / "test_batch", f.cifar_py_batch(images, labels, protocol=pickle.HIGHEST_PROTOCOL))
    arrays = read_cifar10(str(folder))
    assert np.array_equal(arrays.test_images, images) and arrays.test_labels.tolist() == labels.tolist()


# --- what is and is not a CIFAR-10 folder ----------------------------------------------------------------------------


def test_a_folder_with_both_forms_or_two_cifar_folders_is_refused_not_guessed(tmp_path, small_bin):
    both = f.write_cifar10_bin_folder(f.write_cifar10_folder(tmp_path / "both", n_per_batch=N), n_per_batch=N)
    with pytest.raises(DataError, match=r"both: holds files of both the python and the binary CIFAR-10"):
        build_datasets(str(both), image_size=32)
    parent = tmp_path / "parent"
    f.write_cifar10_folder(parent / "cifar-10-batches-py", n_per_batch=N)
    f.write_cifar10_bin_folder(parent / "cifar-10-batches-bin", n_per_batch=N)
    with pytest.raises(DataError, match=r"parent: holds 2 CIFAR-10 folders \(cifar-10-batches-bin, "
                                        r"cifar-10-batches-py\); give one of them"):
        build_datasets(str(parent), image_size=32)


def test_a_cifar_folder_beside_image_folders_leaves_the_image_folders_to_the_folder_reader(tmp_path):
    f.write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_per_batch=N)
    f.make_folder(tmp_path, classes=("cat", "dog"), train=2, val=1, size=32)
    bundle = build_datasets(str(tmp_path), image_size=32)
    assert bundle.kind == "folder" and bundle.class_names == ["cat", "dog"]


def test_png_class_folders_with_train_and_test_read_test_as_validation_in_sorted_class_order(tmp_path):
    """CIFAR-10 exported as PNGs (train/<class>/*.png, test/<class>/*.png): the folder reader, unchanged."""
    root = tmp_path / "cifar10"
    for split, n in (("train", 3), ("test", 2)):
        for c, name in enumerate(reversed(CIFAR10_CLASSES)):  # created in reverse: the order comes from sorting
            for i in range(n):
                f.write_png(root / split / name / f"{name}_s_{i:06d}.png", f.noise((32, 32), seed=100 * c + i))
    bundle = build_datasets(str(root), image_size=32)
    assert bundle.kind == "folder" and bundle.class_names == CIFAR10_CLASSES == sorted(CIFAR10_CLASSES)
    assert bundle.layout == "train/val (classes: train/ + test/)"
    assert len(bundle.train) == 30 and len(bundle.val) == 20
    assert all(f"{os.sep}test{os.sep}" in p for p, _ in bundle.val.samples)
    assert [CIFAR10_CLASSES[y] for _, y in bundle.val.samples[::2]] == CIFAR10_CLASSES
    assert bundle.val.load_pil(0).size == (32, 32)


def test_the_torchvision_name_still_reads_the_python_folder_under_its_root(tmp_path):
    f.write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_per_batch=N)
    bundle = build_datasets("cifar10", image_size=32, root=str(tmp_path))
    assert (bundle.kind, bundle.source, bundle.root) == ("cifar10", "cifar10", str(tmp_path))
    assert np.array_equal(bundle.val.images, expected()[2])
    from alexnet.data import tvsources

    assert tvsources.read_cifar10 is read_cifar10 and tvsources.CIFAR10_CLASSES is CIFAR10_CLASSES
