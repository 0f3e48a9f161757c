"""The qr and button handshakes' wire bytes, pinned from the ``noiseprotocol`` implementation.

Issue 17 replaced ``noiseprotocol`` with our own Noise (``bleprov.core.crypto.noise``). The
transcripts below were produced by the old implementation (noiseprotocol 0.3.1) before it
was removed, for fixed keys and ephemerals; the new one must produce the same bytes, so a
client built on any Noise library interoperates exactly as before.

The prologue is pinned as bytes (the one section 6 builds for :data:`INFO`), so the pin
tests the Noise layer alone; :func:`test_the_mode_engines_send_these_bodies` then checks
that the qr and button engines put exactly these Noise messages on the wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bleprov.core.advertising import DeviceInfo
from bleprov.core.crypto.noise import NoiseHandshake, NoisePattern, transport_nonce
from bleprov.core.crypto.primitives import ChaCha20Poly1305Key
from bleprov.core.crypto.spake2plus import VerifierRecord
from bleprov.core.session.messages import Mode
from bleprov.core.session.modes import button, qr
from bleprov.core.session.modes.base import prologue
from bleprov.core.session.modes.qr import QrSecret, qr_psk

#: A qr + button device's info value (section 3), byte for byte.
INFO = bytes.fromhex("a701010200030904190123051a0001000006100701")
DEVICE_STATIC = bytes(range(0x40, 0x60))
DEVICE_STATIC_PUBLIC = "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a"
HOST_EPHEMERAL = bytes(range(0x60, 0x80))
DEVICE_EPHEMERAL = bytes(range(0x80, 0xA0))
LABEL_SECRET = bytes(range(16))


@dataclass(frozen=True)
class Transcript:
    pattern: NoisePattern
    mode: Mode
    prologue: str
    psk: str | None
    hello: str  # Noise message 1, host -> device (HELLO's body)
    reply: str  # Noise message 2, device -> host (HANDSHAKE's body)
    handshake_hash: str
    k_h2d: str
    k_d2h: str
    #: b"host to device" and b"device to host" sealed at counter 0 in each direction.
    first_h2d: str
    first_d2h: str


QR = Transcript(
    pattern="NKpsk0",
    mode=Mode.QR,
    prologue="626c6570726f762f31010015a701010200030904190123051a0001000006100701",
    psk="776932e85f8129069620d5ad5f112b618bc53923c05fa2318434c18627082965",
    hello="675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f"
    "1f2617c203ae2892540b07ecb687265a",
    reply="493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d"
    "1fac58084896b16df11ba79f49b720bf",
    handshake_hash="716389a80490d694cf622a9b4b1962815acf3daf3e6dca46bc564858becb963f",
    k_h2d="2f771e2752e22e97a60c415cd468e084fdb3abe41f7073b1befde3be85ba61c2",
    k_d2h="824ae4d5aff24d6ffe74ad17390fec3e66cf8a8cc988ad61df34c2c4b5dac361",
    first_h2d="391780079498ce08df5cca3db1a66362a1d3c985ce48d41dfb14f1a5c0ff",
    first_d2h="7f3862e3bdcd7fe9eef995974ccfab2585edee07d153849b0f584c0f27f4",
)

BUTTON = Transcript(
    pattern="NN",
    mode=Mode.BUTTON,
    prologue="626c6570726f762f31080015a701010200030904190123051a0001000006100701",
    psk=None,
    hello="675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f",
    reply="493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d"
    "8395caba47f9aa4a7f87499c0f568f8b",
    handshake_hash="9c3cb0f2a812b117f6ca31703a9f44e8119821dda9bdec25ccd0d31e50bb2514",
    k_h2d="5b6b0f7f5e20c88bcb46dce1f3d114b2fb9a766f4e5540e361e06de876f4a581",
    k_d2h="574b0725ecc7c573ee766473743ca422fb04d232bab42c6bbd88e10c54f6bfd9",
    first_h2d="cf2719487e9c9dea17797e817bb5eb9c1b9bdb6ec54960f0f701008a743f",
    first_d2h="1214d1561222cd3f95110f4ad0cd738f3e9cfee73d637aebaf995a90c9de",
)

TRANSCRIPTS = [QR, BUTTON]


def _pair(transcript: Transcript) -> tuple[NoiseHandshake, NoiseHandshake]:
    psk = None if transcript.psk is None else bytes.fromhex(transcript.psk)
    keyed = transcript.pattern == "NKpsk0"
    initiator = NoiseHandshake(
        transcript.pattern,
        initiator=True,
        local_static=None,
        remote_static=bytes.fromhex(DEVICE_STATIC_PUBLIC) if keyed else None,
        psk=psk,
        prologue=bytes.fromhex(transcript.prologue),
        ephemeral_for_tests=HOST_EPHEMERAL,
    )
    responder = NoiseHandshake(
        transcript.pattern,
        initiator=False,
        local_static=X25519PrivateKey.from_private_bytes(DEVICE_STATIC) if keyed else None,
        remote_static=None,
        psk=psk,
        prologue=bytes.fromhex(transcript.prologue),
        ephemeral_for_tests=DEVICE_EPHEMERAL,
    )
    return initiator, responder


def test_the_pinned_inputs_are_what_the_modes_derive() -> None:
    public = X25519PrivateKey.from_private_bytes(DEVICE_STATIC).public_key().public_bytes_raw()
    assert public.hex() == DEVICE_STATIC_PUBLIC
    assert qr_psk(LABEL_SECRET).hex() == QR.psk
    assert DeviceInfo.decode(INFO).encode() == INFO


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.pattern)
def test_the_handshake_bytes_are_unchanged(transcript: Transcript) -> None:
    initiator, responder = _pair(transcript)
    hello = initiator.write_message(b"")
    assert hello.hex() == transcript.hello
    assert responder.read_message(hello) == b""
    reply = responder.write_message(b"")
    assert reply.hex() == transcript.reply
    assert initiator.read_message(reply) == b""
    for side in (initiator, responder):
        assert side.handshake_hash.hex() == transcript.handshake_hash
    k_h2d, k_d2h = initiator.split_keys()
    assert (k_h2d.hex(), k_d2h.hex()) == (transcript.k_h2d, transcript.k_d2h)
    assert responder.split_keys() == (k_h2d, k_d2h)
    sealed_h2d = ChaCha20Poly1305Key(k_h2d).seal(transport_nonce(0), b"host to device", b"")
    sealed_d2h = ChaCha20Poly1305Key(k_d2h).seal(transport_nonce(0), b"device to host", b"")
    assert (sealed_h2d.hex(), sealed_d2h.hex()) == (transcript.first_h2d, transcript.first_d2h)


@dataclass(frozen=True)
class _DeviceKeys:
    label_secret: bytes | None
    code_records: dict[bytes, VerifierRecord]
    noise_static_key: X25519PrivateKey
    unknown_user_key: bytes


@pytest.fixture
def fixed_ephemerals(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every X25519 key generated from here on is the next of the host's then the device's
    ephemeral (the only keys a qr or button handshake generates, in that order)."""
    queue = [HOST_EPHEMERAL, DEVICE_EPHEMERAL]

    def generate() -> X25519PrivateKey:
        return X25519PrivateKey.from_private_bytes(queue.pop(0))

    monkeypatch.setattr(X25519PrivateKey, "generate", staticmethod(generate))
    return queue


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.pattern)
def test_the_mode_engines_send_these_bodies(
    transcript: Transcript, fixed_ephemerals: list[bytes]
) -> None:
    """The qr and button engines, as the session machines drive them, send the Noise
    messages of a direct :class:`NoiseHandshake` on section 6's prologue."""
    engine = qr.ENGINE if transcript.mode == Mode.QR else button.ENGINE
    secret = QrSecret(bytes.fromhex(DEVICE_STATIC_PUBLIC), LABEL_SECRET)
    keys = _DeviceKeys(
        LABEL_SECRET, {}, X25519PrivateKey.from_private_bytes(DEVICE_STATIC), bytes(32)
    )
    host = engine.host(secret, DeviceInfo.decode(INFO), INFO)
    device = engine.device(keys, INFO)
    hello = host.hello()
    device_step = device.hello(hello)
    assert device_step.reply is not None and device_step.keys is not None
    host_step = host.receive(device_step.reply)
    assert host_step.done and host_step.keys == device_step.keys
    assert fixed_ephemerals == []

    live = Transcript(**{**transcript.__dict__, "prologue": prologue(transcript.mode, INFO).hex()})
    initiator, responder = _pair(live)
    assert initiator.write_message(b"") == hello
    assert responder.read_message(hello) == b""
    assert responder.write_message(b"") == device_step.reply
    assert host_step.keys.handshake_hash == responder.handshake_hash
    assert (host_step.keys.host_to_device, host_step.keys.device_to_host) == responder.split_keys()


# --- the vectors printed in docs/protocol.md ----------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented_vectors() -> dict[str, dict[str, bytes]]:
    """docs/protocol.md's "Noise vectors": ``{"qr": {name: value}, "button": {...}}``."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("#### Noise vectors") :]
    section = section[: section.index("\n#")]
    vectors: dict[str, dict[str, bytes]] = {}
    for block in re.findall(r"^```\n(.*?)^```", section, re.M | re.S):
        title, *lines = block.splitlines()
        values: dict[str, str] = {}
        name = ""
        for line in lines:
            if line.startswith(" "):
                values[name] += line.strip()
            else:
                name, value = line.split()
                values[name] = value
        vectors[title.split(":")[0]] = {k: bytes.fromhex(v) for k, v in values.items()}
    return vectors


def test_the_documented_vectors_are_these_transcripts() -> None:
    vectors = documented_vectors()
    assert sorted(vectors) == ["button", "qr"]
    for mode, transcript in (("qr", QR), ("button", BUTTON)):
        doc = vectors[mode]
        assert doc["host_ephemeral"] == HOST_EPHEMERAL
        assert doc["dev_ephemeral"] == DEVICE_EPHEMERAL
        assert doc["info"] == INFO
        assert doc["prologue"].hex() == transcript.prologue
        assert doc["message_1"].hex() == transcript.hello
        assert doc["message_2"].hex() == transcript.reply
        assert doc["handshake_hash"].hex() == transcript.handshake_hash
        assert (doc["k_h2d"].hex(), doc["k_d2h"].hex()) == (transcript.k_h2d, transcript.k_d2h)
    assert vectors["qr"]["device_static"] == DEVICE_STATIC
    assert vectors["qr"]["label_secret"] == LABEL_SECRET


@pytest.mark.parametrize(("mode", "pattern"), [("qr", "NKpsk0"), ("button", "NN")])
def test_the_documented_vectors_follow_from_their_inputs(mode: str, pattern: NoisePattern) -> None:
    """From the doc's own inputs, the implementation gives the doc's outputs: every public
    key, the psk, both messages, the hash and the keys."""
    doc = documented_vectors()[mode]
    host_e = X25519PrivateKey.from_private_bytes(doc["host_ephemeral"])
    device_e = X25519PrivateKey.from_private_bytes(doc["dev_ephemeral"])
    assert host_e.public_key().public_bytes_raw() == doc["host_ephemeral_pub"]
    assert device_e.public_key().public_bytes_raw() == doc["dev_ephemeral_pub"]
    static: X25519PrivateKey | None = None
    psk: bytes | None = None
    if pattern == "NKpsk0":
        static = X25519PrivateKey.from_private_bytes(doc["device_static"])
        assert static.public_key().public_bytes_raw() == doc["device_static_pub"]
        psk = qr_psk(doc["label_secret"])
        assert psk == doc["psk"]
    else:
        assert not {"device_static", "psk", "label_secret"} & set(doc)
    initiator = NoiseHandshake(
        pattern,
        initiator=True,
        local_static=None,
        remote_static=None if static is None else doc["device_static_pub"],
        psk=psk,
        prologue=doc["prologue"],
        ephemeral_for_tests=doc["host_ephemeral"],
    )
    responder = NoiseHandshake(
        pattern,
        initiator=False,
        local_static=static,
        remote_static=None,
        psk=psk,
        prologue=doc["prologue"],
        ephemeral_for_tests=doc["dev_ephemeral"],
    )
    message_1 = initiator.write_message(b"")
    assert message_1 == doc["message_1"]
    responder.read_message(message_1)
    message_2 = responder.write_message(b"")
    assert message_2 == doc["message_2"]
    initiator.read_message(message_2)
    assert initiator.handshake_hash == doc["handshake_hash"]
    assert initiator.split_keys() == (doc["k_h2d"], doc["k_d2h"]) == responder.split_keys()
