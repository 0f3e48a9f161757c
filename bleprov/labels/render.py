"""Render a label: its QR code as PNG, SVG and terminal text, and a printable label sheet.

The QR code holds the label's QR text (``BP:`` + base-38) in alphanumeric mode at error
correction level M, the level the payload was sized for (:mod:`bleprov.core.onboarding`:
version 4-M, or 5-M with a passcode). segno is told not to raise the level by itself,
and the version it picks is checked against the core's capacity table, so the printed
symbol is the one the core's design predicts.

Everything rendered here carries the label secret: callers write it with mode 0600 and
tell the user it is secret.
"""

from __future__ import annotations

import io
from typing import Final
from xml.sax.saxutils import escape, quoteattr

import segno

from bleprov.core.advertising import OobMode, format_discriminator
from bleprov.core.factory import Label
from bleprov.core.identity import validate_device_id
from bleprov.core.mode_bits import mode_names
from bleprov.core.onboarding import (
    QR_ALPHANUMERIC,
    QrErrorCorrection,
    encode_user_password,
    smallest_qr_version,
)
from bleprov.labels.errors import LabelError

#: Error correction level of the payload's design (core.onboarding, encode_qr).
QR_ERROR_CORRECTION: Final[QrErrorCorrection] = "M"
#: Light modules around the symbol, as ISO/IEC 18004 requires for reliable scanning.
QUIET_ZONE: Final = 4
#: Printed module size: 0.5 mm gives a 22.5 mm symbol for version 5, which a phone reads
#: from 10-20 cm and a 300 dpi label printer draws cleanly (6 dots per module).
MODULE_MM: Final = 0.5
#: PNG pixels per module; the PNG's DPI is set so it also prints at MODULE_MM.
PNG_SCALE: Final = 10
_MM_PER_INCH: Final = 25.4


def qr_symbol(label: Label) -> segno.QRCode:
    """The label's QR code: alphanumeric mode, level M, smallest version, no boost."""
    text = label.qr_text
    if any(char not in QR_ALPHANUMERIC for char in text):
        raise LabelError("label QR text has characters outside the QR alphanumeric set")
    try:
        expected = smallest_qr_version(text, QR_ERROR_CORRECTION)
    except ValueError:
        raise LabelError("label QR text is too long for a QR code up to version 10") from None
    symbol = segno.make_qr(
        text, error=QR_ERROR_CORRECTION.lower(), mode="alphanumeric", boost_error=False
    )
    if symbol.version != expected or symbol.error != QR_ERROR_CORRECTION:
        raise LabelError(
            f"segno chose QR {symbol.version}-{symbol.error}, the payload was designed for"
            f" {expected}-{QR_ERROR_CORRECTION}: check the segno version"
        )
    return symbol


def qr_modules(label: Label) -> list[list[bool]]:
    """The symbol's modules (True = dark), quiet zone included."""
    symbol = qr_symbol(label)
    size = len(symbol.matrix) + 2 * QUIET_ZONE
    rows = [[False] * size for _ in range(QUIET_ZONE)]
    for row in symbol.matrix:
        light = [False] * QUIET_ZONE
        rows.append(light + [bool(module) for module in row] + light)
    rows.extend([False] * size for _ in range(QUIET_ZONE))
    return rows


def qr_png(label: Label, *, scale: int = PNG_SCALE) -> bytes:
    """The QR code as a 1-bit PNG, ``scale`` pixels per module, DPI set for MODULE_MM."""
    if not 1 <= scale <= 100:
        raise LabelError(f"PNG scale must be 1..100 pixels per module, not {scale}")
    out = io.BytesIO()
    dpi = round(scale * _MM_PER_INCH / MODULE_MM)
    qr_symbol(label).save(out, kind="png", scale=scale, border=QUIET_ZONE, dpi=dpi)
    return out.getvalue()


def qr_svg(label: Label, *, module_mm: float = MODULE_MM) -> bytes:
    """The QR code as SVG, sized in millimetres (``module_mm`` per module)."""
    if not 0.1 <= module_mm <= 10:
        raise LabelError(f"module size must be 0.1..10 mm, not {module_mm}")
    out = io.BytesIO()
    qr_symbol(label).save(
        out,
        kind="svg",
        scale=module_mm,
        unit="mm",
        border=QUIET_ZONE,
        title="bleprov setup code (secret)",
        light="#fff",
    )
    return out.getvalue()


# ------------------------------------------------------------------------ terminal

_UPPER_HALF: Final = "\u2580"
_LOWER_HALF: Final = "\u2584"
_FULL_BLOCK: Final = "\u2588"
_FG: Final = {True: "30", False: "97"}  # dark module: black; light: bright white
_BG: Final = {True: "40", False: "107"}


def qr_terminal(label: Label, *, ansi: bool) -> str:
    """The QR code as text, two module rows per line (half blocks), quiet zone included.

    With ``ansi`` every cell sets black and white explicitly, so a phone reads it on a
    light or a dark terminal. Without (output piped, NO_COLOR), light modules are drawn as
    ink, as ``qrencode -t UTF8`` does: that reads on a dark background only.
    """
    rows = qr_modules(label)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines: list[str] = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        if ansi:
            cells: list[str] = []
            previous: tuple[bool, bool] | None = None
            for pair in zip(top, bottom, strict=True):
                if pair != previous:
                    cells.append(f"\x1b[{_FG[pair[0]]};{_BG[pair[1]]}m")
                    previous = pair
                cells.append(_UPPER_HALF)
            lines.append("".join(cells) + "\x1b[0m")
        else:
            glyphs = {
                (False, False): _FULL_BLOCK,
                (False, True): _UPPER_HALF,
                (True, False): _LOWER_HALF,
                (True, True): " ",
            }
            lines.append("".join(glyphs[pair] for pair in zip(top, bottom, strict=True)))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- label sheet

#: A credit-card-sized label (ISO/IEC 7810 ID-1 is 85.6 x 54 mm): fits a card printer,
#: a sticker sheet or a box insert.
SHEET_WIDTH_MM: Final = 85.0
SHEET_HEIGHT_MM: Final = 54.0
_MARGIN: Final = 3.0
_QR_MM: Final = 32.0
_MONO: Final = "DejaVu Sans Mono, Menlo, Consolas, monospace"
_SANS: Final = "DejaVu Sans, Helvetica, Arial, sans-serif"
_KEY_GROUPS_PER_LINE: Final = 8


def _modes_text(modes: OobMode) -> str:
    return ", ".join(mode_names(modes))


def _qr_path(modules: list[list[bool]]) -> str:
    """An SVG path of the dark modules, one rectangle per horizontal run (1 unit each)."""
    parts: list[str] = []
    for y, row in enumerate(modules):
        x = 0
        while x < len(row):
            if not row[x]:
                x += 1
                continue
            start = x
            while x < len(row) and row[x]:
                x += 1
            parts.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
    return "".join(parts)


def _text(
    x: float, y: float, value: str, *, size: float, mono: bool = False, bold: bool = False
) -> str:
    family = _MONO if mono else _SANS
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x:g}" y="{y:g}" font-family={quoteattr(family)} font-size="{size:g}"'
        f"{weight}>{escape(value)}</text>"
    )


def label_sheet_svg(label: Label, device_id: str) -> bytes:
    """A printable label (85 x 54 mm): QR code, device ID, printed key, codes, a warning.

    Sized in millimetres; print at 100 % (no "fit to page"), so the QR code's modules
    stay 0.6 mm or more. The QR code is the group with ``id="qr"``: its path draws the
    dark modules in module units, quiet zone included.
    """
    validate_device_id(device_id)
    payload = label.payload
    modules = qr_modules(label)
    unit = _QR_MM / len(modules)
    right = _MARGIN + _QR_MM + 2.0
    body: list[str] = [
        f'<rect width="{SHEET_WIDTH_MM:g}" height="{SHEET_HEIGHT_MM:g}" fill="#fff"'
        ' stroke="#000" stroke-width="0.2"/>',
        f'<g id="qr" transform="translate({_MARGIN:g} {_MARGIN:g}) scale({unit:.6f})">'
        f'<rect width="{len(modules)}" height="{len(modules)}" fill="#fff"/>'
        f'<path fill="#000" d="{_qr_path(modules)}"/></g>',
        _text(right, 7.5, "bleprov setup label", size=3.4, bold=True),
        _text(right, 12.0, "Device ID", size=2.2),
        _text(right, 15.2, device_id, size=2.8, mono=True),
        _text(
            right, 19.6, f"Discriminator {format_discriminator(payload.discriminator)}", size=2.4
        ),
        _text(right, 23.2, f"Modes: {_modes_text(payload.modes)}", size=2.4),
    ]
    if label.manual_code is not None:
        body.append(_text(right, 28.0, "Manual code", size=2.2))
        body.append(_text(right, 31.8, label.manual_code, size=3.4, mono=True, bold=True))
    groups = label.printed_key.split("-")
    y = _MARGIN + _QR_MM + 2.5
    body.append(_text(_MARGIN, y, "Printed key (type it if the camera fails)", size=2.0))
    for i in range(0, len(groups), _KEY_GROUPS_PER_LINE):
        y += 3.0
        line = "-".join(groups[i : i + _KEY_GROUPS_PER_LINE])
        body.append(_text(_MARGIN, y, line, size=2.6, mono=True))
    if label.scratch_card is not None:
        y += 3.1
        body.append(
            _text(_MARGIN, y, encode_user_password(label.scratch_card), size=2.4, mono=True)
        )
    body.append(
        _text(
            _MARGIN,
            SHEET_HEIGHT_MM - 1.4,
            "SECRET until bound to its owner; void after, until a hand reset.",
            size=2.0,
            bold=True,
        )
    )
    svg = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SHEET_WIDTH_MM:g}mm"'
        f' height="{SHEET_HEIGHT_MM:g}mm" viewBox="0 0 {SHEET_WIDTH_MM:g} {SHEET_HEIGHT_MM:g}">\n'
        "<title>bleprov setup label (secret)</title>\n" + "\n".join(body) + "\n</svg>\n"
    )
    return svg.encode("utf-8")


__all__ = [
    "MODULE_MM",
    "PNG_SCALE",
    "QR_ERROR_CORRECTION",
    "QUIET_ZONE",
    "SHEET_HEIGHT_MM",
    "SHEET_WIDTH_MM",
    "label_sheet_svg",
    "qr_modules",
    "qr_png",
    "qr_svg",
    "qr_symbol",
    "qr_terminal",
]
