"""Decontamination: drop training rows whose query or positive is an evaluation sentence.

A row is contaminated when its query or its positive matches a sentence of an evaluation file the user
names (`--decontaminate PATH`), either exactly after normalisation (quality.normalize) or with an exact
3-gram Jaccard >= 0.8 among MinHash LSH candidates (same signatures and banding as near-dedup).

Evaluation files (`read_eval_texts`), by extension:
- .jsonl / .json (one JSON object per line, or a .json file holding one JSON array of objects): every
  string value under the fields in JSON_FIELDS (text, query, question, sentence, sentence1, sentence2,
  passage, positive, title), and each string of a list there (e.g. C-MTEB reranking's "positive": [...]);
- .tsv: the last column of each line (T2Ranking's queries.dev.tsv is `qid\\ttext`, collection.tsv
  `pid\\tpassage`); a first line that is a header (every column a name in TSV_HEADER_NAMES, as in the
  Hub release of T2Ranking: `qid\\ttext`) is skipped;
- anything else: plain text, one sentence per line.
Blank lines and texts that normalise to nothing are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from m3e_data.stages.hq.dedup import edge_jaccard, pair_sets
from m3e_data.stages.hq.distinct import distinct
from m3e_data.stages.hq.minhash import band_keys, signatures
from m3e_data.stages.hq.quality import StatsParams, band_columns, normalize, text_keys

JSON_FIELDS = ("text", "query", "question", "sentence", "sentence1", "sentence2", "passage", "positive", "title")
THRESHOLD = 0.8
# Column names a TSV header line is made of (T2Ranking on the Hub: `qid\ttext`, `pid\ttext`).
TSV_HEADER_NAMES = frozenset(
    {*JSON_FIELDS, "id", "_id", "qid", "pid", "docid", "doc_id", "query_id", "corpus_id", "content", "label", "score"}
)


class EvalFileError(ValueError):
    """An evaluation file that cannot be read."""


def read_eval_texts(path: Path) -> list[str]:
    """The sentences of one evaluation file (see the module docstring for the formats)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"{path}: cannot read evaluation file: {exc}") from exc
    texts: list[str] = []
    suffix = path.suffix.lower()
    if suffix == ".json":
        array = _json_array(lines)
        if array is not None:
            for number, obj in enumerate(array, 1):
                texts += _json_texts(obj, f"{path}: item {number}")
            return [t.strip() for t in texts if t.strip()]
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if suffix in (".jsonl", ".json"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalFileError(f"{path}:{number}: not a JSON object: {exc}") from exc
            texts += _json_texts(obj, f"{path}:{number}")
        elif suffix == ".tsv":
            columns = line.split("\t")
            if not texts and _is_header(columns):
                continue
            texts.append(columns[-1])
        else:
            texts.append(line)
    return [t.strip() for t in texts if t.strip()]


def _is_header(columns: list[str]) -> bool:
    """A TSV line made only of column names (checked on the first line with text only)."""
    return len(columns) > 1 and all(c.strip().lower() in TSV_HEADER_NAMES for c in columns)


def _json_array(lines: list[str]) -> list | None:
    """The whole file as one JSON array, when it is one (else None: JSON lines)."""
    text = "\n".join(lines).lstrip()
    if not text.startswith("["):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, list) else None


def _json_texts(obj: object, where: str) -> list[str]:
    if not isinstance(obj, dict):
        raise EvalFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    texts: list[str] = []
    for field in JSON_FIELDS:
        value = obj.get(field)
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts.extend(v for v in value if isinstance(v, str))
    return texts


@dataclass
class EvalIndex:
    """Every evaluation sentence, its file, normalised key, LSH band keys and 3-gram set."""

    files: list[str]
    file_of: np.ndarray  # file number of each sentence
    texts: list[str]
    keys: np.ndarray
    bands: np.ndarray  # (sentences x bands)

    @classmethod
    def build(cls, paths: Sequence[Path], params: StatsParams) -> EvalIndex:
        files, file_of, texts = [], [], []
        for number, path in enumerate(paths):
            found = read_eval_texts(Path(path))
            files.append(str(path))
            texts.extend(found)
            file_of.extend([number] * len(found))
        arr = pa.array(texts, pa.string())
        keep = [i for i, t in enumerate(normalize(arr).to_pylist()) if t]
        texts = [texts[i] for i in keep]
        file_of_arr = np.asarray(file_of, dtype=np.int64)[keep] if keep else np.zeros(0, dtype=np.int64)
        sig = signatures(texts, params.minhash)
        return cls(
            files=files,
            file_of=file_of_arr,
            texts=texts,
            keys=text_keys(pa.array(texts, pa.string())),
            bands=band_keys(sig, params.bands, params.rows),
        )


def contaminated(
    stats: pl.DataFrame,
    index: EvalIndex,
    texts: Callable[[np.ndarray], tuple[Sequence[str], Sequence[str]]],
    params: StatsParams,
    threshold: float = THRESHOLD,
) -> pl.DataFrame:
    """gidx and the evaluation file matched, for every contaminated row of `stats`.

    `stats` holds gidx, q_key, p_key and the q_/p_ band columns; `texts(gidx)` gives rows' (queries, positives).
    """
    schema = {"gidx": pl.Int64, "file": pl.String}
    if not index.texts or stats.height == 0:
        return pl.DataFrame(schema=schema)
    eval_keys = pl.DataFrame({"key": index.keys, "file_no": index.file_of}).unique("key", keep="first")
    found: list[pl.DataFrame] = []
    for side in ("q", "p"):
        exact = stats.select("gidx", pl.col(f"{side}_key").alias("key")).join(eval_keys, on="key")
        found.append(exact.select("gidx", "file_no"))

    # Near matches: band collisions between a row's query or positive and an evaluation sentence.
    cands: list[pl.DataFrame] = []
    for side in ("q", "p"):
        for i, name in enumerate(band_columns(side, params.bands)):
            ev = pl.DataFrame({"key": index.bands[:, i], "eidx": np.arange(len(index.texts))})
            hit = stats.select("gidx", pl.col(name).alias("key")).join(ev, on="key")
            cands.append(hit.select("gidx", "eidx", pl.lit(side).alias("side")))
    cand = pl.concat(cands).unique()
    if cand.height:
        rows = distinct(cand["gidx"].to_numpy())
        queries, positives = texts(rows)
        local = {int(g): i for i, g in enumerate(rows)}
        side_text = [
            (queries if s == "q" else positives)[local[int(g)]]
            for g, s in zip(cand["gidx"].to_list(), cand["side"].to_list(), strict=True)
        ]
        eidx = cand["eidx"].to_numpy()
        # One CSR over the candidate texts followed by the evaluation sentences they met.
        m = len(side_text)
        keys, ptr = pair_sets(side_text + [index.texts[e] for e in eidx], [""] * (2 * m))
        j = edge_jaccard(keys, ptr, np.arange(m), np.arange(m, 2 * m))
        near = cand.with_columns(pl.Series("jaccard", j)).filter(pl.col("jaccard") >= threshold)
        file_no = index.file_of[near["eidx"].to_numpy()]
        found.append(near.select("gidx").with_columns(pl.Series("file_no", file_no, dtype=pl.Int64)))
    hits = pl.concat([f.with_columns(pl.col("file_no").cast(pl.Int64)) for f in found])
    hits = hits.sort("gidx", "file_no").unique("gidx", keep="first")
    names = dict(enumerate(index.files))
    return hits.select(
        pl.col("gidx").cast(pl.Int64), pl.col("file_no").replace_strict(names, return_dtype=pl.String).alias("file")
    ).sort("gidx")


def merge_counts(found: Iterable[pl.DataFrame]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for df in found:
        for file, n in df.group_by("file").len().iter_rows():
            counts[file] = counts.get(file, 0) + n
    return counts
