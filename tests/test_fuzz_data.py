"""Property-based fuzzing of the two readers of untrusted bytes: the IDX reader and the image decoder.

The property: whatever the bytes, the reader either raises DataError (a one-line message naming the file) or returns
something well-formed (an array of the shape the header states; an "L"/"RGB" image within the size limits). Never
another exception, never a hang: each example is bounded by `deadline`, each test by `max_examples`.

Examples are derandomized (the same every run, so the suite is reproducible); set ALEXNET_FUZZ_EXAMPLES=5000 to
search further on a quiet machine.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from alexnet.data.idx import IDX_TYPES, read_idx
from alexnet.data.images import decode_image
from alexnet.errors import DataError

EXAMPLES = int(os.environ.get("ALEXNET_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    deadline=2000,  # ms per example: generous for a shared 2-core machine, still catches a hang
    derandomize=not EXAMPLES,
    database=None,  # no .hypothesis folder written into the checkout
    suppress_health_check=[HealthCheck.too_slow],
)
# PIL warns about headers between 1x and 2x its own bomb limit and about odd TIFF tags; the decoder refuses or
# copes, and the property is checked on the outcome, so the warnings are only noise here.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning", "ignore::UserWarning")
MAX_PIXELS = 1 << 16  # fuzzed headers may claim any size up to this: each decode stays in milliseconds


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _write(folder, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# --- IDX ---------------------------------------------------------------------------------------------------------


def _check_idx(path: str, payload_len_hint: int | None = None) -> None:
    try:
        arr = read_idx(path)
    except DataError as e:
        assert str(e).startswith(path) and "\n" not in str(e)
        return
    assert isinstance(arr, np.ndarray) and arr.dtype.isnative and 1 <= arr.ndim <= 8


@st.composite
def idx_payloads(draw) -> bytes:
    """Mostly well-formed headers (so the fuzzer reaches the data checks), with random dims and bodies."""
    code = draw(st.sampled_from([*IDX_TYPES, 0x00, 0x0A, 0xFF]))
    nd = draw(st.integers(0, 9))
    dims = draw(st.lists(st.one_of(st.integers(0, 6), st.sampled_from([0xFFFFFFFF, 1 << 31, 10**9])),
                         min_size=nd, max_size=nd))
    head = bytes([draw(st.sampled_from([0, 0, 0, 1])), 0, code, nd]) + struct.pack(f">{nd}I", *dims)
    itemsize = IDX_TYPES.get(code, (np.dtype("u1"),))[0].itemsize
    exact = int(np.prod(list(dims), dtype=object)) * itemsize if dims else 0
    body_len = draw(st.one_of(st.just(exact if exact < 4096 else 0), st.integers(0, 300)))
    body = draw(st.binary(min_size=body_len, max_size=body_len)) if body_len <= 300 else bytes(body_len)
    cut = draw(st.integers(0, len(head) + len(body)))
    return (head + body)[: cut if draw(st.booleans()) else len(head) + len(body)]


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_an_idx_file(scratch, data):
    _check_idx(_write(scratch, "random.idx", data))


@FUZZ
@given(payload=idx_payloads())
def test_crafted_idx_headers_raw(scratch, payload):
    _check_idx(_write(scratch, "crafted.idx", payload))


@FUZZ
@given(payload=idx_payloads(), damage=st.sampled_from(["none", "truncate", "flip", "trail"]), where=st.floats(0, 1))
def test_crafted_idx_headers_gzip(scratch, payload, damage, where):
    data = bytearray(gzip.compress(payload))
    i = min(len(data) - 1, int(where * len(data)))
    if damage == "truncate":
        data = data[:i]
    elif damage == "flip":
        data[i] ^= 0x5A
    elif damage == "trail":
        data += b"\x1f\x8b garbage"
    _check_idx(_write(scratch, "crafted.idx.gz", bytes(data)))


def test_a_well_formed_idx_file_is_read_back():  # the property's other side, so that "always fails" cannot pass
    import tempfile

    arr = np.arange(24, dtype=">i2").reshape(2, 3, 4)
    with tempfile.TemporaryDirectory() as d:
        path = _write(d, "ok.idx", b"\x00\x00\x0b\x03" + struct.pack(">III", 2, 3, 4) + arr.tobytes())
        assert np.array_equal(read_idx(path), arr)


# --- images ------------------------------------------------------------------------------------------------------


def _seed_images() -> dict[str, bytes]:
    """Small valid files in every format the decoder meets, as the starting points of mutation."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    out = {}
    for fmt, img, kw in [
        ("PNG", rgb, {}), ("JPEG", rgb, {"quality": 80}), ("GIF", rgb.convert("P"), {}), ("BMP", rgb, {}),
        ("TIFF", rgb, {}), ("WEBP", rgb, {}), ("PPM", rgb, {}),
        ("PNG", Image.fromarray(rng.integers(0, 65536, (12, 16), dtype=np.uint16)), {}),
        ("TIFF", Image.fromarray(rng.random((12, 16), dtype=np.float32)), {}),
        ("PNG", rgb.convert("RGBA"), {}),
    ]:  # fmt: skip
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        out[f"{fmt}-{img.mode}"] = buf.getvalue()
    return out


SEEDS = _seed_images()


def _check_image(path: str, channels: int) -> None:
    try:
        decoded = decode_image(path, channels, max_pixels=MAX_PIXELS)
    except DataError as e:
        assert str(e).startswith(path) and "\n" not in str(e)
        return
    img = decoded.image
    assert img.mode == ("L" if channels == 1 else "RGB")
    assert min(img.size) >= 8 and img.size[0] * img.size[1] <= MAX_PIXELS
    assert all(isinstance(n, str) for n in decoded.notes)
    img.tobytes()  # the pixels are really there


@FUZZ
@given(data=st.binary(max_size=400), channels=st.sampled_from([1, 3]))
def test_random_bytes_as_an_image(scratch, data, channels):
    _check_image(_write(scratch, "random.png", data), channels)


@FUZZ
@given(seed=st.sampled_from(sorted(SEEDS)), channels=st.sampled_from([1, 3]),
       edits=st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "zero"]), st.floats(0, 1),
                                st.integers(1, 255)), min_size=1, max_size=4))  # fmt: skip
def test_mutated_images(scratch, seed, channels, edits):
    data = bytearray(SEEDS[seed])
    for op, where, value in edits:
        i = min(len(data) - 1, int(where * len(data))) if data else 0
        if not data:
            break
        if op == "flip":
            data[i] ^= value
        elif op == "cut":
            data = data[:i]
        elif op == "insert":
            data[i:i] = bytes([value]) * (value % 7 + 1)
        else:
            data[i : i + value] = bytes(len(data[i : i + value]))
    _check_image(_write(scratch, "mutated.img", bytes(data)), channels)


@FUZZ
@given(width=st.integers(0, 1 << 20), height=st.integers(0, 1 << 20), channels=st.sampled_from([1, 3]))
def test_png_headers_claiming_any_size(scratch, width, height, channels):
    """A PNG whose IHDR claims width x height (CRC correct) over a tiny IDAT: refused or decoded, never a bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    _check_image(_write(scratch, "claims.png", png), channels)


def test_every_seed_image_decodes(scratch):  # the property's other side: valid files are accepted
    for name, data in SEEDS.items():
        decoded = decode_image(_write(scratch, "seed.img", data), 3, max_pixels=MAX_PIXELS)
        assert decoded.image.size == (16, 12), name


# --- sealed cache metadata -----------------------------------------------------------------------------------------


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=8)


def _sealed(value) -> bytes:
    from alexnet.data.limits import sealed_json

    return sealed_json(value).encode()


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda v: json.dumps({"sha256": "0" * 64, "content": v}).encode()),  # a wrong checksum
    JSON_VALUES.map(_sealed),  # a right one
    st.tuples(JSON_VALUES.map(_sealed), st.integers(0, 400), st.integers(1, 255)).map(
        lambda t: t[0][: t[1]] + bytes([t[2]]) + t[0][t[1] + 1 :]),  # a right one, then one byte changed
))  # fmt: skip
def test_any_bytes_as_sealed_metadata_are_refused_or_verified(scratch, data):
    from alexnet.data.limits import SealBroken, canonical_sha256, open_sealed_json

    path = _write(scratch, "meta.json", data)
    try:
        content = open_sealed_json(path)
    except SealBroken as e:
        assert str(e) and "\n" not in str(e)
        return
    assert json.loads(data)["sha256"] == canonical_sha256(content)  # only a matching checksum is accepted
