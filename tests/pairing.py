"""Provisioning a world's device as the CLI does (one provision() call) in each of the four
pairing modes, with the way back to the device that provision() uses after a lost answer.

``qr`` reads the label, ``code`` types its manual code, ``compare`` has both users accept
the number (the host's prompt and the device's button), ``button`` presses the device's
button before the host connects.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bleprov.core.advertising import OobMode
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import BleprovError
from bleprov.core.session.messages import Mode
from bleprov.radio.host_link import CentralRadio
from bleprov.radio.virtual import make_virtual_device
from bleprov.service.host_session import DeviceAuthentication, open_session
from bleprov.service.provisioning import PeerPlan, ProvisionReport, ZonePlan, provision
from bleprov.service.trust import HostTrust
from bleprov.service.zone_hub import ZoneEnroller
from bleprov.session import SecureHostLink
from tests.rig import HOME, TRUST
from tests.worlds import VirginDevice, World

#: The code's KDF at the lowest cost a device's info may carry: behaviour, not scrypt.
CODE_COST = ScryptCost(n=1 << 10, r=1, p=1)
PAIRING_MODES = ("qr", "code", "compare", "button")
TRUST_STEPS = ("wifi", "zone", "peer")
_hosts = itertools.count(1)


def device_options(mode: str) -> dict[str, Any]:
    """What world.new_device needs for a device that runs ``mode``."""
    modes = {
        "qr": OobMode.QR,
        "code": OobMode.QR | OobMode.CODE,
        "compare": OobMode.QR | OobMode.COMPARE,
        "button": OobMode.QR | OobMode.BUTTON,
    }[mode]
    options: dict[str, Any] = {"modes": modes, "device_confirms": mode == "compare"}
    if mode == "code":
        options["cost"] = CODE_COST  # the least a device's info may carry
    return options


def authentication(device: VirginDevice, mode: str) -> DeviceAuthentication:
    """What the person holds for ``mode`` (pressing the button, in button mode)."""
    discriminator = device.runtime.discriminator
    if mode == "qr":
        return DeviceAuthentication.from_qr_text(device.label_qr)
    if mode == "code":
        assert device.label is not None and device.label.manual_code is not None
        return DeviceAuthentication.from_manual_code(device.label.manual_code)
    if mode == "compare":
        return DeviceAuthentication.compare(discriminator=discriminator)
    device.runtime.press_button()
    return DeviceAuthentication.button(discriminator=discriminator)


async def open_host(
    world: World, device: VirginDevice, auth: DeviceAuthentication, *, mtu: int = 247
) -> SecureHostLink:
    """A new host on the world's radio opens an authenticated session with ``device``
    (in compare mode both users accept the number: the host's and the device's)."""
    index = next(_hosts)
    central = make_virtual_device(
        world.radio, name="host", address=f"C0:B3:00:00:{index >> 8:02X}:{index & 0xFF:02X}"
    )
    await central.power_on()
    radio = CentralRadio.bumble(central, mtu=mtu)

    async def both_accept(number: int) -> bool:
        device.runtime.accept_number()  # the device's user, if it still shows a number
        return True

    if auth.mode is Mode.BUTTON and not device.runtime.server.button_window_open():
        device.runtime.press_button()
    return await open_session(
        radio, auth, TRUST, confirm_number=both_accept, timeout=5, handshake_timeout=10
    )


class _Home:
    """The person named the home network (rig.HOME, as ``--wifi-ssid`` with its security
    does): no scan, the credentials go in the commit's flight; and never retries."""

    def preset(self) -> Any:
        return HOME

    async def choose(self, results: list[Any]) -> Any:
        return HOME

    async def retry(self, status: Any, tried: Any) -> Any:
        return None


@dataclass
class Outcome:
    report: ProvisionReport | None
    error: BleprovError | None


async def provision_device(
    world: World,
    device: VirginDevice,
    mode: str,
    step: str,
    host: HostTrust,
    *,
    owner: str = "alice",
    redial_within: float = 15.0,
    before: Callable[[SecureHostLink], Awaitable[None]] | None = None,
    unresolved: HostTrust | None = None,
    mtu: int = 247,
) -> Outcome:
    """One ``bleprov provision`` of ``device``: Wi-Fi (always), then the trust ``step``
    (``wifi``: none; ``zone``: the world's hub; ``peer``: ``host``), one commit. A
    failure is returned, not raised: the caller checks what each side was left with."""
    auth = authentication(device, mode)
    try:
        session = await open_host(world, device, auth, mtu=mtu)
    except BleprovError as exc:
        return Outcome(None, exc)
    kwargs: dict[str, Any] = {}
    if "redial" in inspect.signature(provision).parameters:
        from bleprov.service.provisioning import Redial  # type: ignore[attr-defined, unused-ignore]

        async def again(again_auth: DeviceAuthentication) -> SecureHostLink:
            return await open_host(world, device, again_auth, mtu=mtu)

        kwargs["redial"] = Redial(again, auth, within=redial_within)
        kwargs["unresolved"] = unresolved
    zone = ZonePlan(ZoneEnroller(world.hub, world.admin), owner) if step == "zone" else None
    peer = PeerPlan(host) if step == "peer" else None
    try:
        if before is not None:
            await before(session)
        report = await provision(session, wifi=_Home(), zone=zone, peer=peer, **kwargs)
    except BleprovError as exc:
        return Outcome(None, exc)
    finally:
        await session.close()
        await device.service.drain()
    return Outcome(report, None)
