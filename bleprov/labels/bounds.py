"""How large a photo of a label may be: bounds checked before anything decodes it."""

from __future__ import annotations

from typing import Final

#: A phone camera's JPEG or HEIC-converted photo (48 MP) is under 30 MB; a PNG
#: screenshot of a 5K display about 20 MB.
MAX_IMAGE_BYTES: Final = 40 * 1024 * 1024
#: 48-megapixel phone sensors (8064 x 6048) fit; the grey copy zxing reads is one byte
#: a pixel, so decoding stays under a few hundred MB.
MAX_IMAGE_PIXELS: Final = 50_000_000

__all__ = ["MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS"]
