"""``bleprov help [TOPIC | COMMAND...]``: short texts on what spans commands.

Each topic is a summary that points to the document holding the detail (README.md,
docs/); the texts live here together so they are kept up to date together
(tests/test_cli_help.py checks the exit codes against README's table and the
environment variables against the code). ``bleprov help COMMAND`` is ``COMMAND --help``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

EXIT_CODES = """\
Exit codes (every command):

  0    done
  1    a bleprov error: the message says what went wrong and what to do
  2    bad usage: an unknown option, a missing argument, a bad value, a
       broken config file (bleprov help config)
  3    provision, peer bind: no such device heard (check the radio, the
       label, that the device advertises: bleprov scan)
  4    provision, peer bind: authentication failed (wrong label, code or
       number; the device counted the attempt), or the device has an owner
       and its label opens nothing (ask the owner for a window code)
  5    provision: the device could not join the Wi-Fi network; nothing was
       changed on it
  130  interrupted (the device rolls back whatever was not committed)

provision --labels (several devices) exits 0 only if every device was
provisioned, else 1; each device's own code is in its --json row.
More: README.md, "Exit codes".
"""

MODES = """\
How the host proves it may set a device up (provision, peer bind):

  qr       the label's QR code (--qr-file label.txt, --qr-image photo.jpg),
           its NFC tag (--ndef) or its long printed key (--printed-key): a
           128-bit secret and the device's key. Safe anywhere; but whoever
           reads the label can set the device up: keep it in the box.
  code     the 11-digit manual code (--manual-code) or a scratch card
           (--scratch-card): one online guess per attempt, counted, lockout
           after 20. Safe anywhere.
  passkey  a display-only device shows a fresh 6-digit number; type it
           (--passkey). One guess per attempt, counted.
  compare  a device with a display and a button: both show a number, both
           people confirm it is the same (--compare), digit by digit.
  button   WPS-style: press the device's button, then --button. Nobody is
           authenticated toward the device: whoever connects first in the
           window gets in. Only where nobody else can be in radio range (a
           house, not an office or a block of flats); the host warns.
  window   a device with an owner opens nothing with its label; the owner
           opens a window with a one-time 12-digit code (peer open-window,
           zone open-window), used once with --window-code.

--compare, --passkey, --button and --scratch-card find the device by
--discriminator (bleprov scan shows it). Codes come from the environment or
a no-echo prompt, never the command line (bleprov help environment).
More: docs/security.md, "Modes: what each protects against".
"""

CONFIG = """\
Defaults for the options typed every time, so the common task is short:

  option   variable       key    commands
  --radio  BLEPROV_RADIO  radio  scan, provision, peer bind, linktest run
  --trust  BLEPROV_TRUST  trust  provision, peer bind (variable: a:b paths)
  --zone   BLEPROV_ZONE   zone   provision; zone --dir (after BLEPROV_HUB_DIR)
  --user   BLEPROV_USER   user   provision; zone revoke, open-window, user add

Precedence: the option > its variable > the config file > built-in default.
The file is TOML: $XDG_CONFIG_HOME/bleprov/config.toml, by default
~/.config/bleprov/config.toml, or the file BLEPROV_CONFIG names:

  radio = "bumble:usb:0"
  trust = ["~/factory/root.pem"]    # a path or a list; relative to the file
  zone = "~/hub"
  user = "alice"

bleprov config show: the defaults in effect, and where each comes from.
A broken file (not TOML, an unknown key, a wrong type) stops a command that
needs it with one line naming the file and the key (exit 2). No secrets in
it: a key such as passphrase or password is refused; secrets come from the
environment or a prompt. provision says when it takes a zone from the
variable or the file; --peer or --no-zone set that zone aside.
"""

LABELS = """\
A device's label (in its box; secret until the device is set up) holds a QR
code, the long printed key, the 11-digit manual code and, if issued, a
scratch card. The factory writes devices/<ID>/label.txt (QR text, codes),
label.ndef (for an NFC tag), label.png, label.svg and label-sheet.svg
(bleprov label make; bleprov label show prints one).

provision reads one label: --qr-file label.txt (any file with the BP: text),
--qr-image (a phone photo or screenshot: the photo extra, zxing-cpp and
Pillow), --ndef, or a code typed at a prompt (--printed-key, --manual-code,
--scratch-card). bleprov label decode photo.jpg checks a photo and prints
only the public fields. Several devices: bleprov help batch.

No camera capture. A label's QR code is 17 mm wide (0.5 mm a module); a
typical fixed-focus 720p laptop webcam, sharp from about 40 cm, sees some
0.4 mm a pixel there, under the 2-3 pixels a module a decoder needs (a phone
focuses at 10 cm). Reading frames would also need OpenCV or v4l2 bindings
(no 32-bit ARM wheels). Photograph the label with a phone and give the file
(--qr-image), or grab a still from a camera that can focus that close:
  ffmpeg -f v4l2 -i /dev/video0 -frames:v 1 shot.jpg   then --qr-image shot.jpg
More: README.md, "Labels"; docs/protocol.md, section 10.
"""

BATCH = """\
provision --labels PATH sets several devices up from one host, in turn:

  bleprov provision --labels devices/ --wifi-ssid Home --zone hub --user alice
  bleprov provision --labels photos/ --peer --no-wifi --json

PATH is a directory (device directories holding a label.txt, as the factory
writes them; label files, .txt or .ndef; photos) or a file listing them, one
a line: a path (relative to the list) or the BP: QR text; # for comments.
Every device gets the same Wi-Fi (network and password asked once) and the
same zone (hub opened, admin signed in, once) or peer binding. A failure
does not stop the others; the end is a table (label, device, result, time,
reason), or with --json a list. Exit 0 only if every device was provisioned,
else 1. One at a time: a host has one adapter, and a question one device
asks (compare, passkey, a Wi-Fi password) must not mix with another's.
"""

RADIOS = """\
--radio names the Bluetooth radio a command uses:

  system              the host's own stack through bleak (BlueZ,
                      CoreBluetooth, WinRT): the host commands' default
  bluez               the device side's system stack (device serve,
                      linktest serve)
  bumble:<transport>  bumble driving a controller itself: bumble:usb:0 or
                      bumble:serial:/dev/ttyACM0 (an HCI dongle BlueZ does
                      not hold), bumble:tcp-client:127.0.0.1:9100 (virtual)
  virtual[:PORT]      device serve on a controller of bleprov radio hub

bleprov radio hub --ports 9100,9101 serves virtual controllers on loopback:
devices and hosts in separate processes, no hardware. A bumble radio takes
an address from the device ID (device side) or BLEPROV_BUMBLE_ADDRESS.
Set your usual radio once: BLEPROV_RADIO or the config (bleprov help config).
More: README.md, "Real radios"; docs/architecture.md, "Radios";
docs/raspberry-pi.md.
"""

ENVIRONMENT = """\
Secrets (never on the command line; unset, a no-echo prompt on a terminal):

  BLEPROV_FACTORY_PASSPHRASE   the factory's CA keys (factory, label make)
  BLEPROV_DEVICE_PASSPHRASE    a device's sealed record (factory, device init)
  BLEPROV_ZONE_PASSPHRASE      the zone CA's keys (zone, provision --zone)
  BLEPROV_USER_PASSPHRASE      the acting zone user's (or their key's)
  BLEPROV_NEW_USER_PASSPHRASE  zone user add: the new user's
  BLEPROV_WIFI_PASSWORD        provision: Wi-Fi (or --wifi-password-file)
  BLEPROV_MANUAL_CODE          provision --manual-code
  BLEPROV_PRINTED_KEY          provision --printed-key
  BLEPROV_CARD_USER            provision --scratch-card: the card's user
  BLEPROV_CARD_PASSWORD        provision --scratch-card: its password
  BLEPROV_WINDOW_CODE          --window-code: the owner's one-time code
  BLEPROV_BROKER_USER          provision --via: the MQTT broker's user
  BLEPROV_BROKER_PASSWORD      provision --via: its password
  CREDENTIALS_DIRECTORY        systemd's LoadCredential= files (serve)

Defaults and places:

  BLEPROV_RADIO, BLEPROV_TRUST, BLEPROV_ZONE, BLEPROV_USER: help config
  BLEPROV_CONFIG               the config file's path
  BLEPROV_HUB_DIR              zone commands' --dir
  BLEPROV_HOST_DIR             this host's peer identity and pins
                               (default ~/.local/share/bleprov/host)
  BLEPROV_BUMBLE_ADDRESS       the address a bumble radio takes
  BLEPROV_BUMBLE_TRANSPORT     the bleak-on-bumble backend's transport
  BLEPROV_HW_*                 hardware tests (README.md, "Real radios")
"""

COMPLETION = """\
Completion of commands and options: print the script for your shell, put it
where the shell loads completions, open a new shell.

  bleprov completion bash > ~/.local/share/bash-completion/completions/bleprov
  bleprov completion zsh > "${fpath[1]}/_bleprov"     (then: compinit)
  bleprov completion fish > ~/.config/fish/completions/bleprov.fish

Or in this shell only: eval "$(bleprov completion bash)".
"""

#: Topic name -> (one line for the list, the text).
TOPICS: dict[str, tuple[str, str]] = {
    "batch": ("several devices from one host: provision --labels", BATCH),
    "completion": ("shell completion for bash, zsh, fish", COMPLETION),
    "config": ("defaults for --radio, --trust, --zone, --user", CONFIG),
    "environment": ("every environment variable bleprov reads", ENVIRONMENT),
    "exit-codes": ("what each exit code means", EXIT_CODES),
    "labels": ("what a label holds and how provision reads it (no camera: why)", LABELS),
    "modes": ("the out-of-band modes, and when each is safe", MODES),
    "radios": ("--radio: system, bluez, bumble:<transport>, virtual", RADIOS),
}


def _complete_topic(incomplete: str) -> list[str]:
    return [name for name in TOPICS if name.startswith(incomplete)]


def help_command(
    ctx: typer.Context,
    words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[TOPIC | COMMAND...]",
            help="A topic, or a command (help provision = provision --help).",
            autocompletion=_complete_topic,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Topics that span commands (exit codes, modes, config, ...); without one, the list."""
    # Plain text, as written (lines under 80 columns): no markup, no re-wrapping.
    if not words:
        typer.echo("bleprov help TOPIC, one of:")
        width = max(map(len, TOPICS))
        for name, (summary, _) in TOPICS.items():
            typer.echo(f"  {name:<{width}}  {summary}")
        typer.echo("bleprov help COMMAND (or bleprov COMMAND --help): a command's options.")
        return
    if len(words) == 1 and words[0] in TOPICS:
        typer.echo(TOPICS[words[0]][1], nl=False)
        return
    root = ctx.find_root()
    command: Any = root.command
    defaults = root.default_map  # the config file's defaults, shown in the help
    for word in words:
        command = getattr(command, "commands", {}).get(word)
        defaults = defaults.get(word) if defaults is not None else None
        if command is None:
            typer.echo(
                f"error: no help topic or command {' '.join(words)!r}: topics are "
                f"{', '.join(TOPICS)}; commands: bleprov --help",
                err=True,
            )
            raise typer.Exit(2)
    command.main(
        ["--help"],
        prog_name=f"bleprov {' '.join(words)}",
        standalone_mode=False,
        default_map=defaults,
    )
