"""SPAKE2+ (RFC 9383) against the RFC's test vectors, and the ways a run must fail.

The vector is RFC 9383, Appendix C ("Test Vectors"), the one for our ciphersuite
P256-SHA256-HKDF-SHA256-HMAC-SHA256, embedded below as the RFC prints it (hex wrapped at
the RFC's line width). The RFC leaves the PBKDF out of its vectors and gives w0 and w1
directly; scrypt and the PBKDF input layout are checked against the standard library's
independent ``hashlib.scrypt`` instead. M and N are checked against the point generation
algorithm of RFC 9383 Appendix B, and P-256's generator against ``cryptography``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core.crypto.spake2plus import (
    CIPHERSUITE,
    DEFAULT_COST,
    GENERATOR,
    M_BYTES,
    M_COMPRESSED,
    MAX_SCRYPT_MEMORY,
    N_BYTES,
    N_COMPRESSED,
    P256_FIELD_PRIME,
    P256_ORDER,
    ConfirmationFailed,
    InvalidShare,
    KeySchedule,
    M,
    N,
    Prover,
    ProverSecrets,
    ScryptCost,
    Spake2PlusError,
    Verifier,
    VerifierRecord,
    compute_key_schedule,
    compute_transcript,
    confirmation,
    decode_point,
    derive_verifier,
    encode_point,
    pbkdf_input,
    prover_finish,
    prover_init,
    verifier_finish,
)
from bleprov.core.errors import LocalProtocolError, MalformedData, ProtocolError

# RFC 9383, Appendix C: [Context=b'SPAKE2+-P256-SHA256-HKDF-SHA256-HMAC-SHA256 Test Vectors'],
# [idProver=b'client'], [idVerifier=b'server'], then the values below, verbatim.
RFC9383_P256_SHA256_HMAC = """
w0 = 0xbb8e1bbcf3c48f62c08db243652ae55d3e5586053fca77102994f23ad9549
1b3
w1 = 0x7e945f34d78785b8a3ef44d0df5a1a97d6b3b460409a345ca7830387a74b1
dba
L = 0x04eb7c9db3d9a9eb1f8adab81b5794c1f13ae3e225efbe91ea487425854c7f
c00f00bfedcbd09b2400142d40a14f2064ef31dfaa903b91d1faea7093d835966efd
x = 0xd1232c8e8693d02368976c174e2088851b8365d0d79a9eee709c6a05a2fad5
39
shareP = 0x04ef3bd051bf78a2234ec0df197f7828060fe9856503579bb17330090
42c15c0c1de127727f418b5966afadfdd95a6e4591d171056b333dab97a79c7193e3
41727
y = 0x717a72348a182085109c8d3917d6c43d59b224dc6a7fc4f0483232fa6516d8
b3
shareV = 0x04c0f65da0d11927bdf5d560c69e1d7d939a05b0e88291887d679fcad
ea75810fb5cc1ca7494db39e82ff2f50665255d76173e09986ab46742c798a9a6843
7b048
Z = 0x04bbfce7dd7f277819c8da21544afb7964705569bdf12fb92aa388059408d5
0091a0c5f1d3127f56813b5337f9e4e67e2ca633117a4fbd559946ab474356c41839
V = 0x0458bf27c6bca011c9ce1930e8984a797a3419797b936629a5a937cf2f11c8
b9514b82b993da8a46e664f23db7c01edc87faa530db01c2ee405230b18997f16b68
TT = 0x38000000000000005350414b45322b2d503235362d5348413235362d484b4
4462d5348413235362d484d41432d534841323536205465737420566563746f72730
600000000000000636c69656e7406000000000000007365727665724100000000000
00004886e2f97ace46e55ba9dd7242579f2993b64e16ef3dcab95afd497333d8fa12
f5ff355163e43ce224e0b0e65ff02ac8e5c7be09419c785e0ca547d55a12e2d20410
000000000000004d8bbd6c639c62937b04d997f38c3770719c629d7014d49a24b4f9
8baa1292b4907d60aa6bfade45008a636337f5168c64d9bd36034808cd564490b1e6
56edbe7410000000000000004ef3bd051bf78a2234ec0df197f7828060fe98565035
79bb1733009042c15c0c1de127727f418b5966afadfdd95a6e4591d171056b333dab
97a79c7193e341727410000000000000004c0f65da0d11927bdf5d560c69e1d7d939
a05b0e88291887d679fcadea75810fb5cc1ca7494db39e82ff2f50665255d76173e0
9986ab46742c798a9a68437b048410000000000000004bbfce7dd7f277819c8da215
44afb7964705569bdf12fb92aa388059408d50091a0c5f1d3127f56813b5337f9e4e
67e2ca633117a4fbd559946ab474356c4183941000000000000000458bf27c6bca01
1c9ce1930e8984a797a3419797b936629a5a937cf2f11c8b9514b82b993da8a46e66
4f23db7c01edc87faa530db01c2ee405230b18997f16b682000000000000000bb8e1
bbcf3c48f62c08db243652ae55d3e5586053fca77102994f23ad95491b3
K_main = 0x4c59e1ccf2cfb961aa31bd9434478a1089b56cd11542f53d3576fb6c2
a438a29
K_confirmP = 0x871ae3f7b78445e34438fb284504240239031c39d80ac23eb5ab9
be5ad6db58a
K_confirmV = 0xccd53c7c1fa37b64a462b40db8be101cedcf838950162902054e6
44b400f1680
HMAC(K_confirmP, shareV) = 0x926cc713504b9b4d76c9162ded04b5493e89109
f6d89462cd33adc46fda27527
HMAC(K_confirmV, shareP) = 0x9747bcc4f8fe9f63defee53ac9b07876d907d55
047e6ff2def2e7529089d3e68
K_shared = 0x0c5f8ccd1413423a54f6c1fb26ff01534a87f893779c6e68666d772
bfd91f3e7
"""
CONTEXT = b"SPAKE2+-P256-SHA256-HKDF-SHA256-HMAC-SHA256 Test Vectors"
ID_PROVER = b"client"
ID_VERIFIER = b"server"


def parse_rfc_values(text: str) -> dict[str, bytes]:
    """``name = 0x<hex>`` entries whose hex the RFC wraps onto following lines."""
    digits: dict[str, str] = {}
    name = ""
    for line in text.strip().splitlines():
        if " = 0x" in line:
            name, _, first = line.partition(" = 0x")
            digits[name] = first
        else:
            digits[name] += line.strip()
    return {key: bytes.fromhex(value) for key, value in digits.items()}


VEC = parse_rfc_values(RFC9383_P256_SHA256_HMAC)
W0 = int.from_bytes(VEC["w0"], "big")
W1 = int.from_bytes(VEC["w1"], "big")
X_SCALAR = int.from_bytes(VEC["x"], "big")
Y_SCALAR = int.from_bytes(VEC["y"], "big")
VECTOR_SECRETS = ProverSecrets(W0, W1)

#: Tests use a tiny scrypt cost to stay fast; only test_default_cost runs the real one.
FAST_COST = ScryptCost(n=16, r=1, p=1)
SALT = bytes(range(16))
PASSWORD = b"12345678"


def vector_prover(**overrides: object) -> Prover:
    options: dict[str, object] = {
        "context": CONTEXT,
        "id_prover": ID_PROVER,
        "id_verifier": ID_VERIFIER,
        "_ephemeral_scalar_for_tests": X_SCALAR,
    }
    options.update(overrides)
    return Prover(VECTOR_SECRETS, **options)  # type: ignore[arg-type]


def vector_verifier(**overrides: object) -> Verifier:
    options: dict[str, object] = {
        "context": CONTEXT,
        "id_prover": ID_PROVER,
        "id_verifier": ID_VERIFIER,
        "_ephemeral_scalar_for_tests": Y_SCALAR,
    }
    options.update(overrides)
    return Verifier(VECTOR_SECRETS.verifier_record(), **options)  # type: ignore[arg-type]


def code_pair(
    host_password: bytes = PASSWORD, *, user: bytes = b"", context: bytes = b"bleprov test"
) -> tuple[Prover, Verifier]:
    """A host knowing ``host_password`` and a device registered with :data:`PASSWORD`."""
    device_secrets = derive_verifier(
        PASSWORD, salt=SALT, id_prover=user, id_verifier=b"device", cost=FAST_COST
    )
    host_secrets = derive_verifier(
        host_password, salt=SALT, id_prover=user, id_verifier=b"device", cost=FAST_COST
    )
    prover = Prover(host_secrets, context=context, id_prover=user, id_verifier=b"device")
    verifier = Verifier(
        device_secrets.verifier_record(), context=context, id_prover=user, id_verifier=b"device"
    )
    return prover, verifier


def other_point(share: bytes) -> bytes:
    """A different valid point: ``share + P``."""
    return encode_point(decode_point(share, "test") + GENERATOR)


# ------------------------------------------------------------------------ constants


def test_vector_names_our_ciphersuite() -> None:
    assert CIPHERSUITE.encode() in CONTEXT
    assert CONTEXT.startswith(b"SPAKE2+-")


def test_generator_is_p256s() -> None:
    one = ec.derive_private_key(1, ec.SECP256R1()).public_key()
    assert GENERATOR.xy == (one.public_numbers().x, one.public_numbers().y)
    assert (GENERATOR * P256_ORDER).is_point_at_infinity()
    assert P256_FIELD_PRIME == 2**256 - 2**224 + 2**192 + 2**96 - 1


def test_m_and_n_are_the_rfcs_in_uncompressed_form() -> None:
    # The transcript in Appendix C carries both, uncompressed, after their 0x41 length.
    assert M_BYTES.hex() in VEC["TT"].hex()
    assert N_BYTES.hex() in VEC["TT"].hex()
    for compressed, point in ((M_COMPRESSED, M), (N_COMPRESSED, N)):
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), compressed)
        assert point.xy == (key.public_numbers().x, key.public_numbers().y)


def generated_point(seed: bytes) -> bytes:
    """RFC 9383 Appendix B: iterated SHA-256 blocks until one is a compressed P-256 point."""

    def iterated_hash(count: int) -> bytes:
        value = seed
        for _ in range(count):
            value = hashlib.sha256(value).digest()
        return value

    for start in range(1, 1000):
        blocks = b"".join(iterated_hash(i) for i in range(start, start + 2))[:33]
        candidate = bytes([(blocks[0] & 1) | 2]) + blocks[1:]
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), candidate)
        except ValueError:
            continue
        return candidate
    raise AssertionError("no point found")


def test_m_and_n_come_from_the_rfcs_seeds() -> None:
    assert generated_point(b"1.2.840.10045.3.1.7 point generation seed (M)") == M_COMPRESSED
    assert generated_point(b"1.2.840.10045.3.1.7 point generation seed (N)") == N_COMPRESSED


# -------------------------------------------------- RFC 9383 Appendix C, step by step


def test_vector_registration_record() -> None:
    record = VECTOR_SECRETS.verifier_record()
    assert record.w0_bytes == VEC["w0"]
    assert encode_point(GENERATOR * W1) == record.L == VEC["L"]


def test_vector_prover_init() -> None:
    assert prover_init(W0, X_SCALAR) == VEC["shareP"]


def test_vector_verifier_finish() -> None:
    share_v, z, v = verifier_finish(W0, VEC["L"], Y_SCALAR, VEC["shareP"])
    assert (share_v, z, v) == (VEC["shareV"], VEC["Z"], VEC["V"])


def test_vector_prover_finish() -> None:
    assert prover_finish(W0, W1, X_SCALAR, VEC["shareV"]) == (VEC["Z"], VEC["V"])


def test_vector_transcript() -> None:
    transcript = compute_transcript(
        context=CONTEXT,
        id_prover=ID_PROVER,
        id_verifier=ID_VERIFIER,
        share_p=VEC["shareP"],
        share_v=VEC["shareV"],
        z=VEC["Z"],
        v=VEC["V"],
        w0=W0,
    )
    assert transcript == VEC["TT"]


def test_vector_key_schedule_and_confirmations() -> None:
    keys = compute_key_schedule(VEC["TT"])
    assert keys.k_main == VEC["K_main"]
    assert keys.k_confirm_p == VEC["K_confirmP"]
    assert keys.k_confirm_v == VEC["K_confirmV"]
    assert keys.k_shared == VEC["K_shared"]
    assert confirmation(keys.k_confirm_p, VEC["shareV"]) == VEC["HMAC(K_confirmP, shareV)"]
    assert confirmation(keys.k_confirm_v, VEC["shareP"]) == VEC["HMAC(K_confirmV, shareP)"]


def test_vector_full_run_through_the_state_machines() -> None:
    prover, verifier = vector_prover(), vector_verifier()
    share_p = prover.start()
    assert share_p == VEC["shareP"]
    share_v, confirm_v = verifier.respond(share_p)
    assert share_v == VEC["shareV"]
    assert confirm_v == VEC["HMAC(K_confirmV, shareP)"]
    confirm_p, prover_key = prover.finish(share_v, confirm_v)
    assert confirm_p == VEC["HMAC(K_confirmP, shareV)"]
    assert prover_key == VEC["K_shared"]
    assert verifier.finish(confirm_p) == VEC["K_shared"]
    assert prover.transcript_hash == verifier.transcript_hash == VEC["K_main"]


# --------------------------------------------------------------------- registration


def test_pbkdf_input_prefixes_little_endian_lengths() -> None:
    assert pbkdf_input(b"pw", b"", b"dev") == (
        b"\x02\x00\x00\x00\x00\x00\x00\x00pw" + bytes(8) + b"\x03\x00\x00\x00\x00\x00\x00\x00dev"
    )


def independent_w0_w1(password: bytes, salt: bytes, cost: ScryptCost, ids: bytes) -> ProverSecrets:
    """RFC 9383 section 3.2 with the standard library's scrypt, halves read big-endian."""
    output = hashlib.scrypt(
        len(password).to_bytes(8, "little") + password + ids,
        salt=salt,
        n=cost.n,
        r=cost.r,
        p=cost.p,
        maxmem=2 * cost.memory_bytes + 2**20,
        dklen=80,
    )
    return ProverSecrets(
        int.from_bytes(output[:40], "big") % P256_ORDER,
        int.from_bytes(output[40:], "big") % P256_ORDER,
    )


def test_derive_verifier_matches_an_independent_scrypt() -> None:
    ids = pbkdf_input(b"", b"alice", b"device")[8:]
    expected = independent_w0_w1(b"hunter2", SALT, FAST_COST, ids)
    derived = derive_verifier(
        b"hunter2", salt=SALT, id_prover=b"alice", id_verifier=b"device", cost=FAST_COST
    )
    assert derived == expected


def test_default_cost() -> None:
    """The RFC's recommended (32768, 8, 1), 32 MiB, and what derive_verifier runs by default."""
    assert (DEFAULT_COST.n, DEFAULT_COST.r, DEFAULT_COST.p) == (2**15, 8, 1)
    assert DEFAULT_COST.log2_n == 15
    assert DEFAULT_COST.memory_bytes == 32 * 2**20
    ids = pbkdf_input(b"", b"", b"")[8:]
    assert derive_verifier(PASSWORD, salt=SALT) == independent_w0_w1(
        PASSWORD, SALT, ScryptCost(n=2**15, r=8, p=1), ids
    )


@pytest.mark.parametrize(
    "cost",
    [ScryptCost(n=32, r=1, p=1), ScryptCost(n=16, r=2, p=1), ScryptCost(n=16, r=1, p=2)],
)
def test_every_cost_parameter_changes_the_secrets(cost: ScryptCost) -> None:
    baseline = derive_verifier(PASSWORD, salt=SALT, cost=FAST_COST)
    other = derive_verifier(PASSWORD, salt=SALT, cost=cost)
    assert other.w0 != baseline.w0
    assert other.w1 != baseline.w1


@pytest.mark.parametrize(
    "change",
    [
        {"password": b"12345679"},
        {"salt": bytes(16)},
        {"id_prover": b"bob"},
        {"id_verifier": b"other device"},
    ],
)
def test_password_salt_and_identities_change_the_secrets(change: dict[str, bytes]) -> None:
    arguments = {"password": PASSWORD, "salt": SALT, "id_prover": b"", "id_verifier": b""}
    baseline = derive_verifier(**arguments, cost=FAST_COST)
    arguments.update(change)
    assert derive_verifier(**arguments, cost=FAST_COST).w0 != baseline.w0


def test_length_prefixes_keep_fields_apart() -> None:
    """Moving a byte from the password into the identity must give other secrets."""
    first = derive_verifier(b"ab", salt=SALT, id_prover=b"c", cost=FAST_COST)
    second = derive_verifier(b"a", salt=SALT, id_prover=b"bc", cost=FAST_COST)
    assert first.w0 != second.w0


def test_short_salt_is_refused() -> None:
    with pytest.raises(MalformedData):
        derive_verifier(PASSWORD, salt=bytes(15), cost=FAST_COST)


@pytest.mark.parametrize(
    ("n", "r", "p"),
    [
        (0, 1, 1),
        (1, 1, 1),
        (24, 1, 1),
        (16, 0, 1),
        (16, 1, 0),
        (16, 1, 17),
        (2**22, 4, 1),  # 2 GiB
        (2**22, 32, 1),  # 16 GiB: the most the device's info value can announce
    ],
)
def test_scrypt_cost_bounds(n: int, r: int, p: int) -> None:
    with pytest.raises(MalformedData):
        ScryptCost(n=n, r=r, p=p)


def test_largest_accepted_cost() -> None:
    assert ScryptCost(n=2**20, r=8, p=16).memory_bytes == MAX_SCRYPT_MEMORY


# -------------------------------------------------------------------- verifier record


def test_record_round_trip() -> None:
    record = VECTOR_SECRETS.verifier_record()
    encoded = record.encode()
    assert encoded == VEC["w0"] + VEC["L"]
    assert VerifierRecord.decode(encoded) == record
    assert VerifierRecord.from_fields(VEC["w0"], VEC["L"]) == record


def not_on_curve(point: bytes) -> bytes:
    return point[:-1] + bytes([point[-1] ^ 1])


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        VEC["w0"] + VEC["L"][:-1],
        VEC["w0"] + VEC["L"] + b"\x00",
        bytes(32) + VEC["L"],
        P256_ORDER.to_bytes(32, "big") + VEC["L"],
        VEC["w0"] + not_on_curve(VEC["L"]),
        VEC["w0"] + b"\x04" + bytes(64),
        VEC["w0"] + b"\x02" + VEC["L"][1:],
    ],
    ids=["empty", "short", "long", "w0 zero", "w0 = p", "L off curve", "L identity", "L tag"],
)
def test_record_decoding_is_strict(encoded: bytes) -> None:
    with pytest.raises(MalformedData):
        VerifierRecord.decode(encoded)


def test_record_fields_are_checked() -> None:
    with pytest.raises(MalformedData):
        VerifierRecord.from_fields(VEC["w0"][1:], VEC["L"])
    with pytest.raises(MalformedData):
        VerifierRecord(W0, VEC["L"][:33])


@pytest.mark.parametrize(("w0", "w1"), [(0, 1), (1, 0), (P256_ORDER, 1), (1, P256_ORDER + 1)])
def test_prover_secrets_are_scalars_in_range(w0: int, w1: int) -> None:
    with pytest.raises(MalformedData):
        ProverSecrets(w0, w1)


# --------------------------------------------------------------------- complete runs


def run(prover: Prover, verifier: Verifier) -> tuple[bytes, bytes]:
    share_v, confirm_v = verifier.respond(prover.start())
    confirm_p, prover_key = prover.finish(share_v, confirm_v)
    return prover_key, verifier.finish(confirm_p)


def test_run_with_derived_secrets_agrees() -> None:
    prover_key, verifier_key = run(*code_pair(user=b"alice"))
    assert prover_key == verifier_key
    assert len(prover_key) == 32


@settings(max_examples=15, deadline=None)
@given(password=st.binary(max_size=40), user=st.binary(max_size=20), context=st.binary())
def test_random_runs_agree(password: bytes, user: bytes, context: bytes) -> None:
    secrets_ = derive_verifier(password, salt=SALT, id_prover=user, cost=FAST_COST)
    prover = Prover(secrets_, context=context, id_prover=user, id_verifier=b"")
    verifier = Verifier(
        secrets_.verifier_record(), context=context, id_prover=user, id_verifier=b""
    )
    prover_key, verifier_key = run(prover, verifier)
    assert prover_key == verifier_key
    assert prover.transcript_hash == verifier.transcript_hash


def test_runs_use_fresh_ephemeral_scalars() -> None:
    first, second = code_pair(), code_pair()
    assert first[0].start() != second[0].start()
    assert run(*code_pair()) != run(*code_pair())


def test_wrong_password_fails_at_the_prover_and_the_verifier_releases_nothing() -> None:
    prover, verifier = code_pair(b"12345670")
    share_p = prover.start()
    share_v, confirm_v = verifier.respond(share_p)
    with pytest.raises(ConfirmationFailed):
        prover.finish(share_v, confirm_v)
    with pytest.raises(LocalProtocolError):
        prover.transcript_hash  # noqa: B018
    with pytest.raises(LocalProtocolError):
        verifier.transcript_hash  # noqa: B018
    # A prover that skipped its check would send this; the verifier must refuse it.
    wrong = derive_verifier(b"12345670", salt=SALT, id_verifier=b"device", cost=FAST_COST)
    forged = forged_confirm_p(wrong, share_p, share_v, context=b"bleprov test")
    with pytest.raises(ConfirmationFailed):
        verifier.finish(forged)
    with pytest.raises(LocalProtocolError):
        verifier.transcript_hash  # noqa: B018
    with pytest.raises(LocalProtocolError):
        verifier.finish(forged)


def forged_confirm_p(
    prover_secrets: ProverSecrets, share_p: bytes, share_v: bytes, *, context: bytes
) -> bytes:
    """confirmP from a wrong password's w0 and V; Z, which needs the prover's x, is guessed."""
    _, v = prover_finish(prover_secrets.w0, prover_secrets.w1, 1, share_v)
    keys = compute_key_schedule(
        compute_transcript(
            context=context,
            id_prover=b"",
            id_verifier=b"device",
            share_p=share_p,
            share_v=share_v,
            z=encode_point(GENERATOR * 7),
            v=v,
            w0=prover_secrets.w0,
        )
    )
    return confirmation(keys.k_confirm_p, share_v)


def test_tampered_share_p_fails_confirmation() -> None:
    prover, verifier = code_pair()
    share_v, confirm_v = verifier.respond(other_point(prover.start()))
    with pytest.raises(ConfirmationFailed):
        prover.finish(share_v, confirm_v)


def test_tampered_share_v_fails_confirmation() -> None:
    prover, verifier = code_pair()
    share_v, confirm_v = verifier.respond(prover.start())
    with pytest.raises(ConfirmationFailed):
        prover.finish(other_point(share_v), confirm_v)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda tag: bytes([tag[0] ^ 0x80]) + tag[1:],
        lambda tag: tag[:-1] + bytes([tag[-1] ^ 1]),
        lambda tag: tag[:16],
        lambda tag: tag + b"\x00",
        lambda tag: b"",
    ],
    ids=["first bit", "last bit", "truncated", "extended", "empty"],
)
def test_tampered_confirmations_fail(tamper: Callable[[bytes], bytes]) -> None:
    prover, verifier = code_pair()
    share_v, confirm_v = verifier.respond(prover.start())
    with pytest.raises(ConfirmationFailed):
        prover.finish(share_v, tamper(confirm_v))

    prover, verifier = code_pair()
    share_v, confirm_v = verifier.respond(prover.start())
    confirm_p, _ = prover.finish(share_v, confirm_v)
    with pytest.raises(ConfirmationFailed):
        verifier.finish(tamper(confirm_p))


def test_confirmations_are_not_interchangeable() -> None:
    """confirmV sent back as confirmP (a reflection of the MAC) must fail."""
    prover, verifier = code_pair()
    share_v, confirm_v = verifier.respond(prover.start())
    prover.finish(share_v, confirm_v)
    with pytest.raises(ConfirmationFailed):
        verifier.finish(confirm_v)


# ------------------------------------------------------------------- invalid points


def point_with_small_x() -> tuple[int, int]:
    """The P-256 point with the smallest x (so that x + field prime still fits 32 bytes)."""
    b = int("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b", 16)
    for x in itertools.count():
        rhs = (x**3 - 3 * x + b) % P256_FIELD_PRIME
        y = pow(rhs, (P256_FIELD_PRIME + 1) // 4, P256_FIELD_PRIME)
        if y * y % P256_FIELD_PRIME == rhs:
            return x, y
    raise AssertionError("unreachable")


def non_canonical_point() -> bytes:
    x, y = point_with_small_x()
    assert x + P256_FIELD_PRIME < 2**256
    return b"\x04" + (x + P256_FIELD_PRIME).to_bytes(32, "big") + y.to_bytes(32, "big")


def compressed(share: bytes) -> bytes:
    return bytes([2 + (share[-1] & 1)]) + share[1:33]


BAD_SHARES: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda good: b"",
    "64 bytes": lambda good: good[:-1],
    "66 bytes": lambda good: good + b"\x00",
    "raw X||Y": lambda good: good[1:],
    "compressed": compressed,
    "compressed tag, 65 bytes": lambda good: b"\x02" + good[1:],
    "hybrid tag": lambda good: bytes([6 + (good[-1] & 1)]) + good[1:],
    "not on curve": not_on_curve,
    "identity (zeros)": lambda good: b"\x04" + bytes(64),
    "identity (SEC1 0x00)": lambda good: b"\x00",
    "x not reduced": lambda good: non_canonical_point(),
    "all ones": lambda good: b"\x04" + b"\xff" * 64,
}


@pytest.mark.parametrize("bad", BAD_SHARES.values(), ids=BAD_SHARES.keys())
def test_verifier_refuses_invalid_share_p(bad: Callable[[bytes], bytes]) -> None:
    verifier = vector_verifier()
    with pytest.raises(InvalidShare):
        verifier.respond(bad(VEC["shareP"]))
    with pytest.raises(LocalProtocolError):
        verifier.respond(VEC["shareP"])


@pytest.mark.parametrize("bad", BAD_SHARES.values(), ids=BAD_SHARES.keys())
def test_prover_refuses_invalid_share_v(bad: Callable[[bytes], bytes]) -> None:
    prover = vector_prover()
    prover.start()
    with pytest.raises(InvalidShare):
        prover.finish(bad(VEC["shareV"]), VEC["HMAC(K_confirmV, shareP)"])
    with pytest.raises(LocalProtocolError):
        prover.finish(VEC["shareV"], VEC["HMAC(K_confirmV, shareP)"])


def test_non_canonical_coordinates_name_a_real_point() -> None:
    """The "x not reduced" case would pass if the decoder left reduction to pycryptodome."""
    from Crypto.PublicKey.ECC import EccPoint  # type: ignore[attr-defined]

    x, y = point_with_small_x()
    assert EccPoint(x + P256_FIELD_PRIME, y, "p256").xy == (x, y)


def test_shares_that_cancel_the_password_mask_are_refused() -> None:
    """X = w0*M (or Y = w0*N) would make Z and V the identity."""
    with pytest.raises(InvalidShare):
        vector_verifier().respond(encode_point(M * W0))
    prover = vector_prover()
    prover.start()
    with pytest.raises(InvalidShare):
        prover.finish(encode_point(N * W0), VEC["HMAC(K_confirmV, shareP)"])


def test_verifier_refuses_its_own_share_reflected() -> None:
    # With y fixed, the verifier's shareV is the vector's; fed back as shareP it must fail.
    with pytest.raises(InvalidShare):
        vector_verifier().respond(VEC["shareV"])


def test_prover_refuses_its_own_share_reflected() -> None:
    prover, verifier = code_pair()
    share_p = prover.start()
    _, confirm_v = verifier.respond(share_p)
    with pytest.raises(InvalidShare):
        prover.finish(share_p, confirm_v)


def test_errors_are_typed_protocol_errors() -> None:
    assert issubclass(InvalidShare, Spake2PlusError)
    assert issubclass(InvalidShare, MalformedData)
    assert issubclass(ConfirmationFailed, Spake2PlusError)
    assert not issubclass(ConfirmationFailed, MalformedData)
    assert issubclass(Spake2PlusError, ProtocolError)


# ---------------------------------------------------------- context and identities


def test_context_and_identities_change_the_keys() -> None:
    baseline, _ = run(vector_prover(), vector_verifier())
    for change in ({"context": b"other"}, {"id_prover": b"alice"}, {"id_verifier": b"dev"}):
        prover_key, verifier_key = run(vector_prover(**change), vector_verifier(**change))
        assert prover_key == verifier_key != baseline


@pytest.mark.parametrize(
    "change", [{"context": CONTEXT + b"!"}, {"id_prover": b"Client"}, {"id_verifier": b""}]
)
def test_disagreeing_on_context_or_identities_fails(change: dict[str, bytes]) -> None:
    prover, verifier = vector_prover(), vector_verifier(**change)
    share_v, confirm_v = verifier.respond(prover.start())
    with pytest.raises(ConfirmationFailed):
        prover.finish(share_v, confirm_v)


# ------------------------------------------------------------------------ single use


def test_prover_runs_once() -> None:
    prover = vector_prover()
    with pytest.raises(LocalProtocolError):
        prover.finish(VEC["shareV"], VEC["HMAC(K_confirmV, shareP)"])
    prover.start()
    with pytest.raises(LocalProtocolError):
        prover.start()
    with pytest.raises(LocalProtocolError):
        prover.transcript_hash  # noqa: B018
    prover.finish(VEC["shareV"], VEC["HMAC(K_confirmV, shareP)"])
    with pytest.raises(LocalProtocolError):
        prover.finish(VEC["shareV"], VEC["HMAC(K_confirmV, shareP)"])
    with pytest.raises(LocalProtocolError):
        prover.start()


def test_verifier_runs_once() -> None:
    verifier = vector_verifier()
    with pytest.raises(LocalProtocolError):
        verifier.finish(VEC["HMAC(K_confirmP, shareV)"])
    verifier.respond(VEC["shareP"])
    with pytest.raises(LocalProtocolError):
        verifier.respond(VEC["shareP"])
    verifier.finish(VEC["HMAC(K_confirmP, shareV)"])
    with pytest.raises(LocalProtocolError):
        verifier.finish(VEC["HMAC(K_confirmP, shareV)"])


def test_prover_is_spent_after_a_failed_confirmation() -> None:
    prover = vector_prover()
    prover.start()
    with pytest.raises(ConfirmationFailed):
        prover.finish(VEC["shareV"], bytes(32))
    with pytest.raises(LocalProtocolError):
        prover.finish(VEC["shareV"], VEC["HMAC(K_confirmV, shareP)"])


# ------------------------------------------------------------------ randomness source


def test_rng_supplies_the_ephemeral_scalar() -> None:
    """x = 40 bytes from rng, reduced mod p: a fixed rng gives a fixed share."""
    draw = bytes(range(40))
    prover = Prover(
        VECTOR_SECRETS, context=b"", id_prover=b"", id_verifier=b"", rng=lambda n: draw[:n]
    )
    expected_x = int.from_bytes(draw, "big") % P256_ORDER
    assert prover.start() == prover_init(W0, expected_x)


@pytest.mark.parametrize(
    "rng",
    [lambda n: bytes(n), lambda n: bytes(n - 1), lambda n: P256_ORDER.to_bytes(n, "big")],
    ids=["zeros", "short", "multiple of p"],
)
def test_broken_rng_is_refused(rng: Callable[[int], bytes]) -> None:
    with pytest.raises(LocalProtocolError):
        Verifier(
            VECTOR_SECRETS.verifier_record(),
            context=b"",
            id_prover=b"",
            id_verifier=b"",
            rng=rng,
        )


@pytest.mark.parametrize("scalar", [0, P256_ORDER, -1])
def test_injected_scalar_must_be_in_range(scalar: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.p-1"):
        vector_prover(_ephemeral_scalar_for_tests=scalar)


# ------------------------------------------------------------------ no secrets shown


def secret_spellings(*values: int | bytes) -> list[str]:
    spellings: list[str] = []
    for value in values:
        if isinstance(value, int):
            spellings += [str(value), f"{value:x}", f"{value:X}"]
        else:
            spellings.append(value.hex())
    return spellings


def test_reprs_hold_no_secrets() -> None:
    record = VECTOR_SECRETS.verifier_record()
    prover, verifier = vector_prover(), vector_verifier()
    run(prover, verifier)
    keys = compute_key_schedule(VEC["TT"])
    shown = " ".join(repr(value) for value in (VECTOR_SECRETS, record, keys, prover, verifier))
    assert isinstance(keys, KeySchedule)
    for spelling in secret_spellings(
        W0, W1, X_SCALAR, Y_SCALAR, keys.k_main, keys.k_shared, keys.k_confirm_p, VEC["L"]
    ):
        assert spelling not in shown


def test_error_messages_hold_no_secrets() -> None:
    prover, verifier = code_pair(b"wrong password")
    share_v, confirm_v = verifier.respond(prover.start())
    with pytest.raises(ConfirmationFailed) as caught:
        prover.finish(share_v, confirm_v)
    assert "wrong password" not in str(caught.value)
    assert confirm_v.hex() not in str(caught.value)
