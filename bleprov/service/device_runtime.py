"""One device's provisioning stack, assembled from its encrypted store and a radio.

The same assembly runs in the device daemon (``bleprov device serve``), the demo, the
end-to-end tests and the benchmarks: the session server with the device's factory
secrets and attempt counters, the enrolment service over a network backend, the link on a
peripheral (bumble or bless), and the trust services for validated connections. The
advertised state follows the store: virgin, enrolled (zone member), peer-bound, or
locked out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bleprov.broker.client import BrokerConfig
from bleprov.broker.device import DEFAULT_BROKER_MODES, BrokerDeviceTransport, BrokerSession
from bleprov.core import cbor
from bleprov.core import membership as mb
from bleprov.core.advertising import DeviceInfo, DeviceState, OobMode
from bleprov.core.enrolment.device import Authority, DeviceEnrolmentConfig
from bleprov.core.enrolment.messages import parse_credentials
from bleprov.core.errors import BleprovError, MalformedData
from bleprov.core.factory import DeviceProvisioning
from bleprov.core.wifi import Connected, JoinOutcome, network_tag
from bleprov.core.window import CommissioningWindow, WindowOffer
from bleprov.core.words import words
from bleprov.network.base import NetworkBackend
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.peripheral import Peripheral
from bleprov.service.enrolment import EnrolmentService
from bleprov.service.trust import DeviceTrust
from bleprov.session import DeviceUi, SecureDeviceServer
from bleprov.store.device_store import REMOTE_ATTEMPTS, WIFI, DeviceStore, StoreClaim

logger = logging.getLogger(__name__)


class DeviceNotProvisioned(BleprovError):
    """The store holds no factory identity: the device cannot be provisioned yet."""


class DeviceRuntime:
    """Session server + enrolment service + link + trust services of one device."""

    def __init__(
        self,
        store: DeviceStore,
        peripheral: Peripheral,
        network: NetworkBackend,
        *,
        ui: DeviceUi | None = None,
        device_confirms: bool = False,
        local_name: str = "bleprov",
        join_timeout: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        broker: BrokerConfig | None = None,
        broker_modes: OobMode = DEFAULT_BROKER_MODES,
    ) -> None:
        """``device_confirms``: the device has a display and a button, and its user
        accepts a compared number with the button (:meth:`accept_number`). Without it
        the device does not offer compare, whatever the factory's modes say."""
        provisioning = store.provisioning()
        if provisioning is None:
            raise DeviceNotProvisioned(
                f"the store in {store.directory} holds no factory identity: import the "
                "device's record first (bleprov device init)"
            )
        self.provisioning: DeviceProvisioning = provisioning
        self.store = store
        self.network = network
        self.join_timeout = join_timeout
        device_id = provisioning.identity.device_id
        self.service = EnrolmentService(
            network=network,
            store=store,
            config=lambda: DeviceEnrolmentConfig(device_id, join_timeout=join_timeout),
            clock=clock,
        )
        self.server = SecureDeviceServer(
            secrets=provisioning.secrets(),
            policy=int(provisioning.modes),
            application=self.service,
            attempts=store.attempt_store(),
            # The broker's failures lock the broker only: a stranger allowed to publish to
            # the device's topics must not lock its owner out of BLE.
            remote_attempts=store.attempt_store(REMOTE_ATTEMPTS) if broker is not None else None,
            ui=ui,
            device_confirms=device_confirms,
        )
        self.server.owned = self.owned
        self.service.after_commit = self._committed
        self.link = DeviceLink(peripheral, self.server, self.current_info, local_name=local_name)
        self.link.keep_advertising = self.server.button_window_open
        #: Cloud binding: the same session server, reached through the broker too. The
        #: server refuses a second session while one runs on either link.
        self.broker: BrokerDeviceTransport | None = None
        if broker is not None:
            self.broker = BrokerDeviceTransport(
                broker, self.server, self.current_info, device_id, allowed_modes=broker_modes
            )
            self.server.after_session = self._republish
        self.trust = DeviceTrust(
            store, device_id=device_id, factory_reset=self.factory_reset, windows=self
        )
        self._started = False
        self._claim: StoreClaim | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def device_id(self) -> str:
        return self.provisioning.identity.device_id

    @property
    def discriminator(self) -> int:
        return self.provisioning.discriminator

    def state(self, records: dict[str, bytes] | None = None) -> DeviceState:
        """What the advertisement says: from the store (``records``, if already read) and
        the attempt limiters (any secret locked out needs the physical reset, so the
        device says so)."""
        if self.server.limits.locked_out:
            return DeviceState.LOCKED_OUT
        if records is None:
            records = self.store.load()
        if mb.RECORD_ZONE in records:
            return DeviceState.ENROLLED
        if mb.RECORD_PEER_PINS in records:
            return DeviceState.PEER_BOUND
        return DeviceState.VIRGIN

    def owned(self) -> bool:
        """An owner is recorded: the factory credentials open nothing any more."""
        return mb.RECORD_OWNER in self.store.load()

    def current_info(self) -> DeviceInfo:
        """The info value (and so the advertisement): the factory's modes as far as this
        device can run them (no compare unless it confirms numbers itself); an owned device
        offers only the code mode, and that only while its owner's window is open (with
        the window's KDF inputs instead of the label's)."""
        records = self.store.load()  # once: every session start asks
        info = self.provisioning.info(self.state(records))
        if mb.RECORD_OWNER not in records:
            return dataclasses.replace(info, modes=OobMode(self.server.offered_modes))
        window = self._open_window()
        return dataclasses.replace(
            info,
            modes=OobMode.CODE if window is not None else OobMode(0),
            pbkdf_salt=None,
            pbkdf_cost=None,
            window=None if window is None else window.info(),
        )

    # ------------------------------------------------------ commissioning window

    def _open_window(self) -> CommissioningWindow | None:
        window = self.server.window
        if window is None or not window.is_open(self.server.now()):
            return None
        return window

    async def open_window(self, offer: WindowOffer, *, opened_by: bytes) -> None:
        """The owner opened a window (over its validated connection): replaces any open
        one, is advertised before this returns, and closes by itself when it expires."""
        now = self.server.now()
        self.server.window = CommissioningWindow(offer, opened_by=opened_by, now=now)
        if self._started:
            await self.republish()
            asyncio.get_running_loop().call_later(offer.seconds + 0.05, self._readvertise_soon)

    async def close_window(self) -> bool:
        was_open = self._drop_window()
        if self._started:
            await self.republish()
        return was_open

    def _drop_window(self) -> bool:
        window, self.server.window = self.server.window, None
        was_open = window is not None and window.is_open(self.server.now())
        if window is not None:
            window.close()
        return was_open

    async def republish(self) -> None:
        """Publish the current state on both links now (each skips what it already
        says): after a change made elsewhere (a window, another process's write)."""
        await self.link.readvertise()
        if self.broker is not None:
            self.broker.reannounce()

    def _committed(self, channel: object) -> None:
        """A window session committed: its window is spent (one-time)."""
        authority = getattr(channel, "authority", None)
        if authority in (Authority.ADMIN, Authority.HANDOVER):
            self._drop_window()  # the session's end re-advertises
            logger.info("commissioning window used (%s) and closed", authority.value)

    def _republish(self, session: object) -> None:
        """A session may have changed the state (it authenticated, or counted a failed
        attempt): both links say so (BLE also re-advertises after its own sessions)."""
        if self.broker is None or not self._started:
            return
        if isinstance(session, BrokerSession):
            self._readvertise_soon()
        self.broker.reannounce()

    async def start(self) -> None:
        """Claim the store (one daemon per device), start the network backend, re-apply
        the stored Wi-Fi, and advertise."""
        self._claim = self.store.claim()
        await self.network.start()
        await self.restore_wifi()
        await self.link.start()
        if self.broker is not None:
            await self.broker.start()
        self._started = True

    async def restore_wifi(self) -> JoinOutcome | None:
        """Re-apply the Wi-Fi the store holds, if any (None: nothing stored).

        The store is the only place the Wi-Fi key rests: the OS's network service keeps
        the enrolled network in memory only, so every start re-applies it from here
        (:meth:`NetworkBackend.restore`, which keeps it for the OS to join later if it is
        not in range yet). A failure is logged; the device keeps serving (the owner can
        enrol again)."""
        raw = self.store.get(WIFI)
        if raw is None:
            return None
        try:
            body = cbor.loads(raw, max_size=len(raw))
            if not isinstance(body, dict):
                raise MalformedData("the stored Wi-Fi record is not a map")
            credentials = parse_credentials(body)
        except MalformedData as exc:
            # Only the error's kind: a decoder's message could quote the record.
            logger.error("stored Wi-Fi unreadable (%s): enrol the device again", type(exc).__name__)
            return None
        name = self.network_tag(credentials.ssid)
        try:
            outcome = await self.network.restore(credentials, timeout=self.join_timeout)
        except BleprovError as exc:  # the device still serves: its owner can enrol again
            logger.error("stored Wi-Fi %s could not be re-applied: %s", name, exc)
            return None
        if isinstance(outcome, Connected):
            logger.info(
                "stored Wi-Fi %s re-applied: connected, address %s", name, outcome.ip_address
            )
        else:
            logger.warning("stored Wi-Fi %s could not be joined: %s", name, words(outcome.reason))
        return outcome

    def network_tag(self, ssid: bytes) -> str:
        """How logs name a network: a keyed tag, never the SSID (L4)."""
        return network_tag(self.store.log_tag_key(), ssid)

    def press_button(self) -> None:
        """The device's button: opens the button-mode window (and lifts nothing else).

        The advertisement says so while the window is open, and stops saying so when it
        closes."""
        self.server.press_button()
        if self._started:
            self._readvertise_soon()
            asyncio.get_running_loop().call_later(
                self.server.button.length + 0.05, self._readvertise_soon
            )

    def accept_number(self) -> bool:
        """The device's user accepts the compared number it shows (its button), if one
        waits for that; False otherwise (the press means something else then)."""
        return self.server.device_confirms and self.server.confirm_number(True)

    def physical_reset(self) -> None:
        """The reset button held: lifts the lockouts of the attempt limiters."""
        self.server.physical_reset()

    def factory_reset(self) -> None:
        """Forget Wi-Fi, zone, owner and pins; keep the factory identity; re-advertise."""
        self.store.factory_reset()
        self.server.forget_durable()  # the attempt records went with it
        self.server.window = None
        if self._started:
            self._readvertise_soon()
            if self.broker is not None:
                self.broker.reannounce()

    def _readvertise_soon(self) -> None:
        """Publish the current state in the advertisement (from sync callbacks)."""
        task = asyncio.get_running_loop().create_task(self.link.readvertise())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await self.trust.close()
        if self.broker is not None:
            await self.broker.close()
        await self.link.close()
        await self.service.drain()
        await self.server.settle()  # the last session's counters, not left to a timer
        await self.network.close()
        if self._claim is not None:
            self._claim.release()
            self._claim = None
