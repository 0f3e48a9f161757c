"""The device daemon: a :class:`DeviceRuntime` kept running, its UI, and what follows
enrolment.

``bleprov device serve`` builds one :class:`DeviceDaemon` from the command line. The
daemon starts the runtime (network, stored Wi-Fi re-applied, advertising), wires the UI's
button and reset to the session server, watches the device's state (it lives in the
store, which enrolment, unbinding and a factory reset from another process all change)
and tells every :class:`DaemonService` when it changes. Validated connections
(:class:`ValidatedConnections`) are one such service; another (an MQTT broker link) is
added by appending to ``services``, nothing else changes.

Event lines (``ready: ...``, ``state: ...``) go to ``emit``: stdout for the CLI, which tests
and systemd's journal read. The same moments go to ``notify`` (systemd's sd_notify, under
``Type=notify``): ``READY=1`` once advertising, ``STATUS=`` on every state change,
``STOPPING=1`` on the way out. Nothing secret is ever emitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from bleprov.core import membership as mb
from bleprov.core.advertising import DeviceState, format_discriminator
from bleprov.core.errors import BleprovError
from bleprov.core.wifi import Connected, JoinOutcome, ScanResult, WifiCredentials
from bleprov.core.wire_codes import ErrorCode
from bleprov.core.words import words
from bleprov.core.zone import ZoneError, crl_info, crl_supersedes
from bleprov.network.base import NetworkBackend
from bleprov.radio.errors import RadioLost, reason
from bleprov.radio.spec import RadioSpec, transport_errors
from bleprov.service.device_runtime import DeviceRuntime
from bleprov.service.device_ui import DeviceUiHooks, UiActions, state_name

logger = logging.getLogger(__name__)

DEFAULT_VIRTUAL_PORT: Final = 9100
#: How often the store is read for state changes (seconds).
DEFAULT_POLL_INTERVAL: Final = 0.5
#: CRL refresh: at most this long between fetches (``--crl-refresh``), and retry this soon
#: after a failure. A revocation reaches a member within CRL_REFRESH (docs/protocol.md 13.1).
CRL_REFRESH: Final = timedelta(minutes=5)
CRL_RETRY: Final = 30.0
#: Renewal: first retry after a minute, doubling; and never sleep longer than an hour
#: between looks at the certificate (the clock may jump when NTP sets it).
RENEWAL_RETRY_INITIAL: Final = 60.0
RENEWAL_RECHECK: Final = 3600.0

Emit = Callable[[str], None]


class DaemonConfigError(BleprovError):
    """A daemon option could not be understood (radio, network, endpoint)."""


class NoFreshCrl(ZoneError):
    """No fresh CRL from the hub is known: zone members are refused until there is one."""

    code = (
        ErrorCode.BAD_CRL
    )  # the same code as a bad CRL: the member learns only that the CRL failed


# ------------------------------------------------------------------ option parsing


def parse_radio(text: str) -> RadioSpec:
    """``bluez``, ``bumble:<transport>``, or ``virtual[:PORT]`` (a ``bleprov radio hub``
    controller on loopback, port 9100 unless given)."""
    if text == "virtual" or text.startswith("virtual:"):
        port_text = text.partition(":")[2] or str(DEFAULT_VIRTUAL_PORT)
        port = _port(port_text, text)
        return RadioSpec("bumble", f"tcp-client:127.0.0.1:{port}")
    return RadioSpec.parse(text)


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0: any free port, for servers)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise DaemonConfigError(f"{text!r} is not HOST:PORT, e.g. 0.0.0.0:8443")
    return host.strip("[]"), _port(port_text, text)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise DaemonConfigError(f"bad port in {whole!r}: give a number from 0 to 65535")
    return int(text)


def _simulated(argument: str) -> NetworkBackend:
    from bleprov.network.simulated import SimulatedWifi

    return SimulatedWifi.from_file(Path(argument))


def _networkmanager(argument: str) -> NetworkBackend:
    from bleprov.network.networkmanager import NetworkManagerWifi

    return NetworkManagerWifi(interface=argument or None)


def _wpa_supplicant(argument: str) -> NetworkBackend:
    from bleprov.network.wpa_supplicant import DEFAULT_CTRL_PATH, WpaSupplicantWifi

    path = Path(DEFAULT_CTRL_PATH)
    return WpaSupplicantWifi(path.parent / argument if argument else path)


#: The Wi-Fi backends ``--network`` names: kind -> (its usage, its opener; each opener
#: imports its module only when chosen). A new backend is one module in bleprov.network
#: and one line here.
NETWORKS: Final[dict[str, tuple[str, Callable[[str], NetworkBackend]]]] = {
    "simulated": ("simulated:FILE", _simulated),
    "networkmanager": ("networkmanager[:IFACE]", _networkmanager),
    "wpa-supplicant": ("wpa-supplicant[:IFACE]", _wpa_supplicant),
}


def parse_network(text: str) -> tuple[str, str]:
    """``--network`` as (kind, argument), checked before anything opens (a typo is bad
    usage): one of :data:`NETWORKS`, e.g. ``simulated:FILE``."""
    kind, _, argument = text.partition(":")
    if kind not in NETWORKS:
        *first, last = (usage for usage, _ in NETWORKS.values())
        raise DaemonConfigError(f"unknown network {text!r}: use {', '.join(first)} or {last}")
    if kind == "simulated" and not argument:
        raise DaemonConfigError(
            "simulated needs its environment file: simulated:FILE "
            "(`bleprov contrib show simulated_example.toml` prints an example)"
        )
    return kind, argument


def open_network(text: str) -> NetworkBackend:
    """``simulated:FILE``, ``networkmanager[:IFACE]`` or ``wpa-supplicant[:IFACE]``."""
    kind, argument = parse_network(text)
    _usage, opener = NETWORKS[kind]
    return opener(argument)


# ------------------------------------------------------------- network, logged


class LoggedNetwork(NetworkBackend):
    """A backend whose joins, commits and rollbacks are reported: never credentials, and
    never the SSID (the lines go to the journal), only ``tag(ssid)``."""

    def __init__(
        self, inner: NetworkBackend, emit: Emit, *, tag: Callable[[bytes], str] | None = None
    ) -> None:
        self.inner = inner
        self.emit = emit
        self.tag = tag or (lambda _ssid: "the network")

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def cached_scan(self) -> list[ScanResult]:
        return self.inner.cached_scan()

    async def rescan(self) -> list[ScanResult]:
        return await self.inner.rescan()

    async def try_join(self, credentials: WifiCredentials, *, timeout: float) -> JoinOutcome:
        name = self.tag(credentials.ssid)
        outcome = await self.inner.try_join(credentials, timeout=timeout)
        if isinstance(outcome, Connected):
            self.emit(f"network: joined {name}, address {outcome.ip_address} (not committed)")
        else:
            self.emit(f"network: joining {name} failed: {words(outcome.reason)}")
        return outcome

    async def commit(self) -> None:
        await self.inner.commit()
        self.emit("network: committed")

    async def restore(self, credentials: WifiCredentials, *, timeout: float) -> JoinOutcome:
        # The inner backend's own restore: it may keep a network not in range yet.
        name = self.tag(credentials.ssid)
        outcome = await self.inner.restore(credentials, timeout=timeout)
        if isinstance(outcome, Connected):
            self.emit(f"network: re-applied {name}, address {outcome.ip_address}")
        else:
            self.emit(
                f"network: re-applying {name} failed: {words(outcome.reason)}"
                " (kept, if the network service joins on its own)"
            )
        return outcome

    async def rollback(self) -> None:
        await self.inner.rollback()
        self.emit("network: rolled back to the previous network")


# --------------------------------------------------------------------- services


class DaemonService(Protocol):
    """Something the daemon runs beside the radio, following the device's state."""

    async def state_changed(self, state: DeviceState) -> None: ...

    async def close(self) -> None: ...


class CrlCache:
    """The zone's CRL as last fetched from the hub, and whether it is still fresh.

    Only a CRL with a higher CRL number replaces the one held (core.zone.crl_supersedes):
    an older one, replayed to hide a revocation, is refused, and so is another CRL under
    the number held; the same CRL again changes nothing. ``fetch`` checks the rest (the
    hub's role, the issuing CA's signature, freshness).
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[bytes]] | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        interval: timedelta = CRL_REFRESH,
    ) -> None:
        if interval <= timedelta(0):
            raise DaemonConfigError("the CRL refresh interval must be positive")
        self.fetch = fetch
        self.clock = clock
        self.interval = interval
        self.der: bytes | None = None
        self.next_update: datetime | None = None
        self.number: int | None = None

    def current(self) -> bytes:
        """The fresh CRL, or :class:`NoFreshCrl` (the member server then refuses)."""
        if self.der is None or self.next_update is None:
            raise NoFreshCrl("no CRL from the hub yet: start the daemon with --hub HOST:PORT")
        if self.clock() >= self.next_update:
            raise NoFreshCrl("the hub's CRL is out of date and no fresh one could be fetched")
        return self.der

    async def refresh(self) -> bool:
        """Fetch the hub's CRL; whether it replaced the one held (BadCrl: refused)."""
        if self.fetch is None:
            return False
        der = await self.fetch()
        if not crl_supersedes(der, self.der):
            return False
        info = crl_info(der)
        self.der, self.next_update, self.number = der, info.next_update, info.number
        return True

    def next_refresh_in(self) -> float:
        """Seconds until the next fetch: half the CRL's remaining life, at most the
        interval; no sooner than CRL_RETRY (or the interval, if shorter)."""
        floor = min(CRL_RETRY, self.interval.total_seconds())
        if self.next_update is None:
            return floor
        remaining = (self.next_update - self.clock()) / 2
        return max(floor, min(remaining, self.interval).total_seconds())


class ValidatedConnections:
    """Serve validated connections once the device is enrolled (zone members, with the
    hub's CRL) or bound (pinned peers); stop when it is neither. Follows state changes
    without a restart."""

    def __init__(
        self,
        runtime: DeviceRuntime,
        endpoint: tuple[str, int],
        *,
        hub: tuple[str, int] | None,
        emit: Emit,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        crl_refresh: timedelta = CRL_REFRESH,
    ) -> None:
        self.runtime = runtime
        self.endpoint = endpoint
        self.hub = hub
        self.emit = emit
        fetch = None
        if hub is not None:

            async def fetch() -> bytes:
                return await runtime.trust.fetch_crl(*hub)

        self.crl = CrlCache(fetch, interval=crl_refresh)
        self.clock = clock
        self._serving: DeviceState | None = None
        self._crl_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None

    async def state_changed(self, state: DeviceState) -> None:
        wanted = state if state in (DeviceState.ENROLLED, DeviceState.PEER_BOUND) else None
        if wanted == self._serving:
            return
        await self._stop()
        if wanted is DeviceState.ENROLLED:
            await self._serve_members()
        elif wanted is DeviceState.PEER_BOUND:
            server = await self.runtime.trust.serve_peers(*self.endpoint)
            self._serving = wanted
            self.emit(f"tls: serving pinned peers on {_address(server)}")

    async def _serve_members(self) -> None:
        if self.hub is None:
            self.emit("tls: no --hub given: members are refused until a CRL is known")
        else:
            await self._refresh_once()
            self._crl_task = asyncio.create_task(self._refresh_forever(), name="crl-refresh")
            self._renew_task = asyncio.create_task(self._renew_forever(), name="renewal")
        await self._member_server()

    async def _member_server(self) -> None:
        server = await self.runtime.trust.serve_members(
            *self.endpoint, crl_provider=self.crl.current
        )
        self._serving = DeviceState.ENROLLED
        self.emit(f"tls: serving zone members on {_address(server)}")

    async def _renew_forever(self) -> None:
        """Renew the member certificate through the hub two thirds into its validity,
        then serve with the new one. The hub unreachable: retry, backing off to an hour."""
        assert self.hub is not None
        backoff = RENEWAL_RETRY_INITIAL
        while True:
            membership = mb.membership_of(self.runtime.store.load())
            if membership is None:
                return
            wait = (membership.renew_after() - self.clock()).total_seconds()
            if wait > 0:
                # Re-check at least hourly: the clock may jump once NTP sets it.
                await asyncio.sleep(min(wait, RENEWAL_RECHECK))
                continue
            try:
                await self.runtime.trust.renew(*self.hub)
            except (BleprovError, OSError) as exc:
                self.emit(f"tls: renewal through the hub failed ({exc}); retry in {backoff:g} s")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RENEWAL_RECHECK)
                continue
            backoff = RENEWAL_RETRY_INITIAL
            renewed = mb.membership_of(self.runtime.store.load())
            if renewed is not None:
                self.emit(f"tls: certificate renewed, serial {renewed.serial:x}"[:72])
            # Serve with the new certificate: the server loads it when it starts.
            await self.runtime.trust.close()
            await self._member_server()

    async def _refresh_once(self) -> bool:
        try:
            changed = await self.crl.refresh()
        except (BleprovError, OSError) as exc:
            self.emit(f"tls: CRL fetch from the hub failed ({exc}); retrying")
            return False
        if changed:
            self.emit(
                f"tls: CRL fetched from the hub, number {self.crl.number}, "
                f"next update {self.crl.next_update:%Y-%m-%d %H:%M}"
            )
        return True

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.crl.next_refresh_in())
            await self._refresh_once()

    async def _stop(self) -> None:
        for task in (self._crl_task, self._renew_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._crl_task = self._renew_task = None
        if self._serving is not None:
            await self.runtime.trust.close()
            self.emit(f"tls: stopped serving {state_name(self._serving)} connections")
            self._serving = None

    async def close(self) -> None:
        await self._stop()


def _address(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"


# ----------------------------------------------------------------------- daemon


class DeviceDaemon:
    """The runtime, its UI and its services, until :meth:`close`."""

    def __init__(
        self,
        runtime: DeviceRuntime,
        ui: DeviceUiHooks,
        *,
        radio_name: str,
        emit: Emit,
        services: list[DaemonService] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        notify: Callable[[str], object] = lambda _message: None,
    ) -> None:
        self.runtime = runtime
        self.ui = ui
        self.radio_name = radio_name
        self.emit = emit
        self.notify = notify
        self.services: list[DaemonService] = list(services or [])
        self.poll_interval = poll_interval
        self.state: DeviceState | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start everything and emit the one ``ready:`` line."""
        await self.runtime.start()
        await self.ui.start(UiActions(button=self.press_button, reset=self.physical_reset))
        state = self.runtime.state()
        await self._changed(state, announce=False)
        self.emit(
            f"ready: device {self.runtime.device_id} advertising on {self.radio_name}, "
            f"discriminator {format_discriminator(self.runtime.discriminator)}, "
            f"state {state_name(state)}"
        )
        self.notify(f"READY=1\n{self._status(state)}")
        self._watch = asyncio.create_task(self._watch_state(), name="state-watch")

    def press_button(self) -> None:
        """The button: accepts a compared number while one waits (``--device-confirms``),
        else opens the button-mode window."""
        if self.runtime.accept_number():
            self.emit("button: number accepted on the device")
            return
        self.runtime.press_button()
        window = self.runtime.server.button.length
        self.emit(f"button: pressed, button-mode window open for {window:g} s")

    def physical_reset(self) -> None:
        self.runtime.physical_reset()
        self.emit("reset: attempt lockout lifted")
        self._poke()

    def _poke(self) -> None:
        """Check the state now rather than at the next poll."""
        asyncio.get_running_loop().create_task(self.check_state())

    async def check_state(self) -> None:
        try:
            state = self.runtime.state()
        except BleprovError as exc:  # an unreadable store: say so, keep the last state
            logger.error("cannot read the device store: %s", exc)
            return
        if state != self.state:
            await self._changed(state)

    async def _changed(self, state: DeviceState, *, announce: bool = True) -> None:
        if announce and self.state is not None:
            self.emit(f"state: {state_name(self.state)} -> {state_name(state)}")
            # The advertisement and the broker's announcement carry the state: publish it
            # (BLE: a no-op while connected).
            try:
                await self.runtime.republish()
            except BleprovError as exc:
                logger.warning("could not re-advertise: %s", exc)
            self.notify(self._status(state))
        self.state = state
        self.ui.show_state(state)
        for service in self.services:
            try:
                await service.state_changed(state)
            except (BleprovError, OSError) as exc:
                self.emit(f"error: {type(service).__name__} could not follow the state: {exc}")

    def _status(self, state: DeviceState) -> str:
        """systemd's one-line status (``systemctl status``)."""
        return (
            f"STATUS=device {self.runtime.device_id} advertising on {self.radio_name}, "
            f"state {state_name(state)}"
        )

    async def _watch_state(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            await self.check_state()

    async def close(self) -> None:
        """Stop watching, stop the services, close the runtime (a staged enrolment rolls
        back), close the UI."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for service in reversed(self.services):
            try:
                await service.close()
            except (BleprovError, OSError) as exc:
                logger.warning("%s did not close cleanly: %s", type(service).__name__, exc)
        await self.runtime.close()
        await self.ui.close()

    async def run(self, stop: asyncio.Event, lost: asyncio.Future[None] | None = None) -> None:
        """Start, wait for ``stop`` (a signal) or ``lost`` (the radio went away), then
        close within :data:`CLOSE_TIMEOUT` whatever happens in between.

        Raises :class:`RadioLost` after closing when the radio went away: advertising
        into nothing would look alive and serve no one, while exiting non-zero lets the
        service manager (systemd's Restart=on-failure) start the daemon again."""
        radio_lost = False
        try:
            try:
                await self.start()
                radio_lost = await _stop_or_lost(stop, lost)
            except transport_errors() as exc:  # gone while starting: a command unanswered
                self.emit(f"radio: {self.radio_name} failed ({reason(exc)})")
                radio_lost = True
            if radio_lost:
                self.emit(f"radio: lost {self.radio_name}")
                self.notify(f"STATUS=lost the radio {self.radio_name}")
        finally:
            self.notify("STOPPING=1\nSTATUS=stopping")
            self.emit("stopping")
            await self._close_promptly()
            self.emit("stopped")
        if radio_lost:
            raise RadioLost(
                f"lost the radio {self.radio_name} (the hub or bluetoothd stopped, or the "
                "dongle was unplugged): exiting so that the service manager starts the "
                "daemon again"
            )

    async def _close_promptly(self) -> None:
        """:meth:`close`, abandoned after :data:`CLOSE_TIMEOUT` (a radio that went away
        answers no command: each would wait for bumble's command timeout)."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.close()
        except TimeoutError:
            self.emit(f"error: closing took over {CLOSE_TIMEOUT:g} s (the radio does not answer)")
        except transport_errors() as exc:
            self.emit(f"error: the radio failed while closing ({reason(exc)})")


#: Seconds the daemon may take to close after a signal or a lost radio.
CLOSE_TIMEOUT = 3.0


async def _stop_or_lost(stop: asyncio.Event, lost: asyncio.Future[None] | None) -> bool:
    """Wait for ``stop`` or ``lost``; whether the radio was lost (and no stop asked)."""
    waiting: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    either: set[asyncio.Future[Any]] = {waiting} if lost is None else {waiting, lost}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if lost is None or not lost.done():
        return False
    if not lost.cancelled():
        lost.exception()  # retrieved: how the transport ended is not the daemon's error
    return not stop.is_set()
