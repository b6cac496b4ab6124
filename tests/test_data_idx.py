"""Our IDX reader: valid files round-trip; every malformed file is an IdxError naming expected and found."""

from __future__ import annotations

import gzip
import os
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import data_factories as f
from alexnet.data.idx import IdxError, find_idx_files, read_idx, read_idx_pair
from alexnet.errors import DataError


@pytest.mark.parametrize("gz", [False, True])
def test_valid_files_round_trip(tmp_path, gz):
    images, labels = f.mnist_like(7, 5)
    ext = ".gz" if gz else ""
    ip = f.write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", images)
    lp = f.write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", labels)
    pair = read_idx_pair(str(ip), str(lp))
    assert np.array_equal(pair.images, images) and pair.images.dtype == np.uint8
    assert np.array_equal(pair.labels, labels) and pair.labels.dtype == np.int64


@pytest.mark.parametrize("code,dtype", [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)])
def test_every_type_code_is_read_big_endian(tmp_path, code, dtype):
    arr = (np.arange(12).reshape(3, 4) - 5).astype(dtype)
    out = read_idx(f.write_idx(tmp_path / "x.idx", arr, code))
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and np.array_equal(out, arr)


def _raw(tmp_path, name, data):
    return f.write_bytes(tmp_path / name, data)


GOOD = f.idx_bytes(np.zeros((2, 3, 3), np.uint8))


@pytest.mark.parametrize(
    "name,data,pattern",
    [
        ("zero.idx", b"", r"expected an IDX file, found an empty file \(0 bytes\)"),
        ("plain.gz", GOOD, r"expected gzip-compressed data \(the name ends in .gz\), found raw bytes"),
        ("packed.idx", gzip.compress(GOOD, mtime=0), r"expected raw IDX bytes \(no .gz in the name\), found gzip-compressed"),
        ("broken.gz", gzip.compress(GOOD, mtime=0)[:-12], r"expected a valid gzip stream, found a damaged one"),
        ("magic.idx", b"\x01\x00" + GOOD[2:], r"expected an IDX magic number .*, found b'\\x01\\x00\\x08\\x03'"),
        ("type.idx", b"\x00\x00\x07\x03" + GOOD[4:], r"expected an IDX type code in .*, found 0x07"),
        ("dims.idx", b"\x00\x00\x08\x00", r"expected 1 to 8 dimensions, found 0"),
        ("short.idx", b"\x00\x00", r"expected a 4-byte IDX magic number, found only 2 bytes"),
        ("header.idx", GOOD[:9], r"expected a header with 3 dimension sizes \(12 bytes\), found 5 bytes"),
        ("cut.idx", GOOD[:-5], r"expected 18 data bytes for shape \(2, 3, 3\), found 13 \(the file is truncated\)"),
        ("tail.idx", GOOD + b"\x00\x00", r"expected 18 data bytes for shape \(2, 3, 3\), found 2 trailing bytes"),
        ("tail.gz", gzip.compress(GOOD + b"!", mtime=0), r"found trailing bytes after them"),
        ("cut.gz", gzip.compress(GOOD[:-5], mtime=0), r"found 13 \(the file is truncated\)"),
    ],
)
def test_malformed_files(tmp_path, name, data, pattern):
    path = _raw(tmp_path, name, data)
    with pytest.raises(IdxError, match=pattern) as err:
        read_idx(path)
    assert str(err.value).startswith(str(path))  # names the file
    assert isinstance(err.value, DataError)


def test_lying_header_costs_no_allocation(tmp_path):
    # Claims 4 billion 4096x4096 images (~7e16 bytes): refused from the file size alone, for raw and gzip.
    header = b"\x00\x00\x08\x03" + struct.pack(">III", 0xFFFFFFFF, 4096, 4096)
    with pytest.raises(IdxError, match="the file is truncated"):
        read_idx(_raw(tmp_path, "huge.idx", header + b"\x00" * 100))
    with pytest.raises(IdxError, match="the file is truncated"):
        read_idx(_raw(tmp_path, "huge.gz", gzip.compress(header + b"\x00" * 100)))


def test_wrong_kind_of_file_for_the_role(tmp_path):
    images, labels = f.mnist_like(4)
    ip = f.write_idx(tmp_path / "i", images)
    lp = f.write_idx(tmp_path / "l", labels)
    with pytest.raises(IdxError, match=r"expected 3 dimensions, found 1"):
        read_idx_pair(str(lp), str(lp))
    floats = f.write_idx(tmp_path / "fl", images.astype(np.float32), 0x0D)
    with pytest.raises(IdxError, match=r"expected unsigned byte data, found float32 data"):
        read_idx_pair(str(floats), str(lp))
    assert len(read_idx_pair(str(ip), str(lp)).labels) == 4


def test_count_mismatch_and_label_out_of_range(tmp_path):
    images, labels = f.mnist_like(6)
    ip = f.write_idx(tmp_path / "i", images)
    short = f.write_idx(tmp_path / "l5", labels[:5])
    with pytest.raises(IdxError, match=r"expected the same number of items, found 6 images and 5 labels"):
        read_idx_pair(str(ip), str(short))
    labels[3] = 12
    bad = f.write_idx(tmp_path / "l", labels)
    with pytest.raises(IdxError, match=r"l: expected labels in 0..9, found 1 out of range \(first: label 12 at index 3\)"):
        read_idx_pair(str(ip), str(bad))


def test_find_idx_files_prefers_raw_and_requires_pairs(tmp_path):
    f.write_mnist_folder(tmp_path, gz=True)
    f.write_mnist_folder(tmp_path, gz=False)
    pairs = find_idx_files(str(tmp_path))
    assert set(pairs) == {"train", "test"}
    assert not any(p.endswith(".gz") for pair in pairs.values() for p in pair)
    lonely = tmp_path / "lonely"
    f.write_idx(lonely / "train-images-idx3-ubyte", f.mnist_like(3)[0])
    with pytest.raises(IdxError, match="expected a matching train labels file beside it"):
        find_idx_files(str(lonely))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=200), st.binary(max_size=40).map(lambda b: b"\x00\x00" + b)),
       gz=st.booleans(), compress=st.booleans())  # fmt: skip
def test_arbitrary_bytes_raise_only_idx_error(data, gz, compress):
    payload = gzip.compress(data) if compress else data
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f.gz" if gz else "f.idx")
        with open(path, "wb") as fh:
            fh.write(payload)
        try:
            arr = read_idx(path)
        except IdxError:
            return
        assert isinstance(arr, np.ndarray)
