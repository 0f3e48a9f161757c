"""The laptop's commands: ``bleprov scan``, ``bleprov provision``, ``bleprov peer``.

Secrets never come from argv: a label is read from a file (its text, an NFC dump, or a
photo of its QR code), a code or a password from the environment or a no-echo prompt.

Exit codes beside 0/1/2/130: 3 no such device found, 4 authentication failed (wrong
label, code or number; the device counts the attempt), 5 the device could not join the
Wi-Fi network (nothing was changed on it).

Questions asked during the handshake (compare the number, type the device's number) are
asked with the spinner stopped: a rich status redraws its line and erased them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from bleprov.cli import check_radio
from bleprov.core.errors import BleprovError

if TYPE_CHECKING:
    # The protocol, the radio and the stores are imported by the commands that use them:
    # ``--help`` and the command line's parsing load none of them (docs/performance.md).
    import ssl

    from rich.status import Status

    from bleprov.core.advertising import ServiceData
    from bleprov.core.enrolment.messages import WifiStatus
    from bleprov.core.wifi import ScanResult, WifiCredentials, WifiSecurity
    from bleprov.core.window import WindowPurpose
    from bleprov.service.host_session import DeviceAuthentication
    from bleprov.service.provisioning import ProvisionReport
    from bleprov.service.trust import HostTrust

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

_QR_TOKEN = re.compile(r"BP:[0-9A-Z.\-]+")
#: ``--wifi-security``'s words and the :class:`WifiSecurity` each names.
_SECURITY = {
    "open": "OPEN",
    "wpa2": "WPA2_PERSONAL",
    "wpa3": "WPA3_PERSONAL",
    "wpa2-wpa3": "WPA2_WPA3_PERSONAL",
}


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
    from bleprov.service.trust import HostTrust
    from bleprov.store.device_store import DeviceStore
    from bleprov.store.keys import KeyFileProvider

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
            str(data.discriminator),
            f"{f.rssi} dBm",
            _open_to(data),
            "yes" if AdvertisedFlags.BUSY in data.flags else "",
        )
    console.print(table)


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
        from bleprov.core.errors import MalformedData
        from bleprov.service.host_session import DeviceAuthentication

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
            match = _QR_TOKEN.search(_read(self.qr_file, "QR text"))
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
            return DeviceAuthentication.from_printed_key(
                _secret_text(PRINTED_KEY_ENV, "Printed key")
            )
        if self.manual_code:
            return DeviceAuthentication.from_manual_code(
                _secret_text(MANUAL_CODE_ENV, "Manual code")
            )
        if self.scratch_card:
            user = os.environ.get(CARD_USER_ENV) or typer.prompt("Scratch card user")
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
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    roots: list[bytes] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise HostError(f"cannot read the trust root {path}: {exc.strerror}") from None
        try:
            certificates = (
                x509.load_pem_x509_certificates(data)
                if b"-----BEGIN" in data
                else [x509.load_der_x509_certificate(data)]
            )
        except ValueError:
            raise HostError(f"{path} is not a PEM or DER certificate") from None
        roots += [c.public_bytes(Encoding.DER) for c in certificates]
    return tuple(roots)


@dataclass
class WifiChoice:
    ssid: str | None
    security: str
    password_file: Path | None
    skip: bool


class PromptingChooser:
    """Picks the network from the device's scan (or --wifi-ssid) and asks for passwords."""

    def __init__(self, console: Console, choice: WifiChoice) -> None:
        self.console = console
        self.choice = choice
        self.interactive = sys.stdin.isatty()

    async def choose(self, results: list[ScanResult]) -> WifiCredentials | None:
        from bleprov.core.wifi import WifiCredentials, WifiSecurity

        self._show(results)
        if self.choice.ssid is not None:
            ssid = self.choice.ssid.encode()
            seen = next((r for r in results if r.ssid == ssid), None)
        else:
            if not self.interactive or not results:
                raise HostError("name the network with --wifi-ssid (or run interactively)")
            index = typer.prompt("Network number", type=int)
            if not 1 <= index <= len(results):
                raise HostError(f"choose a network number from 1 to {len(results)}")
            seen = results[index - 1]
            ssid = seen.ssid
        security = self._security(seen)
        passphrase = None if security is WifiSecurity.OPEN else self._password(ssid, first=True)
        return WifiCredentials(
            ssid, security, passphrase=passphrase, hidden=seen is None and bool(ssid)
        )

    async def retry(self, status: WifiStatus, tried: WifiCredentials) -> WifiCredentials | None:
        from bleprov.core.wifi import WifiCredentials, WifiSecurity

        reason = status.reason.name.lower().replace("_", " ") if status.reason else "failed"
        self.console.print(
            f"[yellow]wifi:[/] {reason} ({status.attempts_left} attempts left in this session)"
        )
        if not self.interactive or tried.security is WifiSecurity.OPEN:
            return None
        if not typer.confirm("Try another password?", default=True):
            return None
        return WifiCredentials(
            tried.ssid,
            tried.security,
            passphrase=self._password(tried.ssid, first=False),
            hidden=tried.hidden,
        )

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
        self.console.print(table)

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
            value = typer.prompt(
                f"Password for {ssid.decode(errors='replace')}", hide_input=True, default=""
            )
        else:
            raise HostError(
                f"give the Wi-Fi password in {WIFI_PASSWORD_ENV} or --wifi-password-file"
            )
        if not 8 <= len(value) <= 63:
            raise HostError("a WPA passphrase is 8 to 63 characters")
        return value


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
            return typer.confirm(
                f"Does the device show {number:06d}? (compare digit by digit)", default=False
            )

    async def passkey(self) -> str:
        """passkey mode: the number the device shows, as the user types it (six digits;
        asked again until it is; a wrong number fails the handshake)."""
        from bleprov.core.errors import LocalProtocolError
        from bleprov.core.session.modes import parse_passkey

        with self._paused():
            while True:
                typed = str(typer.prompt("Type the number shown on the device"))
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
    from bleprov.cli.zone import _authenticate, _open_hub
    from bleprov.core.identity import TrustPolicy
    from bleprov.core.session import host as hst
    from bleprov.core.session.device import DeviceOwned
    from bleprov.core.words import words
    from bleprov.radio.spec import RadioSpec, open_central
    from bleprov.service.host_session import find, open_session
    from bleprov.service.provisioning import PeerPlan, ZonePlan, check_virgin, provision

    auth = label.authentication()
    if not wifi.skip and wifi.password_file is not None:
        _read(wifi.password_file, "Wi-Fi password")  # unreadable: say so before any radio
    trust = hst.Trust(
        load_roots(roots),
        TrustPolicy.WARN if allow_unknown_manufacturer else TrustPolicy.REFUSE,
    )
    if not trust.roots and not allow_unknown_manufacturer:
        raise HostUsage(
            "no manufacturer root to check the device against: give --trust ROOT.pem "
            "(the factory's root.pem), or --allow-unknown-manufacturer to only warn"
        )
    if target.zone is not None and target.peer:
        raise HostUsage("choose --zone or --peer, not both")
    if target.zone is not None and allow_unknown_manufacturer:
        raise HostUsage(
            "--zone cannot be combined with --allow-unknown-manufacturer: the hub certifies "
            "only a device whose attestation chains to a trusted manufacturer root; give "
            "the factory's root.pem with --trust"
        )
    zone_plan = None
    hub = None
    try:
        if target.zone is not None:
            if target.user is None:
                raise HostUsage("--zone needs --user (an admin of the zone)")
            hub = _open_hub(target.zone, target.registry_url)
            user = _authenticate(hub, hub.registry, target.user, target.user_key)
            from bleprov.service.zone_hub import ZoneEnroller

            hub.registry.require_admin(user)
            zone_plan = ZonePlan(ZoneEnroller(hub, user), target.owner or target.user)
        peer_plan = PeerPlan(host_trust(target.host_dir)) if target.peer else None
        if auth.mode.label == "button":
            console.print(
                "[yellow]button mode:[/] anyone in radio range during the device's button "
                "window could enrol it instead of you; use it only where nobody else can be"
            )

        prompts = HandshakePrompts(console)
        async with contextlib.AsyncExitStack() as stack:
            if via is not None:
                from bleprov.service.host_session import open_broker_session

                with prompts.spinner(f"reaching the device through {via} ..."):
                    session = await open_broker_session(
                        via,
                        auth,
                        trust,
                        device_id=device_id,
                        username=os.environ.get(BROKER_USER_ENV),
                        password=os.environ.get(BROKER_PASSWORD_ENV),
                        tls=_broker_tls(broker_ca) if via.startswith("mqtts:") else None,
                        confirm_number=prompts.confirm,
                        enter_passkey=prompts.passkey,
                        timeout=timeout,
                    )
            else:
                spec = RadioSpec.parse(radio)
                central = await stack.enter_async_context(open_central(spec, mtu=mtu))
                with console.status(f"looking for the device on {spec}..."):
                    found = await find(central, auth, timeout=timeout)
                console.print(
                    f"found {found.device.address}, discriminator "
                    f"{found.service_data.discriminator}, {words(found.service_data.state)}"
                )
                # Before any attempt: the advertisement says whether someone set it up. An
                # owned device offers no mode at all (its label is dead); only the owner's
                # window gets in.
                advertised = found.service_data
                if not isinstance(auth.secret, hst.WindowSecret):
                    if advertised.owned:
                        raise hst.refusal(DeviceOwned.code, 0)
                    check_virgin(advertised.state, allow_owned=reprovision)
                with prompts.spinner(f"authenticating ({auth.mode.label} mode)..."):
                    session = await open_session(
                        central,
                        auth,
                        trust,
                        found=found,
                        confirm_number=prompts.confirm,
                        enter_passkey=prompts.passkey,
                    )
            try:
                assert session.info is not None
                attestation = session.info.attestation
                console.print(
                    f"authenticated device {attestation.device_id} made by "
                    f"{escape(attestation.manufacturer)}"
                    + ("" if attestation.trusted else " [yellow](manufacturer not trusted)[/]")
                )
                report = await provision(
                    session,
                    wifi=None if wifi.skip else PromptingChooser(console, wifi),
                    zone=zone_plan,
                    peer=peer_plan,
                    progress=_Progress(console),
                    allow_owned=reprovision,
                )
            finally:
                await session.close()
    finally:
        if hub is not None:
            hub.close()
    _summary(console, report, as_json)


def _summary(console: Console, report: ProvisionReport, as_json: bool) -> None:
    summary: dict[str, Any] = {
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
        "seconds": round(report.total_cost.seconds, 3),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
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
    console.print(
        f"[bold green]device {report.device_id} provisioned[/] "
        f"({report.total_cost.requests} round trips, {report.total_cost.bytes_up} bytes up, "
        f"{report.total_cost.bytes_down} down, {report.total_cost.seconds:.1f} s)"
    )


def exit_code_for(exc: BleprovError) -> int:
    """The documented exit code of a failure (module docstring)."""
    from bleprov.broker.host import DeviceNotAnnounced
    from bleprov.core.session import host as hst
    from bleprov.core.session.device import DeviceOwned
    from bleprov.core.session.modes import AuthenticationFailed, UserRejected
    from bleprov.core.window import WindowClosed
    from bleprov.radio.host_link import DeviceNotFound
    from bleprov.radio.spec import RadioSpecError
    from bleprov.service.provisioning import WifiNotJoined

    if isinstance(exc, DeviceNotFound | DeviceNotAnnounced):
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
    table.add_column("key fingerprint (SHA-256)")
    for row in rows:
        table.add_row(row["name"], row["fingerprint"])
    console.print(table)


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


def _run_host(coro: Any) -> None:
    """Run a host command: errors become one line and the documented exit code."""
    import asyncio

    from bleprov.cli import EXIT_INTERRUPTED, err_console

    try:
        asyncio.run(coro)
    except BleprovError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: the device rolls back whatever was not committed")
        raise typer.Exit(EXIT_INTERRUPTED) from None


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
    typer.Option(help="Which device, for --compare/--passkey/--button/--scratch-card."),
]
TrustArg = Annotated[
    list[Path] | None,
    typer.Option("--trust", help="Manufacturer root certificate (repeatable)."),
]
AllowUnknownArg = Annotated[
    bool,
    typer.Option(
        "--allow-unknown-manufacturer", help="Only warn when the manufacturer root is not trusted."
    ),
]
HostDirArg = Annotated[Path | None, typer.Option(help=f"This host's state ({HOST_DIR_ENV}).")]
TimeoutArg = Annotated[float, typer.Option(help="Seconds to find the device.")]
RadioArg = Annotated[
    str,
    typer.Option(
        "--radio",
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
        timeout: Annotated[float, typer.Option(help="Seconds to listen.")] = 5.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """List nearby bleprov devices: state, modes, discriminator, signal."""
        _run_host(scan_devices(console, radio, timeout, as_json))

    @app.command("provision")
    def provision_command(
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
        no_wifi: Annotated[bool, typer.Option("--no-wifi", help="Skip the Wi-Fi step.")] = False,
        zone: Annotated[
            Path | None, typer.Option(help="Enrol into this hub's zone (hub directory).")
        ] = None,
        user: Annotated[
            str | None, typer.Option(help="The zone admin enrolling (BLEPROV_USER_PASSPHRASE).")
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
                f"mqtt(s)://host:port ({BROKER_USER_ENV}, {BROKER_PASSWORD_ENV})."
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

        _run_host(
            provision_device(
                # With --json, stdout is the JSON alone: progress goes to stderr.
                err_console if as_json else console,
                radio=radio,
                mtu=mtu,
                label=LabelSource(
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
                ),
                roots=trust or [],
                allow_unknown_manufacturer=allow_unknown_manufacturer,
                wifi=WifiChoice(wifi_ssid, wifi_security, wifi_password_file, no_wifi),
                target=TrustTarget(
                    zone,
                    user,
                    user_key,
                    owner,
                    registry_url,
                    peer,
                    host_dir or default_host_dir(),
                ),
                timeout=timeout,
                as_json=as_json,
                via=via,
                device_id=device_id,
                broker_ca=broker_ca,
                reprovision=reprovision,
            )
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
            )
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
