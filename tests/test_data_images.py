"""The one decoder (load_image): every kind of dirty image file, each a real file written by the test."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

import data_factories as f
from alexnet.data.images import decode_image, display_path, load_image
from alexnet.errors import DataError


def pixels(img) -> np.ndarray:
    return np.asarray(img).astype(int)


def test_plain_jpeg_and_png_decode_to_the_requested_channels(tmp_path):
    jpg = f.write_jpeg(tmp_path / "a.jpg", f.noise((40, 30)))
    png = f.write_png(tmp_path / "a.png", f.noise((40, 30), mode="L"))
    assert load_image(jpg, 3).mode == "RGB" and load_image(jpg, 3).size == (40, 30)
    assert load_image(jpg, 1).mode == "L"
    assert load_image(png, 3).mode == "RGB"  # grey -> RGB explicitly
    grey = pixels(load_image(png, 1))
    assert np.array_equal(pixels(load_image(png, 3))[..., 0], grey)


def test_zero_byte_file_names_the_file_and_cause(tmp_path):
    path = f.write_bytes(tmp_path / "empty.jpg", b"")
    with pytest.raises(DataError, match=r"empty\.jpg: empty file \(0 bytes\)"):
        load_image(path)


@pytest.mark.parametrize("maker", [f.html_page, f.appledouble])
def test_non_image_bytes_with_an_image_extension(tmp_path, maker):
    path = maker(tmp_path / "._photo.jpg")
    with pytest.raises(DataError, match=r"photo\.jpg: not an image file \(first bytes"):
        load_image(path)


def test_jpeg_bytes_named_png_decode_by_content(tmp_path):
    path = f.write_jpeg(tmp_path / "really_a.png", f.solid((200, 30, 30)))
    img = load_image(path)
    assert img.size == (32, 24)
    assert abs(pixels(img)[..., 0].mean() - 200) < 3


@pytest.mark.parametrize("global_flag", [False, True])
def test_truncated_jpeg_is_an_error_never_grey_filled(tmp_path, global_flag, monkeypatch):
    # Even when another library switched PIL to fill truncated images, we refuse the file.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", global_flag)
    path = f.truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match=r"cut\.jpg: cannot decode the image, the file is damaged or truncated"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is global_flag  # restored


def test_truncated_png_is_an_error(tmp_path):
    path = f.write_png(tmp_path / "cut.png", f.noise((64, 64)))
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(DataError, match=r"cut\.png"):
        load_image(path)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    path = f.cmyk_jpeg(tmp_path / "print.jpg")
    img = load_image(path)
    assert img.mode == "RGB"
    r, g, b = pixels(img).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60  # the red ink stays red


def test_16bit_png_is_scaled_not_saturated(tmp_path):
    half = load_image(f.png16(tmp_path / "half.png", 32768), 1)
    dark = load_image(f.png16(tmp_path / "dark.png", 1000), 1)
    full = load_image(f.png16(tmp_path / "full.png", 65535), 3)
    assert pixels(half).min() == pixels(half).max() == 128  # 32768 >> 8, not clipped to 255
    assert pixels(dark).max() == 3  # 1000 / 257
    assert pixels(full).min() == 255


def test_rgba_is_composited_on_white(tmp_path):
    img = pixels(load_image(f.rgba_png(tmp_path / "alpha.png")))
    assert (img[:, :8] == 255).all()  # fully transparent red -> white background
    assert (img[:, 8:16] == [0, 0, 255]).all()  # opaque blue stays blue
    assert (np.abs(img[:, 16:] - 127) <= 1).all()  # half-transparent black over white -> mid grey


def test_palette_png_transparency_uses_the_same_rule(tmp_path):
    img = pixels(load_image(f.palette_png_with_transparency(tmp_path / "p.png")))
    assert (img[:, :8] == 255).all()  # transparent index -> white, not the palette's black
    assert (img[:, 8:] == [0, 255, 0]).all()


def test_animated_gif_gives_the_first_frame_and_a_note(tmp_path):
    path = f.animated_gif(tmp_path / "anim.gif")
    decoded = decode_image(path, 3)
    assert (pixels(decoded.image) == [255, 0, 0]).all()
    assert decoded.notes == ["animated GIF with 3 frames: the first frame is used"]


def test_exif_orientation_is_applied(tmp_path):
    path = f.exif_rotated_jpeg(tmp_path / "phone.jpg", orientation=6)
    img = load_image(path)
    assert img.size == (20, 40)  # shown upright: portrait
    arr = pixels(img)
    # Rotated 90 degrees clockwise: the stored left (red) half is now the top.
    assert arr[5, 10, 0] > 200 and arr[5, 10, 2] < 60
    assert arr[35, 10, 2] > 200 and arr[35, 10, 0] < 60


def test_image_smaller_than_the_minimum_side(tmp_path):
    path = f.write_png(tmp_path / "pixel.png", f.solid((1, 2, 3), (4, 40)))
    with pytest.raises(DataError, match=r"pixel\.png: image too small \(4x40; the shorter side must be >= 8 px\)"):
        load_image(path)
    assert load_image(path, min_side=4).size == (4, 40)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = f.decompression_bomb_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 200_000  # tiny on disk, 400 megapixels inside
    with pytest.raises(DataError, match=r"bomb\.png: decompression bomb refused"):
        load_image(path)
    # Between PIL's warning (1x its limit) and its error (2x), our own check refuses.
    medium = f.decompression_bomb_png(tmp_path / "medium.png", side=10000)
    refused = r"medium\.png: decompression bomb refused \(10000x10000 = 100,000,000 pixels"
    with pytest.raises(DataError, match=refused), pytest.warns(Image.DecompressionBombWarning):
        load_image(medium)
    # A lower limit of our own applies too.
    small = f.write_png(tmp_path / "big.png", f.solid((0, 0, 0), (100, 100)))
    with pytest.raises(DataError, match=r"10,000 pixels > limit 5,000"):
        load_image(small, max_pixels=5000)


def test_non_utf8_file_name_is_decoded_and_printable(tmp_path):
    path = f.non_utf8_name(tmp_path)
    f.write_jpeg(path, f.noise())
    assert load_image(path).size == (32, 24)
    shown = display_path(path)
    assert shown.endswith("caf\\xe9.jpg")
    shown.encode("utf-8")  # printable on any UTF-8 terminal or log
    bad = f.non_utf8_name(tmp_path, b"bad\xff")
    f.write_bytes(bad, b"")
    with pytest.raises(DataError) as err:
        load_image(bad)
    str(err.value).encode("utf-8")


def test_in_channels_must_be_1_or_3(tmp_path):
    with pytest.raises(DataError, match="in_channels must be 1 or 3"):
        load_image(f.write_jpeg(tmp_path / "a.jpg"), 4)


def _seed_files() -> list[bytes]:
    import io

    out = []
    for fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM"):
        buf = io.BytesIO()
        f.noise((24, 16), seed=1).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


SEED_FILES = _seed_files()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(SEED_FILES) - 1), cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1),
       st.integers(0, 255)), max_size=8), name=st.sampled_from(["x.jpg", "x.png", "x.gif", "x.tif"]))  # fmt: skip
def test_damaged_real_images_raise_only_data_error(which, cut, flips, name):
    # Real files of every common format, truncated and with random bytes overwritten: the decoder either returns an
    # image or raises DataError naming the file, never another exception (found by fuzzing: PPM headers, PNG IHDR).
    import tempfile
    import warnings

    data = bytearray(SEED_FILES[which])
    data = data[: max(1, int(len(data) * cut))] if cut < 0.9 else data
    for pos, value in flips:
        data[min(int(pos * len(data)), len(data) - 1)] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        with open(path, "wb") as fh:
            fh.write(bytes(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's TIFF reader warns about damaged tags
            try:
                img = load_image(path)
            except DataError as e:
                assert str(e).startswith(path)
                return
        assert img.mode == "RGB" and min(img.size) >= 8
