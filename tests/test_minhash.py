"""The numpy MinHash gives exactly datasketch's signatures; banding and exact Jaccard behave."""

from __future__ import annotations

import random
import re

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


def _sketch_texts(n: int, seed: int, surrogate: bool = True) -> tuple[list[str], list[str]]:
    """Rows whose queries and positives share 3-grams, with every edge case of length and code point (a lone
    surrogate only where no Arrow table must hold it)."""
    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(0x4E00, 0x4E00 + 60)] + list("ab ,。") + ["😀"] + (["\ud800"] if surrogate else [])
    queries = ["".join(rng.choices(alphabet, k=rng.choice([0, 1, 2, 3, 5, 20, 40]))) for _ in range(n)]
    positives = [q[: len(q) // 2] + "".join(rng.choices(alphabet, k=rng.choice([0, 1, 2, 4, 80, 400]))) for q in queries]
    return queries + TEXTS[:5], positives + TEXTS[-5:]


@pytest.mark.skipif(not __import__("m3e_data.stages.hq.sketch", fromlist=["numba"]).numba, reason="numba not installed")
@pytest.mark.parametrize("perms", [120, 128, 7])
def test_compiled_sketch_equals_numpy_and_datasketch(perms):
    """The numba kernel and the numpy path give the same shingle counts, distinct and shared 3-grams and
    signatures; the signatures are datasketch's (first `perms` permutations) and the distinct/shared counts
    those of Python sets."""
    from m3e_data.stages.hq.minhash import codepoints
    from m3e_data.stages.hq.sketch import sketch

    queries, positives = _sketch_texts(300, seed=perms)
    n = len(queries)
    cp, cp_starts = codepoints(queries + positives)
    params = MinHashParams()
    fast = sketch(cp, cp_starts, n, params, perms, compiled=True)
    slow = sketch(cp, cp_starts, n, params, perms, compiled=False)
    for f, s in zip(fast, slow, strict=True):
        assert f.shape == s.shape and np.array_equal(f, s)
    counts, distinct, shared, sig = fast
    assert np.array_equal(sig, signatures(queries + positives)[:, :perms])
    for i in range(n):
        q, p = set(shingles(queries[i])), set(shingles(positives[i]))
        assert (counts[i], counts[n + i]) == (len(shingles(queries[i])), len(shingles(positives[i])))
        assert (distinct[i], distinct[n + i], shared[i]) == (len(q), len(p), len(q & p))


@pytest.mark.skipif(not __import__("m3e_data.stages.hq.sketch", fromlist=["numba"]).numba, reason="numba not installed")
def test_statistics_and_survivors_are_the_same_without_numba(monkeypatch):
    """compute_stats (every column, band keys included) is identical with the kernel and with numpy alone,
    so the survivors, decided from those columns, are too."""
    import pyarrow as pa

    from m3e_data.stages.hq import sketch
    from m3e_data.stages.hq.quality import StatsParams, compute_stats

    queries, positives = _sketch_texts(400, seed=5, surrogate=False)
    n = len(queries)
    table = pa.table({"id": [str(i) for i in range(n)], "query": queries, "positive": positives,
                      "homogeneous": [i % 3 == 0 for i in range(n)],
                      "negatives": pa.array([[positives[i][:10]] if i % 4 == 0 else [] for i in range(n)],
                                            pa.list_(pa.string()))})
    params = StatsParams(text_bands=True)
    monkeypatch.setattr(sketch, "USE_NUMBA", True)
    fast = compute_stats(table, params)
    monkeypatch.setattr(sketch, "USE_NUMBA", False)
    slow = compute_stats(table, params)
    assert fast.schema == slow.schema
    for name in fast.column_names:
        assert fast.column(name).equals(slow.column(name)), name


def test_the_stage_imports_and_sketches_without_numba():
    """numba is optional (m3e-data[fast]): with it unimportable, the hq stage imports and the sketch runs on
    numpy, giving the kernel's figures (checked above) - here, the sets' figures."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numba'] = None\n"
        "from m3e_data.stages.hq import sketch, stage\n"
        "from m3e_data.stages.hq.minhash import MinHashParams, codepoints\n"
        "assert sketch.numba is None and not sketch.USE_NUMBA\n"
        "cp, st = codepoints(['北京天气', '北京天气好'])\n"
        "counts, distinct, shared, sig = sketch.sketch(cp, st, 1, MinHashParams(), 120)\n"
        "print(counts.tolist(), distinct.tolist(), shared.tolist(), sig.shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[2, 3] [2, 3] [2] (2, 120)"


@pytest.mark.skipif(not __import__("m3e_data.stages.hq.sketch", fromlist=["numba"]).numba, reason="numba not installed")
def test_compiled_character_profile_equals_numpy_and_python():
    """Class counts and the longest repeated-character run, kernel against numpy against a plain loop, on
    runs that cross a text boundary, empty texts, emoji, spaces, and real excerpts where ../shared has them."""
    from pathlib import Path

    from m3e_data.stages.hq.charprofile import CLASSES, char_profile
    from m3e_data.stages.hq.minhash import codepoints
    from m3e_data.stages.hq.quality import char_classes

    queries, positives = _sketch_texts(300, seed=11, surrogate=False)
    texts = queries + positives + ["哈哈哈哈", "哈哈", "", "a  b\u3000\u3000c", "😀😀😀x", "！！？？"]
    real = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
    for path in sorted(real.rglob("*.json*"))[:6] if real.is_dir() else []:
        texts += [line[:2000] for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[:50]]
    cp, cp_starts = codepoints(texts)
    table = char_classes()
    fast = char_profile(cp, cp_starts, table, compiled=True)
    slow = char_profile(cp, cp_starts, table, compiled=False)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
    for t, text in enumerate(texts):
        classes = [int(table[ord(c)]) for c in text]
        assert fast[0][t].tolist() == [sum(1 for c in classes if c & bit) for bit in CLASSES]
        runs = [len(m.group(0)) for m in re.finditer(r"(.)\1*", text, re.S)]
        assert fast[1][t] == max(runs, default=0)
