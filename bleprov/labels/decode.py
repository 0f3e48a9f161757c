"""Read a bleprov QR code from a photo or a screenshot (zxing-cpp, Pillow to load it).

The file is untrusted input: its size in bytes is bounded before it is read and its size
in pixels before it is decoded (Pillow reads only the header until ``load``), so a
small file that claims a huge image cannot exhaust memory. A bounded image then goes to
zxing-cpp as 8-bit grey; transparency is flattened onto white first, as a screenshot
viewer shows it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Final

import zxingcpp
from PIL import Image, ImageFilter, UnidentifiedImageError

from bleprov.core.onboarding import PayloadError, parse_qr
from bleprov.labels.bounds import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from bleprov.labels.errors import (
    ImageTooLarge,
    NoQrCode,
    NotABleprovLabel,
    SeveralQrCodes,
    UnreadableImage,
)

#: Only QR codes: a label holds nothing else, and fewer formats means fewer false finds.
_QR_FORMATS: Final = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageTooLarge(
                f"{path.name} is {size} bytes, more than {max_bytes}: crop or shrink the photo"
            )
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise UnreadableImage(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # the file grew after stat
        raise ImageTooLarge(f"{path.name} is more than {max_bytes} bytes: crop or shrink it")
    if not data:
        raise UnreadableImage(f"{path.name} is empty: give a photo or screenshot of the label")
    return data


def load_image(
    path: Path, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> Image.Image:
    """The image as 8-bit grey, after both bounds; raise a typed error otherwise."""
    path = Path(path)
    data = _read_bounded(path, max_bytes)
    try:
        with warnings.catch_warnings():
            # Our pixel bound is below Pillow's; its warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width < 1 or height < 1:
                raise UnreadableImage(f"{path.name} has no pixels")
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"{path.name} is {width} x {height} pixels, more than {max_pixels}:"
                    " shrink or crop the photo"
                )
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                flattened = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                flattened.alpha_composite(rgba)
                image = flattened
            return image.convert("L")
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(
            f"{path.name} is not an image Pillow can read (PNG, JPEG, GIF, BMP, WebP, ...):"
            " give a photo or screenshot of the label"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated or corrupt data with these.
        raise UnreadableImage(
            f"{path.name} is truncated or corrupt ({type(exc).__name__}): take the photo again"
        ) from None


def _find_qr_texts(image: Image.Image) -> list[str]:
    """The distinct texts of the QR codes zxing-cpp reads in ``image``."""
    found = zxingcpp.read_barcodes(image, formats=_QR_FORMATS)
    return sorted({barcode.text for barcode in found if barcode.valid})


def decode_qr_image(
    path: Path, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> str:
    """The bleprov QR text found in a photo or screenshot of a label.

    Exactly one distinct QR code must be in the image (the same code seen twice counts
    once), and it must parse as a bleprov onboarding code. The text returned is secret.
    """
    image = load_image(path, max_bytes=max_bytes, max_pixels=max_pixels)
    texts = _find_qr_texts(image)
    if not texts:
        # Sensor noise in a dim photo breaks zxing's finder-pattern scan (measured: it
        # reads no code at Gaussian noise sigma 50 of 255); a 1-pixel blur removes the
        # speckle and reads it up to sigma 80. Done only when the plain pass finds nothing.
        texts = _find_qr_texts(image.filter(ImageFilter.GaussianBlur(1)))
    if not texts:
        raise NoQrCode(
            f"no QR code found in {Path(path).name}: photograph the label square on,"
            " in focus, with the whole code inside the frame"
        )
    if len(texts) > 1:
        raise SeveralQrCodes(
            f"{Path(path).name} holds {len(texts)} different QR codes: crop it to the"
            " bleprov label's code"
        )
    [text] = texts
    try:
        parse_qr(text)
    except PayloadError as exc:
        raise NotABleprovLabel(
            f"the QR code in {Path(path).name} is not a bleprov setup code ({exc}):"
            " scan the code on the device's label"
        ) from None
    return text


__all__ = ["MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "decode_qr_image", "load_image"]
