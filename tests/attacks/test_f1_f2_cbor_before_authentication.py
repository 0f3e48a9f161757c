"""F1 and F2 (issue 15): CBOR that crashed or froze the device before authentication.

F1: the strict decoders re-encoded what they decoded to check deterministic form, and the
re-encode was unprotected: a 6-byte self-referencing value (tags 28/29) or a 5-byte MIME
tag (36) escaped as ``cbor2.CBOREncodeValueError`` from the first message a device reads.
F2: the same re-encode took time exponential in the depth of maps nested as map keys
(49 bytes: 14.7 s, the device's event loop frozen). Both fail on the code before
:mod:`bleprov.core.cbor` (seen: CBOREncodeValueError, and the 18-level input over 1 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bleprov.core.enrolment import device as enr
from bleprov.core.errors import BleprovError
from bleprov.core.peer import PeerIdentity, PinSet
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.messages import Mode
from bleprov.core.zone import Zone
from tests.core.test_session import make_device, make_host, qr_secret

SELF_REFERENCE = bytes.fromhex("d81c81d81d00")  # 6 bytes: tag 28 [tag 29 (0)]
MIME_TAG = bytes.fromhex("d824626161")  # 5 bytes: tag 36 "aa"


def maps_nested_as_keys(levels: int) -> bytes:
    """An array holding {{{...{0: 0}...}: 0}: 0}, ``levels`` maps deep, as keys."""
    value = b"\xa1\x00\x00"
    for _ in range(levels):
        value = b"\xa1" + value + b"\x00"
    return b"\x82\x01" + value


def device_first_message(raw: bytes) -> object:
    return make_device().receive(raw, 1.0)


def host_reply(raw: bytes) -> object:
    host = make_host(Mode.QR, qr_secret())
    host.start(0.0)
    return host.receive(raw, 1.0)


def enrolment_request(raw: bytes) -> object:
    machine = enr.DeviceEnrolment(enr.DeviceEnrolmentConfig("DEV1"), now=0.0)
    return machine.receive(raw, 1.0)


def zone_record(raw: bytes) -> object:
    return Zone.from_bytes(raw, b"passphrase")


ENTRY_POINTS: dict[str, Callable[[bytes], object]] = {
    "DeviceSession.receive (first message)": device_first_message,
    "HostSession.receive": host_reply,
    "DeviceEnrolment.receive": enrolment_request,
    "PeerIdentity.from_bytes": PeerIdentity.from_bytes,
    "PinSet.from_bytes": PinSet.from_bytes,
    "Zone.from_bytes": zone_record,
}


def answer_or_typed_error(entry: Callable[[bytes], object], raw: bytes) -> None:
    """Either the machine answers (a refusal, an error notification) or it raises one of
    bleprov's typed errors; nothing else may escape."""
    try:
        events = entry(raw)
    except BleprovError:
        return
    if isinstance(events, list):
        assert not any(isinstance(e, dev.Authenticated | hst.Established) for e in events)


@pytest.mark.parametrize("raw", [SELF_REFERENCE, MIME_TAG], ids=["shared-ref", "mime-tag"])
@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_f1_tags_get_a_typed_error(entry: Callable[[bytes], object], raw: bytes) -> None:
    answer_or_typed_error(entry, raw)


@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_f2_maps_nested_as_keys_cost_no_time(entry: Callable[[bytes], object]) -> None:
    started = time.perf_counter()
    answer_or_typed_error(entry, maps_nested_as_keys(18))
    answer_or_typed_error(entry, maps_nested_as_keys(400))
    assert time.perf_counter() - started < 0.5
