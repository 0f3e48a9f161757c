"""The host's GATT cache: where a known device's service lives, keyed by its Database Hash.

A host that has met a device before skips discovery (Core spec, Vol 3, Part G, 2.5.2 and
7.3): it reads the device's Database Hash (characteristic 0x2B2A of the Generic Attribute
service) and, if the hash equals the one stored with the handles, uses the stored
handles. The hash covers every service, characteristic and descriptor declaration (not the
values), so it changes whenever the layout does (a firmware update) and a stale entry
costs only a rediscovery.

The cache holds nothing secret, but a wrong entry must never be more than a slow
connection: a file that does not parse, or an entry that does not validate, is ignored
(and rewritten after the next discovery), and an ATT error on a connection set up from
the cache drops that entry (:meth:`GattCache.forget`).

File: ``$XDG_CACHE_HOME/bleprov/gatt-cache.json`` (``~/.cache/bleprov/gatt-cache.json``),
JSON as :meth:`GattCache.save` writes it (docs/protocol.md, section 1.2).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

#: The ``format`` member of the file; another value: the file is ignored.
CACHE_FORMAT: Final = 1
#: Devices remembered; the least recently stored are dropped beyond it.
MAX_DEVICES: Final = 256
_HANDLE_MAX: Final = 0xFFFF
_HASH_SIZE: Final = 16


class CacheEntryInvalid(ValueError):
    """A cache entry does not describe a well-formed attribute layout."""


@dataclass(frozen=True)
class CachedDescriptor:
    uuid: str
    handle: int


@dataclass(frozen=True)
class CachedCharacteristic:
    uuid: str
    #: The characteristic declaration's handle.
    declaration: int
    #: The value handle (what reads, writes and notifications address).
    handle: int
    #: The last handle of the characteristic's group (its last descriptor).
    end: int
    #: Properties octet, with the extended properties' two bits shifted in above it.
    properties: int
    descriptors: tuple[CachedDescriptor, ...]


@dataclass(frozen=True)
class CachedService:
    uuid: str
    start: int
    end: int
    characteristics: tuple[CachedCharacteristic, ...]


@dataclass(frozen=True)
class CacheEntry:
    """One device's database hash, where it is read, and the services discovered."""

    database_hash: bytes
    hash_handle: int
    services: tuple[CachedService, ...]
    #: Every characteristic's descriptors were discovered (not only those of the
    #: characteristics that notify, indicate or have extended properties).
    all_descriptors: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "hash": self.database_hash.hex(),
            "hash_handle": self.hash_handle,
            "all_descriptors": self.all_descriptors,
            "services": [
                {
                    "uuid": s.uuid,
                    "start": s.start,
                    "end": s.end,
                    "characteristics": [
                        {
                            "uuid": c.uuid,
                            "declaration": c.declaration,
                            "handle": c.handle,
                            "end": c.end,
                            "properties": c.properties,
                            "descriptors": [
                                {"uuid": d.uuid, "handle": d.handle} for d in c.descriptors
                            ],
                        }
                        for c in s.characteristics
                    ],
                }
                for s in self.services
            ],
        }

    @classmethod
    def from_json(cls, raw: object) -> CacheEntry:
        """Parse and check an entry: handles in range, groups nested and ordered."""
        try:
            obj = _mapping(raw)
            database_hash = bytes.fromhex(_text(obj["hash"]))
            if len(database_hash) != _HASH_SIZE:
                raise CacheEntryInvalid("the database hash is not 16 bytes")
            services = tuple(_service(s) for s in _sequence(obj["services"]))
            all_descriptors = obj["all_descriptors"]
            if not isinstance(all_descriptors, bool):
                raise CacheEntryInvalid("all_descriptors is not a boolean")
            entry = cls(database_hash, _handle(obj["hash_handle"]), services, all_descriptors)
        except (KeyError, ValueError) as exc:
            raise CacheEntryInvalid(str(exc)) from None
        return entry


def _mapping(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise CacheEntryInvalid("not an object")
    return raw


def _sequence(raw: object) -> list[Any]:
    if not isinstance(raw, list):
        raise CacheEntryInvalid("not a list")
    return raw


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise CacheEntryInvalid("not a string")
    return raw


def _handle(raw: object) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= _HANDLE_MAX:
        raise CacheEntryInvalid(f"not an attribute handle: {raw!r}")
    return raw


def _service(raw: object) -> CachedService:
    obj = _mapping(raw)
    start, end = _handle(obj["start"]), _handle(obj["end"])
    characteristics = tuple(_characteristic(c) for c in _sequence(obj["characteristics"]))
    previous_end = start
    for c in characteristics:
        if not previous_end < c.declaration < c.handle <= c.end <= end:
            raise CacheEntryInvalid("characteristic handles out of order")
        for d in c.descriptors:
            if not c.handle < d.handle <= c.end:
                raise CacheEntryInvalid("descriptor outside its characteristic")
        previous_end = c.end
    return CachedService(_text(obj["uuid"]), start, end, characteristics)


def _characteristic(raw: object) -> CachedCharacteristic:
    obj = _mapping(raw)
    properties = obj["properties"]
    if not isinstance(properties, int) or isinstance(properties, bool):
        raise CacheEntryInvalid("properties are not a number")
    if not 0 <= properties <= 0x3FF:
        raise CacheEntryInvalid("properties out of range")
    descriptors = tuple(
        CachedDescriptor(_text(_mapping(d)["uuid"]), _handle(_mapping(d)["handle"]))
        for d in _sequence(obj["descriptors"])
    )
    return CachedCharacteristic(
        _text(obj["uuid"]),
        _handle(obj["declaration"]),
        _handle(obj["handle"]),
        _handle(obj["end"]),
        properties,
        descriptors,
    )


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/bleprov/gatt-cache.json``, else under ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bleprov" / "gatt-cache.json"


class GattCache:
    """Known devices' layouts, in memory and (if ``path`` is given) in a JSON file.

    The file is read once, when first needed, and rewritten whole (atomically) after
    each change; two hosts writing at once lose one's update, never the file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] | None = None

    @classmethod
    def default(cls) -> GattCache:
        return cls(default_cache_path())

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is not None:
            return self._entries
        self._entries = {}
        if self.path is None:
            return self._entries
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return self._entries
        except (OSError, ValueError) as exc:
            logger.debug("ignoring the GATT cache %s: %s", self.path, exc)
            return self._entries
        if (
            isinstance(raw, dict)
            and raw.get("format") == CACHE_FORMAT
            and isinstance(devices := raw.get("devices"), dict)
        ):
            self._entries = {
                str(k): v for k, v in devices.items() if isinstance(k, str) and isinstance(v, dict)
            }
        else:
            logger.debug("ignoring the GATT cache %s: not format %d", self.path, CACHE_FORMAT)
        return self._entries

    def get(self, device: str) -> CacheEntry | None:
        """The entry for ``device`` (its address with type), if there is a valid one."""
        raw = self._load().get(device)
        if raw is None:
            return None
        try:
            return CacheEntry.from_json(raw)
        except CacheEntryInvalid as exc:
            logger.debug("ignoring the GATT cache entry for %s: %s", device, exc)
            return None

    def put(self, device: str, entry: CacheEntry) -> None:
        entries = self._load()
        entries.pop(device, None)
        entries[device] = entry.to_json()
        while len(entries) > MAX_DEVICES:
            del entries[next(iter(entries))]
        self.save()

    def forget(self, device: str) -> None:
        if self._load().pop(device, None) is not None:
            self.save()

    def save(self) -> None:
        """Write the file (a failure is logged, not raised: the cache is an optimisation)."""
        if self.path is None or self._entries is None:
            return
        document = {"format": CACHE_FORMAT, "devices": self._entries}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".gatt-cache-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(document, out, separators=(",", ":"), sort_keys=True)
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            logger.debug("could not write the GATT cache %s: %s", self.path, exc)
