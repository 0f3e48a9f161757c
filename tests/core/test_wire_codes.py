"""The wire-code registry: one value, one meaning per field; every code sent is registered;
docs/protocol.md's tables are the registry's."""

from __future__ import annotations

import enum
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import bleprov
from bleprov.core import wire_codes as wc
from bleprov.core.enrolment.messages import EnrolmentError
from bleprov.core.errors import ProtocolError

ROOT = Path(__file__).resolve().parents[2]
#: Modules that cannot be imported on their own (alembic's migration environment).
_NOT_IMPORTABLE = {"bleprov.store.migrations.env", "bleprov.__main__"}


def _import_all() -> None:
    for info in pkgutil.walk_packages(bleprov.__path__, "bleprov."):
        if info.name not in _NOT_IMPORTABLE:
            importlib.import_module(info.name)


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _coded_errors() -> dict[str, int]:
    """``module:Class`` -> code, for every ProtocolError class that sets its own code."""
    _import_all()
    return {
        f"{cls.__module__}:{cls.__qualname__}": int(cls.__dict__["code"])
        for cls in _subclasses(ProtocolError) | {ProtocolError}
        if "code" in cls.__dict__ and cls.__module__.startswith("bleprov.")
    }


def test_no_value_means_two_things_in_one_field() -> None:
    found = {
        (space.key, value): names
        for space in wc.NAMESPACES
        for value, names in space.collisions().items()
    }
    assert found == {}
    assert not hasattr(wc, "KNOWN_COLLISIONS")


def test_v2_renumbered_the_device_refusals_off_the_zone_codes() -> None:
    """v1 sent a device's refusals as 0x70-0x72, the zone errors' values in the same
    field, and called the server's greeting `hello`, a device's operation too."""
    assert [int(c) for c in wc.DeviceOpCode] == [0x60, 0x63, 0x4D]
    zone = {int(wc.ErrorCode.ZONE), int(wc.ErrorCode.NOT_A_ZONE_MEMBER), int(wc.ErrorCode.REVOKED)}
    assert not zone & {int(c) for c in wc.DeviceOpCode}
    assert wc.namespace("connection-op").value("GREETING") == "welcome"


def test_a_new_collision_is_caught() -> None:
    space = wc.namespace("error")
    doubled = wc.Namespace(
        space.key,
        space.title,
        space.field,
        (*space.codes, wc.WireCode(0x41, "SOMETHING_ELSE", "another meaning", ())),
    )
    assert doubled.collisions() == {0x41: ("LOCKED_OUT", "SOMETHING_ELSE")}


def test_names_are_unique_within_a_namespace_and_namespaces_are_unique() -> None:
    assert len({space.key for space in wc.NAMESPACES}) == len(wc.NAMESPACES)
    for space in wc.NAMESPACES:
        names = [code.name for code in space.codes]
        assert len(names) == len(set(names)), space.key


@pytest.mark.parametrize(
    "codes",
    [wc.ErrorCode, wc.EnrolmentStatus, wc.ConnectionCode, wc.DeviceOpCode, wc.EnrolmentKind],
)
def test_the_registry_enums_have_no_aliases(codes: type[enum.IntEnum]) -> None:
    """An IntEnum silently makes a second name for a repeated value an alias."""
    assert len(codes.__members__) == len(list(codes))


def test_every_protocol_error_code_is_registered_under_its_class() -> None:
    """A new error class needs its code in the registry: the error field, the enrolment
    status field for an EnrolmentError (whose code is its status), or the validated
    connection's field for a zone or peer error."""
    registered = {
        where: code.value
        for key in ("error", "enrolment-status", "connection")
        for code in wc.namespace(key).codes
        for where in code.where
        if ":" in where
    }
    coded = _coded_errors()
    assert coded == {where: value for where, value in registered.items() if where in coded}
    assert set(registered) == set(coded), "registered classes that do not exist"
    assert issubclass(EnrolmentError, ProtocolError)


def test_every_error_code_is_one_a_class_has() -> None:
    """ErrorCode is the ProtocolError codes, one per class (the base classes' defaults
    and NoFreshCrl share their code on purpose: they are registered under it)."""
    coded = set(_coded_errors().values()) - {int(s) for s in wc.EnrolmentStatus}
    assert {int(c) for c in wc.ErrorCode} == coded
    session = {c.value for c in wc.namespace("error").codes}
    connection = {c.value for c in wc.namespace("connection").codes}
    assert coded == session | (connection & coded)
    assert session & {c.value for c in wc.namespace("connection").codes} == {0x02, 0x47, 0x4D}


def test_zone_and_peer_codes_are_registered_for_the_validated_connection() -> None:
    """The TLS adapter refuses with a ZoneError's or a PeerError's code."""
    from bleprov.core.peer import PeerError
    from bleprov.core.zone import ZoneError

    connection = {(c.value, c.name) for c in wc.namespace("connection").codes}
    for base in (ZoneError, PeerError):
        for cls in {base, *_subclasses(base)}:
            code = wc.ErrorCode(cls.code)
            assert (int(code), code.name) in connection, cls


def test_the_codes_the_tls_link_sends_are_registered() -> None:
    from bleprov.service import trust
    from bleprov.tls import connection

    registered = {c.value for c in wc.namespace("connection").codes}
    sent = {
        trust.ERROR_UNKNOWN_OP,
        trust.ERROR_NOT_ALLOWED,
        trust.ERROR_BAD_WINDOW,
        connection.UNKNOWN_OP,
        connection.BAD_REQUEST,
        connection.UNEXPECTED_MESSAGE,
        connection.INTERNAL,
    }
    assert sent <= registered
    assert wc.namespace("connection").value("NOT_ALLOWED") == trust.ERROR_NOT_ALLOWED
    assert wc.namespace("connection").value("BAD_WINDOW") == trust.ERROR_BAD_WINDOW
    assert wc.namespace("connection").value("UNKNOWN_OP") == trust.ERROR_UNKNOWN_OP


def _members(codes: type[enum.Enum]) -> dict[str, int]:
    return {name: int(member.value) for name, member in codes.__members__.items()}


def test_the_modules_enums_are_the_registry() -> None:
    """The modules' own IntEnums hold exactly the registered values of their field."""
    from bleprov.broker.wire import CloseReason, Kind
    from bleprov.core.advertising import AdvertisedFlags, DeviceState, InfoKey, OobMode
    from bleprov.core.enrolment.messages import Status
    from bleprov.core.frames import FrameKind
    from bleprov.core.session.messages import InnerKind, MessageType, Mode
    from bleprov.core.wifi import JoinFailure, WifiSecurity
    from bleprov.core.window import WindowPurpose

    enums: dict[str, list[type[enum.Enum]]] = {
        "frame-kind": [FrameKind],
        "session-message": [MessageType],
        "inner-kind": [InnerKind],
        "mode": [OobMode, Mode],
        "advertised-flag": [AdvertisedFlags],
        "device-state": [DeviceState],
        "info-key": [InfoKey],
        "enrolment-kind": [wc.EnrolmentKind],
        "enrolment-status": [Status],
        "wifi-security": [WifiSecurity],
        "join-failure": [JoinFailure],
        "window-purpose": [WindowPurpose],
        "broker-kind": [Kind],
        "broker-close": [CloseReason],
    }
    for key, classes in enums.items():
        registered = {c.name: c.value for c in wc.namespace(key).codes}
        for codes in classes:
            members = _members(codes)
            if issubclass(codes, enum.IntFlag):
                members = {name: value for name, value in members.items() if value}
            assert members == registered, (key, codes)


def test_the_names_on_the_wire_are_the_registry() -> None:
    """Endpoints, topics and operations: the modules' names are the registered ones."""
    from bleprov.core.enrolment.messages import Endpoint, Topic
    from bleprov.service import trust
    from bleprov.tls import connection, hub

    def registered(key: str) -> dict[str, str | int]:
        return {c.name: c.value for c in wc.namespace(key).codes}

    assert registered("enrolment-endpoint") == {e.name: e.value for e in Endpoint}
    assert registered("enrolment-topic") == {t.name: t.value for t in Topic} | {"ERROR": "error"}
    ops = {
        "GREETING": connection._HELLO,
        "REFUSED": connection._REFUSED,
        "ERROR": connection.ERROR_OP,
        "HELLO": trust.OP_HELLO,
        "UNBIND": trust.OP_UNBIND,
        "FACTORY_RESET": trust.OP_FACTORY_RESET,
        "WINDOW_OPEN": trust.OP_WINDOW_OPEN,
        "WINDOW_CLOSE": trust.OP_WINDOW_CLOSE,
        "CRL": hub.OP_CRL,
        "RENEW": hub.OP_RENEW,
        "NONCE": hub.OP_NONCE,
        "CSR": hub.OP_CSR,
        "RENEWED": hub.OP_RENEWED,
    }
    assert registered("connection-op") == ops


def test_the_module_constants_are_the_registry() -> None:
    from bleprov.core import advertising, frames
    from bleprov.radio import bless_peripheral

    flags = wc.namespace("ad-flag-bit")
    assert (
        advertising._FLAG_BITS
        == bless_peripheral._AD_FLAGS
        == {c.name: c.value for c in flags.codes}
    )
    ad_types = wc.namespace("ad-type")
    assert ad_types.value("SERVICE_DATA_128") == advertising.AD_SERVICE_DATA_128
    assert wc.namespace("frame-flag").value("FIRST") == frames._FIRST_BIT


def test_no_module_writes_an_error_code_literal() -> None:
    """Error classes take their codes from the registry, never a literal of their own."""
    literal = re.compile(r"^\s+code(: int)? = (0x[0-9A-Fa-f]+|\d+)\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "bleprov").rglob("*.py")
        if literal.search(path.read_text())
    ]
    assert offenders == []


def test_protocol_md_tables_are_the_registry() -> None:
    """docs/protocol.md's code tables are generated; regenerate with `make docs`."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    assert doc == wc.update_document(doc)


def test_every_table_has_its_markers() -> None:
    with pytest.raises(ValueError, match="no wire-codes:statuses markers"):
        wc.update_document("<!-- wire-codes:errors -->\n<!-- /wire-codes:errors -->\n")


def test_main_rewrites_the_marked_tables(tmp_path: Path) -> None:
    doc = tmp_path / "protocol.md"
    doc.write_text(
        "intro\n"
        + "".join(
            f"<!-- wire-codes:{name} -->\nOUTDATED ROWS\n<!-- /wire-codes:{name} -->\n"
            for name in wc.SECTIONS
        )
    )
    assert wc.main(["--update", str(doc)]) == 0
    text = doc.read_text()
    assert "OUTDATED ROWS" not in text
    assert "| 0x4A | device busy |" in text
    assert text == wc.update_document(text)
