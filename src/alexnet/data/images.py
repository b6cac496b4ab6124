"""The one image decoder that training, evaluation, the uint8 cache and prediction all use.

Every rule about what a file on disk becomes is here, so that a photo is seen the same way in every command:

- the format is taken from the bytes, never from the extension (JPEG bytes named `.png` decode as JPEG);
- EXIF orientation is applied (a phone photo stored sideways is shown upright, as in any image viewer);
- a truncated file is an error, never a half-grey image (PIL's `LOAD_TRUNCATED_IMAGES` is ignored here);
- CMYK is converted to RGB; 16-bit and 32-bit grey are scaled to 8 bits (65535 is white, not every value > 255);
- transparency (RGBA, LA, palette or grey with a transparent colour) is composited onto WHITE, the way a browser
  shows it on a white page; a transparent pixel therefore never becomes black;
- an animated GIF/PNG/WebP gives its first frame (noted, not an error);
- images with more than `max_pixels` pixels are refused as decompression bombs before anything is decoded;
- images whose shorter side is below `min_side` pixels are refused (icons, tracking pixels);
- the result has exactly `in_channels` channels: "L" for 1, "RGB" for 3 (ITU-R 601-2 luma for RGB -> grey).

Every refusal is a `DataError` whose message names the file and the cause.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from alexnet.errors import DataError

# File names an image folder may hold; anything else is skipped with a reason. Lower case, compared lower-cased.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
)  # fmt: skip
# PIL's own default bomb limit (~89.5 megapixels, a 9459x9459 image); larger images are refused.
DEFAULT_MAX_PIXELS = 89_478_485
# Smaller than this on the shorter side is not a photo worth training on (favicons, 1x1 tracking pixels).
DEFAULT_MIN_SIDE = 8
_TRUNCATION_LOCK = threading.Lock()
# The compositing background for transparent pixels (see the module docstring).
TRANSPARENT_BACKGROUND = (255, 255, 255)
# 16-bit and 32-bit grey, 32-bit float: scaled to 8 bits by _to_8bit, STRIP_PIXELS at a time.
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
STRIP_PIXELS = 1 << 18


def display_path(path: str | os.PathLike) -> str:
    """A printable form of any path: bytes that are not UTF-8 appear as `\\xNN` instead of crashing a print."""
    raw = os.fsencode(os.fspath(path))
    return raw.decode("utf-8", errors="backslashreplace")


@dataclass
class Decoded:
    """An image ready for a transform, and anything worth telling the user about how it was read."""

    image: Image.Image  # mode "L" or "RGB"
    notes: list[str]  # e.g. "animated GIF with 12 frames: the first is used"


def _open_checked(path: str, max_pixels: int) -> Image.Image:
    """Opens the file (reading only the header) and refuses empty, non-image and oversized files."""
    shown = display_path(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DataError(f"{shown}: cannot read the file ({e.strerror or e})") from None
    if size == 0:
        raise DataError(f"{shown}: empty file (0 bytes)")
    try:
        # Above 2x its limit PIL refuses (DecompressionBombError); between 1x and 2x it only warns, and the size check
        # below refuses. (warnings.catch_warnings would turn that warning into an error, but it is not thread-safe.)
        img = Image.open(path)
    except Image.DecompressionBombError as e:
        raise DataError(f"{shown}: decompression bomb refused ({e})") from None
    except UnidentifiedImageError:
        with open(path, "rb") as f:
            head = f.read(16)
        raise DataError(f"{shown}: not an image file (first bytes {head!r})") from None
    except Exception as e:  # PIL's header parsers raise OSError, ValueError, struct.error, ... on damaged bytes
        raise DataError(f"{shown}: cannot open the image, the header is damaged ({type(e).__name__}: {e})") from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise DataError(f"{shown}: decompression bomb refused ({w}x{h} = {w * h:,} pixels > limit {max_pixels:,})")
    return img


def _strips(img: Image.Image):
    """(top row, numpy array) for horizontal strips of about STRIP_PIXELS pixels: each is converted and dropped."""
    w, h = img.size
    rows = max(1, STRIP_PIXELS // max(w, 1))
    for top in range(0, h, rows):
        yield top, np.asarray(img.crop((0, top, w, min(h, top + rows))))


def _to_8bit(img: Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Scales high-bit-depth grey to 8 bits instead of letting PIL clip every value above 255 to white.

    Strip by strip into one uint8 buffer: the extra memory is a few MB whatever the image size (a whole-image
    float64 copy of an 89-megapixel float TIFF would be 716 MB, and its intermediates as much again)."""
    if img.mode not in HIGH_DEPTH_MODES:
        return img
    w, h = img.size
    if w * h > max_pixels:  # the decoder refused this already; kept so no caller can convert a bomb
        raise DataError(f"{w}x{h} {img.mode} image: {w * h:,} pixels > limit {max_pixels:,}")
    out = np.empty((h, w), dtype=np.uint8)
    if img.mode.startswith("I;16"):
        for top, arr in _strips(img):  # 0..65535 -> 0..255: the high byte
            out[top : top + len(arr)] = arr >> 8
    elif img.mode == "I":
        # A 32-bit container almost always holds 16-bit data (PNG, TIFF); scale by the container the values fit.
        peak = max((int(arr.max()) for _, arr in _strips(img) if arr.size), default=0)
        top_value = 65535 if peak <= 65535 else peak
        for top, arr in _strips(img):
            x = arr.astype(np.int64)  # one strip-sized temporary, worked on in place
            np.clip(x, 0, top_value, out=x)
            x *= 255
            x //= max(top_value, 1)
            out[top : top + len(arr)] = x
    else:  # "F"
        with np.errstate(invalid="ignore"):
            peaks = [float(np.nanmax(arr)) for _, arr in _strips(img) if arr.size and not np.isnan(arr).all()]
        scale = 255.0 if max(peaks, default=0.0) <= 1.0 else 1.0  # [0, 1] floats, or already 0..255
        for top, arr in _strips(img):
            x = arr.astype(np.float64)  # one strip-sized temporary, worked on in place
            np.nan_to_num(x, copy=False, nan=0.0)  # NaN is no light: black, not an undefined cast
            x *= scale
            np.rint(x, out=x)
            np.clip(x, 0, 255, out=x)
            out[top : top + len(arr)] = x
    return Image.fromarray(out)  # a 2-D uint8 array is mode "L"


def _composite(img: Image.Image) -> Image.Image:
    """Flattens any transparency onto TRANSPARENT_BACKGROUND; returns an "L" or "RGB" image."""
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if not has_alpha:
        if img.mode in ("L", "RGB"):
            return img
        if img.mode in ("1",):
            return img.convert("L")
        return img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*TRANSPARENT_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def decode_image(
    path: str | os.PathLike,
    in_channels: int = 3,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Decoded:
    """Decodes a file by the rules in the module docstring. `draft` lets JPEG decode at a reduced scale (>= that
    size), which still reads every byte of the stream, so a truncated file is caught at a fraction of the cost."""
    if in_channels not in (1, 3):
        raise DataError(f"in_channels must be 1 or 3, got {in_channels}")
    path = os.fspath(path)
    shown = display_path(path)
    notes: list[str] = []
    img = _open_checked(path, max_pixels)
    try:
        w, h = img.size
        if min(w, h) < min_side:
            raise DataError(f"{shown}: image too small ({w}x{h}; the shorter side must be >= {min_side} px)")
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            img.seek(0)
            kind = f"animated {img.format}" if img.format in ("GIF", "PNG", "WEBP") else f"multi-frame {img.format}"
            notes.append(f"{kind} with {frames} frames: the first frame is used")  # MPO, multi-page TIFF, ...
        if draft is not None and img.format == "JPEG":
            img.draft(None, draft)
        try:
            if ImageFile.LOAD_TRUNCATED_IMAGES:
                # Another library asked PIL to fill truncated files with grey; we never do. The flag is global, so
                # it is switched off only around our own load, under a lock (decoding runs in threads).
                with _TRUNCATION_LOCK:
                    saved, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
                    try:
                        img.load()
                    finally:
                        ImageFile.LOAD_TRUNCATED_IMAGES = saved
            else:
                img.load()
        except Exception as e:  # OSError "image file is truncated", SyntaxError, ValueError, struct.error, ...
            raise DataError(f"{shown}: cannot decode the image, the file is damaged or truncated ({e})") from None
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception as e:  # a malformed EXIF block: keep the pixels, tell the user
            notes.append(f"EXIF orientation unreadable ({type(e).__name__}), image used as stored")
            oriented = img
        out = _composite(_to_8bit(oriented, max_pixels))
        out = out.convert("L") if in_channels == 1 else out.convert("RGB")
        if out is img:
            out = img.copy()  # detach from the file handle closed below
        return Decoded(out, notes)
    except DataError:
        raise
    except Exception as e:  # whatever a damaged file makes a decoder raise: the file is the cause, name it
        raise DataError(f"{shown}: cannot decode the image ({type(e).__name__}: {e})") from None
    finally:
        img.close()


def load_image(
    path: str | os.PathLike,
    in_channels: int = 3,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """The robust decoder used by training and prediction: a PIL image in mode "L" (1 channel) or "RGB" (3).

    Raises DataError naming the file and the cause; see the module docstring for every rule applied.
    """
    return decode_image(path, in_channels, min_side=min_side, max_pixels=max_pixels).image
