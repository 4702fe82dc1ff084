"""Image-file preprocessing shared by every path: numpy and Pillow only (predict must not import torch).

The torch side (training, eval) decodes and resizes with these same functions and only normalises
in torch, so a file gives the same numbers whichever path reads it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from cnntool.errors import DataError
from cnntool.spec import CROP_PCT_DEFAULT, INTERPOLATION_DEFAULT

EXIF_ORIENTATION = 0x0112
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
_INTERPOLATION = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                  "lanczos": Image.LANCZOS, "box": Image.BOX}
# A truncated file is an error, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Largest image decoded (Pillow's own bomb limit): checked from the header before any pixel is decoded. Pillow's
# DecompressionBombWarning is silenced once, process-wide, because the check below replaces it: filtering it per
# call with warnings.catch_warnings() is not thread-safe (images are decoded by a thread pool).
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Pillow's other warnings about one file (corrupt EXIF, ...) become one line naming the file, through the
# "cnntool" logger, instead of a raw warning: collected per thread while that thread decodes the file.
_decoding = threading.local()
_show_warning = warnings.showwarning


def _route_warning(message, category, filename, lineno, file=None, line=None):
    sink = getattr(_decoding, "sink", None)
    if sink is not None and issubclass(category, UserWarning):
        sink.append(str(message))
        return None
    return _show_warning(message, category, filename, lineno, file, line)


warnings.showwarning = _route_warning


def is_image_file(path: str | Path) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def open_image(path: str | Path, in_channels: int, draft_size: int | None = None) -> Image.Image:
    """Decode an image file to mode 'L' (1 channel) or 'RGB' (3 channels).

    Palette, RGBA/LA (composited on white), CMYK, 16-bit and float images are all converted, and a
    photo's EXIF orientation is applied (a phone picture taken upright is classified upright).
    Any decoding problem becomes a DataError naming the file.
    """
    _decoding.sink = notes = []
    im = out = None
    try:
        im = Image.open(path)  # lazy: reads the header only
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise DataError(f"{path}: image of {w}×{h} pixels is larger than the {MAX_PIXELS:,}-pixel limit "
                            f"(a decompression bomb?); not decoded")
        if draft_size and im.format == "JPEG":
            im.draft("RGB" if in_channels == 3 else "L", (draft_size, draft_size))
        im.load()  # a single-frame file is closed here
        # exif_transpose copies the image: only call it when the photo really is rotated
        out = ImageOps.exif_transpose(im) if _rotated(im) else im
        out = to_mode(out, in_channels)
        if out is im and getattr(im, "fp", None) is not None:
            out = im.copy()  # Pillow keeps multi-frame files open: detach the pixels before closing it
        return out
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image (unrecognised file format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = str(e).strip() or type(e).__name__
        if "truncated" in reason.lower():
            reason = "truncated or corrupt image data"
        raise DataError(f"{path}: cannot decode image ({reason})") from None
    finally:
        if im is not None and out is not im:
            im.close()
        _decoding.sink = None
        for note in dict.fromkeys(notes):
            logging.getLogger("cnntool").warning("%s: %s", clean_text(str(path)), note)


def _rotated(im: Image.Image) -> bool:
    """An EXIF orientation other than upright. The EXIF block is parsed only where the file has one: JPEG, PNG
    and WebP keep it in ``info["exif"]`` (PNG's text-chunk form too), TIFF in its own tags."""
    if im.format not in ("TIFF", "MPO") and "exif" not in im.info and "Raw profile type exif" not in im.info:
        return False
    return im.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1)


def to_mode(im: Image.Image, in_channels: int) -> Image.Image:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    target = "L" if in_channels == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


def resize_for_model(im: Image.Image, input_size: Sequence[int], crop_pct: float = CROP_PCT_DEFAULT,
                     interpolation: str = INTERPOLATION_DEFAULT) -> Image.Image:
    """Resize (and centre-crop) to ``input_size`` = [height, width].

    crop_pct 1.0 resizes straight to the input size; below 1.0 the shorter side is resized to
    input/crop_pct and the centre crop taken (the ImageNet-style 256 -> 224).
    """
    h, w = int(input_size[0]), int(input_size[1])
    resample = _INTERPOLATION.get(interpolation)
    if resample is None:
        raise DataError(f"unknown interpolation {interpolation!r}")
    if crop_pct >= 1.0:
        return im if im.size == (w, h) else im.resize((w, h), resample)
    scale = max(h, w) / crop_pct / min(im.size)
    new_size = (max(w, round(im.size[0] * scale)), max(h, round(im.size[1] * scale)))
    im = im.resize(new_size, resample)
    left = (new_size[0] - w) // 2
    top = (new_size[1] - h) // 2
    return im.crop((left, top, left + w, top + h))


def to_chw_uint8(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def load_for_model(path: str | Path, in_channels: int, input_size: Sequence[int],
                   crop_pct: float = CROP_PCT_DEFAULT, interpolation: str = INTERPOLATION_DEFAULT) -> np.ndarray:
    """File -> uint8 array (C, H, W) at the model's input size (full decode: no JPEG draft mode,
    which would change the pixels)."""
    im = open_image(path, in_channels)
    return to_chw_uint8(resize_for_model(im, input_size, crop_pct, interpolation))


def normalize(batch_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 normalised, same operation order as the torch version."""
    x = batch_uint8.astype(np.float32) / np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return (x - m) / s


def clean_text(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (escape sequences, newlines) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
