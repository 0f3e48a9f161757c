"""TOML files read by bleprov (the GATT profile, hub.toml, the simulated network's
environment, the CLI's config): one bounded parse, one error type.

``tomllib`` alone lets three things through besides ``TOMLDecodeError`` (issue 15, F6):
UnicodeDecodeError when the caller decodes a non-UTF-8 file, RecursionError for arrays
or inline tables nested a few thousand deep (its parser recurses), and no bound on the
size read. Every loader goes through :func:`parse_toml` and turns :class:`TomlUnreadable`
into its own typed error; its message is a position or a size, never the text found.
"""

from __future__ import annotations

import tomllib
from typing import Any, Final

#: Our TOML files are a few KiB (the GATT profile, the largest, is under 4 KiB).
MAX_TOML_BYTES: Final = 64 * 1024


class TomlUnreadable(ValueError):
    """Bytes that are not a TOML document this code reads."""


def parse_toml(data: bytes, *, limit: int = MAX_TOML_BYTES) -> dict[str, Any]:
    """The document in ``data``: at most ``limit`` bytes of UTF-8 TOML."""
    if len(data) > limit:
        raise TomlUnreadable(f"larger than {limit} bytes")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise TomlUnreadable("not UTF-8 text (a TOML file is)") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message is a position, never the text found there.
        raise TomlUnreadable(f"not valid TOML: {exc}") from None
    except RecursionError:
        raise TomlUnreadable("not valid TOML: nested too deeply") from None
