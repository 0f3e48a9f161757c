"""Cloud binding glue: the device's TLS credential for the broker.

The factory certificate can serve as a TLS client certificate: its key usage is
digitalSignature (what a TLS 1.3 or ECDHE-ECDSA client signature needs) and it carries no
extended key usage, which OpenSSL and Mosquitto read as "any use". The broker validates it
against the manufacturer's root (Mosquitto: ``require_certificate true``,
``use_identity_as_username true``), so the device's user name on the broker is its ID, the
certificate's common name, and the topic ACLs (contrib/mosquitto/) key on that. The
attestation key signs TLS transcripts here and session hashes in the handshake; the two
are domain-separated (TLS 1.3's CertificateVerify context string against bleprov's
attestation context), so neither signature can be replayed as the other.
"""

from __future__ import annotations

import ssl

from bleprov.core.crypto import pki
from bleprov.core.identity import DeviceIdentity
from bleprov.tls.context import TlsSetupError, load_key_and_chain


def device_broker_tls(
    identity: DeviceIdentity, *, broker_ca_pem: bytes | None = None
) -> ssl.SSLContext:
    """A TLS 1.2+ client context presenting the device's factory certificate (and its
    intermediate); the broker is checked against ``broker_ca_pem`` or the system's CAs."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if broker_ca_pem is not None:
        try:
            context.load_verify_locations(cadata=broker_ca_pem.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise TlsSetupError("the broker CA file is not a PEM certificate") from None
    # Leaf and intermediate; the broker holds the root.
    chain = [identity.certificate, *identity.chain[:-1]]
    load_key_and_chain(context, identity.attestation_key, [pki.der(c) for c in chain])
    return context
