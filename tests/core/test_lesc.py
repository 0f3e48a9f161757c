"""The LESC toolbox against the Core Specification's sample data, and against bumble.

Sample data (big-endian, as the specification prints it):

- Bluetooth Core Specification v5.x, Vol 2, Part G, section 7.1.2 (P-256 sample data,
  data sets 1 and 2); data set 1's key A is also the SMP debug key of Vol 3, Part H,
  section 2.3.5.6.1, and its DHKey is f5's W below.
- Vol 3, Part H, Appendix D.2 (f4), D.3 (f5), D.4 (f6), D.5 (g2).

The same values appear in google/bumble ``tests/smp_test.py`` (there reversed to the
little-endian order bumble's API takes) and in bluekitchen/btstack's P-256 test.
bumble is used here only as an independent implementation to cross-check against; the
core never imports it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bumble import crypto as bumble_crypto
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from bleprov.core.crypto.lesc import (
    CommitmentMismatch,
    LescKeys,
    aes_cmac,
    commitment,
    confirm_values_equal,
    dh_key,
    f4,
    f5,
    f6,
    format_numeric_comparison_value,
    g2,
    generate_p256_private_key,
    numeric_comparison_value,
    p256_private_key_from_bytes,
    p256_public_key_bytes,
    p256_public_key_from_bytes,
    public_key_x,
    verify_commitment,
)
from bleprov.core.errors import MalformedData, ProtocolError


def h(spec_hex: str) -> bytes:
    """Bytes from hex as the specification prints it (groups of 8 digits, MSB first)."""
    return bytes.fromhex(spec_hex.replace(" ", ""))


# Vol 2, Part G, 7.1.2.1: P-256 data set 1.
SET1_PRIVATE_A = h("3f49f6d4 a3c55f38 74c9b3e3 d2103f50 4aff607b eb40b799 5899b8a6 cd3c1abd")
SET1_PUBLIC_A_X = h("20b003d2 f297be2c 5e2c83a7 e9f9a5b9 eff49111 acf4fddb cc030148 0e359de6")
SET1_PUBLIC_A_Y = h("dc809c49 652aeb6d 63329abf 5a52155c 766345c2 8fed3024 741c8ed0 1589d28b")
SET1_PRIVATE_B = h("55188b3d 32f6bb9a 900afcfb eed4e72a 59cb9ac2 f19d7cfb 6b4fdd49 f47fc5fd")
SET1_PUBLIC_B_X = h("1ea1f0f0 1faf1d96 09592284 f19e4c00 47b58afd 8615a69f 559077b2 2faaa190")
SET1_PUBLIC_B_Y = h("4c55f33e 429dad37 7356703a 9ab85160 472d1130 e28e3676 5f89aff9 15b1214a")
SET1_DHKEY = h("ec0234a3 57c8ad05 341010a6 0a397d9b 99796b13 b4f866f1 868d34f3 73bfa698")

# Vol 2, Part G, 7.1.2.2: P-256 data set 2.
SET2_PRIVATE_A = h("06a51669 3c9aa31a 6084545d 0c5db641 b48572b9 7203ddff b7ac73f7 d0457663")
SET2_PUBLIC_A_X = h("2c31a47b 5779809e f44cb5ea af5c3e43 d5f8faad 4a8794cb 987e9b03 745c78dd")
SET2_PUBLIC_A_Y = h("91951218 3898dfbe cd52e240 8e43871f d0211091 17bd3ed4 eaf84377 43715d4f")
SET2_PRIVATE_B = h("529aa067 0d72cd64 97502ed4 73502b03 7e8803b5 c60829a5 a3caa219 505530ba")
SET2_PUBLIC_B_X = h("f465e43f f23d3f1b 9dc7dfc0 4da87581 84dbc966 204796ec cf0d6cf5 e16500cc")
SET2_PUBLIC_B_Y = h("0201d048 bcbbd899 eeefc424 164e33c2 01c2b010 ca6b4d43 a8a155ca d8ecb279")
SET2_DHKEY = h("ab85843a 2f6d883f 62e5684b 38e30733 5fe6e194 5ecd1960 4105c6f2 3221eb69")

# Vol 3, Part H, Appendix D.2 to D.5.
U = h("20b003d2 f297be2c 5e2c83a7 e9f9a5b9 eff49111 acf4fddb cc030148 0e359de6")
V = h("55188b3d 32f6bb9a 900afcfb eed4e72a 59cb9ac2 f19d7cfb 6b4fdd49 f47fc5fd")
N1 = h("d5cb8454 d177733e ffffb2ec 712baeab")
N2 = h("a6e8e7cc 25a75f6e 216583f7 ff3dc4cf")
A1 = h("00561237 37bfce")
A2 = h("00a71370 2dcfc1")
F4_EXPECTED = h("f2c916f1 07a9bd1c f1eda1be a974872d")
F5_W = h("ec0234a3 57c8ad05 341010a6 0a397d9b 99796b13 b4f866f1 868d34f3 73bfa698")
F5_MAC_KEY = h("2965f176 a1084a02 fd3f6a20 ce636e20")
F5_LTK = h("69867911 69d7cd23 980522b5 94750a38")
F6_R = h("12a3343b b453bb54 08da42d2 0c2d0fc8")
F6_IO_CAP = h("010102")
F6_EXPECTED = h("e3c47398 9cd0e8c5 d26c0b09 da958f61")
G2_EXPECTED = 0x2F9ED5BA

# RFC 4493, section 4: AES-CMAC examples 1 to 4.
RFC4493_KEY = h("2b7e1516 28aed2a6 abf71588 09cf4f3c")
RFC4493_MESSAGE = h(
    "6bc1bee2 2e409f96 e93d7e11 7393172a ae2d8a57 1e03ac9c 9eb76fac 45af8e51"
    "30c81c46 a35ce411 e5fbc119 1a0a52ef f69f2445 df4f9b17 ad2b417b e66c3710"
)


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, "bb1d6929 e9593728 7fa37d12 9b756746"),
        (16, "070a16b4 6b4d4144 f79bdd9d d04a287c"),
        (40, "dfa66747 de9ae630 30ca3261 1497c827"),
        (64, "51f0bebf 7e3b9d92 fc497417 79363cfe"),
    ],
)
def test_aes_cmac_matches_rfc4493(length: int, expected: str) -> None:
    assert aes_cmac(RFC4493_KEY, RFC4493_MESSAGE[:length]) == h(expected)


@pytest.mark.parametrize(
    ("private_a", "ax", "ay", "private_b", "bx", "by", "expected"),
    [
        (
            SET1_PRIVATE_A,
            SET1_PUBLIC_A_X,
            SET1_PUBLIC_A_Y,
            SET1_PRIVATE_B,
            SET1_PUBLIC_B_X,
            SET1_PUBLIC_B_Y,
            SET1_DHKEY,
        ),
        (
            SET2_PRIVATE_A,
            SET2_PUBLIC_A_X,
            SET2_PUBLIC_A_Y,
            SET2_PRIVATE_B,
            SET2_PUBLIC_B_X,
            SET2_PUBLIC_B_Y,
            SET2_DHKEY,
        ),
    ],
    ids=["data-set-1", "data-set-2"],
)
def test_p256_sample_data(
    private_a: bytes,
    ax: bytes,
    ay: bytes,
    private_b: bytes,
    bx: bytes,
    by: bytes,
    expected: bytes,
) -> None:
    key_a = p256_private_key_from_bytes(private_a)
    key_b = p256_private_key_from_bytes(private_b)
    assert p256_public_key_bytes(key_a) == ax + ay
    assert p256_public_key_bytes(key_b) == bx + by
    assert public_key_x(key_a) == ax
    assert public_key_x(key_b.public_key()) == bx
    assert dh_key(key_a, p256_public_key_from_bytes(bx + by)) == expected
    assert dh_key(key_b, p256_public_key_from_bytes(ax + ay)) == expected


def test_f4_sample_data() -> None:
    assert f4(U, V, N1, 0) == F4_EXPECTED


def test_f5_sample_data() -> None:
    keys = f5(F5_W, N1, N2, A1, A2)
    assert keys.mac_key == F5_MAC_KEY
    assert keys.ltk == F5_LTK


def test_f5_chains_from_the_p256_sample_dhkey() -> None:
    """D.3's W is the DHKey of data set 1: the whole chain holds together."""
    w = dh_key(
        p256_private_key_from_bytes(SET1_PRIVATE_A),
        p256_public_key_from_bytes(SET1_PUBLIC_B_X + SET1_PUBLIC_B_Y),
    )
    assert f5(w, N1, N2, A1, A2) == LescKeys(F5_MAC_KEY, F5_LTK)


def test_f6_sample_data() -> None:
    assert f6(F5_MAC_KEY, N1, N2, F6_R, F6_IO_CAP, A1, A2) == F6_EXPECTED


def test_g2_sample_data() -> None:
    assert g2(U, V, N1, N2) == G2_EXPECTED
    assert numeric_comparison_value(U, V, N1, N2) == G2_EXPECTED % 10**6 == 938554


def test_helpers_named_for_their_use_are_the_toolbox_functions() -> None:
    assert commitment(U, V, N1) == F4_EXPECTED
    assert commitment(U, V, N1, z=0x81) == f4(U, V, N1, 0x81) != F4_EXPECTED


def test_lesc_keys_never_print_secrets() -> None:
    keys = f5(F5_W, N1, N2, A1, A2)
    for text in (repr(keys), str(keys)):
        assert F5_MAC_KEY.hex() not in text
        assert F5_LTK.hex() not in text
        assert "mac_key" not in text


def test_format_keeps_leading_zeros() -> None:
    assert format_numeric_comparison_value(42) == "000042"
    assert format_numeric_comparison_value(938554) == "938554"
    for bad in (-1, 10**6):
        with pytest.raises(ValueError, match=r"0\.\.999999"):
            format_numeric_comparison_value(bad)


def test_confirm_values_equal() -> None:
    assert confirm_values_equal(F4_EXPECTED, bytes(F4_EXPECTED))
    for i in range(len(F4_EXPECTED)):
        changed = bytearray(F4_EXPECTED)
        changed[i] ^= 0x01
        assert not confirm_values_equal(F4_EXPECTED, bytes(changed))
    assert not confirm_values_equal(F4_EXPECTED, F4_EXPECTED[:15])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: f4(U[:31], V, N1, 0), "U"),
        (lambda: f4(U, V + b"\x00", N1, 0), "V"),
        (lambda: f4(U, V, N1[:15], 0), "X"),
        (lambda: f5(F5_W[:16], N1, N2, A1, A2), "W"),
        (lambda: f5(F5_W, N1, N2, A1[:6], A2), "A1"),
        (lambda: f5(F5_W, N1, N2, A1, A2 + b"\x00"), "A2"),
        (lambda: f6(F5_MAC_KEY, N1, N2, F6_R, F6_IO_CAP[:2], A1, A2), "IOcap"),
        (lambda: f6(F5_W, N1, N2, F6_R, F6_IO_CAP, A1, A2), "W"),
        (lambda: g2(U, V, N1, N2[:8]), "Y"),
        (lambda: aes_cmac(bytes(32), b""), "AES-CMAC key"),
        (lambda: p256_private_key_from_bytes(bytes(31)), "private key"),
    ],
)
def test_wrong_lengths_are_refused(call: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be"):
        call()


@pytest.mark.parametrize("z", [-1, 256])
def test_f4_z_is_one_octet(z: int) -> None:
    with pytest.raises(ValueError, match="one octet"):
        f4(U, V, N1, z)


def test_public_key_off_the_curve_is_malformed() -> None:
    off_curve = SET1_PUBLIC_B_X + SET1_PUBLIC_B_Y[:-1] + bytes([SET1_PUBLIC_B_Y[-1] ^ 1])
    with pytest.raises(MalformedData, match="not a point on P-256"):
        p256_public_key_from_bytes(off_curve)
    with pytest.raises(MalformedData, match="64 bytes, got 63"):
        p256_public_key_from_bytes(off_curve[:63])
    with pytest.raises(MalformedData):
        p256_public_key_from_bytes(bytes(64))


# --- the compare-mode exchange, end to end ----------------------------------------------


def test_compare_mode_exchange_agrees_and_a_man_in_the_middle_does_not() -> None:
    host = p256_private_key_from_bytes(SET1_PRIVATE_A)  # initiator (a)
    device = p256_private_key_from_bytes(SET1_PRIVATE_B)  # responder (b)
    pka, pkb = p256_public_key_bytes(host), p256_public_key_bytes(device)
    na, nb = N1, N2

    # The device commits to Nb before it sees Na.
    cb = commitment(public_key_x(device), public_key_x(host), nb)
    # Na, then Nb are revealed; the host opens the commitment.
    verify_commitment(cb, pk_x_peer=pkb[:32], pk_x_self=pka[:32], peer_nonce=nb)
    host_value = numeric_comparison_value(pka[:32], pkb[:32], na, nb)
    device_value = numeric_comparison_value(public_key_x(host), public_key_x(device), na, nb)
    assert host_value == device_value == numeric_comparison_value(U, SET1_PUBLIC_B_X, N1, N2)
    assert dh_key(host, p256_public_key_from_bytes(pkb)) == SET1_DHKEY

    # A relay substituting its own key (data set 2's A) towards the host shows another number.
    mitm = p256_private_key_from_bytes(SET2_PRIVATE_A)
    host_sees = numeric_comparison_value(pka[:32], public_key_x(mitm), na, nb)
    device_sees = numeric_comparison_value(public_key_x(mitm), pkb[:32], na, nb)
    assert host_sees != device_value
    assert device_sees != host_value


def test_a_commitment_opens_only_with_its_nonce_and_keys() -> None:
    cb = commitment(SET1_PUBLIC_B_X, SET1_PUBLIC_A_X, N2)
    verify_commitment(cb, SET1_PUBLIC_B_X, SET1_PUBLIC_A_X, N2)
    with pytest.raises(CommitmentMismatch) as excinfo:
        verify_commitment(cb, SET1_PUBLIC_B_X, SET1_PUBLIC_A_X, N1)  # another nonce
    assert isinstance(excinfo.value, ProtocolError)
    assert N1.hex() not in str(excinfo.value) and N2.hex() not in str(excinfo.value)
    with pytest.raises(CommitmentMismatch):
        verify_commitment(cb, SET2_PUBLIC_A_X, SET1_PUBLIC_A_X, N2)  # another peer key
    with pytest.raises(CommitmentMismatch):
        verify_commitment(cb, SET1_PUBLIC_A_X, SET1_PUBLIC_B_X, N2)  # keys swapped
    with pytest.raises(CommitmentMismatch):
        verify_commitment(cb[:-1], SET1_PUBLIC_B_X, SET1_PUBLIC_A_X, N2)  # truncated


def test_fresh_keys_agree() -> None:
    a, b = generate_p256_private_key(), generate_p256_private_key()
    assert isinstance(a.curve, ec.SECP256R1)
    assert len(public_key_x(a)) == 32
    shared = dh_key(a, p256_public_key_from_bytes(p256_public_key_bytes(b)))
    assert shared == dh_key(b, p256_public_key_from_bytes(p256_public_key_bytes(a)))
    assert len(shared) == 32


# --- cross-check against bumble (little-endian API: reverse at the boundary) -------------

b16 = st.binary(min_size=16, max_size=16)
b32 = st.binary(min_size=32, max_size=32)
b7 = st.binary(min_size=7, max_size=7)


@settings(max_examples=50, deadline=None)
@given(u=b32, v=b32, x=b16, y=b16, z=st.integers(0, 255))
def test_f4_g2_agree_with_bumble(u: bytes, v: bytes, x: bytes, y: bytes, z: int) -> None:
    assert f4(u, v, x, z) == bumble_crypto.f4(u[::-1], v[::-1], x[::-1], bytes([z]))[::-1]
    assert g2(u, v, x, y) == bumble_crypto.g2(u[::-1], v[::-1], x[::-1], y[::-1])


@settings(max_examples=50, deadline=None)
@given(w=b32, n1=b16, n2=b16, r=b16, io_cap=st.binary(min_size=3, max_size=3), a1=b7, a2=b7)
def test_f5_f6_agree_with_bumble(
    w: bytes, n1: bytes, n2: bytes, r: bytes, io_cap: bytes, a1: bytes, a2: bytes
) -> None:
    keys = f5(w, n1, n2, a1, a2)
    mac_key_le, ltk_le = bumble_crypto.f5(w[::-1], n1[::-1], n2[::-1], a1[::-1], a2[::-1])
    assert (keys.mac_key, keys.ltk) == (mac_key_le[::-1], ltk_le[::-1])
    ours = f6(keys.mac_key, n1, n2, r, io_cap, a1, a2)
    theirs = bumble_crypto.f6(
        mac_key_le, n1[::-1], n2[::-1], r[::-1], io_cap[::-1], a1[::-1], a2[::-1]
    )
    assert ours == theirs[::-1]


def test_dhkey_agrees_with_bumble() -> None:
    ours = generate_p256_private_key()
    theirs = bumble_crypto.EccKey.generate()
    our_public = p256_public_key_bytes(ours)
    assert dh_key(ours, p256_public_key_from_bytes(theirs.x + theirs.y)) == theirs.dh(
        our_public[:32], our_public[32:]
    )
