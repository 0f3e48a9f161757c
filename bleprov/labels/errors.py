"""Typed errors of the label adapter: rendering a label, reading a photo of one.

Messages say what went wrong and what to do; they never repeat a QR code's text, which
on a bleprov label is the device's secret.
"""

from __future__ import annotations

from bleprov.core.errors import BleprovError


class LabelError(BleprovError):
    """A label could not be rendered or read."""


class UnreadableImage(LabelError):
    """The file is not an image Pillow can read, or it is truncated or corrupt."""


class ImageTooLarge(LabelError):
    """The image is larger (bytes or pixels) than a photo of a label needs to be."""


class NoQrCode(LabelError):
    """No QR code was found in the image."""


class SeveralQrCodes(LabelError):
    """The image holds more than one different QR code, so which one is meant is unclear."""


class NotABleprovLabel(LabelError):
    """The image holds a QR code, but not a bleprov onboarding code."""


class PhotoReadingUnavailable(LabelError):
    """Reading a label from a photo needs the ``photo`` extra (zxing-cpp, Pillow), which
    has no wheels for some platforms (32-bit Raspberry Pi OS)."""


__all__ = [
    "ImageTooLarge",
    "LabelError",
    "NoQrCode",
    "NotABleprovLabel",
    "PhotoReadingUnavailable",
    "SeveralQrCodes",
    "UnreadableImage",
]
