"""Labels a person prints and scans: QR code images, a label sheet, photos read back.

An adapter around :mod:`bleprov.core.onboarding` and :mod:`bleprov.core.factory`, which
keep the label as data; this package turns it into PNG, SVG and terminal text (segno)
and reads a photo or screenshot of it (zxing-cpp, Pillow). It writes no files: callers
do, with :func:`bleprov.store.files.write_atomic`, because every rendering is secret.
"""

from __future__ import annotations

from bleprov.labels.decode import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, decode_qr_image
from bleprov.labels.errors import (
    ImageTooLarge,
    LabelError,
    NoQrCode,
    NotABleprovLabel,
    SeveralQrCodes,
    UnreadableImage,
)
from bleprov.labels.render import (
    label_sheet_svg,
    qr_modules,
    qr_png,
    qr_svg,
    qr_symbol,
    qr_terminal,
)

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "ImageTooLarge",
    "LabelError",
    "NoQrCode",
    "NotABleprovLabel",
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
