"""bleprov: bind a virgin IoT device to its owner over Bluetooth LE.

The public API is the names below (``bleprov.__all__``); everything else is internal and
may move. Importing :mod:`bleprov` is cheap: each name is imported on first use (PEP 562),
so ``import bleprov`` loads neither bleak nor SQLAlchemy. A name whose extra is not
installed raises :class:`MissingExtra` (an :class:`ImportError`) naming the ``pip
install`` that brings it. docs/api.md has a runnable example.

The host side (``pip install bleprov``, no extra):
    :class:`RadioSpec`, :func:`open_central` and :class:`CentralRadio` (a radio),
    :class:`DeviceAuthentication` (what the label or the person proves), :class:`Trust`
    with :class:`TrustPolicy` (the manufacturer roots), :func:`open_session` (find,
    connect, authenticate: a :class:`SecureHostLink`), :func:`provision` (Wi-Fi, zone or
    peer over it, one commit: a :class:`ProvisionReport`) with :class:`WifiChooser`,
    :class:`WifiCredentials`, :class:`WifiSecurity`, :class:`ScanResult`,
    :class:`PeerPlan` and :class:`HostTrust` (this host as a peer, in a
    :class:`DeviceStore` keyed by a :class:`KeyFileProvider`); the virtual radio
    (:class:`VirtualLink`, :func:`make_virtual_device`). Through a broker:
    :func:`open_broker_session` (the ``broker`` extra).
The factory: :class:`Manufacturer`, :func:`provision_device`, :class:`Mode` (the pairing
    modes a device offers).
The device (the ``device`` extra): :class:`DeviceRuntime` (what ``device serve`` runs
    around a peripheral and a network), :class:`DeviceDaemon`, :func:`open_peripheral`
    or :class:`BumblePeripheral` (a peripheral), :class:`SimulatedWifi`.
The zone (the ``hub`` extra): :class:`Hub` (a zone CA and its registry),
    :class:`ZonePlan` with :class:`ZoneEnroller` (enrol a device during
    :func:`provision`), :func:`serve_hub` and :func:`run_hub`.
Errors: :class:`BleprovError` (every error bleprov raises on purpose), :class:`LinkError`,
    :class:`DeviceNotFound`, :class:`AuthenticationFailed`, :class:`DeviceOwned`,
    :class:`DeviceNotVirgin`, :class:`WifiNotJoined`, :class:`MissingExtra`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

__version__ = "0.1.0"

#: Each public name and the module that defines it, imported on first use.
_MODULE_OF: Final[dict[str, str]] = {
    # The host side.
    "RadioSpec": "bleprov.radio.spec",
    "open_central": "bleprov.radio.spec",
    "CentralRadio": "bleprov.radio.host_link",
    "DeviceAuthentication": "bleprov.service.host_session",
    "open_session": "bleprov.service.host_session",
    "open_broker_session": "bleprov.service.host_session",
    "SecureHostLink": "bleprov.session.host",
    "Trust": "bleprov.core.session.host",
    "TrustPolicy": "bleprov.core.identity",
    "provision": "bleprov.service.provisioning",
    "ProvisionReport": "bleprov.service.provisioning",
    "WifiChooser": "bleprov.service.provisioning",
    "PeerPlan": "bleprov.service.provisioning",
    "ZonePlan": "bleprov.service.provisioning",
    "WifiCredentials": "bleprov.core.wifi",
    "WifiSecurity": "bleprov.core.wifi",
    "ScanResult": "bleprov.core.wifi",
    "HostTrust": "bleprov.service.trust",
    "DeviceStore": "bleprov.store.device_store",
    "KeyFileProvider": "bleprov.store.keys",
    "VirtualLink": "bleprov.radio.virtual",
    "make_virtual_device": "bleprov.radio.virtual",
    # The factory.
    "Manufacturer": "bleprov.core.identity",
    "provision_device": "bleprov.core.factory",
    "Mode": "bleprov.core.mode_bits",
    # The device.
    "DeviceRuntime": "bleprov.service.device_runtime",
    "DeviceDaemon": "bleprov.service.device_daemon",
    "open_peripheral": "bleprov.radio.spec",
    "BumblePeripheral": "bleprov.radio.bumble_peripheral",
    "SimulatedWifi": "bleprov.network.simulated",
    # The zone.
    "Hub": "bleprov.store.hub_files",
    "ZoneEnroller": "bleprov.service.zone_hub",
    "serve_hub": "bleprov.service.zone_hub",
    "run_hub": "bleprov.service.zone_hub",
    # Errors.
    "BleprovError": "bleprov.core.errors",
    "LinkError": "bleprov.radio.host_link",
    "DeviceNotFound": "bleprov.radio.host_link",
    "AuthenticationFailed": "bleprov.core.session.modes.base",
    "DeviceOwned": "bleprov.core.session.common",
    "DeviceNotVirgin": "bleprov.service.provisioning",
    "WifiNotJoined": "bleprov.service.provisioning",
    "MissingExtra": "bleprov.extras",
}

#: The same names as _MODULE_OF (tests/test_api.py checks), written out for linters.
__all__ = [
    "AuthenticationFailed",
    "BleprovError",
    "BumblePeripheral",
    "CentralRadio",
    "DeviceAuthentication",
    "DeviceDaemon",
    "DeviceNotFound",
    "DeviceNotVirgin",
    "DeviceOwned",
    "DeviceRuntime",
    "DeviceStore",
    "HostTrust",
    "Hub",
    "KeyFileProvider",
    "LinkError",
    "Manufacturer",
    "MissingExtra",
    "Mode",
    "PeerPlan",
    "ProvisionReport",
    "RadioSpec",
    "ScanResult",
    "SecureHostLink",
    "SimulatedWifi",
    "Trust",
    "TrustPolicy",
    "VirtualLink",
    "WifiChooser",
    "WifiCredentials",
    "WifiNotJoined",
    "WifiSecurity",
    "ZoneEnroller",
    "ZonePlan",
    "__version__",
    "make_virtual_device",
    "open_broker_session",
    "open_central",
    "open_peripheral",
    "open_session",
    "provision",
    "provision_device",
    "run_hub",
    "serve_hub",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and kept here."""
    module_name = _MODULE_OF.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        from bleprov.extras import missing_extra

        missing = missing_extra(exc)
        if missing is None:
            raise
        raise missing from None
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from bleprov.core.errors import BleprovError
    from bleprov.core.factory import provision_device
    from bleprov.core.identity import Manufacturer, TrustPolicy
    from bleprov.core.mode_bits import Mode
    from bleprov.core.session.common import DeviceOwned
    from bleprov.core.session.host import Trust
    from bleprov.core.session.modes.base import AuthenticationFailed
    from bleprov.core.wifi import ScanResult, WifiCredentials, WifiSecurity
    from bleprov.extras import MissingExtra
    from bleprov.network.simulated import SimulatedWifi
    from bleprov.radio.bumble_peripheral import BumblePeripheral
    from bleprov.radio.host_link import CentralRadio, DeviceNotFound, LinkError
    from bleprov.radio.spec import RadioSpec, open_central, open_peripheral
    from bleprov.radio.virtual import VirtualLink, make_virtual_device
    from bleprov.service.device_daemon import DeviceDaemon
    from bleprov.service.device_runtime import DeviceRuntime
    from bleprov.service.host_session import (
        DeviceAuthentication,
        open_broker_session,
        open_session,
    )
    from bleprov.service.provisioning import (
        DeviceNotVirgin,
        PeerPlan,
        ProvisionReport,
        WifiChooser,
        WifiNotJoined,
        ZonePlan,
        provision,
    )
    from bleprov.service.trust import HostTrust
    from bleprov.service.zone_hub import ZoneEnroller, run_hub, serve_hub
    from bleprov.session.host import SecureHostLink
    from bleprov.store.device_store import DeviceStore
    from bleprov.store.hub_files import Hub
    from bleprov.store.keys import KeyFileProvider
