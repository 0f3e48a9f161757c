"""``bleprov label``: make a device's printable label, show it, read a photo of one.

``make`` issues the device exactly as ``bleprov factory device`` does (same helper) and
adds the rendered QR code and label sheet beside ``label.txt`` and ``label.ndef``. Every
label file carries the label secret until the device is bound to its owner, so all are written
0600; ``show`` and ``make --terminal`` print the secret on purpose and say so;
``decode`` prints only the public fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from bleprov.cli import EXIT_ERROR, console, err_console, issue_from_factory
from bleprov.core.errors import BleprovError

if TYPE_CHECKING:  # imported where used: ``--help`` loads no cryptography
    from bleprov.core.factory import Label
    from bleprov.core.onboarding import OnboardingPayload

label_app = typer.Typer(help="Device labels: make (PNG, SVG, sheet, NFC), show, decode a photo.")

#: The files ``label make`` writes into the device directory, besides device.bin.
LABEL_FILES = ("label.png", "label.svg", "label-sheet.svg", "label.ndef", "label.txt")
LABEL_WARNING = (
    "SECRET: whoever sees this label can set the device up before you do; keep it off"
    " screen shares, logs and photos until you have bound the device (peer or zone)."
    " After that it opens nothing, until the device is reset by hand."
)


def _fail(exc: BleprovError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
    return typer.Exit(EXIT_ERROR)


def _use_ansi() -> bool:
    """Colour the terminal QR code only on a terminal that takes colour (not NO_COLOR)."""
    return console.is_terminal and not console.no_color and console.color_system is not None


def write_label_files(directory: Path, label: Label, device_id: str) -> list[Path]:
    """Render the label into ``directory`` (0600, atomic); return the paths written."""
    from bleprov.labels import label_sheet_svg, qr_png, qr_svg
    from bleprov.store.files import write_atomic

    rendered = {
        "label.png": qr_png(label),
        "label.svg": qr_svg(label),
        "label-sheet.svg": label_sheet_svg(label, device_id),
    }
    for name, data in rendered.items():
        write_atomic(directory / name, data)
    return [directory / name for name in LABEL_FILES]


def print_label(label: Label, device_id: str) -> None:
    """The QR code in the terminal and the printed codes, under a secret warning."""
    from bleprov.core.advertising import format_discriminator
    from bleprov.core.onboarding import encode_user_password
    from bleprov.labels import qr_terminal

    console.print(f"[bold yellow]{LABEL_WARNING}[/]", highlight=False)
    console.print(
        f"device {device_id}, discriminator {format_discriminator(label.payload.discriminator)}",
        highlight=False,
    )
    typer.echo(qr_terminal(label, ansi=_use_ansi()), nl=False)
    console.print(
        f"Printed key:  {label.printed_key}", highlight=False, markup=False, soft_wrap=True
    )
    if label.manual_code is not None:
        console.print(
            f"Manual code:  {label.manual_code}", highlight=False, markup=False, soft_wrap=True
        )
    if label.scratch_card is not None:
        card = encode_user_password(label.scratch_card)
        console.print(f"Scratch card: {card}", highlight=False, markup=False, soft_wrap=True)


@label_app.command("make")
def make(
    directory: Annotated[Path, typer.Option("--dir", help="Factory directory.")],
    out: Annotated[Path, typer.Option(help="Where device directories go.")],
    modes: Annotated[
        str, typer.Option(help="Comma-separated: qr,code,compare,passkey,button.")
    ] = "qr,code",
    scratch_card: Annotated[bool, typer.Option(help="Also issue a user/password card.")] = False,
    terminal: Annotated[
        bool, typer.Option(help="Also print the QR code and codes here (secret).")
    ] = False,
) -> None:
    """Issue a device identity and write its label: PNG, SVG, label sheet, NFC, text.

    Passphrases: BLEPROV_FACTORY_PASSPHRASE and BLEPROV_DEVICE_PASSPHRASE (or prompts).
    """
    from bleprov.core.advertising import format_discriminator

    issued = issue_from_factory(directory, out, modes, scratch_card=scratch_card)
    try:
        written = write_label_files(issued.directory, issued.label, issued.device_id)
    except BleprovError as exc:
        raise _fail(exc) from None
    console.print(
        f"device {issued.device_id}, discriminator "
        f"{format_discriminator(issued.label.payload.discriminator)}: {issued.directory}",
        highlight=False,
    )
    for path in written:
        console.print(f"  {path}", highlight=False)
    console.print(
        "print label-sheet.svg at 100 % (85 x 54 mm); every label file is secret:"
        " keep it with the device",
        highlight=False,
    )
    if terminal:
        print_label(issued.label, issued.device_id)


@label_app.command("show")
def show(
    device_dir: Annotated[
        Path, typer.Argument(metavar="DIR", help="A device directory (devices/<ID>).")
    ],
) -> None:
    """Print a device's QR code in the terminal and its printed codes (secret)."""
    from bleprov.store.factory_files import read_label

    try:
        label = read_label(device_dir)
    except BleprovError as exc:
        raise _fail(exc) from None
    print_label(label, device_dir.resolve().name)


def public_fields(payload: OnboardingPayload) -> dict[str, Any]:
    """What a label tells anyone: no key, no label secret, no passcode."""
    from bleprov.core.mode_bits import mode_names

    return {
        "version": payload.version,
        "discriminator": payload.discriminator,
        "modes": mode_names(payload.modes),
        "passcode_on_label": payload.passcode is not None,
    }


@label_app.command("decode")
def decode(
    image: Annotated[
        Path, typer.Argument(metavar="IMAGE", help="A photo or screenshot of the label.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Read the QR code in a photo or screenshot; print its public fields only."""
    from bleprov.core.advertising import format_discriminator
    from bleprov.core.onboarding import parse_qr
    from bleprov.labels import decode_qr_image

    try:
        fields = public_fields(parse_qr(decode_qr_image(image)))
    except BleprovError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(fields, sort_keys=True))
        return
    console.print("bleprov setup code found", highlight=False)
    console.print(
        f"  discriminator  {format_discriminator(fields['discriminator'])}", highlight=False
    )
    console.print(f"  modes          {', '.join(fields['modes'])}", highlight=False)
    console.print(
        f"  passcode       {'on the label' if fields['passcode_on_label'] else 'none'}",
        highlight=False,
    )
