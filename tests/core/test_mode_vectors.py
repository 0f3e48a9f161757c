"""docs/protocol.md's mode sections print what the implementation does: the code-mode
SPAKE2+ vector (section 7.2), the f4/g2 vectors (section 7.3), and what a host sends when
confirmV fails (sections 7.2 and 7.5)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bleprov.core.crypto import lesc
from bleprov.core.crypto.spake2plus import Prover, ScryptCost, derive_verifier
from bleprov.core.session import device as dev
from bleprov.core.session import host as hst
from bleprov.core.session.messages import (
    Handshake,
    Mode,
    decode,
    encode,
    join_fields,
    split_fields,
)
from bleprov.core.session.modes import (
    SPAKE_ID_VERIFIER,
    AuthenticationFailed,
    CodeDevice,
    CodeHost,
    prologue,
)
from tests.core.test_session import ended, make_device, make_host

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented(section: str) -> dict[str, bytes]:
    """The ``name = hex`` lines of one section's code blocks."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"### {section} ")
    end = text.index("\n### ", start + 1)
    return {
        m.group(1): bytes.fromhex(m.group(2))
        for m in re.finditer(r"^(\w+)\s+= ([0-9a-f]+)$", text[start:end], re.M)
    }


def fixed_scalar(scalar: bytes) -> Callable[[int], bytes]:
    """A random source that yields ``scalar`` as the ephemeral scalar (40 bytes drawn,
    reduced mod p: leading zeros leave it as it is)."""
    return lambda n: bytes(n - len(scalar)) + scalar


# ------------------------------------------------------------------ 7.2 code vector

CODE_VECTOR = documented("7.2")
CODE_COST = ScryptCost(n=1 << 10, r=8, p=1)


def test_the_code_vector_is_complete() -> None:
    assert set(CODE_VECTOR) == {
        "pw",
        "salt",
        "info",
        "x",
        "y",
        "w0",
        "w1",
        "L",
        "shareP",
        "shareV",
        "confirmV",
        "confirmP",
        "K_shared",
        "hh",
        "k_h2d",
        "k_d2h",
    }


def test_the_code_vector_is_what_the_code_mode_engines_exchange() -> None:
    v = CODE_VECTOR
    prover_secrets = derive_verifier(
        v["pw"], salt=v["salt"], id_prover=b"", id_verifier=SPAKE_ID_VERIFIER, cost=CODE_COST
    )
    assert prover_secrets.w0.to_bytes(32, "big") == v["w0"]
    assert prover_secrets.w1.to_bytes(32, "big") == v["w1"]
    record = prover_secrets.verifier_record()
    assert v["L"] == record.L

    host = CodeHost(
        password=v["pw"],
        user=b"",
        salt=v["salt"],
        cost=CODE_COST,
        device_info=v["info"],
        rng=fixed_scalar(v["x"]),
    )
    device = CodeDevice(records={b"": record}, device_info=v["info"], rng=fixed_scalar(v["y"]))
    hello = host.hello()
    assert split_fields(hello, 2, "hello") == [b"", v["shareP"]]
    reply = device.hello(hello)
    assert reply.reply is not None and reply.keys is None
    assert split_fields(reply.reply, 2, "reply") == [v["shareV"], v["confirmV"]]
    host_step = host.receive(reply.reply)
    assert host_step.reply == v["confirmP"]
    device_step = device.receive(v["confirmP"])
    assert host_step.keys == device_step.keys
    assert host_step.keys is not None
    assert host_step.keys.handshake_hash == v["hh"]
    assert host_step.keys.host_to_device == v["k_h2d"]
    assert host_step.keys.device_to_host == v["k_d2h"]


def test_the_code_vector_follows_the_formulas_in_the_text() -> None:
    """hh as section 7.2 writes it, and K_shared from the RFC 9383 layer alone."""
    v = CODE_VECTOR
    pro = prologue(Mode.CODE, v["info"])
    assert (
        v["hh"]
        == hashlib.sha256(b"bleprov/1 code transcript" + pro + v["shareP"] + v["shareV"]).digest()
    )
    prover = Prover(
        derive_verifier(
            v["pw"], salt=v["salt"], id_prover=b"", id_verifier=SPAKE_ID_VERIFIER, cost=CODE_COST
        ),
        context=pro,
        id_prover=b"",
        id_verifier=SPAKE_ID_VERIFIER,
        _ephemeral_scalar_for_tests=int.from_bytes(v["x"], "big"),
    )
    assert prover.start() == v["shareP"]
    assert prover.finish(v["shareV"], v["confirmV"]) == (v["confirmP"], v["K_shared"])


# ------------------------------------------------------------------ 7.3 f4 and g2

LESC_VECTOR = documented("7.3")


def test_the_f4_and_g2_vectors_are_what_the_toolbox_computes() -> None:
    v = LESC_VECTOR
    assert set(v) == {"U", "V", "X", "Y", "Z", "f4", "g2", "number"}
    assert lesc.f4(v["U"], v["V"], v["X"], v["Z"][0]) == v["f4"]
    assert lesc.g2(v["U"], v["V"], v["X"], v["Y"]) == int.from_bytes(v["g2"], "big")
    value = lesc.numeric_comparison_value(v["U"], v["V"], v["X"], v["Y"])
    assert lesc.format_numeric_comparison_value(value) == v["number"].hex()


# ------------------------------------------- 7.2 / 7.5: when confirmV does not verify


def _tampered_confirm_v(reply: bytes) -> bytes:
    share_v, confirm_v = split_fields(reply, 2, "reply")
    return join_fields(share_v, bytes([confirm_v[0] ^ 1]) + confirm_v[1:])


def _off_curve_share_v(reply: bytes) -> bytes:
    share_v, confirm_v = split_fields(reply, 2, "reply")
    return join_fields(share_v[:-1] + bytes([share_v[-1] ^ 1]), confirm_v)


@pytest.mark.parametrize("tamper", [_tampered_confirm_v, _off_curve_share_v])
def test_a_code_host_whose_check_fails_sends_nothing_more(
    tamper: Callable[[bytes], bytes],
) -> None:
    device = make_device()
    host = make_host(Mode.CODE, hst.CodeSecret(b"48613702"))
    [hello] = host.start(0.0)
    assert isinstance(hello, hst.SendMessage)
    reply = next(e for e in device.receive(hello.data, 1.0) if isinstance(e, dev.SendMessage))
    message = decode(reply.data)
    assert isinstance(message, Handshake)
    events = host.receive(encode(Handshake(tamper(message.body))), 1.0)
    assert [type(e) for e in events] == [hst.SessionEnded]
    assert isinstance(ended(events), AuthenticationFailed)
    assert host.receive(reply.data, 1.0) == []  # over: nothing for a late message either


def test_a_passkey_host_whose_check_fails_sends_nothing_more() -> None:
    device = make_device()
    host = make_host(Mode.PASSKEY, None)
    [hello] = host.start(0.0)
    assert isinstance(hello, hst.SendMessage)
    *_, salt, show = device.receive(hello.data, 1.0)
    assert isinstance(salt, dev.SendMessage) and isinstance(show, dev.ShowNumber)
    host.receive(salt.data, 1.0)
    number = show.number
    [share_p] = host.enter_passkey((number + 1) % 10**6, 1.0)
    assert isinstance(share_p, hst.SendMessage)
    reply = next(e for e in device.receive(share_p.data, 1.0) if isinstance(e, dev.SendMessage))
    events = host.receive(reply.data, 1.0)
    assert [type(e) for e in events] == [hst.SessionEnded]
    assert isinstance(ended(events), AuthenticationFailed)
