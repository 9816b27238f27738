"""Quality statistics of unified rows (computed once, as columns) and the rules applied to them.

Two halves, after data-juicer: `compute_stats` turns a batch of rows into one row of numbers per pair
(lengths, Han/kana/letter counts, special characters by Unicode category, character runs, repeated 3-grams,
query-positive Jaccard, language, boilerplate, normalised keys, MinHash band keys) — the expensive part,
cached on disk by the driver; `apply_rules` turns those columns and a set of thresholds into a drop reason
per row with polars expressions — cheap, so that tuning a threshold re-runs in seconds.

The rules fit short pairs, not web pages (see docs/design.md): no word or sentence counts, no stop words.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from m3e_data.catalog import load_task_hq
from m3e_data.stages.hq import langid, normkey
from m3e_data.stages.hq import sketch as kernels
from m3e_data.stages.hq.charprofile import CLASSES, HAN, KANA, LETTER, SPACE, SPECIAL, char_profile
from m3e_data.stages.hq.minhash import MinHashParams, band_keys, codepoints, hash_keys
from m3e_data.stages.hq.sketch import sketch

# Bump when a statistic's definition changes: cached statistics of an older version are recomputed.
# 2: Latin-script text with accents or curly quotes is "en", not "other"; boilerplate spares people ("AI从业者").
STATS_VERSION = 2

# Phrases GPT-generated answers carry (belle, firefly, alpaca_gpt4, hc3): the answer is about the model.
# RE2 syntax (pyarrow): no look-ahead, so "AI" must be followed by a model word, or by a non-Han character
# (or 我, or the end) — "作为一个AI从业者" and "我是一个AI工程师" are people; \b keeps "was an aim" out.
_AI_SELF = r"(?:AI|ai|人工智能)(?:语言模型|大语言模型|模型|助手|助理|聊天机器人|机器人)?"
BOILERPLATE = (
    rf"作为(?:一个|一名|一款)?{_AI_SELF}(?:[^\x{{4e00}}-\x{{9fff}}]|我|$)",
    r"作为(?:一个|一名|一款)?(?:大?语言模型|聊天机器人|虚拟助手)",
    rf"我是一个?{_AI_SELF}(?:[^\x{{4e00}}-\x{{9fff}}]|$)",
    r"(?i)\bas an ai\b(?: language model)?",
    r"(?i)\bi am an ai\b(?: language model)?",
    r"我(?:没有|无法)(?:访问|获取)(?:互联网|实时|网络)",
    r"(?:OpenAI|ChatGPT)(?:训练|开发)的",
)

# Normalisation shared by exact dedup and decontamination: NFKC, lower case, no whitespace, punctuation
# or symbols, so that "你好！" and "你好" and "ＨＥＬＬＯ" and "hello" meet.
_DROP_CHARS = r"[\s\p{P}\p{S}]+"
_SEP = "\x1f"

# Character classes, one bit each, looked up per code point.
_HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))
_KANA_RANGES = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))
_TABLE_SIZE = 0x30000  # planes 0-2 by category; above that only Han extensions matter


@cache
def char_classes() -> np.ndarray:
    """uint8 class bits for every code point of planes 0-2, from unicodedata categories (not a char list:
    data-juicer's special-character list counts 一, 上 and 士 as special)."""
    table = np.zeros(0x110000, dtype=np.uint8)
    for cp in range(_TABLE_SIZE):
        cat = unicodedata.category(chr(cp))
        if cat[0] == "L":
            table[cp] |= LETTER
        elif cat[0] in "PS":
            table[cp] |= SPECIAL
        elif cat[0] == "Z" or chr(cp).isspace():
            table[cp] |= SPACE
    for lo, hi in _HAN_RANGES:
        table[lo : hi + 1] |= HAN | LETTER
    for lo, hi in _KANA_RANGES:
        table[lo : hi + 1] |= KANA
    return table


def normalize(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFKC, lower case, whitespace/punctuation/symbols removed (exact-match key text)."""
    out = pc.utf8_normalize(texts, "NFKC")
    out = pc.utf8_lower(out)
    return pc.replace_substring_regex(out, _DROP_CHARS, "")


def normal_forms(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(text_keys, length in code points) of each text's normal form (`normalize`): what near dedup's
    question rule compares. Per code point with the compiled kernels where that is the same (normkey)."""
    array = pa.array(list(texts), pa.string())
    if kernels.USE_NUMBA:
        cp, cp_starts = codepoints(texts)
        return normkey.forms_from_codepoints(array, cp, cp_starts, _DROP_CHARS, normalize)
    forms = normalize(array)
    keys = np.fromiter((xxhash.xxh3_64_intdigest(t.encode("utf-8", "surrogatepass")) for t in forms.to_pylist()),
                       dtype=np.uint64, count=len(forms))
    return keys, pc.utf8_length(forms).to_numpy(zero_copy_only=False).astype(np.int64)


def text_keys(texts: pa.Array | pa.ChunkedArray, cp: np.ndarray | None = None, cp_starts: np.ndarray | None = None
              ) -> np.ndarray:
    """Stable 64-bit keys of normalised texts (xxh3, so cached keys survive library upgrades). `cp`,
    `cp_starts`: the texts' code points where the caller has them (minhash.codepoints).

    With the compiled kernels, per code point where that is the same (normkey); else normalize + hash."""
    if kernels.USE_NUMBA:  # read at call time: a test turns the kernels off
        if cp is None or cp_starts is None:
            cp, cp_starts = codepoints(texts.to_pylist())
        return normkey.keys_from_codepoints(texts, cp, cp_starts, _DROP_CHARS, normalize)
    return np.fromiter(
        (xxhash.xxh3_64_intdigest(t.encode("utf-8", "surrogatepass")) for t in normalize(texts).to_pylist()),
        dtype=np.uint64,
        count=len(texts),
    )


def pair_keys(q_keys: np.ndarray, p_keys: np.ndarray, homogeneous: np.ndarray) -> np.ndarray:
    """Exact-dedup key of (query, positive); for homogeneous (s2s) rows the order does not count."""
    lo = np.where(homogeneous, np.minimum(q_keys, p_keys), q_keys)
    hi = np.where(homogeneous, np.maximum(q_keys, p_keys), p_keys)
    mixed = lo * np.uint64(0x9E3779B97F4A7C15) ^ hi
    return hash_keys(mixed).astype(np.uint64) << np.uint64(32) | hash_keys(mixed ^ np.uint64(0x5BD1E995))


@dataclass(frozen=True)
class StatsParams:
    """What a cached statistics file depends on besides its input rows."""

    minhash: MinHashParams = MinHashParams()
    bands: int = 20
    rows: int = 6
    text_bands: bool = False  # band keys of the query and positive alone too (decontamination needs them)

    def record(self) -> dict[str, Any]:
        return {"version": STATS_VERSION, "minhash": self.minhash.record(), "bands": self.bands, "rows": self.rows,
                "text_bands": self.text_bands}


def band_columns(prefix: str, bands: int) -> list[str]:
    return [f"{prefix}_b{i:02d}" for i in range(bands)]


def _languages(texts: list[str], han: np.ndarray, kana: np.ndarray, letters: np.ndarray) -> np.ndarray:
    """langid.classify per text; the conclusive Chinese case (most rows) is decided here in bulk."""
    out = np.full(len(texts), langid.ZH, dtype=object)
    chinese = (kana == 0) & (han > 0) & (han >= langid.CONCLUSIVE_HAN_RATIO * letters)
    for i in np.flatnonzero(~chinese):
        out[i] = langid.classify(texts[i], int(han[i]), int(kana[i]), int(letters[i]))
    return out


def compute_stats(table: pa.Table, params: StatsParams = StatsParams()) -> pa.Table:
    """One row of statistics per input row (same order), keyed by id. Pure: depends only on its inputs."""
    n = table.num_rows
    queries = table.column("query").to_pylist()
    positives = table.column("positive").to_pylist()
    texts = queries + positives  # text i is query i, text n + i is positive i
    cp, cp_starts = codepoints(texts)
    m = 2 * n

    counts, max_run = char_profile(cp, cp_starts, char_classes())
    han, kana, letters, special, space = (counts[:, k] for k in range(len(CLASSES)))
    length = np.diff(cp_starts).astype(np.int32) - space

    # Repetition, query/positive overlap and the MinHash minimums, from one pass over each text's 3-grams
    # (only the permutations the bands read).
    n_shingles, n_unique, inter, sig = sketch(cp, cp_starts, n, params.minhash, params.bands * params.rows)
    rep3 = np.where(n_shingles > 0, 1.0 - n_unique / np.maximum(n_shingles, 1), 0.0).astype(np.float32)
    union = n_unique[:n] + n_unique[n:] - inter
    qp_jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0).astype(np.float32)

    pair_sig = np.minimum(sig[:n], sig[n:])  # MinHash of the union of the query's and positive's 3-grams
    bands = {"pair": band_keys(pair_sig, params.bands, params.rows)}
    if params.text_bands:
        bands.update(q=band_keys(sig[:n], params.bands, params.rows), p=band_keys(sig[n:], params.bands, params.rows))

    q_keys = text_keys(table.column("query"), cp[: cp_starts[n]], cp_starts[: n + 1])
    p_keys = text_keys(table.column("positive"), cp[cp_starts[n] :], cp_starts[n:] - cp_starts[n])
    homogeneous = table.column("homogeneous").to_numpy(zero_copy_only=False).astype(bool)
    negatives = table.column("negatives").combine_chunks()
    n_neg = pc.list_value_length(negatives).to_numpy(zero_copy_only=False).astype(np.int32)
    neg_flat = pc.list_flatten(negatives)
    neg_equal = np.zeros(n, dtype=np.int32)
    if len(neg_flat):
        parent = pc.list_parent_indices(negatives).to_numpy()
        nk = text_keys(neg_flat)
        bad = (nk == q_keys[parent]) | (nk == p_keys[parent])
        neg_equal = np.bincount(parent[bad], minlength=n).astype(np.int32)
    pattern = "|".join(f"(?:{p})" for p in BOILERPLATE)
    boiler = pc.or_(
        pc.match_substring_regex(table.column("query"), pattern),
        pc.match_substring_regex(table.column("positive"), pattern),
    )
    langs = _languages(texts, han, kana, letters)

    columns: dict[str, Any] = {"id": table.column("id")}
    for side, sl in (("q", slice(0, n)), ("p", slice(n, m))):
        columns.update(
            {
                f"{side}_len": length[sl],
                f"{side}_han": han[sl],
                f"{side}_letters": letters[sl],
                f"{side}_special": special[sl],
                f"{side}_max_run": max_run[sl],
                f"{side}_shingles": n_shingles[sl].astype(np.int32),
                f"{side}_rep3": rep3[sl],
                f"{side}_lang": pa.array(langs[sl].tolist(), pa.string()),
            }
        )
    columns.update(
        {
            "qp_jaccard": qp_jaccard,
            "boilerplate": boiler,
            "n_neg": n_neg,
            "neg_equal": neg_equal,
            "q_key": q_keys,
            "p_key": p_keys,
            "pair_key": pair_keys(q_keys, p_keys, homogeneous),
        }
    )
    for prefix, values in bands.items():
        for i, name in enumerate(band_columns(prefix, params.bands)):
            columns[name] = values[:, i]
    return pa.table(columns)


# ---------------------------------------------------------------------------------------------------------
# Thresholds and rules

# Defaults for every source. A value of None turns its rule off.
DEFAULTS: dict[str, Any] = {
    "min_query_chars": 2,
    "min_positive_chars": 4,
    "max_query_chars": 1024,
    "max_positive_chars": 8192,
    "drop_query_equals_positive": True,
    "max_query_positive_jaccard": 0.9,  # "query too similar to positive"; off for near-identical sources
    "drop_negative_equals_pair": True,
    "min_query_han": 1,  # the query must hold Chinese; mixed Chinese/English passes
    "min_positive_han": 1,
    "min_query_cjk_ratio": None,  # Han share of letters; off: mixed text is allowed
    "min_positive_cjk_ratio": None,
    "max_char_run": 10,  # 哈哈哈哈 (4) passes, a wall of one character does not
    "max_repeated_3gram_share": 0.5,
    "min_shingles_for_repetition": 10,  # the 3-gram share means nothing on a few characters
    "max_special_ratio": 0.5,  # P* and S* categories over non-space characters (emoji are S*)
    "drop_boilerplate": True,
    "reject_languages": ["ja", "other"],
    "check_positive_text": True,  # off for sources whose positive is code (SQL)
}

# The length rules (floors and ceilings) by the reason they give and the threshold they read: the report
# shows, per source, each one's value and the rows it dropped.
LENGTH_RULES = {
    "query_too_short": "min_query_chars",
    "positive_too_short": "min_positive_chars",
    "query_too_long": "max_query_chars",
    "positive_too_long": "max_positive_chars",
}


def task_defaults(task: str) -> dict[str, Any]:
    """The catalog's thresholds for a task (manifests/_tasks.yaml): over DEFAULTS, under --config `defaults:`,
    a source's catalog `hq:` block and --config `sources:`, in that order (hq.HqConfig.thresholds)."""
    return dict(load_task_hq().get(task, {}))


class ThresholdError(ValueError):
    """A threshold name that no rule knows, or a value of the wrong kind."""


def resolve(*layers: Mapping[str, Any] | None, where: str = "thresholds") -> dict[str, Any]:
    """DEFAULTS overlaid with each layer in turn (later wins); unknown names are an error."""
    out = dict(DEFAULTS)
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in DEFAULTS:
                raise ThresholdError(f"{where}: unknown threshold {key!r}; known: {', '.join(sorted(DEFAULTS))}")
            default = DEFAULTS[key]
            if value is not None and default is not None and not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
            ):
                raise ThresholdError(f"{where}: threshold {key!r} must be {type(default).__name__}, got {value!r}")
            out[key] = value
    return out


def rules(t: Mapping[str, Any]) -> list[tuple[str, pl.Expr]]:
    """(reason, expression true where the row is dropped), in the order reasons are assigned."""
    col = pl.col
    out: list[tuple[str, pl.Expr]] = [
        ("empty_query", col("q_len") == 0),
        ("empty_positive", col("p_len") == 0),
    ]

    def add(reason: str, key: str, expr: Any) -> None:
        if t[key] is not None and t[key] is not False:
            out.append((reason, expr(t[key])))

    add("query_equals_positive", "drop_query_equals_positive", lambda _: col("q_key") == col("p_key"))
    # A safety net: normalize removes such negatives one by one with these same keys, so on rows it built
    # this never fires; it still guards rows written into OUT/m3e by anything else.
    add("negative_equals_pair", "drop_negative_equals_pair", lambda _: col("neg_equal") > 0)
    add("query_too_short", "min_query_chars", lambda v: col("q_len") < v)
    add("positive_too_short", "min_positive_chars", lambda v: col("p_len") < v)
    add("query_too_long", "max_query_chars", lambda v: col("q_len") > v)
    add("positive_too_long", "max_positive_chars", lambda v: col("p_len") > v)
    add("query_too_similar", "max_query_positive_jaccard", lambda v: col("qp_jaccard") >= v)
    add("boilerplate", "drop_boilerplate", lambda _: col("boilerplate"))
    sides = ["q", "p"] if t["check_positive_text"] else ["q"]
    for side in sides:
        name = "query" if side == "q" else "positive"
        add(f"{name}_no_chinese", f"min_{name}_han", lambda v, s=side: col(f"{s}_han") < v)
        add(
            f"{name}_low_cjk_ratio",
            f"min_{name}_cjk_ratio",
            lambda v, s=side: col(f"{s}_han") < v * col(f"{s}_letters"),
        )
        add(
            f"{name}_repeated_chars", "max_char_run", lambda v, s=side: col(f"{s}_max_run") > v
        )
        if t["max_repeated_3gram_share"] is not None:
            minimum = t["min_shingles_for_repetition"] or 0
            out.append(
                (
                    f"{name}_repeated_3grams",
                    (col(f"{side}_shingles") >= minimum) & (col(f"{side}_rep3") > t["max_repeated_3gram_share"]),
                )
            )
        add(
            f"{name}_special_chars",
            "max_special_ratio",
            lambda v, s=side: col(f"{s}_special") > v * col(f"{s}_len"),
        )
        if t["reject_languages"]:
            out.append((f"{name}_language", col(f"{side}_lang").is_in(list(t["reject_languages"]))))
    return out


def reason_expr(t: Mapping[str, Any]) -> pl.Expr:
    """The first rule that fires, as a string column (null where the row passes)."""
    expr: Any = None
    for reason, cond in rules(t):
        expr = pl.when(cond).then(pl.lit(reason)) if expr is None else expr.when(cond).then(pl.lit(reason))
    return (expr.otherwise(pl.lit(None, pl.String)) if expr is not None else pl.lit(None, pl.String)).alias(
        "reason"
    )


def apply_rules(stats: pl.DataFrame | pl.LazyFrame, t: Mapping[str, Any]) -> pl.DataFrame:
    """id and reason (null = kept) for every row of `stats`."""
    return stats.lazy().select("id", reason_expr(t)).collect()
