"""The findings the campaign knows, how to recognise them, and which are still open.

Issue 15 named F1-F6; this campaign found more (N1...). Each has a predicate over a
:class:`~fuzz.guard.Finding`, so that a report says "F1" instead of a traceback, and so
that ``make test``'s short runs tolerate the findings in :data:`OPEN` (their regression
cases are expected failures there, ``xfail(strict=True)``) and fail on anything else.

When a finding is fixed, delete its entry from :data:`OPEN`: its regression cases then
must pass, and the short runs stop tolerating it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from fuzz.guard import Finding

_CRYPTOGRAPHY_OTHERS: Final = ("UnsupportedAlgorithm", "InternalError", "InvalidVersion")
_SCRYPT_HARNESSES: Final = frozenset({"sealed", "device_bin", "host_session_info"})


@dataclass(frozen=True)
class Known:
    id: str
    title: str
    matches: Callable[[Finding], bool]


def _file(finding: Finding) -> str:
    return finding.where.rsplit(":", 1)[0]


def _f2(finding: Finding) -> bool:
    return finding.kind == "slow" and "dumps" in finding.code


def _f5(finding: Finding) -> bool:
    if finding.harness not in _SCRYPT_HARNESSES:
        return False
    scrypt = _file(finding) in ("bleprov/store/sealed.py", "bleprov/core/crypto/spake2plus.py")
    return scrypt and (
        finding.kind == "slow" or finding.error in ("MemoryError", "ValueError", "OverflowError")
    )


KNOWN: Final[tuple[Known, ...]] = (
    Known(
        "F1",
        "pre-authentication crash: the strict CBOR decoders' canonical re-encode raises "
        "cbor2's encode errors (shared-ref tag 28/29, MIME tag 36, ...)",
        lambda f: f.kind == "exception" and f.error.startswith("cbor2.CBOREncode"),
    ),
    Known(
        "F2",
        "pre-authentication freeze: the canonical re-encode takes exponential time on maps "
        "nested as map keys",
        _f2,
    ),
    Known(
        "F3",
        "cryptography raises UnsupportedAlgorithm, InternalError or InvalidVersion where "
        "only ValueError/TypeError is caught",
        lambda f: f.kind == "exception" and f.error.endswith(_CRYPTOGRAPHY_OTHERS),
    ),
    Known(
        "F4",
        "ZoneMembership.decode accepts a certificate that is not DER; .serial and "
        ".renew_after() fail later",
        lambda f: (
            f.harness == "zone_membership"
            and f.error == "ValueError"
            and _file(f) == "bleprov/core/membership.py"
        ),
    ),
    Known(
        "F5",
        "scrypt's cost read from an unauthenticated header (sealed files) or a device's info "
        "(host): ValueError, OverflowError, MemoryError, unbounded time and memory",
        _f5,
    ),
    Known(
        "F6",
        "load_profile raises UnicodeDecodeError/AttributeError/TypeError, not ProfileError",
        lambda f: (
            f.harness == "profile_toml"
            and f.error in ("UnicodeDecodeError", "AttributeError", "TypeError")
        ),
    ),
    Known(
        "N1",
        "a stored certificate (device identity, manufacturer, zone store) whose public key "
        "does not parse: ValueError from the key-certificate match, not the store's error",
        lambda f: (
            f.error == "ValueError"
            and _file(f) in ("bleprov/core/identity.py", "bleprov/core/zone.py")
            and "public_key()" in f.code
        ),
    ),
    Known(
        "N2",
        "wpa_supplicant replies: a network id that str.isdigit() accepts and int() does not "
        "(a non-ASCII digit such as '\u00b2'): ValueError from parse_network_list",
        lambda f: (
            f.error == "ValueError"
            and _file(f) == "bleprov/network/wpa_supplicant.py"
            and "int(" in f.code
        ),
    ),
    Known(
        "N3",
        "a '~name/...' path of no user in the CLI config (trust, zone), BLEPROV_CONFIG or a "
        "label list: RuntimeError from Path.expanduser, a traceback",
        lambda f: f.error == "RuntimeError" and "expanduser" in f.code,
    ),
)

#: Findings not fixed on this branch, with what fixes them: their regression cases are
#: expected to fail (strictly) and make test's short runs tolerate them. Remove an entry
#: once the fix is merged.
OPEN: Final[dict[str, str]] = {}


def classify(finding: Finding) -> str | None:
    """The id of the known finding this is, or None for a new one."""
    for known in KNOWN:
        if known.matches(finding):
            return known.id
    return None


def title(finding_id: str) -> str:
    return next((k.title for k in KNOWN if k.id == finding_id), "new")


__all__ = ["KNOWN", "OPEN", "Known", "classify", "title"]
