"""A real device's session server on the virtual radio, and hosts for it.

Shared by the session-layer attack tests (tests/attacks/test_h2_*, test_l1_*, test_l2_*,
...). It uses only what a product uses: :class:`SecureDeviceServer` behind a
:class:`DeviceLink`, :class:`SecureHostLink` on a bumble central.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.serialization import Encoding

from bleprov.core.advertising import DeviceInfo, DeviceState, OobMode
from bleprov.core.attempts import AttemptLimiter
from bleprov.core.crypto.spake2plus import ScryptCost, derive_verifier
from bleprov.core.device_secrets import SPAKE_ID_VERIFIER
from bleprov.core.errors import BleprovError
from bleprov.core.identity import DeviceIdentity, Manufacturer, TrustPolicy
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.radio.bumble_peripheral import BumblePeripheral
from bleprov.radio.device_link import DeviceLink
from bleprov.radio.host_link import CentralRadio, HostLink, find_device
from bleprov.radio.virtual import VirtualLink, make_virtual_device
from bleprov.session import (
    MemoryAttemptStore,
    SecureDeviceChannel,
    SecureDeviceServer,
    SecureHostLink,
    SilentUi,
)

NOW = datetime.now(UTC)
CHEAP = ScryptCost(n=1 << 10, r=8, p=1)
SALT = os.urandom(16)
CODE = b"48613702"
WRONG_CODE = b"11111112"
CLASSIC = OobMode.QR | OobMode.CODE | OobMode.COMPARE | OobMode.BUTTON
MANUFACTURER = Manufacturer.create("Acme Devices", now=NOW)
TRUST = hst.Trust((MANUFACTURER.root_certificate.public_bytes(Encoding.DER),), TrustPolicy.REFUSE)

Confirm = Callable[[int], Awaitable[bool]]


class Echo:
    """The product application: echoes authenticated data back."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.opened_modes: list[Mode | None] = []

    def opened(self, channel: SecureDeviceChannel) -> None:
        self.opened_modes.append(channel.mode)

    def received(self, channel: SecureDeviceChannel, data: bytes) -> None:
        self.messages.append(data)
        channel.send(data)

    def closed(self, channel: SecureDeviceChannel, error: BleprovError | None) -> None:
        pass


@dataclass
class Device:
    identity: DeviceIdentity
    label_secret: bytes
    server: SecureDeviceServer
    link: DeviceLink
    ui: SilentUi
    app: Echo
    attempts: MemoryAttemptStore
    discriminator: int

    async def idle(self) -> None:
        """Wait until the last session is over and the device advertises again."""
        await asyncio.wait_for(self.link.advertising.wait(), 5)

    def press_its_button_to_confirm(self) -> None:
        """The device's own user accepts the number on the device (compare mode)."""
        for channel in list(self.server.channels.values()):
            channel.confirm_number(True)


@dataclass
class Rig:
    link: VirtualLink = field(default_factory=VirtualLink)
    links: list[DeviceLink] = field(default_factory=list)
    counter: int = 0

    def address(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}:00:00:{self.counter >> 8:02X}:{self.counter & 0xFF:02X}"

    async def device(
        self,
        *,
        modes: OobMode = CLASSIC,
        device_confirms: bool = False,
        max_failures: int = 20,
        free_failures: int = 50,
        attempts: MemoryAttemptStore | None = None,
        users: dict[bytes, bytes] | None = None,
        state: DeviceState = DeviceState.VIRGIN,
        identity: DeviceIdentity | None = None,
        label_secret: bytes | None = None,
        discriminator: int | None = None,
    ) -> Device:
        if discriminator is None:  # each device its own, so a scan finds the right one
            discriminator = 0x200 + len(self.links)
        identity = identity or MANUFACTURER.issue_device(now=NOW)
        label_secret = label_secret or os.urandom(16)
        users = users if users is not None else {b"": CODE}
        records = {
            user: derive_verifier(
                pw, salt=SALT, id_prover=user, id_verifier=SPAKE_ID_VERIFIER, cost=CHEAP
            ).verifier_record()
            for user, pw in users.items()
        }
        ui, app = SilentUi(), Echo()
        attempts = attempts if attempts is not None else MemoryAttemptStore()
        server = SecureDeviceServer(
            secrets=dev.DeviceSecrets(identity, label_secret, records),
            policy=int(modes),
            application=app,
            attempts=attempts,
            ui=ui,
            device_confirms=device_confirms,
            limiter_factory=lambda: AttemptLimiter(
                max_failures=max_failures, free_failures=free_failures
            ),
        )

        def info() -> DeviceInfo:
            return DeviceInfo(
                protocol_version=2,
                state=state,
                modes=modes,
                discriminator=discriminator,
                max_message=65536,
                rx_window=16,
                profile_version=1,
                pbkdf_salt=SALT,
                pbkdf_cost=(CHEAP.log2_n, CHEAP.r, CHEAP.p),
            )

        bumble = make_virtual_device(self.link, name="dev", address=self.address("F0:B1"))
        device_link = DeviceLink(BumblePeripheral(bumble), server, info)
        device_link.keep_advertising = server.button_window_open
        await device_link.start()
        self.links.append(device_link)
        return Device(identity, label_secret, server, device_link, ui, app, attempts, discriminator)

    async def central(self) -> CentralRadio:
        radio = make_virtual_device(self.link, name="host", address=self.address("C0:B1"))
        await radio.power_on()
        return CentralRadio.bumble(radio, mtu=247)

    async def session(
        self,
        device: Device,
        mode: Mode,
        secret: hst.OutOfBand = None,
        *,
        confirm: Confirm | None = None,
        **options: object,
    ) -> SecureHostLink:
        """Find ``device``, connect and authenticate in ``mode`` (raises on refusal)."""
        radio = await self.central()
        found = await find_device(radio, discriminator=device.discriminator, timeout=5)

        async def refuse(number: int) -> bool:
            return False

        link = SecureHostLink(
            HostLink(found.device, radio),
            mode=mode,
            secret=secret,
            trust=TRUST,
            advertised=found.service_data,
            confirm_number=confirm or refuse,
            handshake_timeout=5,
            **options,  # type: ignore[arg-type]
        )
        await link.open()
        return link

    async def close(self) -> None:
        for device_link in self.links:
            await device_link.close()
        self.link.close()
        await asyncio.sleep(0.02)


def qr_secret(device: Device, label_secret: bytes | None = None) -> hst.QrSecret:
    return hst.QrSecret(
        device.identity.noise_static_public_key, label_secret or device.label_secret
    )


def user_compares(device: Device, *, device_user_confirms: bool = True) -> Confirm:
    """The user reads the device's display; where the device has a button, presses it."""

    async def confirm(number: int) -> bool:
        for _ in range(200):
            if device.ui.numbers:
                break
            await asyncio.sleep(0.01)
        same = bool(device.ui.numbers) and device.ui.numbers[-1] == number
        if same and device_user_confirms:
            device.press_its_button_to_confirm()
        return same

    return confirm
