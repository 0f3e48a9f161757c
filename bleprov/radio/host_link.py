"""Host side of the link, on bleak's public API only.

:func:`scan` and :func:`find_device` use :class:`bleak.BleakScanner`; :class:`HostLink`
uses :class:`bleak.BleakClient`. Which radio they run on is a :class:`CentralRadio`: the
operating system's Bluetooth (BlueZ, CoreBluetooth, WinRT) or bumble (the virtual radio,
or an HCI dongle) through the bleak backend in :mod:`bleprov.radio.bleak_bumble`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from bleprov.core.advertising import (
    DeviceInfo,
    ServiceData,
    decode_service_data,
    describe,
    format_discriminator,
)
from bleprov.core.errors import BleprovError, ChannelClosed, FramingError, ProtocolError
from bleprov.core.frames import (
    BLUEZ_MAX_WRITE_VALUE,
    DEFAULT_MAX_MESSAGE,
    DEFAULT_MESSAGE_TIMEOUT,
    DEFAULT_RX_WINDOW,
    ChannelState,
    FrameChannel,
    FrameKind,
    MessageReceived,
    Role,
)
from bleprov.core.profile import GattProfile, default_profile
from bleprov.link.inbox import MessageInbox
from bleprov.radio.errors import (
    BUMBLE_RADIO_HINT,
    RadioUnavailable,
    reason,
    system_radio_unavailable,
)

if TYPE_CHECKING:
    from bumble.device import Device as BumbleDevice

    from bleprov.radio.gatt_cache import GattCache

logger = logging.getLogger(__name__)

#: The smallest ATT MTU (Core spec, Vol 3, Part F, 3.2.8).
MIN_ATT_MTU: Final = 23
#: The largest attribute value (Core spec, Vol 3, Part F, 3.2.9).
MAX_ATTRIBUTE_VALUE: Final = 512


class LinkError(BleprovError):
    """The radio link failed (device not found, connection lost, GATT error)."""


class DeviceNotFound(LinkError):
    """No bleprov device matching the filter was heard advertising in time."""


@dataclass(frozen=True)
class CentralRadio:
    """Which bleak backend to use, and its extra keyword arguments."""

    name: str
    backend_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def system(cls, adapter: str | None = None) -> CentralRadio:
        """The operating system's Bluetooth stack, as bleak picks it; on BlueZ ``adapter``
        (``hci1``) chooses among several."""
        if not adapter:
            return cls("system")
        kwargs = {"bluez": {"adapter": adapter}}
        return cls("system", {"scanner": kwargs, "client": kwargs})

    @classmethod
    def bumble(
        cls,
        device: BumbleDevice | None = None,
        *,
        mtu: int = 517,
        gatt_cache: GattCache | None = None,
    ) -> CentralRadio:
        """bumble through bleak: ``device`` if given, else ``BLEPROV_BUMBLE_TRANSPORT``.

        ``mtu`` is the ATT MTU the bumble central asks for (the system stacks choose
        their own). ``gatt_cache`` remembers known devices' layouts (by Database Hash),
        so that they need no discovery; the system stacks keep their own (BlueZ).
        """
        from bleprov.radio.bleak_bumble import BumbleClient, BumbleScanner

        kwargs: dict[str, Any] = {"backend": BumbleScanner}
        if device is not None:
            kwargs["bumble_device"] = device
        client = {**kwargs, "backend": BumbleClient, "mtu": mtu, "gatt_cache": gatt_cache}
        return cls("bumble", {"scanner": kwargs, "client": client})

    def unavailable(self, cause: BaseException) -> RadioUnavailable:
        """The typed error for this radio failing to scan: the stack (or the transport
        under bumble) is not there, not a device's fault."""
        if self.name == "system":
            return system_radio_unavailable(cause)
        return RadioUnavailable(
            f"the {self.name} radio stopped answering ({reason(cause)}): {BUMBLE_RADIO_HINT}"
        )

    def scanner_kwargs(self) -> dict[str, Any]:
        return dict(self.backend_kwargs.get("scanner", {}))

    def client_kwargs(self) -> dict[str, Any]:
        return dict(self.backend_kwargs.get("client", {}))


@dataclass(frozen=True)
class FoundDevice:
    device: BLEDevice
    service_data: ServiceData
    rssi: int
    local_name: str | None


def _parse_advertisement(
    device: BLEDevice, adv: AdvertisementData, profile: GattProfile
) -> FoundDevice | None:
    raw = adv.service_data.get(profile.service_uuid)
    if raw is None:
        return None
    try:
        data = decode_service_data(bytes(raw), profile)
    except ProtocolError as exc:
        logger.debug("ignoring %s: %s", device.address, exc)
        return None
    # An advertisement heard without its scan response has no name: the name the stack
    # keeps for the device (bleak's BLEDevice.name, None when it knows none) is the same.
    return FoundDevice(device, data, adv.rssi, adv.local_name or device.name)


async def scan(
    radio: CentralRadio, *, timeout: float = 5.0, profile: GattProfile | None = None
) -> list[FoundDevice]:
    """Every bleprov device heard within ``timeout``, strongest first."""
    profile = profile or default_profile()
    logger.info("scanning for %g s on the %s radio", timeout, radio.name)
    try:
        seen = await BleakScanner.discover(
            timeout=timeout, return_adv=True, **radio.scanner_kwargs()
        )
    except (BleakError, OSError) as exc:
        raise radio.unavailable(exc) from None
    found = [
        f
        for device, adv in seen.values()
        if (f := _parse_advertisement(device, adv, profile)) is not None
    ]
    logger.info("heard %d bleprov device(s)", len(found))
    for f in found:
        logger.debug("heard %s: %s", f.device.address, describe(f.service_data))
    return sorted(found, key=lambda f: -f.rssi)


async def find_device(
    radio: CentralRadio,
    *,
    discriminator: int | None = None,
    timeout: float = 10.0,
    profile: GattProfile | None = None,
    matches: Callable[[ServiceData], bool] | None = None,
) -> FoundDevice:
    """The first bleprov device heard advertising with ``discriminator`` (if given) and
    for which ``matches`` (if given) holds, e.g. a manual code's short discriminator."""
    profile = profile or default_profile()
    result: FoundDevice | None = None
    which = (
        f" with discriminator {format_discriminator(discriminator)}"
        if discriminator is not None
        else ""
    )
    logger.info(
        "scanning on the %s radio for a bleprov device%s (up to %g s)", radio.name, which, timeout
    )

    def match(device: BLEDevice, adv: AdvertisementData) -> bool:
        nonlocal result
        found = _parse_advertisement(device, adv, profile)
        if found is None or (
            discriminator is not None and found.service_data.discriminator != discriminator
        ):
            return False
        if matches is not None and not matches(found.service_data):
            return False
        result = found
        return True

    try:
        device = await BleakScanner.find_device_by_filter(
            match, timeout=timeout, **radio.scanner_kwargs()
        )
    except (BleakError, OSError) as exc:
        raise radio.unavailable(exc) from None
    if device is None or result is None:
        raise DeviceNotFound(f"no bleprov device{which} found within {timeout:g} s")
    logger.info("found %s: %s", result.device.address, describe(result.service_data))
    return result


def _failure(task: asyncio.Task[None]) -> BaseException | None:
    """What a finished, not cancelled task raised; None while it runs or if it did not."""
    if not task.done() or task.cancelled():
        return None
    return task.exception()


def _frame_kind(frame: bytes) -> str:
    """A frame's kind for a debug line (its control byte's top bits); never its payload."""
    return FrameKind(frame[0] >> 6).name if frame else "empty"


class HostLink:
    """A connection to one device: whole messages both ways over the framing layer."""

    def __init__(
        self,
        target: BLEDevice | str,
        radio: CentralRadio,
        *,
        profile: GattProfile | None = None,
        max_message: int = DEFAULT_MAX_MESSAGE,
        rx_window: int = DEFAULT_RX_WINDOW,
        message_timeout: float = DEFAULT_MESSAGE_TIMEOUT,
        write_with_response: bool = False,
        connect_timeout: float = 10.0,
    ) -> None:
        self.profile = profile or default_profile()
        self.channel = FrameChannel(
            Role.HOST,
            max_message=max_message,
            rx_window=rx_window,
            message_timeout=message_timeout,
            # The device may run BlueZ 5.66, which drops writes above 510 bytes.
            max_send_frame=BLUEZ_MAX_WRITE_VALUE,
        )
        self.write_with_response = write_with_response
        client_kwargs = radio.client_kwargs()
        if radio.name == "bumble":
            # The info is read with the Database Hash on a known device, one request for
            # both; of the descriptors, only tx's CCCD is needed.
            client_kwargs["prefetch"] = self.profile.info.uuid
            client_kwargs["descriptors"] = "subscribable"
        self._client = BleakClient(
            target,
            disconnected_callback=self._on_disconnect,
            timeout=connect_timeout,
            services=[self.profile.service_uuid],
            **client_kwargs,
        )
        self.info: DeviceInfo | None = None
        #: The info value exactly as read: the secure session binds these bytes.
        self.info_raw = b""
        self.write_round_trips = 0
        self._rx_char: BleakGATTCharacteristic | None = None
        self._inbox = MessageInbox(
            lambda timeout: LinkError(f"no message from the device within {timeout:g} s")
        )
        self._wakeup = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._subscription: asyncio.Task[None] | None = None
        self._closing = False
        self._loop = asyncio.get_running_loop()

    @property
    def client(self) -> BleakClient:
        return self._client

    @property
    def mtu(self) -> int:
        return self.channel.att_mtu

    def now(self) -> float:
        return self._loop.time()

    async def __aenter__(self) -> HostLink:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> DeviceInfo:
        """Connect, read the device info, subscribe to frames and open the channel.

        The subscription (the CCCD Write Request) is not waited for: OPEN and the first
        messages follow it as Write Commands, which ATT allows while a request is
        outstanding, so it costs no round trip of its own (docs/protocol.md, section 1)."""
        logger.info("connecting to %s", self._client.address)
        try:
            await self._client.connect()
            service = self._client.services.get_service(self.profile.service_uuid)
            if service is None:
                raise LinkError("the device does not offer the bleprov service")
            self._rx_char = service.get_characteristic(self.profile.rx.uuid)
            tx = service.get_characteristic(self.profile.tx.uuid)
            info_char = service.get_characteristic(self.profile.info.uuid)
            if self._rx_char is None or tx is None or info_char is None:
                raise LinkError("the device's bleprov service lacks a characteristic")
            self.info_raw = bytes(await self._client.read_gatt_char(info_char))
            logger.debug("read the device info (%d bytes)", len(self.info_raw))
            info = DeviceInfo.decode(self.info_raw)
            self.write_round_trips += 1
            if info.protocol_version != self.profile.protocol_version:
                raise LinkError(
                    f"the device speaks bleprov protocol {info.protocol_version} and this "
                    f"host protocol {self.profile.protocol_version}: update the older of the two"
                )
            self.info = info
            self._subscription = self._loop.create_task(
                self._client.start_notify(tx, self._on_notification)
            )
            self._subscription.add_done_callback(self._subscribed)
            # One turn of the loop puts the CCCD Write Request on the link before OPEN:
            # the device hears its host subscribe before it has anything to send.
            await asyncio.sleep(0)
            if (refused := _failure(self._subscription)) is not None:
                # Refused at once (no CCCD, say): say so now rather than at the first read.
                raise LinkError(f"connection failed: could not subscribe to frames ({refused})")
            self.write_round_trips += 1
            self.channel.connection_made(self._att_mtu())
            self.channel.open(
                peer_rx_window=info.rx_window, peer_max_message=info.max_message, now=self.now()
            )
        except BleakError as exc:
            await self._abort()
            raise LinkError(f"connection failed: {exc}") from exc
        except BaseException:
            await self._abort()
            raise
        logger.info(
            "connected to %s: ATT MTU %d; the device takes messages up to %d bytes, "
            "%d frames ahead",
            self._client.address,
            self.channel.att_mtu,
            info.max_message,
            info.rx_window,
        )
        self._pump = self._loop.create_task(self._run())
        self._wakeup.set()
        return info

    def _att_mtu(self) -> int:
        """The ATT MTU to frame at.

        bleak's BlueZ backend reports 23 from ``mtu_size`` unless its private
        ``_acquire_mtu()`` ran, which would have a Linux laptop send 20-byte frames. The
        rx characteristic's ``max_write_without_response_size`` comes from BlueZ's own MTU
        property (BlueZ 5.62 and later) on that backend and from the link on the others,
        so it is asked first; ``mtu_size`` only where it says no more than the minimum."""
        assert self._rx_char is not None
        from_characteristic = self._rx_char.max_write_without_response_size + 3
        if MIN_ATT_MTU < from_characteristic < MAX_ATTRIBUTE_VALUE + 3:
            return from_characteristic
        # At the minimum, or capped by the largest attribute value (an MTU above 515).
        # bleak's BlueZ backend warns here ("Call _acquire_mtu()") and says 23: the
        # characteristic's size is then the better answer, and the warning no news.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Using default MTU value", UserWarning)
            reported = self._client.mtu_size
        return max(reported, from_characteristic, MIN_ATT_MTU)

    def _subscribed(self, task: asyncio.Task[None]) -> None:
        """The CCCD write's outcome: a refusal fails the link like a lost connection."""
        if (exc := _failure(task)) is not None:
            self._fail(LinkError(f"connection failed: could not subscribe to frames ({exc})"))

    async def _abort(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None and not subscription.done():
            subscription.cancel()
            with contextlib.suppress(asyncio.CancelledError, BleakError, OSError):
                await subscription
        with contextlib.suppress(BleakError, OSError, asyncio.TimeoutError):
            await self._client.disconnect()

    def send(self, payload: bytes) -> None:
        """Queue one message to the device."""
        self._inbox.check()
        self.channel.send_message(payload, self.now())
        self._wakeup.set()

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next whole message from the device."""
        return await self._inbox.receive(timeout)

    async def request(self, payload: bytes, timeout: float | None = None) -> bytes:
        self.send(payload)
        return await self.receive(timeout)

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        self.channel.close()
        await self._abort()

    # -------------------------------------------------------------- internals

    def _fail(self, error: BleprovError) -> None:
        self._inbox.fail(error)
        self._wakeup.set()

    def _on_notification(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        if self.channel.state is not ChannelState.OPEN:
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("frame in: %s, %d bytes", _frame_kind(bytes(data)), len(data))
        try:
            events = self.channel.receive_frame(bytes(data), self.now())
        except FramingError as exc:
            self._fail(exc)
            return
        for ev in events:
            if isinstance(ev, MessageReceived):
                self._inbox.put(ev.payload)
        self._wakeup.set()

    def _on_disconnect(self, _client: BleakClient) -> None:
        logger.debug("disconnected from %s", self._client.address)
        try:
            self.channel.connection_lost()
        except FramingError as exc:
            self._fail(exc)
        self._fail(ChannelClosed("the device disconnected"))

    async def _run(self) -> None:
        assert self._rx_char is not None
        while True:
            # asyncio.timeout_at, not wait_for: on Python 3.11 wait_for can swallow the
            # cancellation close() sends, leaving close() waiting forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(self.channel.next_deadline()):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self._closing:
                return
            try:
                self.channel.handle_timer(self.now())
            except FramingError as exc:
                self._fail(exc)
            frames = self.channel.data_to_send(self.now())
            try:
                for frame in frames:
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug("frame out: %s, %d bytes", _frame_kind(frame), len(frame))
                    await self._client.write_gatt_char(
                        self._rx_char, frame, response=self.write_with_response
                    )
                    if self.write_with_response:
                        self.write_round_trips += 1
            except BleakError as exc:
                self._fail(LinkError(f"write failed: {exc}"))
                return
            if self.channel.state in (ChannelState.RESET, ChannelState.CLOSED):
                await self._abort()
                return
