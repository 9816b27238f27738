"""The stage's compact per-row decisions: codes and reasons, the ids of kept rows, and the id order the keep
rule sees without holding every id of the corpus."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from m3e_data.schema import make_id
from m3e_data.stages.hq.decisions import Decisions, KeptIds
from m3e_data.stages.hq.dedup import clusters, components, survivors
from m3e_data.stages.hq.stage import _name_order


def test_decisions_keep_reasons_stages_and_kept_rows_per_row():
    d = Decisions.new(6)
    d.drop(np.array([0]), "eval_split")
    d.drop(np.array([2, 3]), "quality:too_short")
    d.drop(np.array([5]), "near_duplicate", np.array([40]))
    assert d.reason.tolist() == ["eval_split", None, "quality:too_short", "quality:too_short", None, "near_duplicate"]
    assert d.stage.tolist() == ["eval_split", None, "quality", "quality", None, "dedup"]
    assert d.kept.tolist() == [False, True, False, False, True, False]
    assert d.kept_gidx.tolist() == [-1, -1, -1, -1, -1, 40]
    assert d.stage_codes("quality") == [2] and d.stage_codes("dedup") == [3]
    assert d.code.dtype == np.uint8 and d.code.nbytes == 6


def test_kept_ids_look_up_only_collected_rows():
    ids = KeptIds(np.array([3, 9, 12]), pl.Series("id", ["a/train/3", "b/train/9", "b/train/12"]))
    assert ids.of(np.array([12, 3, 12])).tolist() == ["b/train/12", "a/train/3", "b/train/12"]
    assert ids.subset(np.array([12, 12])).gidx.tolist() == [12]
    with pytest.raises(KeyError):
        ids.of(np.array([4]))
    with pytest.raises(KeyError):
        ids.of(np.array([13]))


def test_source_place_then_rank_in_source_sorts_ids_as_the_strings_do():
    """Names with characters below "/" ("-", ".") sort differently from their ids unless "/" is part of the
    name's key: the order the keep rule's ties fall to must be the ids' own."""
    rng = random.Random(3)
    names = ["a", "a-b", "a.b", "a_b", "ab", "b", "a0", "zh-x", "zh"]
    ids = [make_id(name, rng.choice(["train", "validation"]), str(rng.randrange(10**6))) for name in names for _ in range(30)]
    place = dict(zip(names, _name_order(names), strict=True))
    frame = pl.DataFrame({"id": ids, "source": [i.split("/")[0] for i in ids]})
    frame = frame.with_columns(pl.col("id").rank("ordinal").over("source").cast(pl.Int64).alias("in_source"))
    key = [place[s] * (1 << 32) + r for s, r in zip(frame["source"], frame["in_source"], strict=True)]
    assert np.argsort(key, kind="stable").tolist() == np.argsort(np.array(ids), kind="stable").tolist()


def test_clusters_over_the_edges_rows_equal_components_over_every_row():
    rng = np.random.default_rng(0)
    n = 5_000
    a = rng.integers(0, n, 800)
    b = rng.integers(0, n, 800)
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a != b
    a, b = a[keep], b[keep]
    rank = rng.permutation(n)
    assert np.array_equal(clusters(n, a, b, rank), survivors(components(n, a, b), rank))
    assert np.array_equal(clusters(n, a[:0], b[:0], rank), np.arange(n))
