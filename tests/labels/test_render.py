"""Renderings of a label read back to the same QR text: PNG, SVG, label sheet, terminal."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from bleprov.core.errors import BleprovError
from bleprov.core.factory import Label
from bleprov.core.onboarding import encode_user_password, smallest_qr_version
from bleprov.labels import (
    LabelError,
    decode_qr_image,
    label_sheet_svg,
    qr_modules,
    qr_png,
    qr_svg,
    qr_symbol,
    qr_terminal,
)
from tests.labels.conftest import (
    make_label,
    matrix_image,
    save,
    segno_svg_modules,
    sheet_modules,
    sheet_text,
    terminal_modules,
)


@pytest.mark.parametrize(("passcode", "version"), [(False, 4), (True, 5)])
def test_symbol_is_the_one_the_payload_was_designed_for(passcode: bool, version: int) -> None:
    label = make_label(passcode=passcode, card=False)
    symbol = qr_symbol(label)
    assert symbol.version == version == smallest_qr_version(label.qr_text, "M")
    assert symbol.error == "M"
    assert symbol.mode == "alphanumeric"
    assert len(qr_modules(label)) == 17 + 4 * version + 2 * 4


@pytest.mark.parametrize("passcode", [False, True])
def test_png_decodes_to_the_qr_text(tmp_path: Path, passcode: bool) -> None:
    label = make_label(passcode=passcode)
    png = qr_png(label)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (len(qr_modules(label)) * 10,) * 2
    assert round(image.info["dpi"][0]) == 508  # 10 pixels per 0.5 mm
    path = tmp_path / "label.png"
    path.write_bytes(png)
    assert decode_qr_image(path) == label.qr_text


def test_png_scale_is_bounded(label: Label) -> None:
    with pytest.raises(LabelError, match="scale"):
        qr_png(label, scale=0)


def test_svg_holds_the_same_modules_and_decodes(tmp_path: Path, label: Label) -> None:
    svg = qr_svg(label)
    root = ET.fromstring(svg)
    assert root.get("width") == "22.5mm"  # 45 modules of 0.5 mm (version 5)
    modules = segno_svg_modules(svg)
    assert len(modules) == 45
    assert modules == qr_modules(label)
    path = save(matrix_image(modules), tmp_path / "from-svg.png")
    assert decode_qr_image(path) == label.qr_text


def test_label_sheet(tmp_path: Path, label: Label) -> None:
    svg = label_sheet_svg(label, "0123456789ABCDEF")
    root = ET.fromstring(svg)
    assert (root.get("width"), root.get("height")) == ("85mm", "54mm")
    modules = sheet_modules(svg)
    assert modules == qr_modules(label)
    path = save(matrix_image(modules), tmp_path / "sheet-qr.png")
    assert decode_qr_image(path) == label.qr_text
    texts = sheet_text(svg)
    assert "0123456789ABCDEF" in texts
    assert label.manual_code in texts
    assert label.scratch_card is not None
    assert encode_user_password(label.scratch_card) in texts
    start = texts.index("Printed key (type it if the camera fails)") + 1
    key_lines = texts[start : start + 3]
    assert "-".join(key_lines) == label.printed_key
    assert any("SECRET" in text for text in texts)
    assert f"Discriminator 0x{label.payload.discriminator:03X}" in texts


def test_label_sheet_without_codes_or_card(label: Label) -> None:
    plain = make_label(passcode=False, card=False)
    texts = sheet_text(label_sheet_svg(plain, "ABC1"))
    assert "Manual code" not in texts
    assert not any(text.startswith("user:") for text in texts)
    assert "Modes: qr" in texts


def test_label_sheet_refuses_a_bad_device_id(label: Label) -> None:
    with pytest.raises(BleprovError):
        label_sheet_svg(label, "<script>")


@pytest.mark.parametrize("ansi", [False, True])
def test_terminal_rendering_holds_the_modules(tmp_path: Path, label: Label, ansi: bool) -> None:
    text = qr_terminal(label, ansi=ansi)
    assert ("\x1b[" in text) is ansi
    modules = qr_modules(label)
    lines = text.splitlines()
    assert len(lines) == (len(modules) + 1) // 2
    read = terminal_modules(text, ansi=ansi)
    assert read[: len(modules)] == modules
    assert all(not dark for row in read[len(modules) :] for dark in row)  # padding row
    path = save(matrix_image(read[: len(modules)]), tmp_path / "terminal.png")
    assert decode_qr_image(path) == label.qr_text


def test_zxing_reads_the_png_as_alphanumeric_text(label: Label) -> None:
    [barcode] = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr_png(label))))
    assert barcode.text == label.qr_text
    assert barcode.symbology_identifier == "]Q1"  # model 2, no ECI, no FNC1
    assert barcode.ec_level == "M"
