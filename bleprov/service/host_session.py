"""The host's first step: from what the user holds to an authenticated session.

A user holds a QR code (or its NFC tag or printed long key), a manual code, a scratch card,
a display to compare a number on or to read a one-time number from, or a button to press.
:class:`DeviceAuthentication` turns each into a handshake mode, its secret, and what picks
the device out of a scan; :func:`open_session` finds the device and runs the handshake
and the attestation check.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bleprov.core.advertising import (
    AdvertisedFlags,
    DeviceInfo,
    ServiceData,
    format_discriminator,
)
from bleprov.core.errors import BleprovError
from bleprov.core.onboarding import (
    OnboardingPayload,
    PayloadError,
    UserPasswordCredential,
    parse_manual_code,
    parse_ndef,
    parse_printed_key,
    parse_qr,
    passcode_password,
)
from bleprov.core.receipt import EnrolmentReceipt
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.window import WindowCode
from bleprov.radio.host_link import CentralRadio, FoundDevice, HostLink, find_device
from bleprov.session import NumberConfirmer, PasskeyReader, SecureHostLink

if TYPE_CHECKING:
    # The broker client (aiomqtt, the ``broker`` extra) is imported by the one function
    # that uses it: the host side over the radio runs without it.
    from bleprov.broker.client import BrokerConfig

logger = logging.getLogger(__name__)


async def _refuse_numbers(number: int) -> bool:
    return False


async def _no_passkey() -> str:
    raise BleprovError("passkey mode needs someone to type the number the device shows")


class WrongDevice(BleprovError):
    """The device that answered on a broker topic attested a different device ID."""


@dataclass(frozen=True, repr=False)
class DeviceAuthentication:
    """A mode, its out-of-band secret, and the scan filter that finds the device."""

    mode: Mode
    secret: hst.OutOfBand = field(repr=False)
    discriminator: int | None = None
    matches: Callable[[ServiceData], bool] | None = None

    def __repr__(self) -> str:
        which = None if self.discriminator is None else format_discriminator(self.discriminator)
        return f"DeviceAuthentication(mode={self.mode.label}, discriminator={which})"

    @classmethod
    def from_payload(cls, payload: OnboardingPayload) -> DeviceAuthentication:
        """qr mode from a label's payload (QR code, NFC tag or long printed key)."""
        return cls(
            Mode.QR,
            hst.QrSecret(payload.device_public_key, payload.label_secret),
            payload.discriminator,
        )

    @classmethod
    def from_qr_text(cls, text: str) -> DeviceAuthentication:
        return cls.from_payload(parse_qr(text))

    @classmethod
    def from_ndef(cls, message: bytes) -> DeviceAuthentication:
        return cls.from_payload(parse_ndef(message))

    @classmethod
    def from_printed_key(cls, text: str) -> DeviceAuthentication:
        return cls.from_payload(parse_printed_key(text))

    @classmethod
    def from_manual_code(
        cls, text: str, *, discriminator: int | None = None
    ) -> DeviceAuthentication:
        """code mode from the 11-digit manual code. It carries the discriminator's top 6
        bits only (1 device in 64 matches by chance): the scan takes a device offering the
        code mode whose top bits match, and only the one with ``discriminator`` if given
        (docs/protocol.md section 10)."""
        code = parse_manual_code(text)
        if discriminator is not None and not code.matches(discriminator):
            raise PayloadError(
                "the discriminator does not agree with the manual code's first two digits: "
                "check both on the label"
            )
        return cls(
            Mode.CODE,
            hst.CodeSecret(passcode_password(code.passcode)),
            discriminator,
            lambda data: Mode.CODE in data.modes and code.matches(data.discriminator),
        )

    @classmethod
    def from_scratch_card(
        cls, user: str, password: str, *, discriminator: int | None = None
    ) -> DeviceAuthentication:
        """code mode from a scratch card's user and password (as typed)."""
        card = UserPasswordCredential.from_typed(user, password)
        return cls(
            Mode.CODE,
            hst.CodeSecret(card.spake2_password, user=card.spake2_user),
            discriminator,
        )

    @classmethod
    def window(cls, code: str, *, discriminator: int | None = None) -> DeviceAuthentication:
        """code mode with the one-time code of a window the device's owner opened; finds
        a device advertising an open window (with ``discriminator``, that one)."""
        return cls(
            Mode.CODE,
            hst.WindowSecret(WindowCode.parse(code)),
            discriminator,
            lambda data: AdvertisedFlags.WINDOW_OPEN in data.flags,
        )

    @classmethod
    def receipt(cls, receipt: EnrolmentReceipt, *, discriminator: int) -> DeviceAuthentication:
        """code mode with an enrolment's receipt: asks the device with ``discriminator``
        what became of that enrolment, whatever the device offers (owned or not)."""
        return cls(Mode.CODE, receipt, discriminator)

    @classmethod
    def compare(cls, *, discriminator: int | None = None) -> DeviceAuthentication:
        """compare mode: both sides show a six-digit number; the user confirms."""
        return cls.without_secret(Mode.COMPARE, discriminator=discriminator)

    @classmethod
    def passkey(cls, *, discriminator: int | None = None) -> DeviceAuthentication:
        """passkey mode: the device shows a one-time number; the user types it here."""
        return cls.without_secret(Mode.PASSKEY, discriminator=discriminator)

    @classmethod
    def button(cls, *, discriminator: int | None = None) -> DeviceAuthentication:
        """button mode: safe only where nobody else can be in radio range (security.md)."""
        return cls.without_secret(Mode.BUTTON, discriminator=discriminator)

    @classmethod
    def without_secret(
        cls, mode: Mode, *, discriminator: int | None = None
    ) -> DeviceAuthentication:
        """A mode the user holds nothing for (compare, passkey, button, or a registered
        mode whose :attr:`~bleprov.core.session.modes.base.ModeEngine.oob` is ``NONE``)."""
        return cls(mode, None, discriminator)


async def find(
    radio: CentralRadio, auth: DeviceAuthentication, *, timeout: float = 10.0
) -> FoundDevice:
    """The device this authentication is for, heard advertising."""
    return await find_device(
        radio, discriminator=auth.discriminator, matches=auth.matches, timeout=timeout
    )


async def open_session(
    radio: CentralRadio,
    auth: DeviceAuthentication,
    trust: hst.Trust,
    *,
    found: FoundDevice | None = None,
    confirm_number: NumberConfirmer = _refuse_numbers,
    enter_passkey: PasskeyReader = _no_passkey,
    timeout: float = 10.0,
    handshake_timeout: float = 60.0,
) -> SecureHostLink:
    """Find the device (unless ``found``), connect, authenticate, verify attestation."""
    if found is None:
        found = await find(radio, auth, timeout=timeout)
    session = SecureHostLink(
        HostLink(found.device, radio),
        mode=auth.mode,
        secret=auth.secret,
        trust=trust,
        advertised=found.service_data,
        confirm_number=confirm_number,
        enter_passkey=enter_passkey,
        handshake_timeout=handshake_timeout,
    )
    await session.open()
    return session


async def open_broker_session(
    broker: str | BrokerConfig,
    auth: DeviceAuthentication,
    trust: hst.Trust,
    *,
    device_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    confirm_number: NumberConfirmer = _refuse_numbers,
    enter_passkey: PasskeyReader = _no_passkey,
    timeout: float = 10.0,
    handshake_timeout: float = 60.0,
) -> SecureHostLink:
    """As :func:`open_session`, through an MQTT broker (``mqtt://`` or ``mqtts://`` URL).

    The device is its announcement with ``device_id`` (printed on the label sheet) if
    given, else the first announced with the label's discriminator (and manual-code
    match). The handshake proves it holds the label's key; its attestation must name the
    device whose topic answered, or :class:`WrongDevice` is raised.
    """
    from bleprov.broker.client import BrokerConfig
    from bleprov.broker.host import BrokerHostLink, find_broker_device

    config = (
        broker
        if isinstance(broker, BrokerConfig)
        else BrokerConfig.from_url(broker, tls=tls, username=username, password=password)
    )
    matches = auth.matches
    logger.info("looking for the device's announcement on %s", config)

    def info_matches(info: DeviceInfo) -> bool:
        return matches is None or matches(info.service_data(AdvertisedFlags.NONE))

    found = await find_broker_device(
        config,
        device_id=device_id,
        discriminator=auth.discriminator,
        matches=info_matches,
        timeout=timeout,
    )
    session = SecureHostLink(
        BrokerHostLink(config, found.device_id, accept_timeout=timeout),
        mode=auth.mode,
        secret=auth.secret,
        trust=trust,
        confirm_number=confirm_number,
        enter_passkey=enter_passkey,
        handshake_timeout=handshake_timeout,
    )
    info = await session.open()
    if info.attestation.device_id != found.device_id:
        await session.close()
        raise WrongDevice(
            f"the device on topic {found.device_id} attested as {info.attestation.device_id}: "
            "the broker's topic ACLs are not enforced; do not enrol through it"
        )
    return session
