"""The numpy MinHash gives exactly datasketch's signatures; banding and exact Jaccard behave."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import MinHash

from m3e_data.stages.hq.minhash import (
    MinHashParams,
    band_keys,
    jaccard,
    permutations,
    shingle_batch,
    shingle_hash,
    shingles,
    signatures,
    unique_sets,
)

TEXTS = [
    "北京今天的天气怎么样",
    "北京今天的天氣怎麼樣",  # Traditional
    "iPhone 15 Pro Max 256GB 价格",  # mixed
    "今天好开心😀😀🎉",  # astral-plane emoji
    "def f(x):\n    return x * 2",  # code
    "a",
    "ab",
    "好",
    "",
    "abc",
    "哈" * 50,
]


def _reference(text: str, hashfunc=None, num_perm: int = 128, seed: int = 1, encode: bool = False) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed) if hashfunc is None else MinHash(num_perm=num_perm, seed=seed, hashfunc=hashfunc)
    for g in shingles(text):
        m.update(g.encode("utf-8") if encode else g)
    return m.hashvalues


def test_fast_path_equals_datasketch_with_the_shingle_hash():
    rng = random.Random(3)
    # Long texts and many texts cross the permutation blocks; the batch must not leak between texts.
    long_texts = ["".join(rng.choices([chr(c) for c in range(0x4E00, 0x4E00 + 500)], k=rng.randint(1, 4000)))
                  for _ in range(12)]
    texts = TEXTS + long_texts
    sig = signatures(texts)
    assert sig.dtype == np.uint32 and sig.shape == (len(texts), 128)
    for text, row in zip(texts, sig, strict=True):
        assert np.array_equal(row, _reference(text, shingle_hash)), text[:20]


def test_sha1_mode_equals_a_plain_datasketch_minhash():
    sig = signatures(TEXTS, MinHashParams(hash="sha1"))
    for text, row in zip(TEXTS, sig, strict=True):
        assert np.array_equal(row, _reference(text, encode=True)), text


def test_other_num_perm_and_seed_follow_datasketch():
    params = MinHashParams(num_perm=64, seed=7)
    a, b = permutations(64, 7)
    ref_a, ref_b = MinHash(num_perm=64, seed=7).permutations
    assert np.array_equal(a, ref_a) and np.array_equal(b, ref_b)
    for text, row in zip(TEXTS, signatures(TEXTS, params), strict=True):
        assert np.array_equal(row, _reference(text, shingle_hash, num_perm=64, seed=7))


def test_short_texts_are_one_shingle_and_differ():
    assert shingles("ab") == ["ab"] and shingles("") == [] and shingles("abcd") == ["abc", "bcd"]
    sig = signatures(["a", "b", "ab", "ba"])
    assert len({row.tobytes() for row in sig}) == 4
    sh = shingle_batch(["ab", "c", "", "xyz"])
    assert sh.counts.tolist() == [1, 1, 0, 1]


def test_unknown_hash_is_an_error():
    with pytest.raises(ValueError, match="unknown shingle hash"):
        signatures(["x"], MinHashParams(hash="md5"))


def test_band_keys_match_only_equal_bands():
    sig = signatures(["北京今天的天气怎么样啊", "北京今天的天气怎么样啊", "完全不同的一句话内容"])
    keys = band_keys(sig, 16, 8)
    assert keys.shape == (3, 16)
    assert np.array_equal(keys[0], keys[1])
    assert not np.any(keys[0] == keys[2])
    with pytest.raises(ValueError, match="permutations"):
        band_keys(sig, 20, 8)


def test_exact_jaccard_of_shingle_sets():
    a, b, empty = unique_sets(["abcde", "abcdx", ""])
    # {abc, bcd, cde} vs {abc, bcd, cdx}: 2 shared of 4
    assert jaccard(a, b) == pytest.approx(0.5)
    assert jaccard(a, a) == 1.0 and jaccard(empty, empty) == 1.0 and jaccard(a, empty) == 0.0
    # The MinHash estimate tracks it.
    sa, sb = signatures(["北京今天的天气怎么样，适合出门吗", "北京今天的天气怎么样，适合出去吗"])
    ua, ub = unique_sets(["北京今天的天气怎么样，适合出门吗", "北京今天的天气怎么样，适合出去吗"])
    assert abs(float(np.mean(sa == sb)) - jaccard(ua, ub)) < 0.15
