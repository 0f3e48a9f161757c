"""The hub directory: init/open, revocation that fails safe, user credentials."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bleprov.core.crypto.spake2plus import ScryptCost
from bleprov.core.errors import BleprovError
from bleprov.core.zone import (
    MemberCertificate,
    NotAZoneMember,
    Revoked,
    Zone,
    make_csr,
    make_member_key,
    verify_member,
)
from bleprov.store.hub_files import (
    BadCredential,
    Hub,
    HubError,
    encrypt_private_key_pem,
    open_registry,
)
from bleprov.store.registry import (
    AuthenticationFailed,
    DeviceStatus,
    NotAuthorized,
    Role,
    User,
)
from tests.store.test_registry import postgres_server  # noqa: F401 (a fixture)

# Tests only: the smallest scrypt cost for user passphrases.
TINY_COST = ScryptCost(n=16, r=1, p=1)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ZONE_PASS = b"zone passphrase 1"
ADMIN_PASS = "admin passphrase 1"
KEY_PASS = b"key passphrase 1"
DEVICE = "A1B2C3D4E5F60718"


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    return tmp_path / "hub"


@pytest.fixture
def hub(hub_dir: Path) -> Iterator[Hub]:
    with Hub.init(
        hub_dir,
        name="Home",
        zone_passphrase=ZONE_PASS,
        admin="alice",
        admin_passphrase=ADMIN_PASS,
        now=NOW,
        passphrase_cost=TINY_COST,
    ) as opened:
        yield opened


@pytest.fixture
def admin(hub: Hub) -> User:
    return hub.authenticate("alice", ADMIN_PASS)


def enrol(
    hub: Hub, admin: User, device_id: str = DEVICE, owner: str = "alice"
) -> MemberCertificate:
    """What the enrolment flow does: issue from a session-bound CSR, record in the registry."""
    binding = os.urandom(32)
    csr = make_csr(make_member_key(), device_id=device_id, session_binding=binding)
    member = hub.zone.issue_member(
        csr, device_id=device_id, owner=owner, expected_binding=binding, now=NOW
    )
    cert = x509.load_der_x509_certificate(member.cert_der)
    hub.registry.record_enrolment(
        device_id,
        owner=owner,
        enrolled_by=admin,
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
    )
    return member


def serial_of(member: MemberCertificate) -> int:
    return x509.load_der_x509_certificate(member.cert_der).serial_number


def published_crl(hub_dir: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl((hub_dir / "crl.pem").read_bytes())


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------- init and open


def test_init_creates_the_directory_layout(hub: Hub, hub_dir: Path) -> None:
    assert mode(hub_dir / "zone.bin") == 0o600
    assert mode(hub_dir / "registry.sqlite") == 0o600
    assert mode(hub_dir / "root.pem") == 0o644
    assert mode(hub_dir / "crl.pem") == 0o644
    assert mode(hub_dir / "hub.toml") == 0o644
    root = x509.load_pem_x509_certificate((hub_dir / "root.pem").read_bytes())
    assert root == hub.zone.root_certificate
    config = tomllib.loads((hub_dir / "hub.toml").read_text())
    assert config["zone_id"] == hub.zone.zone_id
    assert "registry_url" not in config  # the default SQLite file
    for name in ("zone.bin", "hub.toml", "root.pem", "crl.pem"):
        data = (hub_dir / name).read_bytes()
        assert ZONE_PASS not in data and ADMIN_PASS.encode() not in data
    assert [u.name for u in hub.registry.users()] == ["alice"]
    assert hub.registry.users()[0].role is Role.ADMIN


def test_open_round_trip(hub: Hub, hub_dir: Path) -> None:
    zone_id, root = hub.zone.zone_id, hub.zone.root_der
    hub.close()
    with Hub.open(hub_dir, ZONE_PASS) as reopened:
        assert reopened.zone.zone_id == zone_id
        assert reopened.zone.root_der == root
        assert reopened.name == "Home"
        assert reopened.authenticate("alice", ADMIN_PASS).name == "alice"
        with pytest.raises(AuthenticationFailed):
            reopened.authenticate("alice", "wrong")


def test_open_with_wrong_passphrase_refused(hub: Hub, hub_dir: Path) -> None:
    with pytest.raises(HubError, match="zone passphrase") as caught:
        Hub.open(hub_dir, b"not the zone passphrase")
    assert "not the zone passphrase" not in str(caught.value)


def test_open_without_a_hub_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(HubError, match="zone init"):
        Hub.open(tmp_path, ZONE_PASS)


def test_refuses_to_init_over_a_hub(hub: Hub, hub_dir: Path) -> None:
    before = (hub_dir / "zone.bin").read_bytes()
    with pytest.raises(HubError, match="already holds a hub"):
        Hub.init(
            hub_dir,
            name="Other",
            zone_passphrase=b"x",
            admin="eve",
            admin_passphrase="eve passphrase",
            now=NOW,
            passphrase_cost=TINY_COST,
        )
    assert (hub_dir / "zone.bin").read_bytes() == before


def test_failed_init_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(BleprovError):
        Hub.init(
            tmp_path / "hub",
            name="Home",
            zone_passphrase=ZONE_PASS,
            admin="bad name\n",  # the registry refuses it after the database was created
            admin_passphrase=ADMIN_PASS,
            now=NOW,
            passphrase_cost=TINY_COST,
        )
    assert list((tmp_path / "hub").iterdir()) == []


def test_registry_url_with_a_password_refused(tmp_path: Path) -> None:
    with pytest.raises(HubError, match="pgpass") as caught:
        Hub.init(
            tmp_path / "hub",
            name="Home",
            zone_passphrase=ZONE_PASS,
            admin="alice",
            admin_passphrase=ADMIN_PASS,
            now=NOW,
            registry_url="postgresql+psycopg://hub:s3cret@db.example/registry",
        )
    assert "s3cret" not in str(caught.value)


def test_registry_url_is_kept_in_hub_toml(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}"
    with Hub.init(
        tmp_path / "hub",
        name="Home",
        zone_passphrase=ZONE_PASS,
        admin="alice",
        admin_passphrase=ADMIN_PASS,
        now=NOW,
        registry_url=url,
        passphrase_cost=TINY_COST,
    ):
        pass
    assert tomllib.loads((tmp_path / "hub" / "hub.toml").read_text())["registry_url"] == url
    assert not (tmp_path / "hub" / "registry.sqlite").exists()
    with Hub.open(tmp_path / "hub", ZONE_PASS) as reopened:
        assert [u.name for u in reopened.registry.users()] == ["alice"]


# ----------------------------------------------------------------------- revocation


def test_revoke_updates_registry_zone_and_crl(hub: Hub, hub_dir: Path, admin: User) -> None:
    member = enrol(hub, admin)
    other = enrol(hub, admin, device_id="B1B2C3D4E5F60718")
    number_before = crl_number(published_crl(hub_dir))
    assert hub.revoke(DEVICE, actor=admin, now=NOW) == [serial_of(member)]
    assert hub.registry.device(DEVICE).status is DeviceStatus.REVOKED
    assert serial_of(member) in hub.zone.revoked_serials
    crl = published_crl(hub_dir)
    assert crl_number(crl) == number_before + 1
    assert crl.get_revoked_certificate_by_serial_number(serial_of(member)) is not None
    assert crl.get_revoked_certificate_by_serial_number(serial_of(other)) is None
    crl_der = crl.public_bytes(serialization.Encoding.DER)
    with pytest.raises(Revoked):
        verify_member(
            member.cert_der,
            member.chain_der,
            zone_root_der=hub.zone.root_der,
            crl_der=crl_der,
            now=NOW,
        )
    verify_member(
        other.cert_der, other.chain_der, zone_root_der=hub.zone.root_der, crl_der=crl_der, now=NOW
    )
    hub.close()
    with Hub.open(hub_dir, ZONE_PASS) as reopened:  # zone.bin kept the revocation
        assert serial_of(member) in reopened.zone.revoked_serials


def test_reconcile_after_crash_between_registry_and_zone(
    hub: Hub, hub_dir: Path, admin: User
) -> None:
    member = enrol(hub, admin)
    hub.save()
    # The crash: the registry committed the revocation, the zone was never saved.
    assert hub.registry.revoke(DEVICE, actor=admin) == [serial_of(member)]
    hub.close()
    assert (
        published_crl(hub_dir).get_revoked_certificate_by_serial_number(serial_of(member)) is None
    )
    with Hub.open(hub_dir, ZONE_PASS, now=NOW) as reopened:
        assert serial_of(member) in reopened.zone.revoked_serials
    # The reconciled zone was saved and a CRL carrying the serial was published.
    assert published_crl(hub_dir).get_revoked_certificate_by_serial_number(serial_of(member))
    with Hub.open(hub_dir, ZONE_PASS) as again:
        assert serial_of(member) in again.zone.revoked_serials


def test_a_stale_hub_object_still_signs_every_revocation(
    hub: Hub, hub_dir: Path, admin: User
) -> None:
    """Another process (the CLI) revokes while this hub stays open: its next CRL has it."""
    member = enrol(hub, admin)
    with Hub.open(hub_dir, ZONE_PASS) as other_process:
        other_process.revoke(DEVICE, actor=other_process.authenticate("alice", ADMIN_PASS), now=NOW)
        published = crl_number(published_crl(hub_dir))
    assert serial_of(member) not in hub.zone.revoked_serials
    crl = x509.load_der_x509_crl(hub.crl(now=NOW))
    assert crl.get_revoked_certificate_by_serial_number(serial_of(member)) is not None
    assert crl_number(crl) > published  # CRL numbers never repeat across processes


def test_member_cannot_revoke(hub: Hub, hub_dir: Path, admin: User) -> None:
    enrol(hub, admin)
    hub.registry.add_user("bob", Role.MEMBER, passphrase="bob passphrase", actor=admin)
    bob = hub.authenticate("bob", "bob passphrase")
    crl_before = (hub_dir / "crl.pem").read_bytes()
    with pytest.raises(NotAuthorized):
        hub.revoke(DEVICE, actor=bob, now=NOW)
    assert hub.registry.device(DEVICE).status is DeviceStatus.ENROLLED
    assert hub.zone.revoked_serials == frozenset()
    assert (hub_dir / "crl.pem").read_bytes() == crl_before


def test_crl_numbers_increase_and_survive_reopen(hub: Hub, hub_dir: Path) -> None:
    first = crl_number(x509.load_der_x509_crl(hub.crl(now=NOW)))
    second = crl_number(x509.load_der_x509_crl(hub.crl(now=NOW)))
    assert second == first + 1
    hub.close()
    with Hub.open(hub_dir, ZONE_PASS) as reopened:
        assert crl_number(x509.load_der_x509_crl(reopened.crl(now=NOW))) == second + 1


# ---------------------------------------------------------------- user credentials


@pytest.fixture
def bob_credential(hub: Hub, admin: User) -> tuple[bytes, bytes]:
    return hub.issue_user_credential(
        "bob", Role.ADMIN, actor=admin, key_passphrase=KEY_PASS, now=NOW
    )


def test_authenticate_key(hub: Hub, bob_credential: tuple[bytes, bytes]) -> None:
    key_pem, cert_pem = bob_credential
    user = hub.authenticate_key("bob", key_pem, KEY_PASS, cert_pem, now=NOW)
    assert (user.name, user.role) == ("bob", Role.ADMIN)
    assert KEY_PASS not in key_pem
    # A certificate admin can act: issue a passphrase user.
    hub.registry.add_user("carol", Role.MEMBER, passphrase="carol passphrase", actor=user)


def test_authenticate_key_wrong_passphrase(hub: Hub, bob_credential: tuple[bytes, bytes]) -> None:
    key_pem, cert_pem = bob_credential
    with pytest.raises(BadCredential, match="key passphrase") as caught:
        hub.authenticate_key("bob", key_pem, b"wrong passphrase", cert_pem, now=NOW)
    assert "wrong passphrase" not in str(caught.value).replace("wrong key passphrase", "")


def test_authenticate_key_for_another_name(hub: Hub, bob_credential: tuple[bytes, bytes]) -> None:
    key_pem, cert_pem = bob_credential
    with pytest.raises(BadCredential, match="names 'bob'"):
        hub.authenticate_key("alice", key_pem, KEY_PASS, cert_pem, now=NOW)


def test_authenticate_key_with_a_foreign_zone_certificate(hub: Hub) -> None:
    foreign = Zone.create("Home", now=NOW - timedelta(days=1))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = x509.load_der_x509_certificate(foreign.issue_user(key.public_key(), "bob", NOW))
    key_pem = encrypt_private_key_pem(key, KEY_PASS, iterations=1000)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(BadCredential, match="not this zone's"):
        hub.authenticate_key("bob", key_pem, KEY_PASS, cert_pem, now=NOW)


def test_authenticate_key_with_an_unregistered_certificate(hub: Hub) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = x509.load_der_x509_certificate(hub.zone.issue_user(key.public_key(), "bob", NOW))
    key_pem = encrypt_private_key_pem(key, KEY_PASS, iterations=1000)
    with pytest.raises(AuthenticationFailed):
        hub.authenticate_key(
            "bob", key_pem, KEY_PASS, cert.public_bytes(serialization.Encoding.PEM), now=NOW
        )


def test_authenticate_key_with_someone_elses_key(
    hub: Hub, bob_credential: tuple[bytes, bytes]
) -> None:
    _, cert_pem = bob_credential
    stranger = encrypt_private_key_pem(
        ec.generate_private_key(ec.SECP256R1()), KEY_PASS, iterations=1000
    )
    with pytest.raises(BadCredential, match="does not belong"):
        hub.authenticate_key("bob", stranger, KEY_PASS, cert_pem, now=NOW)


def test_authenticate_key_with_an_expired_certificate(
    hub: Hub, bob_credential: tuple[bytes, bytes]
) -> None:
    key_pem, cert_pem = bob_credential
    with pytest.raises(BadCredential, match="expired"):
        hub.authenticate_key("bob", key_pem, KEY_PASS, cert_pem, now=NOW + timedelta(days=400))


def test_authenticate_key_of_a_disabled_user(
    hub: Hub, admin: User, bob_credential: tuple[bytes, bytes]
) -> None:
    key_pem, cert_pem = bob_credential
    hub.registry.disable_user("bob", actor=admin)
    with pytest.raises(AuthenticationFailed):
        hub.authenticate_key("bob", key_pem, KEY_PASS, cert_pem, now=NOW)


@pytest.mark.parametrize("garbage", [b"", b"not pem", b"x" * 9000])
def test_authenticate_key_with_garbage_files(
    hub: Hub, bob_credential: tuple[bytes, bytes], garbage: bytes
) -> None:
    key_pem, cert_pem = bob_credential
    with pytest.raises(BadCredential):
        hub.authenticate_key("bob", key_pem, KEY_PASS, garbage, now=NOW)
    with pytest.raises(BadCredential):
        hub.authenticate_key("bob", garbage, KEY_PASS, cert_pem, now=NOW)


def test_user_certificate_is_not_a_device_member(
    hub: Hub, bob_credential: tuple[bytes, bytes]
) -> None:
    cert = x509.load_pem_x509_certificate(bob_credential[1])
    with pytest.raises(NotAZoneMember):
        verify_member(
            cert.public_bytes(serialization.Encoding.DER),
            [hub.zone.issuer_der],
            zone_root_der=hub.zone.root_der,
            crl_der=None,
            now=NOW,
        )


def test_only_admins_issue_credentials(hub: Hub, admin: User) -> None:
    hub.registry.add_user("bob", Role.MEMBER, passphrase="bob passphrase", actor=admin)
    bob = hub.authenticate("bob", "bob passphrase")
    with pytest.raises(NotAuthorized):
        hub.issue_user_credential("eve", Role.ADMIN, actor=bob, key_passphrase=KEY_PASS, now=NOW)
    assert [u.name for u in hub.registry.users()] == ["alice", "bob"]


def test_key_file_is_standard_pkcs8(bob_credential: tuple[bytes, bytes], tmp_path: Path) -> None:
    key_pem, cert_pem = bob_credential
    key = serialization.load_pem_private_key(key_pem, KEY_PASS)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert key.public_key() == cert.public_key()
    with pytest.raises(ValueError, match="Incorrect password"):
        serialization.load_pem_private_key(key_pem, b"wrong")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    (tmp_path / "user.key.pem").write_bytes(key_pem)
    result = subprocess.run(
        [
            openssl,
            "pkey",
            "-in",
            str(tmp_path / "user.key.pem"),
            "-passin",
            "env:KEYPASS",
            "-pubout",
        ],
        env={**os.environ, "KEYPASS": KEY_PASS.decode()},
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    public = serialization.load_pem_public_key(result.stdout)
    assert public == cert.public_key()


def test_open_registry_needs_no_zone_passphrase(hub: Hub, hub_dir: Path, admin: User) -> None:
    enrol(hub, admin)
    with open_registry(hub_dir) as registry:
        assert [d.device_id for d in registry.devices()] == [DEVICE]


def test_repr_holds_no_passphrase(hub: Hub) -> None:
    assert ZONE_PASS.decode() not in repr(hub)
    assert ZONE_PASS.decode() not in str(vars(hub).get("zone"))


def test_authenticate_key_with_a_revoked_certificate(
    hub: Hub, bob_credential: tuple[bytes, bytes]
) -> None:
    key_pem, cert_pem = bob_credential
    hub.zone.revoke(x509.load_pem_x509_certificate(cert_pem).serial_number, now=NOW)
    with pytest.raises(BadCredential, match="revoked"):
        hub.authenticate_key("bob", key_pem, KEY_PASS, cert_pem, now=NOW)


def test_hub_on_postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The same hub with its registry on PostgreSQL: the URL is kept in hub.toml."""
    socket_dir: Path = request.getfixturevalue("postgres_server")  # skips if none
    name = f"hub_{uuid.uuid4().hex}"
    admin_engine = sa.create_engine(
        f"postgresql+psycopg://bleprov@/postgres?host={socket_dir}",
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin_engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        admin_engine.dispose()
    url = f"postgresql+psycopg://bleprov@/{name}?host={socket_dir}"
    directory = tmp_path / "hub"
    with Hub.init(
        directory,
        name="Home",
        zone_passphrase=ZONE_PASS,
        admin="alice",
        admin_passphrase=ADMIN_PASS,
        now=NOW,
        registry_url=url,
        passphrase_cost=TINY_COST,
    ) as hub:
        admin = hub.authenticate("alice", ADMIN_PASS)
        member = enrol(hub, admin)
    assert not (directory / "registry.sqlite").exists()
    with Hub.open(directory, ZONE_PASS) as hub:
        hub.revoke(DEVICE, actor=hub.authenticate("alice", ADMIN_PASS), now=NOW)
    with Hub.open(directory, ZONE_PASS, registry_url=url) as hub:
        assert hub.registry.device(DEVICE).status is DeviceStatus.REVOKED
        assert serial_of(member) in hub.zone.revoked_serials
    with pytest.raises(HubError, match="another hub"):
        Hub.init(
            tmp_path / "second",
            name="Home",
            zone_passphrase=ZONE_PASS,
            admin="mallory",
            admin_passphrase=ADMIN_PASS,
            now=NOW,
            registry_url=url,
            passphrase_cost=TINY_COST,
        )
    assert list((tmp_path / "second").iterdir()) == []
