"""Labels a person prints and scans: QR code images, a label sheet, photos read back.

An adapter around :mod:`bleprov.core.onboarding` and :mod:`bleprov.core.factory`, which
keep the label as data; this package turns it into PNG, SVG and terminal text (segno)
and reads a photo or screenshot of it (zxing-cpp, Pillow: the ``photo`` extra, imported
only when a photo is read). It writes no files: callers do, with
:func:`bleprov.store.files.write_atomic`, because every rendering is secret.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bleprov.labels.bounds import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from bleprov.labels.errors import (
    ImageTooLarge,
    LabelError,
    NoQrCode,
    NotABleprovLabel,
    PhotoReadingUnavailable,
    SeveralQrCodes,
    UnreadableImage,
)

if TYPE_CHECKING:
    from bleprov.labels.render import (
        label_sheet_svg,
        qr_modules,
        qr_png,
        qr_svg,
        qr_symbol,
        qr_terminal,
    )

#: Drawn by segno (the ``labels`` extra), imported when first used: reading a label back
#: (``provision --qr-image``) needs no segno.
_RENDER = frozenset(
    {"label_sheet_svg", "qr_modules", "qr_png", "qr_svg", "qr_symbol", "qr_terminal"}
)


def __getattr__(name: str) -> Any:
    """The rendering functions, from :mod:`bleprov.labels.render` on first use."""
    if name in _RENDER:
        return getattr(importlib.import_module("bleprov.labels.render"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def decode_qr_image(
    path: Path, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> str:
    """The bleprov QR text in a photo or screenshot (``bleprov.labels.decode``);
    PhotoReadingUnavailable where the ``photo`` extra is missing."""
    try:
        decode = importlib.import_module("bleprov.labels.decode")
    except ImportError:
        raise PhotoReadingUnavailable(
            "reading a label from a photo needs zxing-cpp and Pillow: install "
            "bleprov[photo], or give the label's text (--qr-file) or its code instead"
        ) from None
    text: str = decode.decode_qr_image(path, max_bytes=max_bytes, max_pixels=max_pixels)
    return text


__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "ImageTooLarge",
    "LabelError",
    "NoQrCode",
    "NotABleprovLabel",
    "PhotoReadingUnavailable",
    "SeveralQrCodes",
    "UnreadableImage",
    "decode_qr_image",
    "label_sheet_svg",
    "qr_modules",
    "qr_png",
    "qr_svg",
    "qr_symbol",
    "qr_terminal",
]
