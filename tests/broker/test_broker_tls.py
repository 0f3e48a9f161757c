"""The device's factory certificate as its TLS client certificate, and the shipped ACLs.

Mosquitto runs the example configuration's shape: devices on one listener with mutual TLS
(the manufacturer root as the client CA, the certificate's CN as the user name), hosts on
another with a password, and ``contrib/mosquitto/acl.conf`` verbatim. A device is enrolled
through it; a second device can neither announce as the first nor read its sessions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import ipaddress
import ssl
import subprocess
from datetime import timedelta
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID

from bleprov.broker.client import BrokerConfig
from bleprov.broker.device import BrokerDeviceTransport
from bleprov.broker.wire import Topics
from bleprov.core import membership as mb
from bleprov.core.advertising import OobMode
from bleprov.core.enrolment import device as enr
from bleprov.core.factory import provision_device
from bleprov.core.wifi import WifiCredentials, WifiSecurity
from bleprov.network.simulated import SimulatedWifi
from bleprov.service.cloud import device_broker_tls
from bleprov.service.enrolment import EnrolmentClient, EnrolmentService
from bleprov.service.host_session import DeviceAuthentication, open_broker_session
from bleprov.session import SecureDeviceServer
from bleprov.store.device_store import DeviceStore
from bleprov.store.keys import KeyFileProvider
from tests.broker.conftest import Mosquitto, require_mosquitto
from tests.rig import CHEAP, ENVIRONMENT, MANUFACTURER, NOW, PASSWORD, TRUST

ACL = Path(__file__).parents[2] / "contrib" / "mosquitto" / "acl.conf"
HOST_USER = "owner-app"
HOST_PASSWORD = "host password for the test broker"


def _broker_certificate(directory: Path) -> bytes:
    """A throwaway CA and a server certificate for 127.0.0.1; returns the CA's PEM."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test broker CA")])
    start, end = NOW - timedelta(minutes=5), NOW + timedelta(days=1)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # Python 3.13 verifies with VERIFY_X509_STRICT: key identifiers and key usage.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "server.crt").write_bytes(server.public_bytes(Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    )
    (directory / "server.key").chmod(0o600)
    (directory / "manufacturer.pem").write_bytes(
        MANUFACTURER.root_certificate.public_bytes(Encoding.PEM)
    )
    return ca.public_bytes(Encoding.PEM)


@pytest.fixture
def tls_broker(tmp_path: Path) -> tuple[Mosquitto, bytes]:
    require_mosquitto()
    ca_pem = _broker_certificate(tmp_path)
    passwd = tmp_path / "hosts.passwd"
    subprocess.run(
        ["/usr/bin/mosquitto_passwd", "-b", "-c", str(passwd), HOST_USER, HOST_PASSWORD],
        check=True,
        capture_output=True,
    )
    passwd.chmod(0o600)
    config = (
        # Started as root (CI), mosquitto would drop to its own user, which cannot read
        # the test's private files; stay the user that started it.
        f"user {getpass.getuser()}\n"
        "per_listener_settings true\n"
        "persistence false\n"
        "max_packet_size 70000\n"
        "listener {port} 127.0.0.1\n"
        f"certfile {tmp_path / 'server.crt'}\n"
        f"keyfile {tmp_path / 'server.key'}\n"
        f"cafile {tmp_path / 'manufacturer.pem'}\n"
        "require_certificate true\n"
        "use_identity_as_username true\n"
        f"acl_file {ACL}\n"
        "listener {port2} 127.0.0.1\n"
        f"certfile {tmp_path / 'server.crt'}\n"
        f"keyfile {tmp_path / 'server.key'}\n"
        f"password_file {passwd}\n"
        f"acl_file {ACL}\n"
    )
    broker = Mosquitto(tmp_path, config)
    broker.start()
    yield broker, ca_pem
    broker.stop()


def _host_tls(ca_pem: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    return context


async def test_a_device_logs_in_with_its_factory_certificate_and_acls_fence_it(
    tmp_path: Path, tls_broker: tuple[Mosquitto, bytes]
) -> None:
    broker, ca_pem = tls_broker
    device_url = f"mqtts://127.0.0.1:{broker.port}"
    host_url = f"mqtts://127.0.0.1:{broker.port2}"

    async def start_device(name: str) -> tuple[BrokerDeviceTransport, object, DeviceStore]:
        device, label = provision_device(
            MANUFACTURER.issue_device(now=NOW), modes=OobMode.QR, cost=CHEAP
        )
        store = DeviceStore(tmp_path / name / "s", KeyFileProvider(tmp_path / name / "k"))
        store.put_provisioning(device)
        network = SimulatedWifi.from_config(ENVIRONMENT)
        await network.start()
        service = EnrolmentService(
            network=network,
            store=store,
            config=lambda: enr.DeviceEnrolmentConfig(device.identity.device_id, join_timeout=5),
        )
        server = SecureDeviceServer(
            secrets=device.secrets(),
            policy=int(device.modes),
            application=service,
            attempts=store.attempt_store(),
        )
        config = BrokerConfig.from_url(
            device_url, tls=device_broker_tls(device.identity, broker_ca_pem=ca_pem)
        )
        transport = BrokerDeviceTransport(config, server, device.info, device.identity.device_id)
        await transport.start()
        await asyncio.wait_for(transport.connected.wait(), 10)
        return transport, (label, service, network), store

    first, (label, service, network), store = await start_device("first")
    second, (_, _, network2), _ = await start_device("second")
    try:
        host = BrokerConfig.from_url(
            host_url, tls=_host_tls(ca_pem), username=HOST_USER, password=HOST_PASSWORD
        )
        # The second device tries to announce as the first, and listens to its topics.
        rogue_seen: list[str] = []
        rogue_ready = asyncio.Event()

        async def rogue() -> None:
            async with second.config.client(identifier="rogue") as client:
                await client.publish(first.topics.info, b"\xa0", qos=1, retain=True)
                await client.subscribe(f"{first.topics.base}/#", qos=1)
                rogue_ready.set()
                async for message in client.messages:
                    rogue_seen.append(message.topic.value)

        rogue_task = asyncio.get_running_loop().create_task(rogue())
        await asyncio.wait_for(rogue_ready.wait(), 10)
        # The host still finds the first device's real announcement, and enrols it.
        session = await open_broker_session(
            host,
            DeviceAuthentication.from_qr_text(label.qr_text),
            TRUST,
            device_id=first.topics.device_id,
        )
        client = EnrolmentClient(session, timeout=10)
        status = await client.set_wifi(
            WifiCredentials(b"home", WifiSecurity.WPA2_PERSONAL, passphrase=PASSWORD)
        )
        assert status.ip is not None
        await client.commit()
        await session.close()
        await service.drain()
        rogue_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await rogue_task
        assert rogue_seen == []  # the ACL let it read nothing of the first device's
        assert mb.RECORD_OWNER not in store.load()  # Wi-Fi only here
        assert store.load() != {}
        # A client without a certificate is turned away on the device listener.
        anonymous = dataclasses.replace(
            BrokerConfig.from_url(device_url, tls=_host_tls(ca_pem)), timeout=2
        )
        with pytest.raises(aiomqtt.MqttError):
            async with anonymous.client():
                pass
        # And a host cannot write announcements.
        async with host.client() as client:
            await client.publish(Topics(first.topics.device_id).info, b"\xa0", qos=1, retain=True)
        async with host.client() as client:
            await client.subscribe(first.topics.info, qos=1)
            async with asyncio.timeout(5):
                async for message in client.messages:
                    assert message.payload == first.current_info().encode()
                    break
    finally:
        await first.close()
        await second.close()
        await network.close()
        await network2.close()
