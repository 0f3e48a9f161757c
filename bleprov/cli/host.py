"""The laptop's commands: ``bleprov scan``, ``bleprov provision``, ``bleprov peer``.

Secrets never come from argv: a label is read from a file (its text, an NFC dump, or a
photo of its QR code), a code or a password from the environment or a no-echo prompt.

Exit codes beside 0/1/2/130: 3 no such device found, 4 authentication failed (wrong
label, code or number; the device counts the attempt), 5 the device could not join the
Wi-Fi network (nothing was changed on it).

Questions asked during the handshake (compare the number, type the device's number) are
asked with the spinner stopped: a rich status redraws its line and erased them. Every
question goes through :mod:`bleprov.cli.prompts`: one Ctrl-C is exit 130, and the time a
person takes to answer is not counted in the durations ``provision`` reports.

What the options cannot do is refused before any radio is opened (exit 2): no way to
authenticate, nothing to do (``--no-wifi`` without ``--zone`` or ``--peer``), no network
named and no terminal to choose one on, a timeout that is not a positive number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from bleprov.cli import DISCRIMINATOR_METAVAR, check_radio, parse_discriminator_option
from bleprov.cli.config import RADIO_ENV, TRUST_ENV, USER_ENV, ZONE_ENV, zone_default
from bleprov.cli.output import print_table
from bleprov.cli.prompts import ask, ask_yes_no, seconds_at_prompts
from bleprov.core.errors import BleprovError

if TYPE_CHECKING:
    import ssl

    from rich.status import Status

    from bleprov.core.advertising import ServiceData
    from bleprov.core.enrolment.messages import WifiStatus
    from bleprov.core.onboarding import OnboardingPayload
    from bleprov.core.session import host as hst
    from bleprov.core.wifi import ScanResult, WifiCredentials, WifiSecurity
    from bleprov.core.window import WindowPurpose
    from bleprov.radio.host_link import CentralRadio
    from bleprov.radio.spec import RadioSpec
    from bleprov.service.host_session import DeviceAuthentication
    from bleprov.service.provisioning import (
        PeerPlan,
        ProvisionReport,
        Redial,
        WifiChooser,
        ZonePlan,
    )
    from bleprov.service.trust import HostTrust
    from bleprov.session import SecureHostLink

EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTHENTICATION = 4
EXIT_WIFI = 5

WIFI_PASSWORD_ENV = "BLEPROV_WIFI_PASSWORD"  # noqa: S105 (a variable's name)
MANUAL_CODE_ENV = "BLEPROV_MANUAL_CODE"
WINDOW_CODE_ENV = "BLEPROV_WINDOW_CODE"
PRINTED_KEY_ENV = "BLEPROV_PRINTED_KEY"
CARD_USER_ENV = "BLEPROV_CARD_USER"
CARD_PASSWORD_ENV = "BLEPROV_CARD_PASSWORD"  # noqa: S105 (a variable's name)
HOST_DIR_ENV = "BLEPROV_HOST_DIR"
BROKER_USER_ENV = "BLEPROV_BROKER_USER"
BROKER_PASSWORD_ENV = "BLEPROV_BROKER_PASSWORD"  # noqa: S105 (a variable's name)

QR_TOKEN = re.compile(r"BP:[0-9A-Z.\-]+")
#: ``--wifi-security``'s words and the :class:`WifiSecurity` each names.
_SECURITY = {
    "open": "OPEN",
    "wpa2": "WPA2_PERSONAL",
    "wpa3": "WPA3_PERSONAL",
    "wpa2-wpa3": "WPA2_WPA3_PERSONAL",
}
#: The device's scan shows at most this many networks; the user picks one of them.
SHOWN_NETWORKS = 30
NO_NETWORK_NAMED = (
    "no terminal to choose the Wi-Fi network on: name it with --wifi-ssid (or skip the "
    "Wi-Fi step with --no-wifi)"
)


class HostError(BleprovError):
    """Something the user gave the host command cannot be used (says what to do)."""


class HostUsage(HostError):
    """The options do not make a command: one missing, or two that exclude each other
    (exit 2, like typer's own usage errors)."""


def default_host_dir() -> Path:
    """Where the laptop keeps its peer identity and pins (encrypted): XDG data home."""
    if value := os.environ.get(HOST_DIR_ENV):
        return Path(value)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bleprov" / "host"


def host_trust(directory: Path, name: str | None = None) -> HostTrust:
    """The host's encrypted store (0600 key file beside it) and its peer identity."""
    from bleprov import DeviceStore, HostTrust, KeyFileProvider

    store = DeviceStore(directory / "store", KeyFileProvider(directory / "store.key"))
    return HostTrust(store, name=name or _host_name())


def _host_name() -> str:
    """The name a new host identity is made with (kept with it afterwards): the machine's
    name and a random tag, since two laptops may share a name and a device never lets a
    pinned name move to another key."""
    import secrets

    raw = os.uname().nodename.split(".")[0] or "host"
    cleaned = re.sub(r"[^A-Za-z0-9._@-]", "-", raw)[:56]
    cleaned = cleaned if cleaned[:1].isalnum() else f"h{cleaned}"[:56]
    return f"{cleaned}-{secrets.token_hex(3)}"


# ------------------------------------------------------------------------------- scan


async def scan_devices(console: Console, radio: str, timeout: float, as_json: bool) -> None:
    """``bleprov scan``. On a terminal the first line (a spinner) shows before the radio
    stack is imported and opened: bleak, and bumble for a bumble radio, take longer to
    load than the rest of the command."""
    from bleprov.radio.spec import RadioSpec

    spec = RadioSpec.parse(radio)
    with contextlib.ExitStack() as spinner:
        status = None if as_json else spinner.enter_context(console.status(f"opening {spec}..."))
        from bleprov.radio.host_link import scan
        from bleprov.radio.spec import open_central

        async with open_central(spec) as central:
            if status is not None:
                status.update(f"scanning on {spec} for {timeout:g} s...")
            found = await scan(central, timeout=timeout)
    from rich.table import Table

    from bleprov.core.advertising import AdvertisedFlags, as_mapping
    from bleprov.core.words import words

    rows = [
        {
            "address": f.device.address,
            "name": f.local_name,
            "rssi": f.rssi,
            **{k: v for k, v in as_mapping(f.service_data).items()},
        }
        for f in found
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"no bleprov device heard on {spec} within {timeout:g} s")
        return
    from bleprov.core.advertising import format_discriminator

    table = Table(title=f"bleprov devices on {spec}")
    columns = ("address", "name", "state", "modes", "discriminator", "RSSI", "open to", "busy")
    for column in columns:
        table.add_column(column)
    for f in found:
        data = f.service_data
        table.add_row(
            f.device.address,
            escape(f.local_name or ""),
            words(data.state),
            ",".join(m.name.lower() for m in type(data.modes) if m in data.modes and m.name),
            format_discriminator(data.discriminator),
            f"{f.rssi} dBm",
            _open_to(data),
            "yes" if AdvertisedFlags.BUSY in data.flags else "",
        )
    print_table(console, table)


def _open_to(data: ServiceData) -> str:
    """Who may get in now, beyond the label: the owner's window code, or a button press."""
    from bleprov.core.advertising import AdvertisedFlags

    if AdvertisedFlags.WINDOW_OPEN in data.flags:
        return "window code"
    if AdvertisedFlags.BUTTON_WINDOW_OPEN in data.flags:
        return "button"
    return ""


# -------------------------------------------------------------------------- provision


@dataclass
class LabelSource:
    """Exactly one way the user proves they hold the device's label (or is next to it)."""

    qr_file: Path | None = None
    qr_image: Path | None = None
    ndef: Path | None = None
    printed_key: bool = False
    manual_code: bool = False
    scratch_card: bool = False
    compare: bool = False
    button: bool = False
    window_code: bool = False
    discriminator: int | None = None
    passkey: bool = False

    def authentication(self) -> DeviceAuthentication:
        from bleprov.core.onboarding import PayloadError

        try:
            return self._authentication()
        except PayloadError as exc:
            raise HostError(
                f"that is not a valid bleprov label ({exc}): check it was copied or "
                "photographed whole, from this device's label"
            ) from None

    def _authentication(self) -> DeviceAuthentication:
        from bleprov import DeviceAuthentication
        from bleprov.core.errors import MalformedData

        chosen = [
            name
            for name in (
                "qr_file",
                "qr_image",
                "ndef",
                "printed_key",
                "manual_code",
                "scratch_card",
                "compare",
                "passkey",
                "button",
                "window_code",
            )
            if getattr(self, name)
        ]
        if len(chosen) != 1:
            raise HostUsage(
                "say how to authenticate, exactly once: --qr-file, --qr-image, --ndef, "
                "--printed-key, --manual-code, --scratch-card, --compare, --passkey, --button, "
                "or --window-code (a device that has an owner)"
            )
        if self.window_code:
            text = _secret_text(WINDOW_CODE_ENV, "Window code (from the device's owner)")
            try:
                return DeviceAuthentication.window(text, discriminator=self.discriminator)
            except MalformedData as exc:
                raise HostError(str(exc)) from None
        if self.qr_file is not None:
            match = QR_TOKEN.search(_read(self.qr_file, "QR text"))
            if match is None:
                raise HostError(f"{self.qr_file} holds no bleprov QR text (BP:...)")
            return DeviceAuthentication.from_qr_text(match.group(0))
        if self.qr_image is not None:
            from bleprov.labels import decode_qr_image

            return DeviceAuthentication.from_qr_text(decode_qr_image(self.qr_image))
        if self.ndef is not None:
            try:
                return DeviceAuthentication.from_ndef(self.ndef.read_bytes())
            except OSError as exc:
                raise HostError(f"cannot read {self.ndef}: {exc.strerror}") from None
        if self.printed_key:
            return DeviceAuthentication.from_payload(read_printed_key())
        if self.manual_code:
            return DeviceAuthentication.from_manual_code(
                _secret_text(MANUAL_CODE_ENV, "Manual code"), discriminator=self.discriminator
            )
        if self.scratch_card:
            user = os.environ.get(CARD_USER_ENV) or str(ask("Scratch card user"))
            return DeviceAuthentication.from_scratch_card(
                user,
                _secret_text(CARD_PASSWORD_ENV, "Scratch card password"),
                discriminator=self.discriminator,
            )
        if self.compare:
            return DeviceAuthentication.compare(discriminator=self.discriminator)
        if self.passkey:
            return DeviceAuthentication.passkey(discriminator=self.discriminator)
        return DeviceAuthentication.button(discriminator=self.discriminator)


#: Tries at typing the printed key, each told where it went wrong, before giving up.
PRINTED_KEY_TRIES = 5
#: What the echo of a typed key starts with: as wide as the prompt, so the two align.
_READ_BACK = "    read as: "


def read_printed_key() -> OnboardingPayload:
    """The label's long printed key, from BLEPROV_PRINTED_KEY or typed at a prompt.

    Typed, it is shown as it is typed and read back in the label's groups of four, and a
    mistake is located as precisely as the key's format tells (a wrong character, a
    short group; a wrong or swapped one only as "somewhere": the key has one check
    character), then asked again. Blind, 83 characters were mistyped with no way to find
    where. The key is secret until the device is bound, but it is read off a label in
    the user's hand on the user's own terminal, as a Matter manual code or a WPS PIN is:
    whoever sees the screen sees the label beside it. It never goes to argv or a log.
    """
    from bleprov.cli import err_console
    from bleprov.core.onboarding import (
        PRINTED_KEY_GROUP,
        PrintedKeyError,
        parse_printed_key,
        regroup_printed_key,
    )

    if (given := os.environ.get(PRINTED_KEY_ENV)) is not None:
        try:
            return parse_printed_key(given)
        except PrintedKeyError as exc:
            raise HostError(f"{PRINTED_KEY_ENV}: {exc}") from None
    if not sys.stdin.isatty():
        raise HostError(f"set {PRINTED_KEY_ENV} or run interactively")
    err_console.print(
        "Type the printed key from the label, in its groups of four: spaces, dashes and case "
        "do not matter, O reads as 0, I and L as 1. It shows as you type (keep this screen "
        "to yourself until the device is bound).",
        highlight=False,
        soft_wrap=True,
    )
    for _ in range(PRINTED_KEY_TRIES):
        typed = str(typer.prompt("Printed key", err=True))  # "Printed key: ", as _READ_BACK
        shown = regroup_printed_key(typed)
        err_console.print(_READ_BACK + shown, markup=False, highlight=False, soft_wrap=True)
        try:
            return parse_printed_key(typed)
        except PrintedKeyError as exc:
            step = PRINTED_KEY_GROUP + 1  # a group and its dash, in the echo
            if exc.group is not None and len(shown) > (exc.group - 1) * step:
                # Under the group, in the echo: the label's groups, as typed up to there.
                mark = " " * (len(_READ_BACK) + (exc.group - 1) * step) + "^" * PRINTED_KEY_GROUP
                err_console.print(mark, markup=False, highlight=False, soft_wrap=True)
            err_console.print(
                f"[yellow]{escape(str(exc))}[/]; type it again", highlight=False, soft_wrap=True
            )
    raise HostError(
        f"the printed key was mistyped {PRINTED_KEY_TRIES} times: check that the label is "
        "this device's; its QR code (--qr-image, a photo) or manual code (--manual-code, "
        "11 digits) are quicker"
    )


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise HostError(f"cannot read the {what} file {path}: {exc.strerror}") from None


def _secret_text(env: str, prompt: str) -> str:
    from bleprov.cli import secret_input

    return secret_input(env, prompt).decode()


def _broker_tls(ca_file: Path | None) -> ssl.SSLContext:
    """TLS to the broker: the system's CAs, or the broker's own CA file."""
    import ssl

    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def load_roots(paths: list[Path]) -> tuple[bytes, ...]:
    """Manufacturer roots (PEM or DER files) the host trusts for attestation."""
    from bleprov.core.crypto import pki
    from bleprov.core.crypto.loading import (
        UnreadableCertificate,
        load_der_certificate,
        load_pem_certificates,
    )

    roots: list[bytes] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise HostError(f"cannot read the trust root {path}: {exc.strerror}") from None
        try:
            certificates = (
                load_pem_certificates(data)
                if b"-----BEGIN" in data
                else [load_der_certificate(data)]
            )
        except UnreadableCertificate:
            raise HostError(f"{path} is not a PEM or DER certificate") from None
        roots += [pki.der(c) for c in certificates]
    return tuple(roots)


@dataclass
class WifiChoice:
    ssid: str | None
    security: str
    password_file: Path | None
    skip: bool
    #: --wifi-hidden: the network does not broadcast its name (the device probes for it).
    hidden: bool = False


class PromptingChooser:
    """Picks the network from the device's scan (or --wifi-ssid) and asks for passwords."""

    def __init__(self, console: Console, choice: WifiChoice) -> None:
        self.console = console
        self.choice = choice
        self.interactive = sys.stdin.isatty()

    def preset(self) -> WifiCredentials | None:
        """The network named with its security (--wifi-ssid and --wifi-security): sent
        without asking the device for a scan, in the commit's flight (one round trip and
        the scan's wait less). Named without its security, the scan tells what it is."""
        from bleprov.core.wifi import WifiSecurity

        if self.choice.ssid is None or self.choice.security == "auto":
            return None
        ssid = self.choice.ssid.encode()
        security = WifiSecurity[_SECURITY[self.choice.security]]
        passphrase = None if security is WifiSecurity.OPEN else self._password(ssid, first=True)
        return _typed_credentials(ssid, security, passphrase=passphrase, hidden=self.choice.hidden)

    async def choose(self, results: list[ScanResult]) -> WifiCredentials | None:
        from bleprov.core.wifi import WifiSecurity

        self._show(results)
        if self.choice.ssid is not None:
            ssid = self.choice.ssid.encode()
            seen = next((r for r in results if r.ssid == ssid), None)
        else:
            if not self.interactive:
                raise HostUsage(NO_NETWORK_NAMED)
            if not results:
                raise HostError(
                    "the device sees no Wi-Fi network: move it closer to the access point, "
                    "or name a hidden one with --wifi-ssid and --wifi-security"
                )
            seen = results[self._network_number(min(len(results), SHOWN_NETWORKS)) - 1]
            ssid = seen.ssid
        security = self._security(seen)
        passphrase = None if security is WifiSecurity.OPEN else self._password(ssid, first=True)
        return _typed_credentials(
            ssid,
            security,
            passphrase=passphrase,
            hidden=self.choice.hidden or (seen is None and bool(ssid)),
        )

    def _network_number(self, count: int) -> int:
        """The number of a network in the table, asked until it is one."""
        while True:
            number = int(ask("Network number", type=int))
            if 1 <= number <= count:
                return number
            self.console.print(f"[yellow]choose a network number from 1 to {count}[/]")

    async def retry(self, status: WifiStatus, tried: WifiCredentials) -> WifiCredentials | None:
        """After a failed join: what the device said and what to do about it; then, at a
        terminal, the password again (refused) or the same network again (anything else)."""
        from bleprov.core.wifi import JoinFailure, WifiSecurity
        from bleprov.core.words import words
        from bleprov.service.provisioning import join_advice

        reason = status.reason or JoinFailure.OTHER
        if not self.interactive:
            self.console.print(f"[yellow]wifi:[/] {words(reason)}")
            return None  # nobody to ask: WifiNotJoined gives the advice
        left = f"{status.attempts_left} attempts left in this session"
        self.console.print(f"[yellow]wifi:[/] {words(reason)}: {join_advice(reason)} ({left})")
        if reason is JoinFailure.WRONG_PASSWORD and tried.security is not WifiSecurity.OPEN:
            if not ask_yes_no("Type the password again?", default=True):
                return None
            return _typed_credentials(
                tried.ssid,
                tried.security,
                passphrase=self._password(tried.ssid, first=False),
                hidden=tried.hidden,
            )
        if not ask_yes_no(f"Try {tried.ssid.decode(errors='replace')} again?", default=True):
            return None
        return tried

    def _show(self, results: list[ScanResult]) -> None:
        from rich.table import Table

        from bleprov.core.words import words

        table = Table(title=f"Wi-Fi networks the device sees ({len(results)})")
        for column in ("#", "SSID", "signal", "channel", "security"):
            table.add_column(column)
        for number, r in enumerate(results[:30], 1):
            table.add_row(
                str(number),
                escape(r.ssid.decode(errors="replace") or "(hidden)"),
                f"{r.rssi} dBm",
                str(r.channel),
                words(r.security),
            )
        print_table(self.console, table)

    def _security(self, seen: ScanResult | None) -> WifiSecurity:
        from bleprov.core.wifi import WifiSecurity

        if self.choice.security != "auto":
            return WifiSecurity[_SECURITY[self.choice.security]]
        if seen is None:
            raise HostError("the device does not see that network: give --wifi-security")
        return seen.security

    def _password(self, ssid: bytes, *, first: bool) -> str:
        if first and self.choice.password_file is not None:
            value = _read(self.choice.password_file, "Wi-Fi password").rstrip("\r\n")
        elif first and (env := os.environ.get(WIFI_PASSWORD_ENV)) is not None:
            value = env
        elif self.interactive:
            value = str(
                ask(f"Password for {ssid.decode(errors='replace')}", hide_input=True, default="")
            )
        else:
            raise HostError(
                f"give the Wi-Fi password in {WIFI_PASSWORD_ENV} or --wifi-password-file"
            )
        return value  # checked once, by WifiCredentials (_typed_credentials)


def _typed_credentials(
    ssid: bytes, security: WifiSecurity, *, passphrase: str | None, hidden: bool
) -> WifiCredentials:
    """The credentials the user typed, checked by the one rule (core.wifi); a bad length
    is worded for a person who types."""
    from bleprov.core.wifi import BadPassphrase, WifiCredentials

    try:
        return WifiCredentials(ssid, security, passphrase=passphrase, hidden=hidden)
    except BadPassphrase as exc:
        if exc.length_ok:
            raise
        raise HostError("a WPA passphrase is 8 to 63 characters") from None


class HandshakePrompts:
    """What the handshake asks the user, asked where they can see it.

    Waiting steps show a spinner (:meth:`spinner`); a question stops it first and
    restarts it after the answer. A rich status redraws its line a dozen times a second
    and erased the question, and the number in it, so the user answered blind.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None

    @contextlib.contextmanager
    def spinner(self, text: str) -> Iterator[None]:
        with self.console.status(text) as status:
            self._status = status
            try:
                yield
            finally:
                self._status = None

    @contextlib.contextmanager
    def _paused(self) -> Iterator[None]:
        status = self._status
        if status is not None:
            status.stop()
        try:
            yield
        finally:
            if status is not None:
                status.start()

    async def confirm(self, number: int) -> bool:
        """compare mode: the same number on both screens?"""
        with self._paused():
            self.console.print(f"This host shows [bold]{number:06d}[/].")
            return ask_yes_no(
                f"Does the device show {number:06d}? (compare digit by digit)", default=False
            )

    async def passkey(self) -> str:
        """passkey mode: the number the device shows, as the user types it (six digits;
        asked again until it is; a wrong number fails the handshake)."""
        from bleprov.core.errors import LocalProtocolError
        from bleprov.core.session.modes import parse_passkey

        with self._paused():
            while True:
                typed = str(ask("Type the number shown on the device"))
                try:
                    parse_passkey(typed)
                except LocalProtocolError as exc:
                    self.console.print(f"[yellow]{exc}[/]")
                    continue
                return typed


class _Progress:
    def __init__(self, console: Console) -> None:
        self.console = console

    def step(self, text: str) -> None:
        self.console.print(f"[dim]...[/] {text}")


@dataclass
class TrustTarget:
    zone: Path | None
    user: str | None
    user_key: Path | None
    owner: str | None
    registry_url: str | None
    peer: bool
    host_dir: Path


class Stopwatch:
    """How long the user has waited on bleprov since it started: wall time, less the
    time a question waited for their answer (that is the person's time, not the
    protocol's, and it is reported apart)."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._prompts = seconds_at_prompts()

    def at_prompts(self) -> float:
        return seconds_at_prompts() - self._prompts

    def seconds(self) -> float:
        return time.perf_counter() - self._started - self.at_prompts()


@dataclass
class Timings:
    """What ``provision`` reports: each step's time without prompts, and the prompts'."""

    total: Stopwatch
    steps: dict[str, float]


def check_options(wifi: WifiChoice, target: TrustTarget, *, interactive: bool) -> None:
    """Refuse, before any radio is opened or secret asked for, options that cannot make a
    provisioning (exit 2)."""
    if wifi.skip and target.zone is None and not target.peer:
        raise HostUsage(
            "--no-wifi leaves nothing to do: add --zone HUB --user NAME (enrol into a zone) "
            "or --peer (bind to this host)"
        )
    if not wifi.skip and wifi.ssid is None and not interactive:
        raise HostUsage(NO_NETWORK_NAMED)
    if target.zone is not None and target.peer:
        raise HostUsage("choose --zone or --peer, not both")
    if target.zone is not None and target.user is None:
        raise HostUsage("--zone needs --user (an admin of the zone)")


async def provision_device(
    console: Console,
    *,
    radio: str,
    mtu: int,
    label: LabelSource,
    roots: list[Path],
    allow_unknown_manufacturer: bool,
    wifi: WifiChoice,
    target: TrustTarget,
    timeout: float,
    as_json: bool,
    via: str | None = None,
    device_id: str | None = None,
    broker_ca: Path | None = None,
    reprovision: bool = False,
) -> None:
    """``bleprov provision``: the whole enrolment of one device, as a person runs it.

    A device that says it is enrolled or bound is refused unless ``reprovision``."""
    timings = Timings(Stopwatch(), {})
    if via is None and (device_id is not None or broker_ca is not None):
        raise HostUsage("--device-id and --broker-ca go with --via (a device behind a broker)")
    trust = provisioning_trust(roots, allow_unknown_manufacturer, wifi, target)
    auth = label.authentication()  # may ask for a code: after every usage check
    with trust_plans(target) as (zone_plan, peer_plan):
        from bleprov.core.session.device import DeviceOwned
        from bleprov.service.provisioning import Redial

        prompts = HandshakePrompts(console)
        host = unresolved_store(target, peer_plan)
        # The intermediates this host validated before, kept in its store as it learns
        # more: a device of a known manufacturer costs no certificate fetch.
        trust = dataclasses.replace(trust, intermediates=host.intermediates())
        async with contextlib.AsyncExitStack() as stack:
            if via is not None:
                from bleprov.service.host_session import open_broker_session

                def open_again(
                    again: DeviceAuthentication, device: str | None = device_id
                ) -> Awaitable[SecureHostLink]:
                    """A session with the device through the broker (again: after a lost
                    answer, with the enrolment's receipt)."""
                    assert via is not None
                    return open_broker_session(
                        via,
                        again,
                        trust,
                        device_id=device,
                        username=os.environ.get(BROKER_USER_ENV),
                        password=os.environ.get(BROKER_PASSWORD_ENV),
                        tls=_broker_tls(broker_ca) if via.startswith("mqtts:") else None,
                        confirm_number=prompts.confirm,
                        enter_passkey=prompts.passkey,
                        timeout=timeout,
                    )

                _warn_button(console, auth)
                step = Stopwatch()
                try:
                    with prompts.spinner(f"reaching the device through {via} ..."):
                        session = await open_again(auth)
                except DeviceOwned:
                    if await finish_earlier(
                        console, host, open_again, auth, zone_plan, peer_plan, as_json
                    ):
                        return
                    raise
                timings.steps["reach and authenticate"] = step.seconds()
                assert session.info is not None
                attested = session.info.attestation.device_id
                redial = Redial(lambda again: open_again(again, attested), auth)
            else:
                from bleprov import RadioSpec, open_central

                spec = RadioSpec.parse(radio)
                central = await stack.enter_async_context(open_central(spec, mtu=mtu))

                redial = radio_redial(central, auth, trust, prompts, timeout=timeout)
                try:
                    session = await open_radio_session(
                        console,
                        central,
                        spec,
                        auth,
                        trust,
                        prompts,
                        timeout=timeout,
                        reprovision=reprovision,
                        timings=timings,
                    )
                except DeviceOwned:
                    if await finish_earlier(
                        console, host, redial.open, auth, zone_plan, peer_plan, as_json
                    ):
                        return
                    raise
            report = await provision_session(
                console,
                session,
                wifi=None if wifi.skip else PromptingChooser(console, wifi),
                zone=zone_plan,
                peer=peer_plan,
                reprovision=reprovision,
                timings=timings,
                redial=redial,
                unresolved=host,
            )
    _summary(console, report, timings, as_json)


def provisioning_trust(
    roots: list[Path], allow_unknown_manufacturer: bool, wifi: WifiChoice, target: TrustTarget
) -> hst.Trust:
    """The options checked before any radio or hub opens or any secret is asked for (a
    mistake costs no scan), and the manufacturer roots the host trusts."""
    from bleprov import Trust, TrustPolicy

    check_options(wifi, target, interactive=sys.stdin.isatty())
    if not roots and not allow_unknown_manufacturer:
        raise HostUsage(
            "no manufacturer root to check the device against: give --trust ROOT.pem "
            "(the factory's root.pem), or --allow-unknown-manufacturer to only warn"
        )
    if target.zone is not None and allow_unknown_manufacturer:
        raise HostUsage(
            "--zone cannot be combined with --allow-unknown-manufacturer: the hub certifies "
            "only a device whose attestation chains to a trusted manufacturer root; give "
            "the factory's root.pem with --trust"
        )
    if not wifi.skip and wifi.password_file is not None:
        _read(wifi.password_file, "Wi-Fi password")  # unreadable: say so before any radio
    return Trust(
        load_roots(roots),
        TrustPolicy.WARN if allow_unknown_manufacturer else TrustPolicy.REFUSE,
    )


@contextlib.contextmanager
def trust_plans(target: TrustTarget) -> Iterator[tuple[ZonePlan | None, PeerPlan | None]]:
    """What the device is bound to: the zone (its hub opened, the admin authenticated,
    once for any number of devices) or this host as a peer; the hub closed afterwards."""
    from bleprov import PeerPlan, ZonePlan
    from bleprov.cli.zone import authenticate_user, open_hub

    zone_plan = None
    hub = None
    try:
        if target.zone is not None:
            assert target.user is not None  # check_options
            hub = open_hub(target.zone, target.registry_url)
            user = authenticate_user(hub, hub.registry, target.user, target.user_key)
            from bleprov import ZoneEnroller

            hub.registry.require_admin(user)
            zone_plan = ZonePlan(ZoneEnroller(hub, user), target.owner or target.user)
        peer_plan = PeerPlan(host_trust(target.host_dir)) if target.peer else None
        yield zone_plan, peer_plan
    finally:
        if hub is not None:
            hub.close()


def _warn_button(console: Console, auth: DeviceAuthentication) -> None:
    if auth.mode.label == "button":
        console.print(
            "[yellow]button mode:[/] anyone in radio range during the device's button "
            "window could enrol it instead of you; use it only where nobody else can be"
        )


async def open_radio_session(
    console: Console,
    central: CentralRadio,
    spec: RadioSpec,
    auth: DeviceAuthentication,
    trust: hst.Trust,
    prompts: HandshakePrompts,
    *,
    timeout: float,
    reprovision: bool,
    timings: Timings | None = None,
) -> SecureHostLink:
    """Find the device the label is for on ``central``, check from its advertisement that
    nobody set it up, and open the authenticated session."""
    from bleprov import open_session
    from bleprov.core.advertising import format_discriminator
    from bleprov.core.session import host as hst
    from bleprov.core.session.device import DeviceOwned
    from bleprov.core.words import words
    from bleprov.service.host_session import find
    from bleprov.service.provisioning import check_virgin

    _warn_button(console, auth)
    step = Stopwatch()
    with console.status(f"looking for the device on {spec}..."):
        found = await find(central, auth, timeout=timeout)
    found_in = step.seconds()
    if timings is not None:
        timings.steps["find"] = found_in
    console.print(
        f"found {found.device.address}, discriminator "
        f"{format_discriminator(found.service_data.discriminator)}, "
        f"{words(found.service_data.state)} ({found_in:.1f} s)",
        highlight=False,
    )
    # Before any attempt: the advertisement says whether someone set it up. An owned
    # device offers no mode at all (its label is dead); only the owner's window gets in.
    advertised = found.service_data
    if not isinstance(auth.secret, hst.WindowSecret):
        if advertised.owned:
            raise hst.refusal(DeviceOwned.code, 0)
        check_virgin(advertised.state, allow_owned=reprovision)
    step = Stopwatch()
    with prompts.spinner(f"authenticating ({auth.mode.label} mode)..."):
        session = await open_session(
            central,
            auth,
            trust,
            found=found,
            confirm_number=prompts.confirm,
            enter_passkey=prompts.passkey,
        )
    if timings is not None:
        timings.steps["authenticate"] = step.seconds()
    return session


async def provision_session(
    console: Console,
    session: SecureHostLink,
    *,
    wifi: WifiChooser | None,
    zone: ZonePlan | None,
    peer: PeerPlan | None,
    reprovision: bool,
    timings: Timings | None = None,
    redial: Redial | None = None,
    unresolved: HostTrust | None = None,
) -> ProvisionReport:
    """Wi-Fi, zone or peer over an authenticated session, one commit; the session closed.

    ``redial`` reaches the device again if COMMIT's answer is lost; ``unresolved`` keeps
    what is not learnt then, for the next run with this device."""
    from bleprov import provision

    try:
        assert session.info is not None
        attestation = session.info.attestation
        console.print(
            f"authenticated device {attestation.device_id} made by "
            f"{escape(attestation.manufacturer)}"
            + ("" if attestation.trusted else " [yellow](manufacturer not trusted)[/]")
            + _authenticated_in(timings)
        )
        step = Stopwatch()
        report = await provision(
            session,
            wifi=wifi,
            zone=zone,
            peer=peer,
            progress=_Progress(console),
            allow_owned=reprovision,
            redial=redial,
            unresolved=unresolved,
        )
        if timings is not None:
            timings.steps["enrol"] = step.seconds()
        return report
    finally:
        await session.close()


def unresolved_store(target: TrustTarget, peer: PeerPlan | None) -> HostTrust:
    """Where this host keeps enrolments whose COMMIT answer was lost, to finish them in a
    later run: its encrypted store (the peer plan's, or the one in --host-dir)."""
    return peer.host if peer is not None else host_trust(target.host_dir)


def radio_redial(
    central: CentralRadio,
    auth: DeviceAuthentication,
    trust: hst.Trust,
    prompts: HandshakePrompts,
    *,
    timeout: float,
) -> Redial:
    """How provision() reaches the device again over the radio after a lost answer."""
    from bleprov import open_session
    from bleprov.service.provisioning import Redial

    def open_nearby(again: DeviceAuthentication) -> Awaitable[SecureHostLink]:
        return open_session(
            central,
            again,
            trust,
            confirm_number=prompts.confirm,
            enter_passkey=prompts.passkey,
            timeout=timeout,
        )

    return Redial(open_nearby, auth)


async def finish_earlier(
    console: Console,
    host: HostTrust,
    open_again: Callable[[DeviceAuthentication], Awaitable[SecureHostLink]],
    auth: DeviceAuthentication,
    zone: ZonePlan | None,
    peer: PeerPlan | None,
    as_json: bool,
) -> bool:
    """The device says it has an owner, so its label opens nothing. If an earlier run of
    this host lost the answer to an enrolment's COMMIT, it may be that one: ask the device
    with that enrolment's receipt and finish it (confirmed on the hub, or pinned here).
    True if it was."""
    from bleprov.service.provisioning import Redial, resolve_unresolved

    candidates = [
        earlier
        for earlier in host.unresolved()
        if auth.discriminator is None or earlier.discriminator == auth.discriminator
    ]
    for earlier in candidates:
        redial = Redial(open_again, auth)
        with console.status(f"asking {earlier.device_id} what became of an earlier enrolment..."):
            committed = await resolve_unresolved(redial, earlier, host, zone=zone, peer=peer)
        if not committed:
            continue
        done = "confirmed on the hub" if earlier.zone_serial is not None else "finished"
        if earlier.peer is not None:
            done = "pinned here"
        if as_json:
            typer.echo(json.dumps({"device_id": earlier.device_id, "earlier_enrolment": done}))
        else:
            console.print(
                f"[bold green]device {earlier.device_id} had committed the earlier "
                f"enrolment[/] whose answer was lost: {done}"
            )
        return True
    return False


def _authenticated_in(timings: Timings | None) -> str:
    if timings is None:
        return ""
    for step in ("authenticate", "reach and authenticate"):
        if step in timings.steps:
            return f" ({timings.steps[step]:.1f} s)"
    return ""


def _summary(console: Console, report: ProvisionReport, timings: Timings, as_json: bool) -> None:
    """The result, and honest times: from the start of the command's work (opening the
    hub, finding the device, authenticating: all of the user's wait), with the time the
    user took to answer questions left out and said apart."""
    total, at_prompts = timings.total.seconds(), timings.total.at_prompts()
    if as_json:
        typer.echo(json.dumps(summary_json(report, timings), indent=2))
        return
    if report.wifi is not None:
        console.print(f"wifi: connected, IP {report.wifi.ip}")
    if report.zone is not None:
        console.print(
            f"zone: enrolled for {report.zone.owner}, certificate valid to "
            f"{report.zone.not_after:%Y-%m-%d}"
        )
    if report.peer is not None:
        console.print(f"peer: bound; device key {report.peer.fingerprint.hex()[:16]}... pinned")
    steps = ", ".join(f"{step} {value:.1f} s" for step, value in timings.steps.items())
    waited = f"; not counting {at_prompts:.1f} s at prompts" if at_prompts >= 0.05 else ""
    console.print(
        f"[bold green]device {report.device_id} provisioned[/] in {total:.1f} s "
        f"({steps}{waited}); after authentication: {report.total_cost.requests} round "
        f"trips, {report.total_cost.bytes_up} bytes up, {report.total_cost.bytes_down} down"
    )


def summary_json(report: ProvisionReport, timings: Timings) -> dict[str, Any]:
    """What ``provision --json`` prints for one device: times from the start of the
    user's wait, prompts left out and said apart."""
    total, at_prompts = timings.total.seconds(), timings.total.at_prompts()
    return {
        "device_id": report.device_id,
        "wifi": None
        if report.wifi is None
        else {"state": report.wifi.state.value, "ip": report.wifi.ip},
        "zone": None
        if report.zone is None
        else {
            "serial": f"{report.zone.serial:x}",
            "owner": report.zone.owner,
            "not_after": report.zone.not_after.isoformat(),
        },
        "peer": None
        if report.peer is None
        else {"name": report.peer.name, "fingerprint": report.peer.fingerprint.hex()},
        "round_trips": report.total_cost.requests,
        "bytes_up": report.total_cost.bytes_up,
        "bytes_down": report.total_cost.bytes_down,
        "seconds": round(total, 3),
        "seconds_by_step": {step: round(value, 3) for step, value in timings.steps.items()},
        "seconds_at_prompts": round(at_prompts, 3),
    }


def exit_code_for(exc: BleprovError) -> int:
    """The documented exit code of a failure (module docstring)."""
    from bleprov import AuthenticationFailed, DeviceNotFound, DeviceOwned, WifiNotJoined
    from bleprov.core.session import host as hst
    from bleprov.core.session.modes import UserRejected
    from bleprov.core.window import WindowClosed
    from bleprov.radio.spec import RadioSpecError

    # The broker's own not-found, if the broker client was loaded at all (the broker
    # extra may not be installed: then it was not what failed).
    broker_host = sys.modules.get("bleprov.broker.host")
    if isinstance(exc, DeviceNotFound) or (
        broker_host is not None and isinstance(exc, broker_host.DeviceNotAnnounced)
    ):
        return EXIT_NOT_FOUND
    if isinstance(
        exc, AuthenticationFailed | UserRejected | hst.DeviceRefused | DeviceOwned | WindowClosed
    ):
        return EXIT_AUTHENTICATION
    if isinstance(exc, WifiNotJoined):
        return EXIT_WIFI
    if isinstance(exc, HostUsage | RadioSpecError):
        return EXIT_USAGE
    return 1


# ------------------------------------------------------------------------------- peer


def list_peers(console: Console, host_dir: Path, as_json: bool) -> None:
    from rich.table import Table

    trust = host_trust(host_dir)
    pins = trust.pins()
    rows = [{"name": p.name, "fingerprint": p.fingerprint.hex()} for p in pins]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no device is bound to this host")
        return
    table = Table(title=f"devices bound to {trust.name}")
    table.add_column("device")
    # On a narrow terminal the fingerprint folds onto two lines: never an ellipsis.
    table.add_column("key fingerprint (SHA-256)", overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["fingerprint"])
    print_table(console, table)


async def unbind_peer(
    console: Console, host_dir: Path, device: str, address: str | None, local_only: bool
) -> None:
    trust = host_trust(host_dir)
    if device not in trust.pins():
        raise HostError(f"no device {device} is bound to this host (bleprov peer list)")
    if local_only:
        trust.unpin(device)
        console.print(f"forgot {device} here only; the device still trusts this host")
        return
    host, port = _address(address)
    await trust.unbind(host, port, device)
    console.print(f"unbound {device}: neither side trusts the other any more")


def _address(address: str | None) -> tuple[str, int]:
    if address is None:
        raise HostUsage("give the device's validated-connection address (--address HOST:PORT)")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise HostUsage("--address is HOST:PORT")
    return host, int(port)


async def open_device_window(
    console: Console,
    host_dir: Path,
    device: str,
    address: str | None,
    purpose: WindowPurpose,
    seconds: int,
) -> None:
    """As the device's owner: open a commissioning window and show its one-time code."""
    from bleprov.core.window import WindowPurpose

    trust = host_trust(host_dir)
    if device not in trust.pins():
        raise HostError(f"no device {device} is bound to this host (bleprov peer list)")
    host, port = _address(address)
    code = await trust.open_window(host, port, device, purpose=purpose, seconds=seconds)
    what = (
        "bind one more host as an admin of"
        if purpose is WindowPurpose.ADMIN
        else "take over (become the new owner of)"
    )
    console.print(
        f"window open for {seconds // 60} min: whoever has this code may {what} {device}.\n"
        f"  code: [bold]{code.formatted()}[/]\n"
        "Give it only to that person. On their host:\n"
        + (
            "  bleprov peer bind --window-code --trust ROOT.pem"
            if purpose is WindowPurpose.ADMIN
            else "  bleprov provision --window-code --trust ROOT.pem --peer (or --zone ...)"
        )
        + f"   ({WINDOW_CODE_ENV} or a prompt)\n"
        "It works once, closes after 5 wrong codes, and closes when it expires."
    )


async def close_device_window(
    console: Console, host_dir: Path, device: str, address: str | None
) -> None:
    from bleprov.service.trust import OP_WINDOW_CLOSE

    trust = host_trust(host_dir)
    host, port = _address(address)
    async with await trust.connect(host, port, device) as connection:
        closed = (await connection.request(OP_WINDOW_CLOSE, {}))["closed"]
    console.print("window closed" if closed else "no window was open")


# --------------------------------------------------------------------- the commands


#: What Ctrl-C means for a command that opens a session with a device.
ROLLED_BACK = "interrupted: the device rolls back whatever was not committed"


def _run_host(coro: Any, interrupted: str = "interrupted") -> Any:
    """Run a host command (its coroutine's result): errors become one line and the
    documented exit code; Ctrl-C is exit 130 and the line ``interrupted`` (what it means
    for the device, if anything)."""
    import asyncio

    from bleprov.cli import err_console, report_interrupted

    try:
        return asyncio.run(coro)
    except BleprovError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        raise report_interrupted(interrupted) from None


def check_timeout(value: float) -> float:
    """``--timeout`` is a positive number of seconds: checked as the options are parsed,
    before any radio is opened (-1 or nan would end a scan at once, inf never)."""
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter("give a positive number of seconds")
    return value


def check_broker_url(value: str | None) -> str | None:
    """``--via`` is a broker URL: a typo is bad usage before any secret is asked for."""
    if value is not None:
        from bleprov.broker.client import BrokerConfig, BrokerUrlError

        try:
            BrokerConfig.from_url(value)
        except BrokerUrlError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


peer_app = typer.Typer(help="Devices bound to this host as peers (no hub, pinned keys).")


QrFileArg = Annotated[
    Path | None, typer.Option(help="A file holding the label's QR text (label.txt).")
]
QrImageArg = Annotated[
    Path | None, typer.Option(help="A photo or screenshot of the label's QR code.")
]
ManualCodeArg = Annotated[
    bool,
    typer.Option("--manual-code", help=f"Type the 11-digit manual code ({MANUAL_CODE_ENV})."),
]
WindowCodeArg = Annotated[
    bool,
    typer.Option(
        "--window-code",
        help=f"Type the one-time code of a window the device's owner opened ({WINDOW_CODE_ENV}).",
    ),
]
CompareArg = Annotated[
    bool,
    typer.Option(
        "--compare",
        help="Compare a 6-digit number with the device's display (a device with a button).",
    ),
]
PasskeyArg = Annotated[
    bool,
    typer.Option(
        "--passkey", help="Type the one-time number the device's display shows (no button)."
    ),
]
ReprovisionArg = Annotated[
    bool,
    typer.Option(
        "--reprovision",
        help="Provision a device that says it is already enrolled or bound (yours).",
    ),
]
DiscriminatorArg = Annotated[
    int | None,
    typer.Option(
        parser=parse_discriminator_option,
        metavar=DISCRIMINATOR_METAVAR,
        help="Which device, for --compare/--passkey/--button/--scratch-card/--manual-code: "
        "as on its label (0x874), or in decimal.",
    ),
]
TrustArg = Annotated[
    list[Path] | None,
    typer.Option(
        "--trust",
        envvar=TRUST_ENV,
        help="Manufacturer root certificate (repeatable; in the variable, ':' between paths).",
    ),
]
AllowUnknownArg = Annotated[
    bool,
    typer.Option(
        "--allow-unknown-manufacturer", help="Only warn when the manufacturer root is not trusted."
    ),
]
HostDirArg = Annotated[Path | None, typer.Option(help=f"This host's state ({HOST_DIR_ENV}).")]
TimeoutArg = Annotated[
    float, typer.Option(help="Seconds to find the device.", callback=check_timeout)
]
RadioArg = Annotated[
    str,
    typer.Option(
        "--radio",
        envvar=RADIO_ENV,
        help="Radio: system (BlueZ, CoreBluetooth, WinRT) or bumble:<transport>.",
        callback=check_radio,
    ),
]


def register(app: typer.Typer) -> None:
    """Add scan, provision and peer to the ``bleprov`` command."""
    from bleprov.cli import console

    @app.command("scan")
    def scan_command(
        radio: RadioArg = "system",
        timeout: Annotated[
            float, typer.Option(help="Seconds to listen.", callback=check_timeout)
        ] = 5.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """List nearby bleprov devices: state, modes, discriminator, signal."""
        _run_host(scan_devices(console, radio, timeout, as_json))

    @app.command("provision")
    def provision_command(
        ctx: typer.Context,
        radio: RadioArg = "system",
        qr_file: QrFileArg = None,
        qr_image: QrImageArg = None,
        ndef: Annotated[Path | None, typer.Option(help="The label's NFC NDEF message.")] = None,
        printed_key: Annotated[
            bool,
            typer.Option("--printed-key", help=f"Type the long printed key ({PRINTED_KEY_ENV})."),
        ] = False,
        manual_code: ManualCodeArg = False,
        scratch_card: Annotated[
            bool,
            typer.Option(
                "--scratch-card",
                help=f"Type the scratch card ({CARD_USER_ENV}, {CARD_PASSWORD_ENV}).",
            ),
        ] = False,
        compare: CompareArg = False,
        passkey: PasskeyArg = False,
        button: Annotated[
            bool,
            typer.Option("--button", help="The device's button was pressed (unsafe in company)."),
        ] = False,
        window_code: WindowCodeArg = False,
        discriminator: DiscriminatorArg = None,
        labels: Annotated[
            Path | None,
            typer.Option(
                help="Several devices, one after another: a directory of labels (the "
                "factory's devices/, or photos) or a file listing them (bleprov help batch).",
            ),
        ] = None,
        reprovision: ReprovisionArg = False,
        trust: TrustArg = None,
        allow_unknown_manufacturer: AllowUnknownArg = False,
        wifi_ssid: Annotated[
            str | None, typer.Option(help="The network to join (else chosen from the scan).")
        ] = None,
        wifi_security: Annotated[
            str, typer.Option(help="auto (from the scan), open, wpa2, wpa3 or wpa2-wpa3.")
        ] = "auto",
        wifi_password_file: Annotated[
            Path | None,
            typer.Option(help=f"A file holding the Wi-Fi password (or {WIFI_PASSWORD_ENV})."),
        ] = None,
        wifi_hidden: Annotated[
            bool,
            typer.Option(
                "--wifi-hidden",
                help="The network does not broadcast its name (needs --wifi-ssid).",
            ),
        ] = False,
        no_wifi: Annotated[bool, typer.Option("--no-wifi", help="Skip the Wi-Fi step.")] = False,
        zone: Annotated[
            Path | None,
            typer.Option(envvar=ZONE_ENV, help="Enrol into this hub's zone (hub directory)."),
        ] = None,
        no_zone: Annotated[
            bool,
            typer.Option(
                "--no-zone", help=f"Enrol into no zone, whatever {ZONE_ENV} or the config says."
            ),
        ] = False,
        user: Annotated[
            str | None,
            typer.Option(
                envvar=USER_ENV, help="The zone admin enrolling (BLEPROV_USER_PASSPHRASE)."
            ),
        ] = None,
        user_key: Annotated[
            Path | None, typer.Option(help="Directory of a zone-issued user credential.")
        ] = None,
        owner: Annotated[
            str | None, typer.Option(help="The zone user the device is for (default: --user).")
        ] = None,
        registry_url: Annotated[
            str | None, typer.Option(help="Override the hub's registry URL.")
        ] = None,
        peer: Annotated[bool, typer.Option("--peer", help="Bind to this host as a peer.")] = False,
        host_dir: HostDirArg = None,
        via: Annotated[
            str | None,
            typer.Option(
                help="Reach the device through an MQTT broker instead of Bluetooth: "
                f"mqtt(s)://host:port ({BROKER_USER_ENV}, {BROKER_PASSWORD_ENV}).",
                callback=check_broker_url,
            ),
        ] = None,
        device_id: Annotated[
            str | None, typer.Option(help="The device's ID (label sheet), with --via.")
        ] = None,
        broker_ca: Annotated[
            Path | None, typer.Option(help="CA certificate of an mqtts:// broker.")
        ] = None,
        mtu: Annotated[
            int, typer.Option(min=23, max=517, help="ATT MTU to ask for (bumble radios).")
        ] = 247,
        timeout: TimeoutArg = 15.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    ) -> None:
        """Authenticate a device with its label, give it Wi-Fi, enrol it or bind it.

        Exit codes: 0 done, 1 error, 2 usage, 3 device not found, 4 authentication failed,
        5 Wi-Fi not joined (nothing changed on the device), 130 interrupted.
        """
        if wifi_security not in ("auto", *_SECURITY):
            raise typer.BadParameter(
                "use auto, open, wpa2, wpa3 or wpa2-wpa3", param_hint="--wifi-security"
            )
        from bleprov.cli import err_console

        # With --json, stdout is the JSON alone: progress goes to stderr.
        shown = err_console if as_json else console
        zone = zone_default(ctx, zone, no_zone=no_zone, peer=peer, console=shown)
        label = LabelSource(
            qr_file,
            qr_image,
            ndef,
            printed_key,
            manual_code,
            scratch_card,
            compare,
            button,
            window_code,
            discriminator,
            passkey,
        )
        target = TrustTarget(
            zone, user, user_key, owner, registry_url, peer, host_dir or default_host_dir()
        )
        if wifi_hidden and wifi_ssid is None:
            raise typer.BadParameter(
                "a hidden network is named with --wifi-ssid", param_hint="--wifi-hidden"
            )
        wifi = WifiChoice(wifi_ssid, wifi_security, wifi_password_file, no_wifi, wifi_hidden)
        if labels is not None:
            from bleprov.cli.batch import provision_labels, report_batch

            results = _run_host(
                provision_labels(
                    shown,
                    labels,
                    label,
                    via,
                    radio=radio,
                    mtu=mtu,
                    roots=trust or [],
                    allow_unknown_manufacturer=allow_unknown_manufacturer,
                    wifi=wifi,
                    target=target,
                    timeout=timeout,
                    reprovision=reprovision,
                )
            )
            report_batch(shown, results, as_json)
            return
        _run_host(
            provision_device(
                shown,
                radio=radio,
                mtu=mtu,
                label=label,
                roots=trust or [],
                allow_unknown_manufacturer=allow_unknown_manufacturer,
                wifi=wifi,
                target=target,
                timeout=timeout,
                as_json=as_json,
                via=via,
                device_id=device_id,
                broker_ca=broker_ca,
                reprovision=reprovision,
            ),
            interrupted=ROLLED_BACK,
        )

    @peer_app.command("bind")
    def peer_bind(
        radio: RadioArg = "system",
        qr_file: QrFileArg = None,
        qr_image: QrImageArg = None,
        manual_code: ManualCodeArg = False,
        compare: CompareArg = False,
        passkey: PasskeyArg = False,
        window_code: WindowCodeArg = False,
        discriminator: DiscriminatorArg = None,
        trust: TrustArg = None,
        allow_unknown_manufacturer: AllowUnknownArg = False,
        host_dir: HostDirArg = None,
        timeout: TimeoutArg = 15.0,
        reprovision: ReprovisionArg = False,
    ) -> None:
        """Bind a device to this host (no hub): each pins the other's key, no Wi-Fi step.

        The same as ``bleprov provision --peer --no-wifi``; exit codes as provision's.
        """
        _run_host(
            provision_device(
                console,
                radio=radio,
                mtu=247,
                label=LabelSource(
                    qr_file=qr_file,
                    qr_image=qr_image,
                    manual_code=manual_code,
                    compare=compare,
                    passkey=passkey,
                    window_code=window_code,
                    discriminator=discriminator,
                ),
                roots=trust or [],
                allow_unknown_manufacturer=allow_unknown_manufacturer,
                wifi=WifiChoice(None, "auto", None, skip=True),
                target=TrustTarget(
                    None, None, None, None, None, True, host_dir or default_host_dir()
                ),
                timeout=timeout,
                as_json=False,
                reprovision=reprovision,
            ),
            interrupted=ROLLED_BACK,
        )

    @peer_app.command("open-window")
    def peer_open_window(
        device: Annotated[
            str, typer.Argument(metavar="DEVICE", help="The device ID (you must be its owner).")
        ],
        address: Annotated[
            str | None, typer.Option(help="The device's validated-connection HOST:PORT.")
        ] = None,
        purpose: Annotated[
            str,
            typer.Option(
                help="admin: add one more host as an admin; handover: hand the device over "
                "(the new host becomes its owner, and you are forgotten)."
            ),
        ] = "admin",
        minutes: Annotated[float, typer.Option(help="How long the window stays open.")] = 10,
        host_dir: HostDirArg = None,
    ) -> None:
        """As the owner: let one more host in, with a one-time code (Matter's multi-admin)."""
        from bleprov.core.window import WindowError, WindowPurpose, window_seconds

        try:
            chosen, seconds = WindowPurpose.parse(purpose), window_seconds(minutes)
        except WindowError as exc:
            raise typer.BadParameter(str(exc)) from None
        _run_host(
            open_device_window(
                console, host_dir or default_host_dir(), device, address, chosen, seconds
            )
        )

    @peer_app.command("close-window")
    def peer_close_window(
        device: Annotated[
            str, typer.Argument(metavar="DEVICE", help="The device ID (you must be its owner).")
        ],
        address: Annotated[
            str | None, typer.Option(help="The device's validated-connection HOST:PORT.")
        ] = None,
        host_dir: HostDirArg = None,
    ) -> None:
        """As the owner: close an open commissioning window before it expires."""
        _run_host(close_device_window(console, host_dir or default_host_dir(), device, address))

    @peer_app.command("list")
    def peer_list(
        host_dir: HostDirArg = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Devices this host is bound to, with their key fingerprints."""
        try:
            list_peers(console, host_dir or default_host_dir(), as_json)
        except BleprovError as exc:
            from bleprov.cli import err_console

            err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None

    @peer_app.command("unbind")
    def peer_unbind(
        device: Annotated[str, typer.Argument(metavar="DEVICE", help="The device ID.")],
        address: Annotated[
            str | None, typer.Option(help="The device's validated-connection HOST:PORT.")
        ] = None,
        local_only: Annotated[
            bool,
            typer.Option(
                "--local-only", help="Forget the device here only (it is gone or unreachable)."
            ),
        ] = False,
        host_dir: HostDirArg = None,
    ) -> None:
        """Remove the pins on both sides: afterwards neither trusts the other."""
        _run_host(unbind_peer(console, host_dir or default_host_dir(), device, address, local_only))

    app.add_typer(peer_app, name="peer")
