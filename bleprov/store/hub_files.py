"""The hub's directory: the zone CA, its registry, its public files (docs/registry.md).

    hub/zone.bin          zone root and issuing CA keys (scrypt + PKCS#8), CRL counter (0600)
    hub/root.pem          the zone root certificate, for members to trust (0644)
    hub/crl.pem           the newest CRL (0644)
    hub/hub.toml          zone name and ID, registry URL if not the default, user cost (0644)
    hub/registry.sqlite   the default registry: users, devices, certificates, audit (0600)

The registry is the source of truth for revocations: :meth:`Hub.revoke` commits there first
and only then updates the zone, and every CRL the hub signs first takes in every serial the
registry has revoked. A crash between the two steps, or another process (a second hub on
the same PostgreSQL registry, the CLI beside a running hub) that revoked meanwhile, can
therefore never leave a revoked certificate off the next CRL. CRL numbers only grow: before
signing, the hub reads the number of the published ``crl.pem`` under a lock file.

Passphrases come from the caller (the CLI reads environment variables or prompts); they are
never logged nor put in an exception's text.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bleprov.core.ca import CertificateAuthority, apply_revocations
from bleprov.core.crypto import pki
from bleprov.core.crypto.loading import (
    PARSE_ERRORS,
    KeyTooDear,
    UnreadableCertificate,
    UnreadableKey,
    load_pem_certificate,
    load_pem_private_key,
)
from bleprov.core.crypto.pki import SigningKey
from bleprov.core.crypto.primitives import aes_cbc_pkcs7_encrypt, pbkdf2_hmac
from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import BleprovError, MalformedData
from bleprov.core.toml_text import TomlUnreadable, parse_toml
from bleprov.core.zone import (
    MAX_CRL_SIZE,
    OWNER_PATTERN,
    Zone,
    ZoneError,
    ZoneSetupError,
    verify_user,
)
from bleprov.store.files import write_atomic
from bleprov.store.registry import (
    MAX_PASSPHRASE_MEMORY,
    MAX_PASSPHRASE_WORK,
    PASSPHRASE_COST,
    AuthenticationFailed,
    NotAuthorized,
    Registry,
    Role,
    User,
    passphrase_cost_allowed,
)

ZONE_FILE: Final = "zone.bin"
ROOT_FILE: Final = "root.pem"
CRL_FILE: Final = "crl.pem"
CONFIG_FILE: Final = "hub.toml"
REGISTRY_FILE: Final = "registry.sqlite"
LOCK_FILE: Final = ".hub.lock"
USER_KEY_FILE: Final = "user.key.pem"
USER_CERT_FILE: Final = "user.cert.pem"

#: PBKDF2-HMAC-SHA256 iterations for a user's key file (OWASP 2023). PKCS#8 with PBES2 so
#: OpenSSL reads the key too; ``cryptography``'s BestAvailableEncryption uses only 2048.
USER_KEY_ITERATIONS: Final = 600_000
MAX_USER_PEM_SIZE: Final = 8192
MAX_KEY_PASSPHRASE_BYTES: Final = 1024
_CONFIG_VERSION: Final = 1
_MAX_CONFIG_SIZE: Final = 16384
_MAX_ZONE_FILE_SIZE: Final = 128 * 1024


class HubError(BleprovError):
    """The hub directory is missing, already initialised, or unusable as it is."""


class BadCredential(HubError):
    """A user's key or certificate was refused (wrong zone, wrong key passphrase, ...)."""


def default_registry_url(directory: Path) -> str:
    """The embedded SQLite registry inside the hub directory."""
    return f"sqlite:///{Path(directory).resolve() / REGISTRY_FILE}"


def open_registry(
    directory: Path, *, registry_url: str | None = None, passphrase_cost: ScryptCost | None = None
) -> Registry:
    """The hub's registry alone, for read-only commands that need no zone passphrase."""
    directory = Path(directory)
    config = _read_config(directory)
    url = registry_url or config.registry_url or default_registry_url(directory)
    _check_registry_url(url)
    return Registry.open(url, passphrase_cost=passphrase_cost or config.passphrase_cost)


class Hub:
    """An opened hub directory: its zone CA and its registry. A context manager."""

    def __init__(
        self, directory: Path, zone: Zone, registry: Registry, *, name: str, zone_passphrase: bytes
    ) -> None:
        self.directory = Path(directory)
        self.zone = zone
        self.registry = registry
        self.name = name
        # Kept to re-encrypt zone.bin on save(); never shown by repr or in errors.
        self._zone_passphrase = zone_passphrase

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        name: str,
        zone_passphrase: bytes,
        admin: str,
        admin_passphrase: str,
        now: datetime,
        registry_url: str | None = None,
        passphrase_cost: ScryptCost | None = None,
    ) -> Hub:
        """Create a hub: zone CA, public files, registry and its first admin.

        Refuses a directory that holds a hub (or the remains of a failed init); files it
        created are removed again if a later step fails. ``zone.bin`` is written last, so
        its presence marks a complete hub.
        """
        directory = Path(directory)
        _check_zone_passphrase(zone_passphrase)
        cost = passphrase_cost or PASSPHRASE_COST
        if registry_url is not None:
            _check_registry_url(registry_url)
        leftovers = [n for n in (ZONE_FILE, CONFIG_FILE, REGISTRY_FILE) if (directory / n).exists()]
        if leftovers:
            raise HubError(
                f"{directory} already holds a hub ({', '.join(leftovers)}); refusing to "
                "replace it: open it, or choose an empty directory"
            )
        try:
            zone = Zone.create(name, now=now)
        except ZoneSetupError as exc:
            raise HubError(f"cannot create the zone: {exc}") from None
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        created: list[Path] = []
        registry: Registry | None = None
        try:
            url = registry_url
            if url is None:
                database = directory / REGISTRY_FILE
                # An empty 0600 file first: SQLite fills it, and its WAL files inherit the mode.
                os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                created += [database, *_sqlite_side_files(database)]
                url = default_registry_url(directory)
            registry = Registry.open(url, passphrase_cost=cost)
            try:
                registry.add_user(admin, Role.ADMIN, passphrase=admin_passphrase, actor=None)
            except NotAuthorized:
                raise HubError(
                    "the registry already has users: it belongs to another hub; "
                    "point --registry-url at an empty database"
                ) from None
            for path, data in (
                (directory / ROOT_FILE, _pem(zone.root_certificate)),
                (directory / CONFIG_FILE, _config_text(name, zone.zone_id, registry_url, cost)),
            ):
                created.append(path)
                write_atomic(path, data, mode=0o644)
            crl = zone.crl(now=now)
            created.append(directory / ZONE_FILE)
            write_atomic(directory / ZONE_FILE, zone.to_bytes(zone_passphrase))
            created.append(directory / CRL_FILE)
            write_atomic(directory / CRL_FILE, _crl_pem(crl), mode=0o644)
        except BaseException:
            if registry is not None:
                registry.close()
            for path in created:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        return cls(directory, zone, registry, name=name, zone_passphrase=zone_passphrase)

    @classmethod
    def open(
        cls,
        directory: Path,
        zone_passphrase: bytes,
        *,
        registry_url: str | None = None,
        passphrase_cost: ScryptCost | None = None,
        now: datetime | None = None,
    ) -> Hub:
        """Open a hub; revocations the registry holds but the zone lacks are applied.

        ``registry_url`` overrides hub.toml (e.g. PostgreSQL); ``passphrase_cost`` the
        scrypt cost of passphrases set from now on; ``now`` dates a CRL that reconciling
        may sign (default: the clock).
        """
        directory = Path(directory)
        _check_zone_passphrase(zone_passphrase)
        zone_path = directory / ZONE_FILE
        if not zone_path.is_file():
            raise HubError(
                f"no hub in {directory}: run `bleprov zone init --dir {directory}` first, "
                "or set BLEPROV_HUB_DIR to the hub directory"
            )
        data = zone_path.read_bytes()
        if len(data) > _MAX_ZONE_FILE_SIZE:
            raise HubError(f"{zone_path} is larger than a zone file can be: restore it")
        try:
            zone = Zone.from_bytes(data, zone_passphrase)
        except ZoneSetupError as exc:
            raise HubError(
                f"cannot open the zone in {zone_path} ({exc}): check the zone passphrase"
            ) from None
        config = _read_config(directory)
        if config.zone_id is not None and config.zone_id != zone.zone_id:
            raise HubError(f"{directory / CONFIG_FILE} names another zone than {ZONE_FILE}")
        registry = open_registry(
            directory, registry_url=registry_url, passphrase_cost=passphrase_cost
        )
        hub = cls(
            directory, zone, registry, name=config.name or "", zone_passphrase=zone_passphrase
        )
        try:
            if hub._reconcile():
                hub.crl(now=now or datetime.now(UTC))
        except BaseException:
            hub.close()
            raise
        return hub

    def close(self) -> None:
        """Release the registry's connections."""
        self.registry.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Hub(directory={str(self.directory)!r}, zone_id={self.zone.zone_id!r})"

    # ------------------------------------------------------------- zone and CRL

    @property
    def ca(self) -> CertificateAuthority:
        """The zone CA as the hub's rules use it (bleprov.service.hub_rules)."""
        return self.zone

    def save(self) -> None:
        """Write zone.bin atomically (keys re-encrypted under the zone passphrase)."""
        write_atomic(self.directory / ZONE_FILE, self.zone.to_bytes(self._zone_passphrase))

    def crl(self, *, now: datetime) -> bytes:
        """Sign a CRL of every revoked serial (registry included); save; publish crl.pem.

        The zone is saved before crl.pem is written, so a published CRL number is never
        issued twice. Returns the CRL's DER.
        """
        with self._lock():
            self._reconcile()
            # Another process of this hub may have published a higher number meanwhile.
            self.zone.advance_crl_number(
                _published_crl_number(self.directory / CRL_FILE, self.zone.issuer_certificate)
            )
            der = self.zone.crl(now=now)
            self.save()
            write_atomic(self.directory / CRL_FILE, _crl_pem(der), mode=0o644)
        return der

    def revoke(self, device_id: str, *, actor: User, now: datetime) -> list[int]:
        """Revoke a device: registry first (checks ``actor`` is an admin), then zone + CRL."""
        serials = self.registry.revoke(device_id, actor=actor)
        for serial in serials:
            self.zone.revoke(serial, now=now)
        self.crl(now=now)
        return serials

    # ---------------------------------------------------------------------- users

    def authenticate(self, name: str, passphrase: str) -> User:
        """A passphrase user; :class:`AuthenticationFailed` whatever was wrong."""
        return self.registry.authenticate(name, passphrase)

    def authenticate_key(
        self,
        name: str,
        key_pem: bytes,
        key_passphrase: bytes,
        cert_pem: bytes,
        *,
        now: datetime | None = None,
    ) -> User:
        """A user holding a zone-issued user certificate and its encrypted private key.

        The certificate must chain to this zone's issuing CA, name ``name``, and not be
        revoked; the key must decrypt and sign a fresh random challenge that the
        certificate's key verifies; then the registry must know the certificate's
        fingerprint for an enabled user of that name.
        """
        when = now or datetime.now(UTC)
        cert_der = _load_user_certificate(cert_pem)
        try:
            identity = verify_user(
                cert_der, [self.ca.issuer_der], zone_root_der=self.ca.root_der, now=when
            )
        except ZoneError as exc:
            raise BadCredential(f"the user certificate is not this zone's: {exc}") from None
        if identity.name != name:
            raise BadCredential(f"the user certificate names {identity.name!r}, not {name!r}")
        if identity.serial in self.ca.revoked_serials:
            raise BadCredential("the user certificate is revoked: ask an admin for a new one")
        key = _load_user_key(key_pem, key_passphrase)
        challenge = secrets.token_bytes(32)
        signature = pki.ecdsa_sign(key, challenge)
        public_key = x509.load_der_x509_certificate(cert_der).public_key()
        if not pki.is_ec_public_key(public_key) or not pki.ecdsa_verify(
            public_key, signature, challenge
        ):
            raise BadCredential("the user key does not belong to the user certificate")
        user = self.registry.authenticate_certificate(hashlib.sha256(cert_der).hexdigest())
        if user.name != name:
            raise AuthenticationFailed()
        return user

    def issue_user_credential(
        self,
        name: str,
        role: Role,
        *,
        actor: User,
        key_passphrase: bytes,
        now: datetime,
    ) -> tuple[bytes, bytes]:
        """A new certificate user: (encrypted P-256 key PEM, zone-issued user cert PEM).

        ``actor`` must be an admin. The key file is PKCS#8 encrypted with PBES2
        (PBKDF2-HMAC-SHA256, :data:`USER_KEY_ITERATIONS`, AES-256-CBC) under
        ``key_passphrase``; the registry records the certificate's SHA-256 fingerprint.
        """
        _check_key_passphrase(key_passphrase)
        if not isinstance(name, str) or OWNER_PATTERN.fullmatch(name) is None:
            raise HubError("a user name is 1-64 characters of A-Z a-z 0-9 . _ @ -")
        self.registry.require_admin(actor)
        key = pki.generate_signing_key()
        cert_der = self.ca.issue_user(key.public_key(), name, now)
        self.registry.add_user(
            name,
            role,
            certificate_fingerprint=hashlib.sha256(cert_der).hexdigest(),
            actor=actor,
        )
        return encrypt_private_key_pem(key, key_passphrase), _pem_der(cert_der, "CERTIFICATE")

    # ------------------------------------------------------------------ internals

    def _reconcile(self) -> bool:
        """Apply to the zone every serial the registry revoked; whether any was missing."""
        return apply_revocations(
            self.zone, ((r.serial, r.revoked_at) for r in self.registry.revoked_serials())
        )

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive lock on the hub directory while zone.bin and crl.pem change."""
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


# ---------------------------------------------------------------------- hub.toml


class _Config:
    def __init__(
        self,
        name: str | None,
        zone_id: str | None,
        registry_url: str | None,
        passphrase_cost: ScryptCost,
    ) -> None:
        self.name = name
        self.zone_id = zone_id
        self.registry_url = registry_url
        self.passphrase_cost = passphrase_cost


def _read_config(directory: Path) -> _Config:
    path = Path(directory) / CONFIG_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HubError(
            f"no {CONFIG_FILE} in {directory}: it is not a hub directory "
            f"(run `bleprov zone init --dir {directory}` first)"
        ) from None
    if len(data) > _MAX_CONFIG_SIZE:
        raise HubError(f"{path} is larger than {_MAX_CONFIG_SIZE} bytes: fix or restore it")
    try:
        value = parse_toml(data, limit=_MAX_CONFIG_SIZE)
    except TomlUnreadable as exc:
        raise HubError(f"{path} is {exc}: fix or restore it") from None
    if value.get("version") != _CONFIG_VERSION:
        raise HubError(f"{path}: unknown version; this bleprov reads version {_CONFIG_VERSION}")
    name, zone_id, url = value.get("name"), value.get("zone_id"), value.get("registry_url")
    cost = value.get("passphrase_cost", {})
    if not all(v is None or isinstance(v, str) for v in (name, zone_id, url)):
        raise HubError(f"{path}: name, zone_id and registry_url must be strings")
    if not isinstance(cost, dict) or not all(type(cost.get(k)) is int for k in ("n", "r", "p")):
        raise HubError(f"{path}: passphrase_cost needs integers n, r and p")
    try:
        passphrase_cost = ScryptCost(n=cost["n"], r=cost["r"], p=cost["p"])
    except MalformedData as exc:
        raise HubError(f"{path}: passphrase_cost: {exc}") from None
    if not passphrase_cost_allowed(passphrase_cost):
        raise HubError(
            f"{path}: passphrase_cost is above what the registry runs (at most "
            f"{MAX_PASSPHRASE_MEMORY >> 20} MiB and {MAX_PASSPHRASE_WORK} for n x r x p): "
            "lower it"
        )
    return _Config(name, zone_id, url, passphrase_cost)


def _config_text(name: str, zone_id: str, registry_url: str | None, cost: ScryptCost) -> bytes:
    lines = [
        "# bleprov hub (docs/registry.md). No secrets here: zone.bin holds the encrypted",
        "# CA keys; a PostgreSQL password belongs in ~/.pgpass or PGPASSWORD.",
        f"version = {_CONFIG_VERSION}",
        f"name = {_toml_string(name)}",
        f"zone_id = {_toml_string(zone_id)}",
    ]
    if registry_url is not None:
        lines.append(f"registry_url = {_toml_string(registry_url)}")
    lines += [
        "",
        "# scrypt cost of passphrases set from now on (each hash keeps its own)",
        "[passphrase_cost]",
        f"n = {cost.n}",
        f"r = {cost.r}",
        f"p = {cost.p}",
        "",
    ]
    return "\n".join(lines).encode()


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _check_registry_url(url: str) -> None:
    """A registry URL must parse and must not carry a password (it would sit in hub.toml)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise HubError(
            "the registry URL is not a database URL (e.g. postgresql+psycopg://user@host/db)"
        ) from None
    if parsed.password is not None:
        raise HubError(
            "the registry URL holds a password: remove it and put it in ~/.pgpass "
            "or the PGPASSWORD environment variable"
        )


def _sqlite_side_files(database: Path) -> list[Path]:
    return [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


# ------------------------------------------------------------------- passphrases


def _check_zone_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes) or not passphrase:
        raise HubError("the zone passphrase must not be empty")


def _check_key_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes) or not 0 < len(passphrase) <= MAX_KEY_PASSPHRASE_BYTES:
        raise HubError(f"a key passphrase is 1 to {MAX_KEY_PASSPHRASE_BYTES} bytes")


# --------------------------------------------------------------------- PEM files


def _pem(certificate: x509.Certificate) -> bytes:
    return pki.certificate_pem(certificate)


def _pem_der(der: bytes, label: str) -> bytes:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


def _crl_pem(der: bytes) -> bytes:
    return _pem_der(der, "X509 CRL")


def _published_crl_number(path: Path, issuer: x509.Certificate) -> int:
    """The CRL number of the published crl.pem if this zone signed it, else 0."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) > 2 * MAX_CRL_SIZE:
        return 0
    try:
        crl = x509.load_pem_x509_crl(data)
        issuer_key = issuer.public_key()
        if not pki.is_ec_public_key(issuer_key) or not crl.is_signature_valid(issuer_key):
            return 0
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except (*PARSE_ERRORS, x509.ExtensionNotFound, InvalidSignature):
        return 0


def _load_user_certificate(cert_pem: bytes) -> bytes:
    if not isinstance(cert_pem, bytes) or not 0 < len(cert_pem) <= MAX_USER_PEM_SIZE:
        raise BadCredential(f"a user certificate file is 1 to {MAX_USER_PEM_SIZE} bytes of PEM")
    try:
        certificate = load_pem_certificate(cert_pem)
    except UnreadableCertificate:
        raise BadCredential("the user certificate is not a PEM certificate") from None
    return pki.der(certificate)


def _load_user_key(key_pem: bytes, passphrase: bytes) -> SigningKey:
    if not isinstance(key_pem, bytes) or not 0 < len(key_pem) <= MAX_USER_PEM_SIZE:
        raise BadCredential(f"a user key file is 1 to {MAX_USER_PEM_SIZE} bytes of PEM")
    if not isinstance(passphrase, bytes) or not 0 < len(passphrase) <= MAX_KEY_PASSPHRASE_BYTES:
        raise BadCredential(f"a key passphrase is 1 to {MAX_KEY_PASSPHRASE_BYTES} bytes")
    try:
        key = load_pem_private_key(key_pem, passphrase)
    except KeyTooDear as exc:
        raise BadCredential(f"the user key file is not one bleprov wrote: {exc}") from None
    except UnreadableKey:
        raise BadCredential(
            "cannot decrypt the user key: wrong key passphrase, or not an encrypted key file"
        ) from None
    if not pki.is_p256_private_key(key):
        raise BadCredential("the user key is not a P-256 key")
    return key


# ---------------------------------------------------- PKCS#8 with PBES2 (RFC 8018)

_OID_PBES2: Final = bytes.fromhex("06092a864886f70d01050d")
_OID_PBKDF2: Final = bytes.fromhex("06092a864886f70d01050c")
_OID_HMAC_SHA256: Final = bytes.fromhex("06082a864886f70d0209")
_OID_AES256_CBC: Final = bytes.fromhex("060960864801650304012a")


def _der_tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        length = bytes([size])
    else:
        octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + body


def _der_int(value: int) -> bytes:
    return _der_tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encrypt_private_key_pem(
    key: SigningKey, passphrase: bytes, *, iterations: int = USER_KEY_ITERATIONS
) -> bytes:
    """``ENCRYPTED PRIVATE KEY`` PEM: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC (RFC 8018).

    The standard format OpenSSL and ``cryptography`` read, with a work factor chosen here
    instead of the 2048 iterations that ``BestAvailableEncryption`` uses.
    """
    _check_key_passphrase(passphrase)
    plain = pki.pkcs8_der(key)
    salt, iv = secrets.token_bytes(16), secrets.token_bytes(16)
    secret = pbkdf2_hmac(passphrase, salt=salt, iterations=iterations, length=32)
    encrypted = aes_cbc_pkcs7_encrypt(secret, iv, plain)
    prf = _der_tlv(0x30, _OID_HMAC_SHA256 + b"\x05\x00")
    kdf_params = _der_tlv(0x30, _der_tlv(0x04, salt) + _der_int(iterations) + prf)
    kdf = _der_tlv(0x30, _OID_PBKDF2 + kdf_params)
    scheme = _der_tlv(0x30, _OID_AES256_CBC + _der_tlv(0x04, iv))
    algorithm = _der_tlv(0x30, _OID_PBES2 + _der_tlv(0x30, kdf + scheme))
    info = _der_tlv(0x30, algorithm + _der_tlv(0x04, encrypted))
    return _pem_der(info, "ENCRYPTED PRIVATE KEY")
