"""A small deterministic mutator in pure Python, for where atheris is not installed.

``make test`` runs a few hundred of its inputs per harness (tests/fuzz), on every Python
bleprov supports: libFuzzer-style byte mutations (flip, set, insert, erase, copy, splice,
truncate) plus the CBOR dictionary's tokens, stacked one to four at a time. It is blind
(no coverage); the long campaign runs atheris (``make fuzz``).
"""

from __future__ import annotations

import ast
import hashlib
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

#: Bytes that make integer and length fields interesting.
_INTERESTING = (0x00, 0x01, 0x17, 0x18, 0x1F, 0x20, 0x7F, 0x80, 0xC0, 0xD8, 0xF6, 0xFF)


def load_dictionary(path: Path) -> list[bytes]:
    """The tokens of a libFuzzer dictionary (``name="\\x00..."`` lines, # comments)."""
    tokens: list[bytes] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        value = line.split("=", 1)[1].strip()
        literal = ast.literal_eval("b" + value)
        if isinstance(literal, bytes) and literal:
            tokens.append(literal)
    return tokens


def seed_of(name: str) -> int:
    """A stable seed per harness name (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


class Mutator:
    def __init__(self, seed: int, dictionary: Sequence[bytes], max_len: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (test inputs, not secrets)
        self.dictionary = list(dictionary)
        self.max_len = max_len

    def _pick(self, n: int) -> int:
        return self.rng.randrange(n) if n > 0 else 0

    def mutate_once(self, data: bytes, corpus: Sequence[bytes]) -> bytes:
        buf = bytearray(data)
        op = self._pick(10)
        if not buf and op < 7:
            op = 7 if self.dictionary else 8
        if op == 0:  # flip a bit
            i = self._pick(len(buf))
            buf[i] ^= 1 << self._pick(8)
        elif op == 1:  # an interesting byte
            buf[self._pick(len(buf))] = _INTERESTING[self._pick(len(_INTERESTING))]
        elif op == 2:  # a random byte
            buf[self._pick(len(buf))] = self._pick(256)
        elif op == 3:  # erase a range
            i = self._pick(len(buf))
            del buf[i : i + 1 + self._pick(8)]
        elif op == 4:  # copy a range elsewhere
            i, j = self._pick(len(buf)), self._pick(len(buf) + 1)
            buf[j:j] = buf[i : i + 1 + self._pick(16)]
        elif op == 5:  # add or subtract a little to a byte (a length, a count)
            i = self._pick(len(buf))
            buf[i] = (buf[i] + self.rng.choice((-2, -1, 1, 2, 8))) & 0xFF
        elif op == 6:  # truncate
            del buf[self._pick(len(buf) + 1) :]
        elif op in (7, 8) and self.dictionary:  # insert or overwrite with a token
            token = self.dictionary[self._pick(len(self.dictionary))]
            i = self._pick(len(buf) + 1)
            if op == 7:
                buf[i:i] = token
            else:
                buf[i : i + len(token)] = token
        elif op == 9 and corpus:  # splice with another seed
            other = corpus[self._pick(len(corpus))]
            i, j = self._pick(len(buf) + 1), self._pick(len(other) + 1)
            buf = buf[:i] + other[j:]
        else:  # insert random bytes
            i = self._pick(len(buf) + 1)
            buf[i:i] = self.rng.randbytes(1 + self._pick(4))
        return bytes(buf[: self.max_len])

    def inputs(self, corpus: Sequence[bytes], count: int) -> Iterator[bytes]:
        """``count`` inputs, each one to four mutations of a seed (or of nothing)."""
        seeds = list(corpus) or [b""]
        for _ in range(count):
            data = seeds[self._pick(len(seeds))]
            for _ in range(1 + self._pick(4)):
                data = self.mutate_once(data, seeds)
            yield data


__all__ = ["Mutator", "load_dictionary", "seed_of"]
