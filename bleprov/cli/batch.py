"""``bleprov provision --labels PATH``: several devices from one host, one after another.

PATH is a directory (the factory's ``devices/`` with one ``<ID>/label.txt`` each, or a
folder of label files and photos) or a list file (one label file, device directory or
``BP:`` QR text a line; ``#`` comments). Every device gets the same Wi-Fi and the same
zone or peer binding: the zone's hub is opened and its admin authenticated once, the
network chosen and its password asked once (from the first device's scan), one radio
opened for all. A device that fails does not stop the others; the end is a table (label,
device, result, time, reason) or, with ``--json``, a JSON list; exit 0 only if every
device was provisioned, else 1.

One at a time, not concurrently: a host has one adapter whose scan every device's search
shares, and a handshake may ask the person something (compare, passkey, a Wi-Fi
password after a failure) that must not interleave with another device's question. The
benchmark's 50 concurrent enrolments (benchmarks/scale.py) give each device its own
virtual host radio, which a laptop does not have.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bleprov.cli.host import (
    QR_TOKEN,
    HandshakePrompts,
    HostError,
    HostUsage,
    LabelSource,
    PromptingChooser,
    Stopwatch,
    Timings,
    TrustTarget,
    WifiChoice,
    exit_code_for,
    open_radio_session,
    provision_session,
    provisioning_trust,
    radio_redial,
    summary_json,
    trust_plans,
    unresolved_store,
)
from bleprov.core.errors import BleprovError
from bleprov.core.onboarding import PayloadError
from bleprov.radio.errors import RadioUnavailable
from bleprov.radio.spec import RadioSpec, open_central

if TYPE_CHECKING:
    from bleprov.core.enrolment.messages import WifiStatus
    from bleprov.core.wifi import ScanResult, WifiCredentials
    from bleprov.service.host_session import DeviceAuthentication
    from bleprov.service.provisioning import ProvisionReport, WifiChooser

#: Photo suffixes ``--labels`` reads as a picture of a label's QR code.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
#: In a device directory, the label file used, first found.
DEVICE_LABEL_FILES = ("label.txt", "label.ndef", "label.png")


@dataclass(frozen=True)
class LabelEntry:
    """One device of the batch: what the table calls it, and how its label is read (the
    QR text itself for a ``BP:`` line of a list file)."""

    name: str
    source: LabelSource | None = None
    qr_text: str | None = None

    def authentication(self) -> DeviceAuthentication:
        from bleprov.service.host_session import DeviceAuthentication

        if self.qr_text is None:
            assert self.source is not None
            return self.source.authentication()
        try:
            return DeviceAuthentication.from_qr_text(self.qr_text)
        except PayloadError as exc:
            raise HostError(f"that is not a valid bleprov label ({exc})") from None


def _label_file(path: Path, name: str) -> LabelEntry | None:
    """A label file by its kind (QR text, NFC message, photo), or a device directory by
    the label file in it; None for anything else."""
    if path.is_dir():
        for candidate in DEVICE_LABEL_FILES:
            if (path / candidate).is_file():
                return _label_file(path / candidate, name)
        return None
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return LabelEntry(name, LabelSource(qr_file=path))
    if suffix == ".ndef":
        return LabelEntry(name, LabelSource(ndef=path))
    if suffix in IMAGE_SUFFIXES:
        return LabelEntry(name, LabelSource(qr_image=path))
    return None


def read_labels(path: Path) -> list[LabelEntry]:
    """The devices ``--labels PATH`` names, in order (a directory's sorted by name)."""
    if path.is_dir():
        entries = [
            entry
            for child in sorted(path.iterdir())
            if not child.name.startswith(".")
            and (entry := _label_file(child, child.name)) is not None
        ]
        if not entries:
            raise HostUsage(
                f"no labels in {path}: it holds no device directories (with label.txt), "
                "label files (.txt, .ndef) or photos"
            )
        return entries
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise HostError(f"cannot read the label list {path}: {exc.strerror}") from None
    entries = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path.name}:{number}"
        if match := QR_TOKEN.fullmatch(line):
            entries.append(LabelEntry(where, qr_text=match.group(0)))
            continue
        try:
            target = Path(line).expanduser()
        except RuntimeError:  # "~name" of no user: said without the line (it may be a secret)
            raise HostUsage(f"{where}: a '~' path of no home directory") from None
        target = target if target.is_absolute() else path.parent / target
        entry = _label_file(target, line)
        if entry is None:
            # Said before any radio opens; the line itself may be a mistyped secret.
            raise HostUsage(
                f"{where}: not a label file (.txt, .ndef, a photo), a device directory or "
                "BP: QR text"
            )
        entries.append(entry)
    if not entries:
        raise HostUsage(f"{path} lists no labels")
    return entries


class RememberedWifi:
    """The network chosen (and its password typed) for the first device, given to every
    other; a password typed again after a failure is the one kept."""

    def __init__(self, console: Console, chooser: WifiChooser) -> None:
        self.console = console
        self.chooser = chooser
        self.chosen = False
        self.credentials: WifiCredentials | None = None

    def preset(self) -> WifiCredentials | None:
        """After the first device: its network, sent without a scan (one round trip
        less per device: docs/protocol.md section 11, "Pipelining"); for the first, the
        network the user named with its security, if the chooser knows one."""
        from bleprov.service.provisioning import PresetWifi

        if not self.chosen and isinstance(self.chooser, PresetWifi):
            named = self.chooser.preset()
            if named is not None:
                self.credentials, self.chosen = named, True
        return self.credentials if self.chosen else None

    async def choose(self, results: list[ScanResult]) -> WifiCredentials | None:
        if not self.chosen:
            self.credentials = await self.chooser.choose(results)
            self.chosen = True
        elif self.credentials is not None:
            ssid = self.credentials.ssid.decode(errors="replace")
            self.console.print(f"wifi: {escape(ssid)}, as for the devices before")
        return self.credentials

    async def retry(self, status: WifiStatus, tried: WifiCredentials) -> WifiCredentials | None:
        again = await self.chooser.retry(status, tried)
        if again is not None:
            self.credentials = again
        return again


@dataclass
class BatchResult:
    """One row of the summary."""

    label: str
    device_id: str | None
    ok: bool
    seconds: float
    reason: str
    exit_code: int
    report: ProvisionReport | None = None
    timings: Timings | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "device_id": self.device_id,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
            "summary": None
            if self.report is None or self.timings is None
            else summary_json(self.report, self.timings),
        }


def _done(report: ProvisionReport) -> str:
    """What was done to a device, in a few words."""
    parts = []
    if report.wifi is not None:
        parts.append(f"wifi {report.wifi.ip}")
    if report.zone is not None:
        parts.append(f"zone member for {report.zone.owner}")
    if report.peer is not None:
        parts.append("peer bound")
    return ", ".join(parts) or "authenticated"


async def provision_batch(
    console: Console,
    *,
    radio: str,
    mtu: int,
    entries: list[LabelEntry],
    roots: list[Path],
    allow_unknown_manufacturer: bool,
    wifi: WifiChoice,
    target: TrustTarget,
    timeout: float,
    reprovision: bool,
) -> list[BatchResult]:
    """Every device of ``entries`` in turn; the results, also when interrupted (the rows
    not reached say so), printed as a table by the caller."""
    trust = provisioning_trust(roots, allow_unknown_manufacturer, wifi, target)
    results: list[BatchResult] = []
    with trust_plans(target) as (zone_plan, peer_plan):
        chooser = None if wifi.skip else RememberedWifi(console, PromptingChooser(console, wifi))
        prompts = HandshakePrompts(console)
        unresolved = unresolved_store(target, peer_plan)
        # Validated intermediates, from and into the host's store: one fetch per
        # manufacturer, not per device (docs/protocol.md section 9).
        trust = dataclasses.replace(trust, intermediates=unresolved.intermediates())
        spec = RadioSpec.parse(radio)
        async with open_central(spec, mtu=mtu) as central:
            for number, entry in enumerate(entries, 1):
                console.print(f"[bold]({number}/{len(entries)}) {escape(entry.name)}[/]")
                timings = Timings(Stopwatch(), {})
                device_id = None
                try:
                    auth = entry.authentication()
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
                    assert session.info is not None
                    device_id = session.info.attestation.device_id
                    report = await provision_session(
                        console,
                        session,
                        wifi=chooser,
                        zone=zone_plan,
                        peer=peer_plan,
                        reprovision=reprovision,
                        timings=timings,
                        redial=radio_redial(central, auth, trust, prompts, timeout=timeout),
                        unresolved=unresolved,
                    )
                except BleprovError as exc:
                    seconds = timings.total.seconds()
                    code = exit_code_for(exc)
                    console.print(f"[bold red]failed:[/] {escape(str(exc))}")
                    results.append(
                        BatchResult(entry.name, device_id, False, seconds, str(exc), code)
                    )
                    if isinstance(exc, RadioUnavailable):
                        results += _not_tried(entries[number:], "the radio failed")
                        break
                    continue
                except asyncio.CancelledError:
                    seconds = timings.total.seconds()
                    results.append(
                        BatchResult(entry.name, device_id, False, seconds, "interrupted", 130)
                    )
                    results += _not_tried(entries[number:], "interrupted before it")
                    _print_table(console, results)
                    raise
                seconds = timings.total.seconds()
                console.print(f"[green]device {report.device_id} provisioned[/]")
                results.append(
                    BatchResult(
                        entry.name,
                        report.device_id,
                        True,
                        seconds,
                        _done(report),
                        0,
                        report,
                        timings,
                    )
                )
    return results


def _not_tried(entries: list[LabelEntry], why: str) -> list[BatchResult]:
    return [BatchResult(e.name, None, False, 0.0, f"not tried: {why}", 1) for e in entries]


def _print_table(console: Console, results: list[BatchResult]) -> None:
    done = sum(r.ok for r in results)
    table = Table(title=f"{done} of {len(results)} devices provisioned")
    for column in ("label", "device", "result", "time", "reason"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(
            escape(r.label),
            r.device_id or "",
            "[green]provisioned[/]" if r.ok else "[red]failed[/]",
            f"{r.seconds:.1f} s",
            escape(r.reason),
        )
    console.print(table)


def report_batch(console: Console, results: list[BatchResult], as_json: bool) -> None:
    """The summary (a table, or the JSON list on stdout); exit 1 unless all succeeded."""
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in results], indent=2))
    else:
        _print_table(console, results)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


async def provision_labels(
    console: Console, labels: Path, label: LabelSource, via: str | None, **options: Any
) -> list[BatchResult]:
    """``provision --labels``: the options checked and the list read before anything
    opens, then :func:`provision_batch`. ``--labels`` replaces every other way to name a
    label (each device brings its own) and works over a radio only."""
    given = [name for name, value in vars(label).items() if value not in (None, False)]
    if given:
        shown = ", ".join("--" + name.replace("_", "-") for name in given)
        raise HostUsage(f"--labels names every device's label itself: drop {shown}")
    if via is not None:
        raise HostUsage("--labels provisions over a radio: drop --via")
    return await provision_batch(console, entries=read_labels(labels), **options)
