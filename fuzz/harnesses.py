"""One harness per decoder of untrusted input: the campaign's table.

A harness is a function of bytes that hands them to a decoder the way bleprov does (the
same entry point, the same arguments, fixtures from :mod:`fuzz.material` where a decoder
needs keys) and lets through only the decoder's documented typed errors, listed in its
:class:`Harness` entry; anything else escaping is a finding (:mod:`fuzz.guard`), and so
is an input that takes longer than the harness's time bound.

Inputs that carry several messages (frames, a channel's records, a handshake's turns)
use one layout: ``[u16 big-endian length][bytes]`` repeated (:func:`split_messages`).
Text decoders get the bytes as UTF-8 with errors replaced, as a terminal or a file read
would give them. File decoders get them in a file of their own.

To add a harness: write a function of ``bytes`` below, decorate it with
:func:`harness` (its name, the errors it may raise and where its input comes from), and
give it seeds in ``fuzz/corpus/<name>/`` (``python -m fuzz.capture`` records them from
real sessions; docs/fuzzing.md).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final, cast

from bleprov.core.errors import BleprovError, FramingError, MalformedData, ProtocolError
from fuzz import material as fx
from fuzz.guard import DEFAULT_TIME_BOUND, Finding, run_input

if TYPE_CHECKING:
    from bleprov.core.session.device import DeviceSession
    from bleprov.core.session.host import HostSession

CORPUS: Final = Path(__file__).resolve().parent / "corpus"
DICTIONARY: Final = Path(__file__).resolve().parent / "cbor.dict"
#: Most decoders refuse far less; a few (attestation, stores) take a few KiB.
DEFAULT_MAX_LEN: Final = 4096
#: Mutated inputs per harness in ``make test`` (tests/fuzz/test_harnesses.py).
DEFAULT_QUICK_RUNS: Final = 200


@dataclass(frozen=True)
class Harness:
    name: str
    call: Callable[[bytes], object]
    #: The decoder's documented typed errors: what may escape without a finding.
    allowed: tuple[type[BaseException], ...]
    #: The decoder, and where its input comes from, in one line (docs, reports).
    source: str
    max_len: int = DEFAULT_MAX_LEN
    quick_runs: int = DEFAULT_QUICK_RUNS
    time_bound: float = DEFAULT_TIME_BOUND

    def run(self, data: bytes, *, time_bound: float | None = None) -> Finding | None:
        """One input: None, or what it found."""
        bound = self.time_bound if time_bound is None else time_bound
        return run_input(self.name, self.call, self.allowed, data, time_bound=bound)

    def warm_up(self) -> None:
        """Import what the harness imports and load the fixtures, untimed (a first input
        must not pay for sqlalchemy's import)."""
        with contextlib.suppress(Exception):
            self.call(b"")

    def corpus(self) -> list[tuple[str, bytes]]:
        """The committed seeds and regression cases, by file name."""
        directory = CORPUS / self.name
        if not directory.is_dir():
            return []
        return [(p.name, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file()]


HARNESSES: dict[str, Harness] = {}


def harness(
    name: str,
    *,
    allowed: tuple[type[BaseException], ...],
    source: str,
    max_len: int = DEFAULT_MAX_LEN,
    quick_runs: int = DEFAULT_QUICK_RUNS,
    time_bound: float = DEFAULT_TIME_BOUND,
) -> Callable[[Callable[[bytes], object]], Callable[[bytes], object]]:
    """Register a harness under ``name`` (the corpus folder and the report's row)."""

    def register(call: Callable[[bytes], object]) -> Callable[[bytes], object]:
        if name in HARNESSES:
            raise ValueError(f"harness {name!r} is registered twice")
        HARNESSES[name] = Harness(name, call, allowed, source, max_len, quick_runs, time_bound)
        return call

    return register


# ------------------------------------------------------------------------------ helpers


def split_messages(data: bytes, limit: int = 16) -> list[bytes]:
    """``[u16 length][bytes]`` repeated; a length past the end takes what is left."""
    out: list[bytes] = []
    offset = 0
    while offset < len(data) and len(out) < limit:
        if offset + 2 > len(data):
            out.append(data[offset:])
            break
        (length,) = struct.unpack_from(">H", data, offset)
        offset += 2
        out.append(data[offset : offset + length])
        offset += length
    return out


def join_messages(*messages: bytes) -> bytes:
    """The inverse of :func:`split_messages` (seeds are written with it)."""
    return b"".join(struct.pack(">H", len(m)) + m for m in messages)


def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@contextlib.contextmanager
def tolerate(*allowed: type[BaseException]) -> Iterator[None]:
    """For a harness that runs several steps: a step's typed error ends that step only."""
    with contextlib.suppress(*allowed):
        yield


@functools.cache
def scratch() -> Path:
    """A private directory for the file harnesses (one per process, removed at exit)."""
    path = Path(tempfile.mkdtemp(prefix="bleprov-fuzz-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def scratch_file(name: str, data: bytes, *, mode: int = 0o600) -> Path:
    path = scratch() / name
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@functools.cache
def event_loop() -> asyncio.AbstractEventLoop:
    """One loop per process for the asyncio harnesses (never the running one of a test)."""
    loop = asyncio.new_event_loop()
    atexit.register(loop.close)
    return loop


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Harnessed code logs what it refuses; a million log lines say nothing."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


# ======================================================================================
# Radio and broker, before any authentication: anyone in range, anyone who may publish.
# ======================================================================================


@harness(
    "frames_device",
    allowed=(FramingError,),
    source="core/frames.py FrameChannel.receive_frame, device role: a central's writes",
)
def frames_device(data: bytes) -> None:
    from bleprov.core.frames import FrameChannel, Role

    channel = FrameChannel(Role.DEVICE)
    channel.connection_made(247, now=0.0)
    for now, frame in enumerate(split_messages(data, 64), 1):
        channel.receive_frame(frame, float(now))
        channel.data_to_send(float(now))
    channel.handle_timer(1000.0)
    channel.connection_lost()


@harness(
    "frames_host",
    allowed=(FramingError,),
    source="core/frames.py FrameChannel.receive_frame, host role: a device's notifications",
)
def frames_host(data: bytes) -> None:
    from bleprov.core.frames import FrameChannel, Role

    channel = FrameChannel(Role.HOST)
    channel.connection_made(247)
    channel.open(peer_rx_window=4, peer_max_message=65536, now=0.0)
    channel.send_message(bytes(1200), 0.0)
    channel.data_to_send(0.0)
    for now, frame in enumerate(split_messages(data, 64), 1):
        channel.receive_frame(frame, float(now))
        channel.data_to_send(float(now))
    channel.handle_timer(1000.0)
    channel.connection_lost()


@harness(
    "service_data",
    allowed=(MalformedData,),
    source="core/advertising.py decode_service_data: an advertisement",
)
def service_data(data: bytes) -> None:
    from bleprov.core.advertising import decode_service_data

    decode_service_data(data)


@harness(
    "device_info",
    allowed=(MalformedData,),
    source="core/advertising.py DeviceInfo.decode: the info characteristic, the broker's "
    "info topic",
)
def device_info(data: bytes) -> None:
    from bleprov.core.advertising import DeviceInfo

    DeviceInfo.decode(data).service_data()


@harness(
    "host_session_info",
    allowed=(ProtocolError,),
    source="core/session/host.py HostSession(device_info=...): a device's info, code mode",
    quick_runs=60,
)
def host_session_info(data: bytes) -> None:
    from bleprov.core.session import host as hst
    from bleprov.core.session.messages import Mode
    from bleprov.core.window import WindowCode

    m = fx.material()
    for secret in (hst.CodeSecret(fx.CODE), hst.WindowSecret(WindowCode("123456789012"))):
        with tolerate(ProtocolError):
            hst.HostSession(
                mode=Mode.CODE,
                secret=secret,
                device_info=data,
                trust=m.trust,
                wall_clock=fx.FIXED_NOW,
                now=0.0,
            ).start(0.0)


@harness(
    "session_message",
    allowed=(MalformedData,),
    source="core/session/messages.py decode: every session message, either way",
)
def session_message(data: bytes) -> None:
    from bleprov.core.session.messages import decode

    decode(data)


@harness(
    "session_inner",
    allowed=(MalformedData,),
    source="core/session/messages.py decode_inner: a SECURE record's plaintext",
)
def session_inner(data: bytes) -> None:
    from bleprov.core.session.messages import decode_inner

    decode_inner(data)


@harness(
    "handshake_fields",
    allowed=(MalformedData,),
    source="core/session/messages.py split_fields: code, compare and passkey handshake bodies",
)
def handshake_fields(data: bytes) -> None:
    from bleprov.core.session.messages import split_fields

    for count in (2, 3):
        with tolerate(MalformedData):
            split_fields(data, count, "fields")


def _device_session(*, owned: bool = False) -> DeviceSession:
    from bleprov.core.attempts import AttemptLimits, ButtonWindow
    from bleprov.core.session import device as dev
    from bleprov.core.window import CommissioningWindow

    m = fx.material()
    button = ButtonWindow()
    button.press(0.0)
    window = CommissioningWindow(m.window_offer, opened_by=bytes(32), now=0.0) if owned else None
    return dev.DeviceSession(
        secrets=dev.DeviceSecrets(m.identity, fx.LABEL_SECRET, m.code_records),
        policy=0x1F,
        device_info=fx.device_info(window=window.info() if window else None, owned=owned),
        limits=AttemptLimits(),
        button=button,
        connection="fuzz",
        now=0.0,
        device_confirms=True,
        owned=owned,
        window=window,
    )


@harness(
    "device_session",
    allowed=(),
    source="core/session/device.py DeviceSession.receive: a host's first message, any mode",
)
def device_session(data: bytes) -> None:
    session = _device_session()
    session.receive(data, 1.0)
    session.handle_timer(1000.0)


@harness(
    "device_session_owned",
    allowed=(),
    source="core/session/device.py DeviceSession.receive: first message to an owned device "
    "with its owner's window open",
)
def device_session_owned(data: bytes) -> None:
    session = _device_session(owned=True)
    session.receive(data, 1.0)


def _host_session(mode_name: str, *, start: bool = True) -> HostSession:
    from bleprov.core.session import host as hst
    from bleprov.core.session.messages import Mode

    m = fx.material()
    mode = Mode[mode_name.upper()]
    secret: hst.OutOfBand = None
    if mode is Mode.QR:
        secret = m.qr_secret
    elif mode is Mode.CODE:
        secret = hst.CodeSecret(fx.CODE)
    session = hst.HostSession(
        mode=mode,
        secret=secret,
        device_info=fx.device_info(),
        trust=m.trust,
        wall_clock=fx.FIXED_NOW,
        now=0.0,
    )
    if start:
        session.start(0.0)
    return session


def _register_host_session(mode_name: str) -> None:
    def run(data: bytes) -> None:
        _host_session(mode_name).receive(data, 1.0)

    harness(
        f"host_session_{mode_name}",
        allowed=(),
        source=f"core/session/host.py HostSession.receive: a device's first reply, {mode_name}",
        quick_runs=100 if mode_name == "code" else DEFAULT_QUICK_RUNS,
    )(run)


for _mode in ("qr", "code", "compare", "passkey", "button"):
    _register_host_session(_mode)


@harness(
    "noise",
    allowed=(ProtocolError,),
    source="core/crypto/noise.py NoiseHandshake.read_message: NKpsk0 (qr) and NN (button) "
    "messages, both roles",
)
def noise(data: bytes) -> None:
    from bleprov.core.crypto.noise import NoiseHandshake
    from bleprov.core.session.messages import Mode
    from bleprov.core.session.modes import prologue, qr_psk

    m = fx.material()
    info = fx.device_info()
    parts = [*split_messages(data, 2), b"", b""]
    device_qr = NoiseHandshake(
        "NKpsk0",
        initiator=False,
        local_static=m.identity.noise_static_key,
        remote_static=None,
        psk=qr_psk(fx.LABEL_SECRET),
        prologue=prologue(Mode.QR, info),
    )
    with tolerate(ProtocolError):
        device_qr.read_message(parts[0])
    device_nn = NoiseHandshake(
        "NN", initiator=False, local_static=None, remote_static=None, psk=None, prologue=b""
    )
    with tolerate(ProtocolError):
        device_nn.read_message(parts[0])
    host = NoiseHandshake(
        "NKpsk0",
        initiator=True,
        local_static=None,
        remote_static=m.identity.noise_static_public_key,
        psk=qr_psk(fx.LABEL_SECRET),
        prologue=prologue(Mode.QR, info),
    )
    host.write_message(b"")
    host.read_message(parts[1])


@harness(
    "spake2plus",
    allowed=(ProtocolError,),
    source="core/crypto/spake2plus.py Verifier.respond/finish, Prover.finish: code-mode shares",
)
def spake2plus(data: bytes) -> None:
    from bleprov.core.crypto.spake2plus import Prover, Verifier, derive_verifier
    from bleprov.core.device_secrets import SPAKE_ID_VERIFIER

    m = fx.material()
    parts = split_messages(data, 4) + [b""] * 4
    verifier = Verifier(
        m.code_records[b""], context=b"fuzz", id_prover=b"", id_verifier=SPAKE_ID_VERIFIER
    )
    with tolerate(ProtocolError):
        verifier.respond(parts[0])
        verifier.finish(parts[1])
    secrets_ = derive_verifier(
        fx.CODE, salt=fx.SALT, id_prover=b"", id_verifier=SPAKE_ID_VERIFIER, cost=fx.CHEAP
    )
    prover = Prover(secrets_, context=b"fuzz", id_prover=b"", id_verifier=SPAKE_ID_VERIFIER)
    prover.start()
    prover.finish(parts[2], parts[3])


@harness(
    "verifier_record",
    allowed=(MalformedData,),
    source="core/crypto/spake2plus.py VerifierRecord.decode: provisioning records",
)
def verifier_record(data: bytes) -> None:
    from bleprov.core.crypto.spake2plus import VerifierRecord

    VerifierRecord.decode(data)


@harness(
    "compare",
    allowed=(ProtocolError,),
    source="core/session/modes/compare.py CompareDevice/CompareHost: the handshake's bodies",
)
def compare(data: bytes) -> None:
    from bleprov.core.session.modes import CompareDevice, CompareHost

    info = fx.device_info()
    parts = split_messages(data, 4) + [b""] * 4
    device = CompareDevice(device_info=info)
    with tolerate(ProtocolError):
        device.hello(parts[0])
        device.receive(parts[1])
    host = CompareHost(device_info=info)
    host.hello()
    host.receive(parts[2])
    host.receive(parts[3])


#: Both directions' keys of the channel harness (its seeds are sealed under them).
CHANNEL_KEYS: Final = (bytes(range(32)), bytes(range(32, 64)))


@harness(
    "channel",
    allowed=(ProtocolError,),
    source="core/channel.py SecureChannel.open: SECURE ciphertexts after the handshake",
)
def channel(data: bytes) -> None:
    from bleprov.core.channel import SecureChannel
    from bleprov.core.session.messages import decode_inner

    secure = SecureChannel.for_role(
        is_host=False,
        host_to_device_key=CHANNEL_KEYS[0],
        device_to_host_key=CHANNEL_KEYS[1],
        associated_data=b"fuzz",
        now=0.0,
    )
    for now, ciphertext in enumerate(split_messages(data), 1):
        decode_inner(secure.open(ciphertext, float(now)))
    secure.handle_timer(10_000.0)


@harness(
    "attestation",
    allowed=(ProtocolError,),
    source="core/identity.py verify_attestation: a device's attestation (32-byte handshake "
    "hash, then the attestation)",
    quick_runs=80,
)
def attestation(data: bytes) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from bleprov.core.identity import AttestationRecord, TrustPolicy, verify_attestation
    from bleprov.core.session.common import ATTESTATION_CONTEXT

    if len(data) < 32:
        return
    chain = [c.public_bytes(Encoding.DER) for c in fx.material().identity.chain]
    verify_attestation(
        AttestationRecord.decode(data[32:]).resolve(chain),
        data[:32],
        context=ATTESTATION_CONTEXT,
        trusted_roots=[fx.material().manufacturer_root],
        now=fx.FIXED_NOW,
        policy=TrustPolicy.WARN,
    )


@harness(
    "broker_envelope",
    allowed=(MalformedData,),
    source="broker/wire.py Envelope.decode and topic names: what the broker delivers",
)
def broker_envelope(data: bytes) -> None:
    from bleprov.broker import wire

    for kinds in (wire.UP_KINDS, wire.DOWN_KINDS):
        with tolerate(MalformedData):
            wire.Envelope.decode(data, allowed=kinds, max_body=65536).reason()
    topic = text(data)
    with tolerate(MalformedData):
        wire.device_of_info_topic(topic)
    wire.Topics(fx.DEVICE_ID).session_of(topic)


# ======================================================================================
# After authentication: the other side holds the session key (or the label).
# ======================================================================================


@harness(
    "enrolment_message",
    allowed=(MalformedData,),
    source="core/enrolment/messages.py decode and its body parsers: every enrolment message",
)
def enrolment_message(data: bytes) -> None:
    from bleprov.core.enrolment import messages as em

    message = em.decode(data)
    for parse in (em.parse_credentials, em.parse_status, em.parse_scan_entry):
        with tolerate(MalformedData):
            parse(message.body)


def _enrolment() -> Any:
    from bleprov.core.enrolment.device import DeviceEnrolment, DeviceEnrolmentConfig
    from bleprov.core.membership import device_extensions

    config = DeviceEnrolmentConfig(
        fx.DEVICE_ID,
        channel_binding=fx.channel_binding,
        wall_clock=fx.FIXED_NOW,
        extensions=device_extensions(),
    )
    return DeviceEnrolment(config, now=0.0)


@harness(
    "device_enrolment",
    allowed=(),
    source="core/enrolment/device.py DeviceEnrolment.receive: a host's request, with the zone "
    "and peer extensions",
)
def device_enrolment(data: bytes) -> None:
    _enrolment().receive(data, 1.0)


@harness(
    "zone_install",
    allowed=(),
    source="core/enrolment/device.py DeviceEnrolment.receive: the request after zone/key "
    "(zone/install), the device's key fixed",
    quick_runs=100,
)
def zone_install(data: bytes) -> None:
    from bleprov.core.enrolment.messages import Request, encode

    with fx.fixed_member_key():
        enrolment = _enrolment()
        enrolment.receive(encode(Request(1, "zone/key", {})), 1.0)
        enrolment.receive(data, 2.0)


@harness(
    "window_offer",
    allowed=(BleprovError,),
    source="core/window.py WindowOffer.from_body: the owner's window/open over TLS",
)
def window_offer(data: bytes) -> None:
    from bleprov.core.window import WindowError, WindowOffer
    from bleprov.tls.connection import decode_message

    body = decode_message(data)
    with tolerate(WindowError):
        WindowOffer.from_body(body)


class _MemoryWriter:
    """What a ValidatedConnection writes to, in memory."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


async def _connection(data: bytes, **peer: Any) -> Any:
    from bleprov.tls.connection import ValidatedConnection

    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    writer = cast(asyncio.StreamWriter, _MemoryWriter())
    return ValidatedConnection(reader, writer, **peer)


@harness(
    "tls_frames",
    allowed=(BleprovError,),
    source="tls/connection.py ValidatedConnection.receive/next_request: a TLS peer's stream",
)
def tls_frames(data: bytes) -> None:
    from bleprov.tls.connection import ConnectionClosed, ValidatedConnectionError

    async def drain() -> None:
        connection = await _connection(data, peer_cert_der=b"")
        for _ in range(16):
            try:
                await connection.next_request(timeout=1.0)
            except ConnectionClosed:
                return
            except ValidatedConnectionError:
                if connection.closed:
                    return

    event_loop().run_until_complete(drain())


class _Windows:
    async def open_window(self, offer: object, *, opened_by: bytes) -> None:
        pass

    async def close_window(self) -> bool:
        return True


class _Records:
    def __init__(self, records: dict[str, bytes]) -> None:
        self.records = dict(records)

    def load(self) -> dict[str, bytes]:
        return dict(self.records)

    def update(self, changes: dict[str, bytes | None]) -> None:
        for name, value in changes.items():
            if value is None:
                self.records.pop(name, None)
            else:
                self.records[name] = value


@harness(
    "trust_request",
    allowed=(),
    source="service/trust.py DeviceTrust's request loop: requests from the device's owner over "
    "its validated connection",
    quick_runs=120,
)
def trust_request(data: bytes) -> None:
    from bleprov.service.trust import DeviceTrust

    m = fx.material()
    trust = DeviceTrust(
        _Records(m.peer_records),
        device_id=fx.DEVICE_ID,
        factory_reset=lambda: None,
        windows=_Windows(),
    )

    async def serve() -> None:
        connection = await _connection(
            data, peer_cert_der=m.host_identity.cert_der, peer_pin=m.host_identity.pin
        )
        await trust._handle(connection)

    with quiet():
        event_loop().run_until_complete(serve())


@harness(
    "csr",
    allowed=(ProtocolError,),
    source="core/zone.py Zone.issue_member/renew: a device's CSR (32-byte session binding, "
    "then the CSR)",
    quick_runs=80,
)
def csr(data: bytes) -> None:
    from bleprov.core.zone import ZoneError

    m = fx.material()
    binding, csr_der = data[:32].ljust(32, b"\0"), data[32:]
    with tolerate(ZoneError):
        m.zone.issue_member(
            csr_der,
            device_id=fx.DEVICE_ID,
            owner=fx.OWNER,
            expected_binding=binding,
            now=fx.FIXED_NOW,
        )
    m.zone.renew(m.member.cert_der, csr_der, now=fx.FIXED_NOW, expected_binding=binding)


@harness(
    "crl",
    allowed=(ProtocolError,),
    source="core/zone.py crl_info, crl_supersedes, verify_member with a CRL: the hub's CRL",
    quick_runs=80,
)
def crl(data: bytes) -> None:
    from bleprov.core.zone import ZoneError, crl_info, crl_supersedes, verify_member

    m = fx.material()
    with tolerate(ZoneError):
        crl_info(data)
        crl_supersedes(data, m.crl)
    verify_member(
        m.member.cert_der,
        m.member.chain_der,
        zone_root_der=m.member.root_der,
        crl_der=data,
        now=fx.FIXED_NOW,
    )


@harness(
    "member_certificate",
    allowed=(ProtocolError,),
    source="core/zone.py verify_member: a zone peer's TLS certificate",
    quick_runs=80,
)
def member_certificate(data: bytes) -> None:
    from bleprov.core.zone import verify_member

    m = fx.material()
    verify_member(
        data, m.member.chain_der, zone_root_der=m.member.root_der, crl_der=None, now=fx.FIXED_NOW
    )


@harness(
    "peer_certificate",
    allowed=(ProtocolError,),
    source="core/peer.py PeerPin.from_certificate, fingerprint_of: a peer's certificate "
    "(peer/bind, TLS)",
)
def peer_certificate(data: bytes) -> None:
    from bleprov.core.peer import PeerError, PeerPin, fingerprint_of

    with tolerate(PeerError):
        fingerprint_of(data)
    PeerPin.from_certificate(data).fingerprint  # noqa: B018 (the property parses)


# ======================================================================================
# Labels: what a person types, scans or photographs.
# ======================================================================================


@harness(
    "qr_text",
    allowed=(MalformedData,),
    source="core/onboarding.py parse_qr: a QR code's text",
)
def qr_text(data: bytes) -> None:
    from bleprov.core.onboarding import parse_qr

    parse_qr(text(data))


@harness(
    "manual_code",
    allowed=(MalformedData,),
    source="core/onboarding.py parse_manual_code: a typed manual code",
)
def manual_code(data: bytes) -> None:
    from bleprov.core.onboarding import parse_manual_code

    parse_manual_code(text(data))


@harness(
    "printed_key",
    allowed=(MalformedData,),
    source="core/onboarding.py parse_printed_key: a typed printed key",
)
def printed_key(data: bytes) -> None:
    from bleprov.core.onboarding import parse_printed_key

    parse_printed_key(text(data))


@harness(
    "scratch_card",
    allowed=(MalformedData,),
    source="core/onboarding.py parse_user_password: a typed scratch card",
)
def scratch_card(data: bytes) -> None:
    from bleprov.core.onboarding import parse_user_password

    parse_user_password(text(data))


@harness(
    "ndef",
    allowed=(MalformedData,),
    source="core/onboarding.py parse_ndef: an NFC tag, label.ndef",
)
def ndef(data: bytes) -> None:
    from bleprov.core.onboarding import parse_ndef

    parse_ndef(data)


@harness(
    "onboarding_payload",
    allowed=(MalformedData,),
    source="core/onboarding.py parse_payload: the binary payload inside every label form",
)
def onboarding_payload(data: bytes) -> None:
    from bleprov.core.onboarding import parse_payload

    parse_payload(data)


@harness(
    "typed_codes",
    allowed=(MalformedData,),
    source="core/window.py WindowCode.parse, WindowPurpose.parse; core/advertising.py "
    "parse_discriminator; core/session/modes/passkey.py parse_passkey: typed codes",
)
def typed_codes(data: bytes) -> None:
    from bleprov.core.advertising import parse_discriminator
    from bleprov.core.errors import LocalProtocolError
    from bleprov.core.session.modes import parse_passkey
    from bleprov.core.window import WindowCode, WindowError, WindowPurpose

    typed = text(data)
    with tolerate(MalformedData):
        WindowCode.parse(typed)
    with tolerate(WindowError):
        WindowPurpose.parse(typed)
    with tolerate(LocalProtocolError):
        parse_passkey(typed)
    parse_discriminator(typed)


@harness(
    "qr_image",
    allowed=(BleprovError,),
    source="labels/decode.py decode_qr_image: a photo or screenshot of a label (bounded to "
    "512 x 512 pixels here)",
    max_len=16384,
    quick_runs=60,
)
def qr_image(data: bytes) -> None:
    from bleprov.labels import decode_qr_image

    decode_qr_image(scratch_file("label.img", data), max_pixels=512 * 512)


# ======================================================================================
# Stores and records: files a crash, a bad disk or a tamperer may have changed.
# ======================================================================================


@harness(
    "sealed",
    allowed=(BleprovError,),
    source="store/sealed.py unseal: a sealed file (device.bin)",
    quick_runs=100,
)
def sealed(data: bytes) -> None:
    from bleprov.store.sealed import unseal

    unseal(data, fx.PASSPHRASE)


@harness(
    "device_bin",
    allowed=(BleprovError,),
    source="store/factory_files.py load_device: device.bin (sealed provisioning record)",
    quick_runs=100,
)
def device_bin(data: bytes) -> None:
    from bleprov.store.factory_files import load_device

    directory = scratch() / "device"
    directory.mkdir(exist_ok=True)
    scratch_file("device/device.bin", data)
    load_device(directory, fx.PASSPHRASE)


@harness(
    "provisioning",
    allowed=(BleprovError,),
    source="core/factory.py DeviceProvisioning.from_bytes: the store's provisioning record",
)
def provisioning(data: bytes) -> None:
    from bleprov.core.factory import DeviceProvisioning

    DeviceProvisioning.from_bytes(data, None).secrets()


@harness(
    "device_identity",
    allowed=(BleprovError,),
    source="core/identity.py DeviceIdentity.from_bytes: the identity in a provisioning record",
)
def device_identity(data: bytes) -> None:
    from bleprov.core.identity import DeviceIdentity, IdentityError

    with tolerate(IdentityError):
        DeviceIdentity.from_bytes(data, None)
    DeviceIdentity.from_bytes(data, fx.PASSPHRASE)


@harness(
    "manufacturer_store",
    allowed=(BleprovError,),
    source="core/identity.py Manufacturer.from_bytes: manufacturer.bin (its scrypt stretch "
    "replaced by a hash)",
)
def manufacturer_store(data: bytes) -> None:
    from bleprov.core.identity import Manufacturer

    with fx.cheap_stretch():
        Manufacturer.from_bytes(data, fx.PASSPHRASE)


@harness(
    "zone_store",
    allowed=(BleprovError,),
    source="core/zone.py Zone.from_bytes: zone.bin (its scrypt stretch replaced by a hash)",
)
def zone_store(data: bytes) -> None:
    from bleprov.core.zone import Zone

    with fx.cheap_stretch():
        Zone.from_bytes(data, fx.PASSPHRASE)


#: The device store key of the store harnesses.
STORE_KEY: Final = bytes(range(200, 232))


class _FixedKey:
    name = "fixed"

    def available(self) -> bool:
        return True

    def exists(self) -> bool:
        return True

    def load_or_create(self) -> bytes:
        return STORE_KEY


def seal_store(plaintext: bytes, generation: int = 1) -> bytes:
    """A device store file holding ``plaintext`` under :data:`STORE_KEY` (the real layout)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from bleprov.store import device_store as ds

    aead_key, key_id = ds.derive_store_keys(STORE_KEY)
    nonce = bytes(ds.NONCE_BYTES)
    header = ds.HEADER.pack(ds.MAGIC, ds.FORMAT_VERSION, generation, key_id, nonce)
    return header + ChaCha20Poly1305(aead_key).encrypt(nonce, plaintext, header)


def _store(data: bytes) -> Any:
    from bleprov.store.device_store import DeviceStore

    directory = scratch() / "store"
    directory.mkdir(exist_ok=True)
    scratch_file("store/device.store", data)
    return DeviceStore(directory, cast(Any, _FixedKey()))


def _records_consumers(records: dict[str, bytes]) -> None:
    """What a device does with its records at start and per session."""
    from bleprov.core import membership as mb
    from bleprov.core.attempts import AttemptLimits
    from bleprov.core.factory import DeviceProvisioning

    for consume in (
        mb.membership_of,
        mb.owner_of,
        mb.peer_identity_of,
        mb.pins_of,
        lambda r: AttemptLimits.from_bytes(r["attempts"]) if "attempts" in r else None,
        lambda r: (
            DeviceProvisioning.from_bytes(r["provisioning"], None) if "provisioning" in r else None
        ),
    ):
        with tolerate(BleprovError):
            consume(records)


@harness(
    "device_store",
    allowed=(BleprovError,),
    source="store/device_store.py DeviceStore.load (authenticated plaintext: the record map) "
    "and the records' decoders",
    max_len=16384,
)
def device_store(data: bytes) -> None:
    _records_consumers(_store(seal_store(data)).load())


@harness(
    "device_store_file",
    allowed=(BleprovError,),
    source="store/device_store.py DeviceStore.load: device.store as found on disk",
    max_len=16384,
)
def device_store_file(data: bytes) -> None:
    _store(data).load()


@harness(
    "zone_membership",
    allowed=(BleprovError,),
    source="core/membership.py ZoneMembership.decode (and .serial, .renew_after): the zone record",
)
def zone_membership(data: bytes) -> None:
    from bleprov.core.membership import ZoneMembership

    membership = ZoneMembership.decode(data)
    membership.serial  # noqa: B018 (the renewal timer reads it)
    membership.renew_after()


@harness(
    "owner_record",
    allowed=(BleprovError,),
    source="core/membership.py Owner.decode, owner_of: the owner record",
)
def owner_record(data: bytes) -> None:
    from bleprov.core.membership import Owner, owner_of

    with tolerate(BleprovError):
        Owner.decode(data)
    owner_of({"owner": data, **fx.material().peer_records})


@harness(
    "peer_identity",
    allowed=(BleprovError,),
    source="core/peer.py PeerIdentity.from_bytes: the peer identity record",
)
def peer_identity(data: bytes) -> None:
    from bleprov.core.peer import PeerIdentity

    PeerIdentity.from_bytes(data)


@harness(
    "pin_set",
    allowed=(BleprovError,),
    source="core/peer.py PinSet.from_bytes: the pins record",
)
def pin_set(data: bytes) -> None:
    from bleprov.core.peer import PinSet

    PinSet.from_bytes(data)


@harness(
    "attempts",
    allowed=(MalformedData,),
    source="core/attempts.py AttemptLimits.from_bytes, AttemptLimiter.from_bytes: attempt counters",
)
def attempts(data: bytes) -> None:
    from bleprov.core.attempts import AttemptLimiter, AttemptLimits

    with tolerate(MalformedData):
        AttemptLimiter.from_bytes(data)
    AttemptLimits.from_bytes(data)


@harness(
    "enrolment_record",
    allowed=(MalformedData,),
    source="core/receipt.py decode_record: the committed enrolment's ID and receipt verifier",
)
def enrolment_record(data: bytes) -> None:
    from bleprov.core.receipt import decode_record

    decode_record(data)


@harness(
    "unresolved_enrolments",
    allowed=(MalformedData,),
    source="core/receipt.py decode_unresolved: the host's enrolments whose outcome is unknown",
)
def unresolved_enrolments(data: bytes) -> None:
    from bleprov.core.receipt import decode_unresolved

    decode_unresolved(data)


@harness(
    "wifi_record",
    allowed=(),
    source="service/device_runtime.py DeviceRuntime.restore_wifi: the stored Wi-Fi record",
)
def wifi_record(data: bytes) -> None:
    from bleprov.core.wifi import Failed, JoinFailure
    from bleprov.service.device_runtime import DeviceRuntime

    async def restore(credentials: object, *, timeout: float) -> Failed:
        return Failed(JoinFailure.OTHER, "fuzz")

    runtime = SimpleNamespace(
        store=SimpleNamespace(get=lambda name: data),
        network=SimpleNamespace(restore=restore),
        network_tag=lambda ssid: "network",
        join_timeout=1.0,
    )
    with quiet():
        event_loop().run_until_complete(DeviceRuntime.restore_wifi(cast(Any, runtime)))


@harness(
    "key_file",
    allowed=(BleprovError,),
    source="store/keys.py KeyFileProvider.load_or_create: the store key file",
)
def key_file(data: bytes) -> None:
    from bleprov.store.keys import KeyFileProvider

    KeyFileProvider(scratch_file("store.key", data)).load_or_create()


@harness(
    "tpm_blob",
    allowed=(BleprovError,),
    source="store/keys.py TpmProvider's sealed-key blob (store-key.tpm)",
)
def tpm_blob(data: bytes) -> None:
    from bleprov.store.keys import TPM_BLOB_NAME, TpmProvider

    scratch_file(TPM_BLOB_NAME, data)
    TpmProvider(scratch())._blob_pcrs()


# ======================================================================================
# Configuration and the system services we read.
# ======================================================================================


@harness(
    "profile_toml",
    allowed=(BleprovError,),
    source="core/profile.py load_profile: a GATT profile file",
)
def profile_toml(data: bytes) -> None:
    from bleprov.core.profile import load_profile

    load_profile(scratch_file("profile.toml", data))


@harness(
    "hub_toml",
    allowed=(BleprovError,),
    source="store/hub_files.py: hub.toml",
)
def hub_toml(data: bytes) -> None:
    from bleprov.store import hub_files

    directory = scratch() / "hub"
    directory.mkdir(exist_ok=True)
    scratch_file(f"hub/{hub_files.CONFIG_FILE}", data)
    hub_files._read_config(directory)


@harness(
    "simulated_network",
    allowed=(BleprovError,),
    source="network/simulated.py SimulatedWifi.from_file: a simulated network's TOML",
)
def simulated_network(data: bytes) -> None:
    from bleprov.network.simulated import SimulatedWifi

    SimulatedWifi.from_file(scratch_file("network.toml", data))


@harness(
    "cli_config",
    allowed=(BleprovError,),
    source="cli/config.py load_config: the CLI's config.toml",
)
def cli_config(data: bytes) -> None:
    from bleprov.cli.config import load_config

    load_config(scratch_file("config.toml", data))


@harness(
    "trust_roots",
    allowed=(BleprovError,),
    source="cli/host.py load_roots: a manufacturer root given with --trust (PEM or DER)",
    quick_runs=100,
)
def trust_roots(data: bytes) -> None:
    from bleprov.cli.host import load_roots

    load_roots([scratch_file("root.pem", data)])


@harness(
    "wpa_supplicant",
    allowed=(MalformedData,),
    source="network/wpa_supplicant.py: control-socket replies (BSS, STATUS, LIST_NETWORKS) "
    "and SSIDs",
)
def wpa_supplicant(data: bytes) -> None:
    from bleprov.network import wpa_supplicant as wpa

    reply = text(data)  # as ControlSocket.receive decodes it
    wpa.bss_scan_result(wpa.parse_key_values(reply))
    wpa.parse_network_list(reply)
    wpa._loggable_event(reply)
    wpa.decode_escaped_ssid(reply)


class _Bytes:
    """Typed values out of fuzz bytes, as D-Bus delivers them (structure-aware input)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, n: int) -> bytes:
        out = self.data[self.offset : self.offset + n]
        self.offset += n
        return out

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size).ljust(size, b"\0"), "big")

    def blob(self) -> bytes:
        return self.take(self.uint(1))

    def string(self) -> str:
        return self.blob().decode("utf-8", "replace")


@harness(
    "networkmanager",
    allowed=(),
    source="network/networkmanager.py access_point_scan_result, address_of_ip_config: "
    "NetworkManager properties (SSIDs come from the air)",
)
def networkmanager(data: bytes) -> None:
    from dbus_fast import Variant

    from bleprov.network import networkmanager as nm

    given = _Bytes(data)
    present = given.uint(1)
    names = ("Ssid", "HwAddress", "Frequency", "Flags", "WpaFlags", "RsnFlags", "Strength")
    values: list[object] = [
        given.blob(),
        given.string(),
        given.uint(4),
        given.uint(4),
        given.uint(4),
        given.uint(4),
        given.uint(1),
    ]
    props = {n: v for i, (n, v) in enumerate(zip(names, values, strict=True)) if present >> i & 1}
    nm.access_point_scan_result(props)
    address_data = [
        {"address": Variant("s", given.string()), "prefix": Variant("u", given.uint(1))}
        for _ in range(given.uint(1) % 4)
    ]
    addresses = [[given.uint(4), given.uint(1), given.uint(4)] for _ in range(given.uint(1) % 4)]
    nm.address_of_ip_config({"AddressData": address_data, "Addresses": addresses})


__all__ = [
    "CHANNEL_KEYS",
    "CORPUS",
    "DICTIONARY",
    "HARNESSES",
    "STORE_KEY",
    "Harness",
    "harness",
    "join_messages",
    "seal_store",
    "split_messages",
]
