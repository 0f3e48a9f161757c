"""The hub's rules: who may enrol a device, which member may renew, and how revocation
reaches the CRL, whatever CA backs the zone.

A hub is a registry (bleprov.store.registry: users, devices, certificates, audit) and a
CA (:class:`~bleprov.core.ca.CertificateAuthority`). :class:`ZoneHub` is what the hub's
services (bleprov.service.zone_hub) need of it; two hubs provide it:

- :class:`bleprov.store.hub_files.Hub`, our zone CA sealed in a hub directory (zone.bin,
  crl.pem published under a lock);
- :class:`RegistryHub`, any CA that keeps its own state (step-ca, a cloud KMS; the tests'
  in-memory CA), over a registry.

The rules here decide before anything is issued; the registry records the outcome in one
transaction each (a pending enrolment superseded by a new one, confirmed once, never
renewed while pending: bleprov.store.registry, where a second hub on the same database
cannot interleave).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Protocol

from bleprov.core.ca import CertificateAuthority, apply_revocations
from bleprov.core.errors import BleprovError
from bleprov.store.registry import (
    Device,
    DeviceStatus,
    NotPending,
    Registry,
    User,
)


class EnrolmentRefused(BleprovError):
    """The hub will not enrol this device (not an admin, already enrolled, ...)."""


class ZoneHub(Protocol):
    """A hub as its services use it: registry, CA, and the two steps that need both."""

    @property
    def registry(self) -> Registry: ...

    @property
    def ca(self) -> CertificateAuthority: ...

    def crl(self, *, now: datetime) -> bytes:
        """A CRL with every serial the registry revoked (the registry is the truth)."""
        ...

    def revoke(self, device_id: str, *, actor: User, now: datetime) -> list[int]:
        """Revoke a device: the registry first (``actor`` must be an admin), then the CA
        and a new CRL. The revoked serials."""
        ...


def check_may_enrol(registry: Registry, user: User, device_id: str) -> None:
    """Only an admin enrols, and only a device not enrolled already (a pending enrolment
    is superseded when the new one is recorded: its device did not commit it).

    One read of the registry, before the device is asked for anything; the record's
    transaction checks both again (:meth:`Registry.record_enrolment`)."""
    existing = registry.check_enrolment(user, device_id)
    if existing is not None and existing.status is DeviceStatus.ENROLLED:
        raise EnrolmentRefused(
            f"device {device_id} is already enrolled (owner {existing.owner}); "
            "revoke it first (bleprov zone revoke) to enrol it again"
        )


def check_may_renew(registry: Registry, device_id: str, serial: int) -> Device:
    """A member that authenticated with certificate ``serial`` may renew while its device
    is enrolled. Authenticating with a pending enrolment's certificate confirms it: the
    member holds the key that enrolment committed."""
    record = registry.device(device_id)
    if record.status is DeviceStatus.PENDING:
        with contextlib.suppress(NotPending):
            record = registry.confirm_enrolment(
                device_id, serial=serial, actor=None, how="by renewal"
            )
    if record.status is not DeviceStatus.ENROLLED:
        raise EnrolmentRefused(f"device {device_id} is {record.status}; it cannot renew")
    return record


class RegistryHub:
    """A :class:`ZoneHub` over a CA that keeps its own state and a registry: nothing to
    seal or publish here, the CA signs and remembers."""

    def __init__(self, ca: CertificateAuthority, registry: Registry) -> None:
        self._ca = ca
        self._registry = registry

    @property
    def ca(self) -> CertificateAuthority:
        return self._ca

    @property
    def registry(self) -> Registry:
        return self._registry

    def crl(self, *, now: datetime) -> bytes:
        apply_revocations(
            self._ca, ((r.serial, r.revoked_at) for r in self._registry.revoked_serials())
        )
        return self._ca.crl(now=now)

    def revoke(self, device_id: str, *, actor: User, now: datetime) -> list[int]:
        serials = self._registry.revoke(device_id, actor=actor)
        for serial in serials:
            self._ca.revoke(serial, now=now)
        self.crl(now=now)
        return serials

    def close(self) -> None:
        """Release the registry's connections."""
        self._registry.close()
