"""The normalize stage: raw rows -> unified rows, through a recipe, with every drop counted by reason.

Pure functions over iterables and Arrow batches; files and resumption are the driver's (build.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from m3e_data.catalog import Source
from m3e_data.readers import BadRow, ReadItem, noted
from m3e_data.recipe import Context, Pair, Recipe, Skip
from m3e_data.schema import UNIFIED_SCHEMA, make_id


@dataclass
class Counts:
    """Raw rows read, unified rows written, and drops by reason (raw rows that gave no pair, plus
    candidate pairs that failed validation). `notes`: what the readers worked around without dropping a
    row (readers.DECODED_GB18030, TRUNCATED_GZIP, EMPTY_FILE), recorded only when there are any."""

    read: int = 0
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.read += other.read
        self.written += other.written
        self.dropped.update(other.dropped)
        self.notes.update(other.notes)

    def as_dict(self) -> dict[str, Any]:
        d = {"read": self.read, "written": self.written, "dropped": dict(sorted(self.dropped.items()))}
        if self.notes:
            d["notes"] = dict(sorted(self.notes.items()))
        return d


def _validated(pair: Pair) -> Pair | str:
    """The pair with texts stripped and empty or repeated negatives removed, or why it is invalid."""
    if not isinstance(pair, Pair):
        return "bad_value:not_a_pair"
    query, positive = pair.query, pair.positive
    if not isinstance(query, str) or not isinstance(positive, str):
        return "bad_value:text_not_string"
    query, positive = query.strip(), positive.strip()
    if not query or not positive:
        return "empty_text"
    negatives: list[str] = []
    for neg in pair.negatives or ():
        if isinstance(neg, str) and (neg := neg.strip()) and neg not in negatives:
            negatives.append(neg)
    pair.query, pair.positive, pair.negatives = query, positive, negatives
    return pair


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


def normalize(
    items: Iterable[ReadItem], recipe: Recipe, ctx: Context, counts: Counts, batch_rows: int = 20_000
) -> Iterator[list[tuple[str, Pair]]]:
    """Batches of (key, pair) for the valid pairs the recipe makes of `items`; `counts` is updated in
    place. This loop runs once per raw row of 22M: it keeps to locals and batches its output."""
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
                valid = _validated(pair)
                if isinstance(valid, str):
                    dropped[valid] += 1
                    continue
                key = valid.key if valid.key is not None else (f"{index}-{j}" if several else str(index))
                batch.append((key, valid))
                written += 1
            if len(batch) >= batch_rows:
                yield batch
                batch = []
        if batch:
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
