"""The normalize stage: raw rows -> unified rows, through a recipe, with every drop counted by reason.

Every text of every source goes through the shared repairs of textclean (counted per repair), and every
negative that is empty or, after the exact-dedup normalisation of quality.text_keys, equal to its row's
query, positive or an earlier negative is removed on its own (counted per reason): a bad negative costs
the negative, not the row.

Pure functions over iterables and Arrow batches; files and resumption are the driver's (build.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import xxhash

from m3e_data.catalog import Source
from m3e_data.recipe import Context, Pair, Recipe, Skip
from m3e_data.schema import UNIFIED_SCHEMA, make_id
from m3e_data.stages.hq.quality import text_keys
from m3e_data.stages.normalize.readers import BadRow, ReadItem, noted
from m3e_data.stages.normalize.textclean import clean_text

# Bump when normalize's output for the same input changes, so that built sources are rebuilt (build key).
# 2: shared text repairs; negatives cleaned one by one.
NORMALIZE_VERSION = 2

# Why a negative was removed from its row (Counts.negatives_removed).
NEG_EMPTY, NEG_QUERY, NEG_POSITIVE, NEG_REPEATED = "empty", "equals_query", "equals_positive", "equals_negative"
NEG_NOT_TEXT = "not_text"
_EMPTY_KEY = xxhash.xxh3_64_intdigest(b"")  # text_keys of a text that normalises to nothing ("。", "——")


@dataclass
class Counts:
    """Raw rows read, unified rows written, and drops by reason (raw rows that gave no pair, plus
    candidate pairs that failed validation), negatives removed from kept rows by reason, and rows changed by
    each text repair. `notes`: what the readers worked around without dropping a row
    (readers.DECODED_GB18030, TRUNCATED_GZIP, EMPTY_FILE), recorded only when there are any."""

    read: int = 0
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    negatives_removed: Counter[str] = field(default_factory=Counter)
    repairs: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.read += other.read
        self.written += other.written
        self.dropped.update(other.dropped)
        self.negatives_removed.update(other.negatives_removed)
        self.repairs.update(other.repairs)
        self.notes.update(other.notes)

    def as_dict(self) -> dict[str, Any]:
        d = {
            "read": self.read,
            "written": self.written,
            "dropped": dict(sorted(self.dropped.items())),
            "negatives_removed": dict(sorted(self.negatives_removed.items())),
            "repairs": dict(sorted(self.repairs.items())),
        }
        if self.notes:
            d["notes"] = dict(sorted(self.notes.items()))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        """The inverse of as_dict; records written before negatives, repairs and notes were counted read as
        zero."""
        return cls(
            d["read"], d["written"], Counter(d["dropped"]), Counter(d.get("negatives_removed", {})),
            Counter(d.get("repairs", {})), Counter(d.get("notes", {})),
        )


def _validated(pair: Pair, counts: Counts) -> Pair | str:
    """The pair with texts repaired and stripped and empty negatives removed, or why it is invalid.
    Negatives equal to another text of the row are removed batch-wise, by `_dedup_negatives`."""
    if not isinstance(pair, Pair):
        return "bad_value:not_a_pair"
    query, positive = pair.query, pair.positive
    if not isinstance(query, str) or not isinstance(positive, str):
        return "bad_value:text_not_string"
    query, r1 = clean_text(query)
    positive, r2 = clean_text(positive)
    query, positive = query.strip(), positive.strip()
    if not query or not positive:
        return "empty_text"
    repaired = {*r1, *r2} if r1 or r2 else None
    negatives: list[str] = []
    for neg in pair.negatives or ():
        if isinstance(neg, str):
            neg, r = clean_text(neg)
            if r:
                repaired = {*(repaired or ()), *r}
            neg = neg.strip()
        if isinstance(neg, str) and neg:
            negatives.append(neg)
        else:
            counts.negatives_removed[NEG_EMPTY if isinstance(neg, str) or neg is None else NEG_NOT_TEXT] += 1
    if repaired:
        counts.repairs.update(repaired)
    pair.query, pair.positive, pair.negatives = query, positive, negatives
    return pair


def _dedup_negatives(batch: list[tuple[str, Pair]], removed: Counter[str]) -> None:
    """Remove, in place, each negative that normalises (as exact dedup does) to nothing, to its row's query
    or positive, or to an earlier negative of the row. One vectorised key pass over the rows that have
    negatives: most sources have none and pay nothing."""
    rows = [pair for _, pair in batch if pair.negatives]
    if not rows:
        return
    texts: list[str] = []
    for pair in rows:
        texts.append(pair.query)
        texts.append(pair.positive)
        texts.extend(pair.negatives)
    keys = text_keys(pa.array(texts, pa.string())).tolist()
    at = 0
    for pair in rows:
        q_key, p_key = keys[at], keys[at + 1]
        at += 2
        kept: list[str] = []
        seen: set[int] = set()
        for neg in pair.negatives:
            key = keys[at]
            at += 1
            reason = (
                NEG_EMPTY if key == _EMPTY_KEY else NEG_QUERY if key == q_key else NEG_POSITIVE if key == p_key
                else NEG_REPEATED if key in seen else None
            )
            if reason is None:
                seen.add(key)
                kept.append(neg)
            else:
                removed[reason] += 1
        pair.negatives = kept


def _with_groups(items: Iterable[ReadItem], group_by: Any) -> Iterator[tuple[ReadItem, list[dict] | None]]:
    """Buffer a split so that each row comes with the rows sharing its group key (in file order)."""
    rows = list(items)
    key_of = group_by if callable(group_by) else (lambda r: r.get(group_by))
    groups: dict[Any, list[dict]] = defaultdict(list)
    for row in rows:
        if not isinstance(row, BadRow):
            # A row without a usable key is reported by its own to_pairs call.
            with suppress(KeyError, TypeError, AttributeError):
                groups[key_of(row)].append(row)
    for row in rows:
        if isinstance(row, BadRow):
            yield row, None
            continue
        try:
            yield row, groups[key_of(row)]
        except (KeyError, TypeError, AttributeError):
            yield row, []


# (the recipe's key or None, the raw row's position in what is read, the pair's place in its row, whether the
# row gave several pairs) -> the key normalize yields with the pair
KeyOf = Callable[[str | None, int, int, bool], Any]


def normalize(
    items: Iterable[ReadItem], recipe: Recipe, ctx: Context, counts: Counts, batch_rows: int = 20_000,
    key_of: KeyOf | None = None,
) -> Iterator[list[tuple[Any, Pair]]]:
    """Batches of (key, pair) for the valid pairs the recipe makes of `items`; `counts` is updated in
    place. This loop runs once per raw row of 22M: it keeps to locals and batches its output.

    A pair's key is the source's own (Pair.key), else the raw row's position in `items` ("7", or "7-1"
    for a row's second pair when it gives several). `key_of` replaces that rule: a caller reading only
    part of a split, whose positions are not yet the split's, keeps them apart to offset later (units.py).
    """
    items = noted(items, counts.notes)
    grouped = _with_groups(items, recipe.group_by) if recipe.group_by else None
    to_pairs = recipe.to_pairs
    dropped = counts.dropped
    batch: list[tuple[str, Pair]] = []
    read = written = 0
    try:
        for index, item in enumerate(items if grouped is None else grouped):
            if grouped is not None:
                item, ctx.group = item
            read += 1
            if isinstance(item, BadRow):
                dropped[item.reason] += 1
                continue
            try:
                pairs = list(to_pairs(item, ctx))
            except Skip as skip:
                dropped[skip.reason] += 1
                continue
            except KeyError as exc:
                dropped[f"missing_field:{exc.args[0] if exc.args else '?'}"] += 1
                continue
            except (TypeError, AttributeError, ValueError, IndexError) as exc:
                dropped[f"bad_value:{type(exc).__name__}"] += 1
                continue
            if not pairs:
                dropped["no_pair"] += 1
                continue
            several = len(pairs) > 1
            for j, pair in enumerate(pairs):
                valid = _validated(pair, counts)
                if isinstance(valid, str):
                    dropped[valid] += 1
                    continue
                key = valid.key
                if key_of is not None:
                    key = key_of(key, index, j, several)
                elif key is None:
                    key = f"{index}-{j}" if several else str(index)
                batch.append((key, valid))
                written += 1
            if len(batch) >= batch_rows:
                _dedup_negatives(batch, counts.negatives_removed)
                yield batch
                batch = []
        if batch:
            _dedup_negatives(batch, counts.negatives_removed)
            yield batch
    finally:
        counts.read += read
        counts.written += written


def to_batch(keyed: list[tuple[str, Pair]], source: Source, split: str) -> pa.RecordBatch:
    """Unified Arrow batch of pairs from one split; catalog constants fill the per-source columns."""
    n = len(keyed)
    prefix = make_id(source.name, split, "")
    columns = {
        "id": pa.array([prefix + key for key, _ in keyed], pa.string()),
        "source": pa.repeat(source.name, n),
        "split": pa.repeat(split, n),
        "query": pa.array([p.query for _, p in keyed], pa.string()),
        "positive": pa.array([p.positive for _, p in keyed], pa.string()),
        "negatives": pa.array([p.negatives for _, p in keyed], pa.list_(pa.string())),
        "positive_score": pa.nulls(n, pa.float32()),
        "negative_scores": pa.nulls(n, pa.list_(pa.float32())),
        "task": pa.repeat(source.task, n),
        "homogeneous": pa.repeat(source.homogeneous, n),
        "domain": pa.repeat(source.domain, n),
        "license": pa.repeat(source.license.spdx, n),
        "commercial": pa.repeat(source.commercial, n),
    }
    return pa.RecordBatch.from_pydict(columns, schema=UNIFIED_SCHEMA)
