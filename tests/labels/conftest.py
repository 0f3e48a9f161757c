"""Labels made without a factory (no CA, no scrypt), and helpers that read renderings back."""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from bleprov.core.advertising import OobMode
from bleprov.core.factory import Label
from bleprov.core.onboarding import OnboardingPayload, generate_passcode, generate_user_password

SVG_NS = "{http://www.w3.org/2000/svg}"


def make_label(*, passcode: bool = True, card: bool = True, discriminator: int = 0xA5C) -> Label:
    modes = OobMode.QR | OobMode.CODE if passcode or card else OobMode.QR
    payload = OnboardingPayload(
        discriminator=discriminator,
        modes=modes,
        device_public_key=secrets.token_bytes(32),
        label_secret=secrets.token_bytes(16),
        passcode=generate_passcode() if passcode else None,
    )
    return Label.from_payload(payload, generate_user_password() if card else None)


@pytest.fixture
def label() -> Label:
    return make_label()


def matrix_image(modules: list[list[bool]], scale: int = 8) -> Image.Image:
    """A module matrix drawn as a grey image, ``scale`` pixels a module."""
    size = len(modules)
    image = Image.new("L", (size, size), 255)
    image.putdata([0 if dark else 255 for row in modules for dark in row])
    return image.resize((size * scale, size * scale), Image.Resampling.NEAREST)


def save(image: Image.Image, path: Path, **params: object) -> Path:
    image.save(path, **params)
    return path


_PATH_TOKEN = re.compile(r"([MmHhVvZz])\s*(-?[\d.]+)?(?:\s+(-?[\d.]+))?")


def segno_svg_modules(svg: bytes) -> list[list[bool]]:
    """Rasterise segno's SVG path: each ``h`` is a 1-unit-wide line at the current y."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    group = root.find(f"{SVG_NS}g")
    assert group is not None
    scale_match = re.fullmatch(r"scale\(([\d.]+)\)", group.get("transform", ""))
    assert scale_match is not None
    scale = float(scale_match[1])
    background, path = group.findall(f"{SVG_NS}path")
    assert background.get("fill") == "#fff"  # white under the code, for dark viewers
    assert path.get("class") == "qrline"
    size = round(float(root.get("viewBox", "").split()[2]) / scale)
    modules = [[False] * size for _ in range(size)]
    x = y = 0.0
    for command, a, b in _PATH_TOKEN.findall(path.get("d", "")):
        if command == "M":
            x, y = float(a), float(b)
        elif command == "m":
            x, y = x + float(a), y + float(b)
        elif command == "h":
            row = int(y - 0.5)
            for column in range(round(x), round(x + float(a))):
                modules[row][column] = True
            x += float(a)
        else:
            raise AssertionError(f"unexpected path command {command}")
    return modules


_SHEET_RUN = re.compile(r"M(\d+) (\d+)h(\d+)v1h-(\d+)z")


def sheet_modules(svg: bytes) -> list[list[bool]]:
    """The label sheet's QR group (``id="qr"``) back as a module matrix."""
    root = ET.fromstring(svg)
    group = root.find(f".//{SVG_NS}g[@id='qr']")
    assert group is not None
    background = group.find(f"{SVG_NS}rect")
    path = group.find(f"{SVG_NS}path")
    assert background is not None
    assert path is not None
    size = int(background.get("width", "0"))
    modules = [[False] * size for _ in range(size)]
    d = path.get("d", "")
    assert _SHEET_RUN.sub("", d) == ""
    for x, y, width, back in _SHEET_RUN.findall(d):
        assert width == back
        for column in range(int(x), int(x) + int(width)):
            modules[int(y)][column] = True
    return modules


def sheet_text(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)
    return [element.text or "" for element in root.iter(f"{SVG_NS}text")]


_ANSI_CELL = re.compile(r"(?:\x1b\[(\d+);(\d+)m)?(\u2580)")


def terminal_modules(text: str, *, ansi: bool) -> list[list[bool]]:
    """Half-block terminal text back as module rows (two per line)."""
    rows: list[list[bool]] = []
    for line in text.splitlines():
        top: list[bool] = []
        bottom: list[bool] = []
        if ansi:
            assert line.endswith("\x1b[0m")
            fg = bg = ""
            for new_fg, new_bg, _ in _ANSI_CELL.findall(line[: -len("\x1b[0m")]):
                if new_fg:
                    fg, bg = new_fg, new_bg
                top.append({"30": True, "97": False}[fg])
                bottom.append({"40": True, "107": False}[bg])
        else:
            # Light modules are ink: a dark-background terminal's convention.
            glyphs = {
                "\u2588": (False, False),
                "\u2580": (False, True),
                "\u2584": (True, False),
                " ": (True, True),
            }
            for char in line:
                upper, lower = glyphs[char]
                top.append(upper)
                bottom.append(lower)
        rows += [top, bottom]
    return rows
