"""The exact-dedup keys per code point (normkey) equal Arrow's NFKC + lower + regex + xxh3 on every plane."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from m3e_data.stages.hq import normkey, quality
from m3e_data.stages.hq import sketch as kernels
from m3e_data.stages.hq.minhash import codepoints

pytestmark = pytest.mark.skipif(normkey.numba is None, reason="numba not installed")

# Characters each normalisation step changes or that compose with a neighbour: full-width forms, ligatures,
# CJK compatibility ideographs, circled digits, squared units, combining marks (a base then a mark composes),
# Hangul jamo that compose into syllables, a Bengali vowel sign (NFKC_QC=Maybe with combining class 0),
# capitals outside ASCII (final sigma, dotted I), ß, the ideographic space, emoji, a supplementary Han.
TRICKY = list("ＨＥＬＬＯ，！ﬁ豈①㎏é\u0301\u0308\u0327ᄀ\u1161\u11a8가\u09be\u09c7ΣσİIßẞ\u3000 \t\n。、《》😀𠀀ÅA\u030a") + [
    "\u212b", "\u2126", "\u00b5", "\u1e9b\u0323", "\uff76\uff9e",
]


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    common = [chr(c) for c in range(0x4E00, 0x4E00 + 200)] + list("abcXYZ019 ,.?!，。？！：“”")
    out = []
    for _ in range(n):
        k = rng.choice([0, 1, 2, 5, 30, 200])
        pick = []
        for _ in range(k):
            r = rng.random()
            if r < 0.15:
                pick.append(rng.choice(TRICKY))
            elif r < 0.2:  # any assigned or unassigned code point of any plane, surrogates excepted
                c = rng.randrange(0x110000)
                pick.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "x")
            else:
                pick.append(rng.choice(common))
        out.append("".join(pick))
    return out


def _reference(texts: list[str]) -> np.ndarray:
    return np.array([xxhash.xxh3_64_intdigest(t.encode("utf-8")) for t in quality.normalize(pa.array(texts)).to_pylist()],
                    dtype=np.uint64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_code_point_keys_equal_the_arrow_normalisation(seed):
    texts = _texts(3000, seed) + TRICKY + ["".join(TRICKY), "", "。。", "ＡＢＣ", "Ǆ", "ǅ"]
    cp, starts = codepoints(texts)
    fast = normkey.keys_from_codepoints(pa.array(texts), cp, starts, quality._DROP_CHARS, quality.normalize)
    assert np.array_equal(fast, _reference(texts))
    # Both routes ran: most texts per code point, those with a non-plain character through Arrow.
    classes = normkey.code_point_classes(quality._DROP_CHARS)
    other = [any(ord(c) >= len(classes) or classes[ord(c)] == normkey.OTHER for c in t) for t in texts]
    assert 0 < sum(other) < len(texts)


def test_every_plain_code_point_alone_and_after_a_base_keeps_its_key():
    """Each plain character, alone and after a letter that combining marks compose with, gives Arrow's key."""
    classes = normkey.code_point_classes(quality._DROP_CHARS)
    plain = [chr(c) for c in np.flatnonzero(classes != normkey.OTHER).tolist()]
    assert len(plain) > 150_000
    texts = plain + ["A" + c for c in plain[::7]] + ["\u1100" + c for c in plain[::11]]
    cp, starts = codepoints(texts)
    fast = normkey.keys_from_codepoints(pa.array(texts), cp, starts, quality._DROP_CHARS, quality.normalize)
    assert np.array_equal(fast, _reference(texts))


def test_text_keys_is_the_same_with_and_without_the_kernels(monkeypatch):
    texts = pa.array(_texts(500, 7))
    monkeypatch.setattr(kernels, "USE_NUMBA", False)
    slow = quality.text_keys(texts)
    monkeypatch.setattr(kernels, "USE_NUMBA", True)
    assert np.array_equal(quality.text_keys(texts), slow)
    assert np.array_equal(quality.text_keys(pa.chunked_array([texts[:100], texts[100:]])), slow)
