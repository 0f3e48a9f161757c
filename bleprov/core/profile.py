"""The GATT profile as data: load ``gatt_profiles/*.toml`` into typed, validated objects.

Both peripheral adapters build their GATT database from a :class:`GattProfile`, the host
finds characteristics by key through it, and ``docs/gatt-profile.md`` is rendered from it
(``python -m bleprov.core.profile --markdown``), so code, docs and the device can not drift.
"""

from __future__ import annotations

import sys
import uuid as uuid_module
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from bleprov.core.errors import ProfileError
from bleprov.core.toml_text import MAX_TOML_BYTES, TomlUnreadable, parse_toml

DEFAULT_PROFILE: Final = "bleprov-provisioning-v1.toml"

#: Characteristic properties the profile may use (bleak/bless spelling).
CHARACTERISTIC_PROPERTIES: Final = frozenset(
    {"read", "write", "write-without-response", "notify", "indicate"}
)
ATTRIBUTE_PERMISSIONS: Final = frozenset(
    {"readable", "writeable", "read-encryption-required", "write-encryption-required"}
)
ADVERTISING_FLAGS: Final = frozenset({"le-general-discoverable", "br-edr-not-supported"})
SCAN_RESPONSE_FIELDS: Final = frozenset({"complete-128-bit-service-uuids", "shortened-local-name"})
FIELD_SIZES: Final = {"u8": 1, "u16": 2, "u32": 4}
USER_DESCRIPTION_UUID: Final = "00002901-0000-1000-8000-00805f9b34fb"
LEGACY_ADVERTISING_MAX: Final = 31


@dataclass(frozen=True)
class CharacteristicSpec:
    """One characteristic: a stable key the code uses, and what goes on the air."""

    key: str
    uuid: str
    properties: tuple[str, ...]
    permissions: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class ServiceDataField:
    """One fixed-size big-endian field of the advertised service data."""

    name: str
    type: str
    description: str

    @property
    def size(self) -> int:
        return FIELD_SIZES[self.type]


@dataclass(frozen=True)
class AdvertisementSpec:
    flags: tuple[str, ...]
    service_data_uuid: str
    service_data: tuple[ServiceDataField, ...]
    scan_response: tuple[str, ...]
    max_local_name: int

    @property
    def service_data_size(self) -> int:
        return sum(f.size for f in self.service_data)

    @property
    def advertising_data_size(self) -> int:
        """Bytes of the legacy advertising data this layout produces."""
        flags_ad = 3 if self.flags else 0
        return flags_ad + 2 + 16 + self.service_data_size


@dataclass(frozen=True)
class GattProfile:
    name: str
    version: int
    protocol_version: int
    service_uuid: str
    service_description: str
    characteristics: tuple[CharacteristicSpec, ...]
    advertisement: AdvertisementSpec
    source: str

    def characteristic(self, key: str) -> CharacteristicSpec:
        for c in self.characteristics:
            if c.key == key:
                return c
        raise ProfileError(f"profile {self.name} v{self.version} has no characteristic {key!r}")

    @property
    def rx(self) -> CharacteristicSpec:
        """Host-to-device frames."""
        return self.characteristic("rx")

    @property
    def tx(self) -> CharacteristicSpec:
        """Device-to-host frames."""
        return self.characteristic("tx")

    @property
    def info(self) -> CharacteristicSpec:
        """Plaintext device info."""
        return self.characteristic("info")


def _table(value: object, where: str) -> Mapping[str, Any]:
    """A TOML table where the profile needs one (a string or a number there is an error,
    not an AttributeError from the first lookup)."""
    if not isinstance(value, Mapping):
        raise ProfileError(f"{where}: must be a table")
    return value


def _uuid(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ProfileError(f"{where}: UUID must be a string")
    try:
        parsed = uuid_module.UUID(value)
    except ValueError as exc:
        raise ProfileError(f"{where}: {value!r} is not a 128-bit UUID") from exc
    if str(parsed) != value.lower():
        raise ProfileError(f"{where}: write the UUID in canonical 8-4-4-4-12 form")
    return str(parsed)


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ProfileError(f"{where}: {key!r} must be a non-empty string")
    return value


def _int(table: Mapping[str, Any], key: str, where: str, lo: int, hi: int) -> int:
    value = table.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProfileError(f"{where}: {key!r} must be an integer in [{lo}, {hi}]")
    return value


def _words(
    table: Mapping[str, Any], key: str, where: str, allowed: frozenset[str]
) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{where}: {key!r} must be a list of strings")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ProfileError(f"{where}: unknown {key} {unknown}; allowed: {sorted(allowed)}")
    return tuple(value)


def parse_profile(data: Mapping[str, Any], source: str = "<memory>") -> GattProfile:
    """Validate a decoded TOML document and build the profile."""
    try:
        head = _table(data["profile"], f"{source}: [profile]")
        service = _table(data["service"], f"{source}: [service]")
        chars = data["characteristic"]
        adv = _table(data["advertisement"], f"{source}: [advertisement]")
    except KeyError as exc:
        raise ProfileError(f"{source}: missing table [{exc.args[0]}]") from None
    if not isinstance(chars, list) or not chars:
        raise ProfileError(f"{source}: at least one [[characteristic]] is required")

    characteristics: list[CharacteristicSpec] = []
    for i, item in enumerate(chars):
        where = f"{source}: characteristic #{i + 1}"
        c = _table(item, where)
        spec = CharacteristicSpec(
            key=_str(c, "key", where),
            uuid=_uuid(c.get("uuid"), where),
            properties=_words(c, "properties", where, CHARACTERISTIC_PROPERTIES),
            permissions=_words(c, "permissions", where, ATTRIBUTE_PERMISSIONS),
            description=_str(c, "description", where),
        )
        if not spec.properties:
            raise ProfileError(f"{where}: no properties")
        characteristics.append(spec)

    keys = [c.key for c in characteristics]
    uuids = [c.uuid for c in characteristics]
    service_uuid = _uuid(service.get("uuid"), f"{source}: [service]")
    if len(set(keys)) != len(keys) or len(set(uuids)) != len(uuids) or service_uuid in uuids:
        raise ProfileError(f"{source}: characteristic keys and UUIDs must be unique")
    for required in ("rx", "tx", "info"):
        if required not in keys:
            raise ProfileError(f"{source}: the {required!r} characteristic is required")

    fields = adv.get("service_data", [])
    if not isinstance(fields, list) or not fields:
        raise ProfileError(f"{source}: [[advertisement.service_data]] is required")
    service_data = []
    for i, item in enumerate(fields):
        where = f"{source}: service_data field #{i + 1}"
        f = _table(item, where)
        ftype = _str(f, "type", where)
        if ftype not in FIELD_SIZES:
            raise ProfileError(f"{where}: type must be one of {sorted(FIELD_SIZES)}")
        service_data.append(
            ServiceDataField(_str(f, "name", where), ftype, _str(f, "description", where))
        )

    advertisement = AdvertisementSpec(
        flags=_words(adv, "flags", f"{source}: [advertisement]", ADVERTISING_FLAGS),
        service_data_uuid=_uuid(adv.get("service_data_uuid"), f"{source}: [advertisement]"),
        service_data=tuple(service_data),
        scan_response=_words(
            adv, "scan_response", f"{source}: [advertisement]", SCAN_RESPONSE_FIELDS
        ),
        max_local_name=_int(adv, "max_local_name", f"{source}: [advertisement]", 0, 29),
    )
    if advertisement.advertising_data_size > LEGACY_ADVERTISING_MAX:
        raise ProfileError(
            f"{source}: advertising data would take {advertisement.advertising_data_size} bytes, "
            f"legacy advertising carries {LEGACY_ADVERTISING_MAX}"
        )
    if advertisement.service_data_uuid != service_uuid:
        raise ProfileError(f"{source}: service data must be keyed by the service UUID")

    return GattProfile(
        name=_str(head, "name", f"{source}: [profile]"),
        version=_int(head, "version", f"{source}: [profile]", 1, 255),
        protocol_version=_int(head, "protocol_version", f"{source}: [profile]", 1, 255),
        service_uuid=service_uuid,
        service_description=_str(service, "description", f"{source}: [service]"),
        characteristics=tuple(characteristics),
        advertisement=advertisement,
        source=source,
    )


def _profile_text(name: str) -> tuple[bytes, str]:
    """Find a profile file: in the installed wheel, else in the source tree."""
    shipped = resources.files("bleprov").joinpath("_gatt_profiles", name)
    if shipped.is_file():
        return shipped.read_bytes(), name
    in_tree = Path(__file__).resolve().parents[2] / "gatt_profiles" / name
    if in_tree.is_file():
        return in_tree.read_bytes(), name
    raise ProfileError(
        f"GATT profile {name!r} not found (looked in the package and gatt_profiles/)"
    )


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> GattProfile:
    """Load and validate a profile by file name (shipped ones) or by path."""
    path = Path(name_or_path)
    if path.is_file():
        source = path.name
        try:
            with path.open("rb") as file:
                raw = file.read(MAX_TOML_BYTES + 1)
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    else:
        raw, source = _profile_text(str(name_or_path))
    try:
        data = parse_toml(raw)
    except TomlUnreadable as exc:
        raise ProfileError(f"{source}: {exc}") from None
    return parse_profile(data, source)


_DEFAULT: GattProfile | None = None


def default_profile() -> GattProfile:
    """The profile this version of bleprov speaks (loaded once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_profile()
    return _DEFAULT


def render_markdown(profile: GattProfile) -> str:
    """Describe the profile for docs/gatt-profile.md."""
    adv = profile.advertisement
    lines = [
        f"# GATT profile: {profile.name} v{profile.version}",
        "",
        f"Generated from `gatt_profiles/{profile.source}` by "
        "`python -m bleprov.core.profile --markdown`; do not edit by hand.",
        "",
        f"Protocol version: {profile.protocol_version}",
        "",
        f"## Service `{profile.service_uuid}`",
        "",
        f"{profile.service_description}. Primary service, 128-bit UUID.",
        "",
        "| key | UUID | properties | permissions | user description (0x2901) |",
        "|---|---|---|---|---|",
    ]
    for c in profile.characteristics:
        perms = ", ".join(c.permissions) or "none"
        lines.append(
            f"| `{c.key}` | `{c.uuid}` | {', '.join(c.properties)} | {perms} | {c.description} |"
        )
    lines += [
        "",
        "Characteristics with notify or indicate also carry a Client Characteristic "
        "Configuration descriptor (0x2902).",
        "",
        "The database also holds the Generic Access service (0x1800) and the Generic "
        "Attribute service (0x1801) with Service Changed (0x2A05), Client Supported "
        "Features (0x2B29) and Database Hash (0x2B2A): the layout above is the same in "
        "every device state, so hosts cache it and skip discovery while the hash matches "
        "(docs/protocol.md, section 1.1).",
        "",
        "## Advertisement (legacy, 31 bytes)",
        "",
        f"Advertising data: Flags ({', '.join(adv.flags)}), then Service Data - 128-bit UUID "
        f"(`{adv.service_data_uuid}`) with the payload below: "
        f"{adv.advertising_data_size} of {LEGACY_ADVERTISING_MAX} bytes.",
        "",
        f"Scan response: {', '.join(adv.scan_response)} "
        f"(local name at most {adv.max_local_name} bytes).",
        "",
        "| offset | field | type | meaning |",
        "|---|---|---|---|",
    ]
    offset = 0
    for f in adv.service_data:
        lines.append(f"| {offset} | `{f.name}` | {f.type} (big-endian) | {f.description} |")
        offset += f.size
    lines += ["", f"Service data payload: {adv.service_data_size} bytes.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["--markdown"]:
        print("usage: python -m bleprov.core.profile --markdown [PROFILE]", file=sys.stderr)
        return 2
    profile = load_profile(args[1]) if len(args) > 1 else default_profile()
    sys.stdout.write(render_markdown(profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
