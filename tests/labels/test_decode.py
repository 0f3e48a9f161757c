"""Photos and screenshots of a label decode; everything else is a typed error."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import segno
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from bleprov.core.errors import BleprovError
from bleprov.core.factory import Label
from bleprov.labels import (
    MAX_IMAGE_BYTES,
    ImageTooLarge,
    LabelError,
    NoQrCode,
    NotABleprovLabel,
    SeveralQrCodes,
    UnreadableImage,
    decode_qr_image,
    qr_png,
)
from tests.labels.conftest import make_label, save


def label_image(label: Label) -> Image.Image:
    return Image.open(io.BytesIO(qr_png(label))).convert("L")


def other_qr(text: str) -> Image.Image:
    out = io.BytesIO()
    segno.make_qr(text).save(out, kind="png", scale=10, border=4)
    return Image.open(out).convert("L")


def rotated(image: Image.Image) -> Image.Image:
    return image.rotate(17, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)


def scaled_down(image: Image.Image) -> Image.Image:
    # 45 modules in 120 pixels: 2.7 pixels a module, as from a distant camera.
    return image.resize((120, 120), Image.Resampling.LANCZOS)


def noisy(image: Image.Image, sigma: float = 60) -> Image.Image:
    """Gaussian noise, pixel by pixel (zxing alone reads none of these above sigma 40)."""
    noise = Image.effect_noise(image.size, sigma)  # mean 128
    return ImageChops.add(image, noise, offset=-128)


def blurred(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(2))


def in_screenshot(image: Image.Image) -> Image.Image:
    """A 1600 x 1000 desktop: title bar, sidebar, text, the code off centre, lower right."""
    screen = Image.new("RGB", (1600, 1000), (236, 239, 244))
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, 1600, 40), fill=(46, 52, 64))
    draw.rectangle((0, 40, 280, 1000), fill=(216, 222, 233))
    for y in range(80, 600, 28):
        draw.text((320, y), "Lorem ipsum dolor sit amet, consectetur adipiscing elit" * 2, fill=0)
    screen.paste(image.convert("RGB").resize((300, 300)), (1180, 620))
    return screen


PHOTOS = {
    "rotated 17 degrees": (rotated, "png"),
    "scaled down": (scaled_down, "png"),
    "JPEG quality 40": (lambda image: image, "jpeg"),
    "Gaussian noise, sigma 20": (lambda image: noisy(image, 20), "png"),
    "Gaussian noise, sigma 60": (noisy, "png"),
    "blurred": (blurred, "png"),
    "off centre in a screenshot": (in_screenshot, "png"),
    "all at once, as a phone would": (
        lambda image: in_screenshot(noisy(rotated(blurred(image)))),
        "jpeg",
    ),
}


@pytest.mark.parametrize("case", list(PHOTOS))
def test_photo_decodes(tmp_path: Path, case: str) -> None:
    label = make_label()
    transform, kind = PHOTOS[case]
    image = transform(label_image(label))
    params: dict[str, object] = {"quality": 40} if kind == "jpeg" else {}
    path = save(image.convert("RGB"), tmp_path / f"photo.{kind}", **params)
    assert decode_qr_image(path) == label.qr_text


def test_transparent_screenshot_decodes(tmp_path: Path, label: Label) -> None:
    """A QR code drawn on a transparent background: flattened onto white, not black."""
    ink = label_image(label).point(lambda value: 255 - value)
    rgba = Image.new("RGBA", ink.size, (0, 0, 0, 0))
    rgba.putalpha(ink)
    assert decode_qr_image(save(rgba, tmp_path / "transparent.png")) == label.qr_text


def test_the_same_code_twice_counts_once(tmp_path: Path, label: Label) -> None:
    code = label_image(label)
    both = Image.new("L", (code.width * 2 + 40, code.height), 255)
    both.paste(code, (0, 0))
    both.paste(code, (code.width + 40, 0))
    assert decode_qr_image(save(both, tmp_path / "twice.png")) == label.qr_text


def test_random_image_has_no_qr_code(tmp_path: Path) -> None:
    image = Image.frombytes("L", (400, 300), os.urandom(400 * 300))
    with pytest.raises(NoQrCode, match="no QR code"):
        decode_qr_image(save(image, tmp_path / "random.png"))


def test_two_different_codes(tmp_path: Path, label: Label) -> None:
    first, second = label_image(label), other_qr("https://example.com/manual")
    both = Image.new("L", (first.width + second.width + 40, max(first.height, second.height)), 255)
    both.paste(first, (0, 0))
    both.paste(second, (first.width + 40, 0))
    with pytest.raises(SeveralQrCodes, match="2 different QR codes"):
        decode_qr_image(save(both, tmp_path / "two.png"))


@pytest.mark.parametrize(
    "text", ["https://example.com/setup", "bp:LOWERCASE", "BP:NOT-A-PAYLOAD", "BP:"]
)
def test_a_qr_code_that_is_not_a_bleprov_label(tmp_path: Path, text: str) -> None:
    with pytest.raises(NotABleprovLabel, match="not a bleprov setup code") as caught:
        decode_qr_image(save(other_qr(text), tmp_path / "other.png"))
    assert text not in str(caught.value)  # the code's text is never repeated


def test_a_truncated_png(tmp_path: Path, label: Label) -> None:
    png = qr_png(label)
    path = tmp_path / "truncated.png"
    path.write_bytes(png[: len(png) // 2])
    with pytest.raises(UnreadableImage, match="truncated or corrupt"):
        decode_qr_image(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"BP:0123 is text, not a picture\n", "not an image"), (None, "cannot read")],
)
def test_not_an_image(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "file.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UnreadableImage, match=message):
        decode_qr_image(path)


def test_a_file_too_large_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as file:
        file.truncate(MAX_IMAGE_BYTES + 1)  # sparse: large on paper, nothing to read
    with pytest.raises(ImageTooLarge, match="bytes"):
        decode_qr_image(path)


def test_too_many_pixels_in_a_small_file(tmp_path: Path) -> None:
    """10000 x 6000 white pixels compress to a few kB: the pixel bound stops them."""
    path = save(Image.new("1", (10_000, 6_000), 1), tmp_path / "bomb.png", optimize=True)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ImageTooLarge, match="10000 x 6000 pixels"):
        decode_qr_image(path)


def test_bounds_can_be_tightened(tmp_path: Path, label: Label) -> None:
    path = tmp_path / "label.png"
    path.write_bytes(qr_png(label))
    with pytest.raises(ImageTooLarge):
        decode_qr_image(path, max_bytes=100)
    with pytest.raises(ImageTooLarge):
        decode_qr_image(path, max_pixels=100 * 100)
    assert decode_qr_image(path, max_pixels=450 * 450) == label.qr_text


def test_every_label_error_is_a_bleprov_error() -> None:
    for error in (ImageTooLarge, NoQrCode, NotABleprovLabel, SeveralQrCodes, UnreadableImage):
        assert issubclass(error, LabelError)
    assert issubclass(LabelError, BleprovError)


def test_without_the_photo_extra_a_photo_gets_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zxing-cpp and Pillow are the ``photo`` extra (no 32-bit ARM wheels): without them,
    reading a photo says what to install or give instead; nothing else needs them."""
    import sys

    import bleprov.labels
    from bleprov.labels import PhotoReadingUnavailable

    monkeypatch.setitem(sys.modules, "zxingcpp", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "bleprov.labels.decode", raising=False)
    photo = tmp_path / "label.png"
    photo.write_bytes(b"not read")
    with pytest.raises(PhotoReadingUnavailable, match=r"bleprov\[photo\]"):
        bleprov.labels.decode_qr_image(photo)
