"""Record the seed corpus from real sessions: ``python -m fuzz.capture`` (run once; its
output, ``fuzz/corpus/`` and ``fuzz/fixtures/``, is committed).

Three sources, each file named after its source:

- ``demo-<mode>-<zone|peer>-*``: what each decoder saw while ``bleprov demo`` ran its
  ten real enrolments in this process (five modes, zone enrolment and peer binding,
  over the virtual radio, then the validated TLS connection): every decoder of the table
  is wrapped in a recorder while they run.
- ``fixture-*``: sessions and records made with the real code against the fixtures the
  harnesses use (fuzz/material.py), so that a seed gets as far as the real peer's would:
  a QR HELLO that passes this device's Noise handshake, a member certificate that
  chains to this zone, a zone/install for this device's pending key.
- ``regress-*``: the minimal inputs of the findings (fuzz/regressions.py).

``--new-fixtures`` makes a new device identity and zone CA first (every fixture seed is
then recorded again; the demo seeds do not depend on them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import io
import struct
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import cbor2

from fuzz import material as fx
from fuzz.harnesses import (
    CHANNEL_KEYS,
    CORPUS,
    HARNESSES,
    join_messages,
    seal_store,
)

#: A harness keeps at most this many seeds of one source, and this many bytes of seeds in
#: all (the fixture seeds first, then the smallest).
MAX_SEEDS_PER_SOURCE: Final = 8
MAX_CORPUS_BYTES: Final = 8 * 1024
MAX_FRAMES: Final = 24


class Seeds:
    """The seeds of every harness, by source, without duplicates."""

    def __init__(self) -> None:
        self.by_harness: dict[str, dict[str, list[bytes]]] = defaultdict(lambda: defaultdict(list))
        self.source = "fixture"

    def add(self, harness: str, data: bytes | bytearray | None, source: str | None = None) -> None:
        if data is None:
            return
        if harness not in HARNESSES:
            raise KeyError(f"no harness {harness!r}")
        data = bytes(data)
        if len(data) > HARNESSES[harness].max_len:
            return
        seeds = self.by_harness[harness][source or self.source]
        if data not in seeds:
            seeds.append(data)

    def files(self, harness: str) -> Iterator[tuple[str, bytes]]:
        """What to write: per source the smallest distinct seeds, within the byte budget."""
        chosen: list[tuple[str, bytes]] = []
        for source, seeds in sorted(self.by_harness[harness].items()):
            chosen += [(source, data) for data in _diverse(seeds, MAX_SEEDS_PER_SOURCE)]
        total = 0
        written: set[bytes] = set()
        # The fixture seeds first (they get furthest), then the smallest.
        for source, data in sorted(chosen, key=lambda item: (item[0] != "fixture", len(item[1]))):
            if data in written or (total and total + len(data) > MAX_CORPUS_BYTES):
                continue
            written.add(data)
            total += len(data)
            digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()[:12]
            yield f"seed-{source}-{digest}", data


def _diverse(seeds: list[bytes], count: int) -> list[bytes]:
    """Up to ``count`` seeds, the smallest of each kind first (kind: the first two bytes,
    which is the message type in most of our formats), then the next smallest."""
    groups: dict[bytes, list[bytes]] = defaultdict(list)
    for data in sorted(seeds, key=len):
        groups[data[:2]].append(data)
    out: list[bytes] = []
    while len(out) < count and any(groups.values()):
        for kind in sorted(groups, key=lambda k: len(groups[k][0]) if groups[k] else 0):
            if groups[kind] and len(out) < count:
                out.append(groups[kind].pop(0))
    return out


# ------------------------------------------------------------------------ recording


class Recorder:
    """Wraps decoders so that what they are given is kept; undone by :meth:`restore`."""

    def __init__(self, seeds: Seeds) -> None:
        self.seeds = seeds
        self._undo: list[Callable[[], None]] = []
        self.frames: dict[int, tuple[str, list[bytes]]] = {}
        self.first_seen: set[int] = set()

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()
        for harness, frames in self.frames.values():
            kept: list[bytes] = []
            for frame in frames[:MAX_FRAMES]:
                if sum(len(f) + 2 for f in kept) + len(frame) > 3000:
                    break
                kept.append(frame)
            self.seeds.add(harness, join_messages(*kept))
        self.frames.clear()

    def function(
        self, module: Any, name: str, record: Callable[..., None], *, everywhere: bool = True
    ) -> None:
        """Wrap ``module.name`` (and every bleprov module's reference to it)."""
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with contextlib.suppress(Exception):
                record(*args, **kwargs)
            return original(*args, **kwargs)

        holders = [module]
        if everywhere:
            holders += [
                m
                for m in list(sys.modules.values())
                if getattr(m, "__name__", "").startswith("bleprov") and m is not module
            ]
        for holder in holders:
            for attr, value in list(vars(holder).items()):
                if value is original:
                    setattr(holder, attr, wrapper)
                    self._undo.append(functools.partial(setattr, holder, attr, original))

    def method(self, cls: type, name: str, record: Callable[..., None]) -> None:
        """Wrap a method or classmethod of ``cls``; ``record`` gets the same arguments."""
        raw = cls.__dict__[name]
        if isinstance(raw, classmethod):
            func = raw.__func__

            def class_wrapper(klass: type, *args: Any, **kwargs: Any) -> Any:
                with contextlib.suppress(Exception):
                    record(klass, *args, **kwargs)
                return func(klass, *args, **kwargs)

            setattr(cls, name, classmethod(class_wrapper))
        else:

            def wrapper(this: Any, *args: Any, **kwargs: Any) -> Any:
                with contextlib.suppress(Exception):
                    record(this, *args, **kwargs)
                return raw(this, *args, **kwargs)

            setattr(cls, name, wrapper)
        self._undo.append(lambda: setattr(cls, name, raw))

    def install(self) -> None:
        """Wrap every decoder the table has a harness for."""
        from bleprov.core import advertising, attempts, factory, identity, membership, peer, zone
        from bleprov.core.crypto import noise, spake2plus
        from bleprov.core.enrolment import device as enrolment_device
        from bleprov.core.enrolment import messages as enrolment_messages
        from bleprov.core.frames import FrameChannel, Role
        from bleprov.core.session import device as session_device
        from bleprov.core.session import host as session_host
        from bleprov.core.session import messages as session_messages
        from bleprov.store import device_store
        from bleprov.tls import connection

        add = self.seeds.add

        def frame(channel: FrameChannel, data: bytes, now: float) -> None:
            name = "frames_device" if channel.role is Role.DEVICE else "frames_host"
            self.frames.setdefault(id(channel), (name, []))[1].append(bytes(data))

        self.method(FrameChannel, "receive_frame", frame)
        self.function(advertising, "decode_service_data", lambda raw, *a: add("service_data", raw))

        def info(cls: type, raw: bytes) -> None:
            add("device_info", raw)
            add("host_session_info", raw)

        self.method(advertising.DeviceInfo, "decode", info)
        self.function(session_messages, "decode", lambda raw: add("session_message", raw))
        self.function(session_messages, "decode_inner", lambda raw: add("session_inner", raw))
        self.function(
            session_messages, "split_fields", lambda body, *a, **k: add("handshake_fields", body)
        )

        def first(harness: Callable[[Any], str]) -> Callable[..., None]:
            def record(session: Any, raw: bytes, now: float) -> None:
                if id(session) not in self.first_seen:
                    self.first_seen.add(id(session))
                    add(harness(session), raw)

            return record

        self.method(session_device.DeviceSession, "receive", first(lambda s: "device_session"))
        self.method(
            session_host.HostSession,
            "receive",
            first(lambda s: f"host_session_{s.mode.label}"),
        )

        def noise_message(handshake: Any, message: bytes) -> None:
            parts = (b"", message) if handshake._initiator else (message,)
            add("noise", join_messages(*parts))

        self.method(noise.NoiseHandshake, "read_message", noise_message)
        self.method(spake2plus.VerifierRecord, "decode", lambda c, raw: add("verifier_record", raw))

        def attestation(value: Any, handshake_hash: bytes, **kwargs: Any) -> None:
            if isinstance(value, identity.Attestation):
                add("attestation", handshake_hash + value.record().encode())

        self.function(identity, "verify_attestation", attestation)
        self.function(enrolment_messages, "decode", lambda raw: add("enrolment_message", raw))
        self.method(
            enrolment_device.DeviceEnrolment,
            "receive",
            lambda this, raw, now: add("device_enrolment", raw),
        )

        def csr(this: Any, csr_der: bytes, *, expected_binding: bytes, **kwargs: Any) -> None:
            add("csr", expected_binding + csr_der)

        self.method(zone.Zone, "issue_member", csr)
        self.function(zone, "crl_info", lambda raw: add("crl", raw))
        self.function(zone, "verify_member", lambda cert, *a, **k: add("member_certificate", cert))
        self.method(peer.PeerPin, "from_certificate", lambda c, der: add("peer_certificate", der))
        self.method(membership.ZoneMembership, "decode", lambda c, raw: add("zone_membership", raw))
        self.method(membership.Owner, "decode", lambda c, raw: add("owner_record", raw))
        self.method(peer.PeerIdentity, "from_bytes", lambda c, raw: add("peer_identity", raw))
        self.method(peer.PinSet, "from_bytes", lambda c, raw: add("pin_set", raw))
        self.method(attempts.AttemptLimits, "from_bytes", lambda c, raw, *a: add("attempts", raw))
        self.method(
            factory.DeviceProvisioning, "from_bytes", lambda c, raw, *a: add("provisioning", raw)
        )
        self.method(
            identity.DeviceIdentity, "from_bytes", lambda c, raw, *a: add("device_identity", raw)
        )

        def store_plaintext(store: Any, plaintext: bytes) -> None:
            add("device_store", plaintext)
            length = struct.unpack_from(">I", plaintext)[0]
            records = cbor2.loads(plaintext[4 : 4 + length])
            add("wifi_record", records.get("wifi"))

        self.method(device_store.DeviceStore, "_decode", store_plaintext)
        self.method(
            device_store.DeviceStore,
            "_decrypt",
            lambda store, raw: add("device_store_file", raw),
        )

        def tls_message(data: bytes) -> None:
            add("tls_frames", len(data).to_bytes(4, "big") + data)

        self.function(connection, "decode_message", tls_message)


def capture_demo(seeds: Seeds) -> None:
    """The ten demo enrolments, every decoder recording."""
    from rich.console import Console

    from bleprov.cli.demo import run_demo

    recorder = Recorder(seeds)
    recorder.install()
    try:
        for mode in ("qr", "code", "compare", "passkey", "button"):
            for peer in (False, True):
                seeds.source = f"demo-{mode}-{'peer' if peer else 'zone'}"
                console = Console(file=io.StringIO(), width=100)
                print(f"capture: bleprov demo, {seeds.source}", file=sys.stderr)
                asyncio.run(run_demo(console, mode=mode, mtu=247, interval_ms=0, peer=peer))
                recorder.restore()
                recorder.install()
    finally:
        recorder.restore()
        seeds.source = "fixture"


# --------------------------------------------------------------- fixture sessions


def _pump(host: Any, device: Any, seeds: Seeds, mode: str, *, owned: bool = False) -> None:
    """Run one session between the fixture device and a host to its end, recording the
    first message each side receives."""
    from bleprov.core.session import device as dev
    from bleprov.core.session import host as hst

    to_device = [e.data for e in host.start(0.0) if isinstance(e, hst.SendMessage)]
    seeds.add("device_session_owned" if owned else "device_session", to_device[0])
    first_reply = True
    for _ in range(8):
        to_host: list[bytes] = []
        for message in to_device:
            seeds.add("session_message", message)
            events = device.receive(message, 1.0)
            if any(isinstance(e, dev.ShowNumber) for e in events) and mode == "compare":
                events += device.confirm_number(True, 1.0)
            to_host += [e.data for e in events if isinstance(e, dev.SendMessage)]
        to_device = []
        for message in to_host:
            if first_reply and not owned:
                seeds.add(f"host_session_{mode}", message)
                first_reply = False
            seeds.add("session_message", message)
            events = host.receive(message, 1.0)
            for event in list(events):
                if isinstance(event, hst.CompareNumber):
                    events += host.confirm_number(True, 1.0)
                if isinstance(event, hst.PasskeyRequested):
                    events += host.enter_passkey(device.number, 1.0)
            to_device += [e.data for e in events if isinstance(e, hst.SendMessage)]
        if not to_device:
            break


def capture_fixture_sessions(seeds: Seeds) -> None:
    from bleprov.core.session import host as hst
    from bleprov.core.session.messages import Mode
    from fuzz.harnesses import _device_session, _host_session

    m = fx.material()
    for mode in ("qr", "code", "compare", "passkey", "button"):
        _pump(_host_session(mode, start=False), _device_session(), seeds, mode)
    owned = _device_session(owned=True)
    window_host = hst.HostSession(
        mode=Mode.CODE,
        secret=hst.WindowSecret(fx.WINDOW_CODE),
        device_info=fx.device_info(window=_window_info(), owned=True),
        trust=m.trust,
        wall_clock=fx.FIXED_NOW,
        now=0.0,
    )
    _pump(window_host, owned, seeds, "code", owned=True)


def capture_handshake_parts(seeds: Seeds) -> None:
    """The compare, SPAKE2+ and Noise primitives run against each other."""
    from bleprov.core.crypto.noise import NoiseHandshake
    from bleprov.core.crypto.spake2plus import Prover, Verifier, derive_verifier
    from bleprov.core.device_secrets import SPAKE_ID_VERIFIER
    from bleprov.core.session.messages import Mode
    from bleprov.core.session.modes import (
        CompareDevice,
        CompareHost,
        prologue,
        qr_psk,
    )

    m = fx.material()
    info = fx.device_info()
    host, device = CompareHost(device_info=info), CompareDevice(device_info=info)
    pk_h = host.hello()
    reply = device.hello(pk_h).reply
    assert reply is not None
    nonce_h = host.receive(reply).reply
    assert nonce_h is not None
    nonce_d = device.receive(nonce_h).reply
    assert nonce_d is not None
    seeds.add("compare", join_messages(pk_h, nonce_h, reply, nonce_d))
    seeds.add("handshake_fields", reply)

    prover_secrets = derive_verifier(
        fx.CODE, salt=fx.SALT, id_prover=b"", id_verifier=SPAKE_ID_VERIFIER, cost=fx.CHEAP
    )
    prover = Prover(prover_secrets, context=b"fuzz", id_prover=b"", id_verifier=SPAKE_ID_VERIFIER)
    verifier = Verifier(
        m.code_records[b""], context=b"fuzz", id_prover=b"", id_verifier=SPAKE_ID_VERIFIER
    )
    share_p = prover.start()
    share_v, confirm_v = verifier.respond(share_p)
    confirm_p, _ = prover.finish(share_v, confirm_v)
    seeds.add("spake2plus", join_messages(share_p, confirm_p, share_v, confirm_v))
    seeds.add("verifier_record", m.code_records[b""].encode())

    initiator = NoiseHandshake(
        "NKpsk0",
        initiator=True,
        local_static=None,
        remote_static=m.identity.noise_static_public_key,
        psk=qr_psk(fx.LABEL_SECRET),
        prologue=prologue(Mode.QR, info),
    )
    responder = NoiseHandshake(
        "NKpsk0",
        initiator=False,
        local_static=m.identity.noise_static_key,
        remote_static=None,
        psk=qr_psk(fx.LABEL_SECRET),
        prologue=prologue(Mode.QR, info),
    )
    first = initiator.write_message(b"hello")
    responder.read_message(first)
    second = responder.write_message(b"")
    seeds.add("noise", join_messages(first, second))


def capture_channel_and_broker(seeds: Seeds) -> None:
    from bleprov.broker import wire
    from bleprov.core.channel import SecureChannel
    from bleprov.core.enrolment.messages import Request, encode
    from bleprov.core.session.common import ATTESTATION_CONTEXT
    from bleprov.core.session.messages import (
        Handshake,
        Hello,
        Inner,
        InnerKind,
        Mode,
        Secure,
        encode_inner,
    )
    from bleprov.core.session.messages import encode as encode_message

    m = fx.material()
    host = SecureChannel.for_role(
        is_host=True,
        host_to_device_key=CHANNEL_KEYS[0],
        device_to_host_key=CHANNEL_KEYS[1],
        associated_data=b"fuzz",
        now=0.0,
    )
    records = [
        Inner(InnerKind.CONFIRMED, b""),
        Inner(InnerKind.APPLICATION, encode(Request(1, "info", {}))),
        Inner(InnerKind.CLOSE, 0),
    ]
    seeds.add("channel", join_messages(*(host.seal(encode_inner(r), 1.0) for r in records)))
    attestation = m.identity.attest(bytes(range(32)), context=ATTESTATION_CONTEXT)
    seeds.add("session_inner", encode_inner(Inner(InnerKind.ATTESTATION, attestation)))
    seeds.add("attestation", bytes(range(32)) + attestation)

    hello = encode_message(Hello(Mode.BUTTON, bytes(32)))
    for envelope in (
        wire.Envelope(wire.Kind.OPEN).encode(),
        wire.Envelope(wire.Kind.DATA_UP, hello).encode(),
        wire.Envelope(wire.Kind.DATA_DOWN, encode_message(Handshake(bytes(48)))).encode(),
        wire.Envelope(wire.Kind.ACCEPT, fx.device_info()).encode(),
        wire.close(wire.Kind.CLOSE_UP, wire.CloseReason.NORMAL),
        wire.close(wire.Kind.CLOSE_DOWN, wire.CloseReason.BUSY),
        wire.Envelope(wire.Kind.DATA_UP, encode_message(Secure(bytes(40)))).encode(),
    ):
        seeds.add("broker_envelope", envelope)
    topics = wire.Topics(fx.DEVICE_ID)
    seeds.add("broker_envelope", topics.up("0" * 32).encode())
    seeds.add("broker_envelope", topics.info.encode())


def _tls(*messages: dict[str, Any]) -> bytes:
    from bleprov.tls.connection import encode_message

    return b"".join(encode_message(message) for message in messages)


def capture_enrolment_and_trust(seeds: Seeds) -> None:
    from bleprov.core.enrolment.messages import Request, credentials_body, encode
    from bleprov.core.membership import install_body
    from bleprov.core.wifi import WifiCredentials, WifiSecurity

    m = fx.material()
    home = WifiCredentials(
        b"home",
        WifiSecurity.WPA2_PERSONAL,
        passphrase="correct horse",  # noqa: S106 (a seed's example, not a secret)
    )
    for request in (
        Request(1, "info", {}),
        Request(2, "wifi/scan", {"refresh": True}),
        Request(3, "wifi/set", credentials_body(home)),
        Request(4, "failsafe", {"seconds": 120}),
        Request(5, "commit", {}),
        Request(6, "zone/key", {}),
        Request(7, "peer/bind", {"cert": m.host_identity.cert_der}),
        Request(8, "abort", {}),
        Request(9, "vendor/led", {"on": True}),
    ):
        seeds.add("device_enrolment", encode(request))
        seeds.add("enrolment_message", encode(request))
    seeds.add("zone_install", encode(Request(2, "zone/install", install_body(m.member))))
    seeds.add("zone_install", encode(Request(2, "commit", {})))

    offer = m.window_offer.to_body()
    seeds.add("window_offer", cbor2.dumps(offer, canonical=True))
    requests = [
        {"op": "hello", "id": 1, "body": {}},
        {"op": "window/open", "id": 2, "body": offer},
        {"op": "window/close", "id": 3, "body": {}},
        {"op": "factory-reset", "id": 4, "body": {}},
        {"op": "peer/unbind", "id": 5, "body": {}},
        {"op": "nonsense", "id": 6, "body": {}},
    ]
    seeds.add("trust_request", _tls(*requests[:3]))
    seeds.add("trust_request", _tls(requests[0], requests[3]))
    seeds.add("trust_request", _tls(requests[4], requests[5]))
    seeds.add("tls_frames", _tls(*requests[:3]))
    seeds.add("tls_frames", _tls({"op": "csr", "id": 7, "body": {"csr": b"\x30\x00"}}))


def capture_certificates(seeds: Seeds) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from bleprov.core.zone import make_csr, make_member_key

    m = fx.material()
    binding = fx.channel_binding(b"zone csr")
    seeds.add(
        "csr",
        binding + make_csr(make_member_key(), device_id=fx.DEVICE_ID, session_binding=binding),
    )
    seeds.add("member_certificate", m.member.cert_der)
    seeds.add("crl", m.crl)
    zone = m.zone
    hub = zone.issue_hub(make_member_key().public_key(), now=fx.FIXED_NOW)
    seeds.add("member_certificate", hub.cert_der)
    seeds.add("peer_certificate", m.host_identity.cert_der)
    seeds.add("peer_certificate", m.device_peer_identity.cert_der)
    seeds.add("trust_roots", m.manufacturer_root)
    root = m.identity.chain[-1]
    seeds.add("trust_roots", root.public_bytes(Encoding.PEM))


def capture_labels(seeds: Seeds) -> None:
    from PIL import Image

    from bleprov.core.advertising import ALL_MODES, encode_service_data
    from bleprov.core.factory import provision_device
    from bleprov.core.onboarding import encode_payload
    from bleprov.core.onboarding import encode_user_password as card_text
    from bleprov.labels.render import qr_png

    m = fx.material()
    _, label = provision_device(
        m.identity,
        modes=ALL_MODES,
        discriminator=fx.DISCRIMINATOR,
        scratch_card=True,
        cost=fx.CHEAP,
    )
    seeds.add("qr_text", label.qr_text.encode())
    seeds.add("printed_key", label.printed_key.encode())
    assert label.manual_code is not None
    assert label.scratch_card is not None
    seeds.add("manual_code", label.manual_code.encode())
    seeds.add("scratch_card", card_text(label.scratch_card).encode())
    seeds.add("ndef", label.ndef)
    seeds.add("onboarding_payload", encode_payload(label.payload))
    png = qr_png(label, scale=2)
    seeds.add("qr_image", png)
    image = Image.open(io.BytesIO(png)).convert("L")
    for kind in ("GIF", "JPEG", "BMP"):
        out = io.BytesIO()
        image.save(out, format=kind)
        seeds.add("qr_image", out.getvalue())
    for typed in ("1234-5678-9012", "admin", "123456", "0x123", "291"):
        seeds.add("typed_codes", typed.encode())
    from bleprov.core.advertising import DeviceInfo

    info = DeviceInfo.decode(fx.device_info())
    seeds.add("service_data", encode_service_data(info.service_data()))
    seeds.add("device_info", fx.device_info())
    seeds.add("host_session_info", fx.device_info())
    owned = _window_info()
    seeds.add("host_session_info", fx.device_info(window=owned, owned=True))


def _window_info() -> Any:
    from bleprov.core.window import CommissioningWindow

    return CommissioningWindow(fx.material().window_offer, opened_by=bytes(32), now=0.0).info()


def capture_stores(seeds: Seeds) -> None:
    from bleprov.core.advertising import ALL_MODES
    from bleprov.core.attempts import AttemptLimiter, AttemptLimits
    from bleprov.core.factory import DeviceProvisioning
    from bleprov.core.identity import Manufacturer
    from bleprov.core.membership import Owner, ZoneMembership
    from bleprov.core.peer import PinSet
    from bleprov.store.keys import _TPM_BLOB_LABEL
    from bleprov.store.sealed import seal

    m = fx.material()
    record = DeviceProvisioning(
        m.identity, fx.DISCRIMINATOR, ALL_MODES, fx.LABEL_SECRET, fx.SALT, fx.CHEAP, m.code_records
    ).to_bytes(None)
    seeds.add("provisioning", record)
    seeds.add("sealed", seal(b"a sealed secret", fx.PASSPHRASE, log2_n=10))
    seeds.add("device_bin", seal(record, fx.PASSPHRASE, log2_n=10))
    seeds.add("device_identity", m.identity.to_bytes(None))
    seeds.add("device_identity", m.identity.to_bytes(fx.PASSPHRASE))
    with fx.cheap_stretch():
        seeds.add(
            "manufacturer_store",
            Manufacturer.create("Fuzz Devices", now=fx.FIXED_NOW).to_bytes(fx.PASSPHRASE),
        )
        seeds.add("zone_store", m.zone.to_bytes(fx.PASSPHRASE))
    membership = ZoneMembership(
        fx.member_key(),
        m.member.cert_der,
        m.member.chain_der,
        m.member.root_der,
        m.zone.zone_id,
        fx.OWNER,
    )
    seeds.add("zone_membership", membership.encode())
    zone_owner = Owner("zone", bytes(32), fx.OWNER, m.zone.zone_id, (bytes(range(32)),))
    seeds.add("owner_record", zone_owner.encode())
    seeds.add("owner_record", m.peer_records["owner"])
    seeds.add("owner_record", cbor2.dumps({"kind": "peer", "name": "fuzz-host"}, canonical=True))
    seeds.add("peer_identity", m.peer_records["peer.identity"])
    seeds.add("pin_set", m.peer_records["peer.pins"])
    seeds.add("pin_set", PinSet([m.host_identity.pin, m.device_peer_identity.pin]).to_bytes())
    seeds.add("attempts", AttemptLimits().to_bytes())
    seeds.add("attempts", AttemptLimiter(failures=3, locked_out=False).to_bytes())
    records = {
        "provisioning": record,
        "zone": membership.encode(),
        "attempts": AttemptLimits().to_bytes(),
        **m.peer_records,
    }
    body = cbor2.dumps(records, canonical=True)
    plaintext = struct.pack(">I", len(body)) + body
    plaintext += bytes(-len(plaintext) % 256)
    seeds.add("device_store", plaintext)
    seeds.add("device_store_file", seal_store(plaintext))
    seeds.add("key_file", bytes(range(32)))
    seeds.add("tpm_blob", cbor2.dumps([_TPM_BLOB_LABEL, 1, b"public", b"private"], canonical=True))
    seeds.add(
        "tpm_blob",
        cbor2.dumps([_TPM_BLOB_LABEL, 2, b"public", b"private", "sha256:7"], canonical=True),
    )


def capture_configuration(seeds: Seeds) -> None:
    from bleprov.core.crypto.spake2plus import DEFAULT_COST
    from bleprov.store import hub_files

    repository = Path(__file__).resolve().parents[1]
    seeds.add(
        "profile_toml", (repository / "gatt_profiles/bleprov-provisioning-v1.toml").read_bytes()
    )
    seeds.add(
        "simulated_network", (repository / "bleprov/network/simulated_example.toml").read_bytes()
    )
    seeds.add(
        "hub_toml",
        hub_files._config_text("Fuzz Home", "0123456789abcdef", None, DEFAULT_COST),
    )
    seeds.add(
        "hub_toml",
        hub_files._config_text("Fuzz", "0123456789abcdef", "postgresql://hub/db", DEFAULT_COST),
    )
    seeds.add(
        "cli_config",
        b'radio = "virtual"\ntrust = ["root.pem", "~/other.pem"]\nzone = "hub"\nuser = "alice"\n',
    )
    seeds.add(
        "wpa_supplicant",
        b"id=0\nbssid=02:00:00:00:00:01\nfreq=2437\nbeacon_int=100\n"
        b"level=-50\nflags=[WPA2-PSK-CCMP][ESS]\nssid=home\\x20net\n",
    )
    seeds.add(
        "wpa_supplicant",
        b"network id / ssid / bssid / flags\n0\tOld\tany\t[CURRENT]\n1\tSpare\tany\t[DISABLED]\n",
    )
    seeds.add("wpa_supplicant", b"wpa_state=COMPLETED\nid=0\nip_address=192.168.3.7\n")
    seeds.add(
        "wpa_supplicant",
        b'<3>CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid="home" auth_failures=1'
        b" duration=10 reason=WRONG_KEY",
    )
    ssid = b"home"
    access_point = (
        bytes([0x7F])
        + bytes([len(ssid)])
        + ssid
        + bytes([17])
        + b"02:00:00:00:00:01"
        + (2437).to_bytes(4, "big")
        + (1).to_bytes(4, "big")
        + (0).to_bytes(4, "big")
        + (0x100).to_bytes(4, "big")
        + bytes([80])
    )
    address = b"\x01" + bytes([11]) + b"192.168.3.7" + bytes([24]) + b"\x01" + bytes(9)
    seeds.add("networkmanager", access_point + address)


def capture_all(seeds: Seeds, *, demo: bool = True) -> None:
    capture_fixture_sessions(seeds)
    capture_handshake_parts(seeds)
    capture_channel_and_broker(seeds)
    capture_enrolment_and_trust(seeds)
    capture_certificates(seeds)
    capture_labels(seeds)
    capture_stores(seeds)
    capture_configuration(seeds)
    if demo:
        capture_demo(seeds)


def write_corpus(seeds: Seeds, *, keep_demo: bool) -> dict[str, int]:
    """Replace the corpus with ``seeds`` and the regression cases; sizes by harness."""
    from fuzz.regressions import cases

    sizes: dict[str, int] = {}
    regressions = defaultdict(list)
    for case in cases():
        regressions[case.harness].append(case)
    for name in HARNESSES:
        directory = CORPUS / name
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            if keep_demo and old.name.startswith("seed-demo-"):
                continue
            old.unlink()
        for file_name, data in seeds.files(name):
            (directory / file_name).write_bytes(data)
        for case in regressions.pop(name, []):
            (directory / case.file_name).write_bytes(case.data)
        sizes[name] = sum(p.stat().st_size for p in directory.iterdir())
    if regressions:
        raise KeyError(f"regression cases for unknown harnesses: {sorted(regressions)}")
    return sizes


def write_regressions() -> None:
    """Write the regression cases that have no file yet (several are made with fresh
    randomness, so rewriting them all would change files for nothing: delete a file to
    have it written again)."""
    from fuzz.regressions import cases

    for case in cases():
        if case.harness not in HARNESSES:
            raise KeyError(f"regression case for an unknown harness: {case.harness}")
        path = CORPUS / case.harness / case.file_name
        if not path.exists():
            path.write_bytes(case.data)
            print(f"written: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.capture", description=__doc__)
    parser.add_argument(
        "--new-fixtures", action="store_true", help="make a new device identity and zone CA"
    )
    parser.add_argument(
        "--no-demo", action="store_true", help="keep the demo seeds there are; record the rest"
    )
    parser.add_argument(
        "--regressions-only",
        action="store_true",
        help="write the regression cases that have no file yet, nothing else",
    )
    args = parser.parse_args(argv)
    if args.regressions_only:
        write_regressions()
        return 0
    if args.new_fixtures or not (fx.FIXTURES / fx.ZONE_FILE).exists():
        fx.write_fixtures()
    seeds = Seeds()
    capture_all(seeds, demo=not args.no_demo)
    sizes = write_corpus(seeds, keep_demo=args.no_demo)
    empty = [name for name, size in sizes.items() if not size]
    for name, size in sorted(sizes.items()):
        print(f"{name:24} {size:7} bytes")
    if empty:
        print(f"no seeds for: {', '.join(empty)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
