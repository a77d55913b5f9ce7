"""Opening image files as RGB safely: errors that name the file, no decompression bombs, 16-bit done right.

``read_rgb(path)`` is the one way the package turns an image file into the RGB picture a model sees;
``to_rgb(image)`` converts an already opened one. Pillow's own ``convert("RGB")`` clips 16-bit
grayscale (PNG medical and scientific images) at 255, so nearly every pixel turns white; here the
16-bit range is scaled to 8 bits first.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageFileError(ValueError):
    """An image file cannot be used; the message names the file and says why."""


def max_pixels() -> int:
    """Pixel count above which an image is refused as a likely decompression bomb (Pillow's limit)."""
    return int(Image.MAX_IMAGE_PIXELS or 0)


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image``; 16-bit and 32-bit integer grayscale are scaled, not clipped."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) <= 65535 else float(values.max())
        gray = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return image.convert("RGB")


def read_rgb(path: str | Path) -> Image.Image:
    """The image file at ``path`` as RGB. Raises ``FileNotFoundError`` or :class:`ImageFileError`
    (a directory, not an image, damaged, or more pixels than ``max_pixels()``)."""
    path = Path(path)
    if path.is_dir():
        raise ImageFileError(f"{path} is a directory, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageFileError(
            f"{path}: refusing to decode an image with more than {max_pixels():,} pixels "
            f"(a decompression bomb, or a picture far larger than a model can use); resize it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageFileError(f"cannot read image {path}: {exc}") from None
