"""`m3e-data mine --executor ray` on a local Ray cluster: the same rows as the local executor.

The tiny random BERT of tests/test_encoder.py encodes both runs; each run has its own embedding cache (a
shared one would let the second run read the first's vectors and prove nothing), except where the test is
that the cache is shared. Batches of 4 texts and query chunks of 3 make several encoder batches and search
chunks out of a few rows.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from click.testing import CliRunner  # noqa: E402

import m3e_data.executors.mine_ray as mine_ray  # noqa: E402
from m3e_data.cli.main import main  # noqa: E402
from m3e_data.executors.mine_ray import RayEncoder  # noqa: E402
from m3e_data.stages.mine.encoder import Encoder  # noqa: E402
from m3e_data.stages.mine.mining import MiningParams, search_topk  # noqa: E402
from m3e_data.stages.mine.stage import MineOptions, mine  # noqa: E402
from tests.test_encoder import count_forwards, make_tiny_bert  # noqa: E402
from tests.test_mine_driver import PAIRS, write_source  # noqa: E402
from tests.test_mine_tiny_bert import ROWS  # noqa: E402

SOURCES = {**PAIRS, "sym": (True, ROWS)}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    texts = [t for _, rows in SOURCES.values() for r in rows for t in (r[0], r[1], *r[2])]
    return make_tiny_bert(tmp_path_factory.mktemp("tiny"), texts, seed=3)


@pytest.fixture(scope="module")
def hq(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("build")
    for name, (homogeneous, rows) in SOURCES.items():
        write_source(root / "m3e-hq", name, homogeneous, rows)
    return root / "m3e-hq"


def options(hq: Path, out: Path, model: Path, cache: Path | None, sources: list[str] | None = None) -> MineOptions:
    # Both filters on: the rows they drop and the kept ids they name must match too.
    return MineOptions(input=hq, out=out, model=str(model), device="cpu", batch_size=4, chunk_size=3,
                       cache_dir=cache, sources=sources, params=MiningParams(num_negatives=3), consistency_topk=3,
                       semantic_dedup=0.99)


@pytest.fixture(scope="module")
def local(hq, tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "mined"
    results = mine(options(hq, out, tiny, out.parent / "cache"))
    assert [r.status for r in results] == ["mined"] * len(SOURCES)
    return out


@pytest.fixture(scope="module")
def local_sym(hq, tiny, tmp_path_factory) -> Path:
    """The symmetric source alone (--semantic-dedup compares it with no earlier source)."""
    out = tmp_path_factory.mktemp("local-sym") / "mined"
    assert [r.status for r in mine(options(hq, out, tiny, out.parent / "cache", ["sym"]))] == ["mined"]
    return out


@pytest.fixture(scope="module")
def on_ray(cluster, hq, tiny, tmp_path_factory) -> tuple[Path, Path, RayEncoder, list]:
    """Every source mined on Ray with a cache of its own: (out, cache, the encoder, the results)."""
    out = tmp_path_factory.mktemp("ray") / "mined"
    encoder = RayEncoder(options(hq, out, tiny, out.parent / "cache"))
    results = mine(options(hq, out, tiny, out.parent / "cache"), encoder=encoder)
    return out, out.parent / "cache", encoder, results


def rows(out: Path, name: str) -> list[dict]:
    return pq.read_table(out / name).sort_by("id").to_pylist()


def assert_same_rows(a: Path, b: Path, sources: tuple[str, ...] = tuple(SOURCES)) -> None:
    for name in sources:
        left, right = rows(a, name), rows(b, name)
        assert [r["id"] for r in left] == [r["id"] for r in right]
        for x, y in zip(left, right, strict=True):
            assert x["negatives"] == y["negatives"], x["id"]
            assert x["positive_score"] == pytest.approx(y["positive_score"], abs=1e-5)
            assert x["negative_scores"] == pytest.approx(y["negative_scores"], abs=1e-5)
            rest = {k: v for k, v in x.items() if k not in ("positive_score", "negative_scores")}
            assert rest == {k: v for k, v in y.items() if k not in ("positive_score", "negative_scores")}
        # --out outside a build keeps its rejects inside it (stage.rejects_dir).
        rejects = [sorted(pq.read_table(p / ".rejects" / "mine" / name).select(["id", "reason", "kept_id"])
                          .to_pylist(), key=lambda r: r["id"]) if (p / ".rejects" / "mine" / name).exists() else []
                   for p in (a, b)]
        assert rejects[0] == rejects[1]


def test_ray_writes_the_rows_local_writes(on_ray, local):
    out, _, encoder, results = on_ray
    assert [r.status for r in results] == ["mined"] * len(SOURCES)
    assert encoder.stats["encoded"] > 0 and encoder.stats["batches"] > len(SOURCES)  # the actors encoded
    assert encoder.stats["chunks"] > len(SOURCES)  # several query chunks per source
    assert sum(sum(r.stats["dropped"].values()) for r in results) > 0  # the filters had rows to drop
    assert_same_rows(local, out)


def test_a_corpus_split_in_shards_gives_the_unsharded_top_k(cluster, hq, tiny, tmp_path):
    # Distinct texts: equal vectors tie, and a tie's order is torch.topk's choice, not part of the answer.
    texts = list(dict.fromkeys(t for _, rows in SOURCES.values() for r in rows for t in (r[0], r[1])))
    vectors = Encoder(str(tiny), device="cpu").encode(texts)
    queries, corpus = vectors[:20], vectors[20:]
    ks = np.full(len(queries), 9)
    encoder = RayEncoder(options(hq, tmp_path, tiny, None), max_corpus_bytes=math.ceil(corpus.nbytes / 3))
    sharded = list(encoder.search(queries, corpus, ks, chunk_size=7))
    assert encoder.stats["shards"] == 3
    whole = list(search_topk(queries, corpus, ks, chunk_size=7))
    assert [s for s, _, _ in sharded] == [s for s, _, _ in whole] == [0, 7, 14]
    for (_, scores, indices), (_, want_scores, want_indices) in zip(sharded, whole, strict=True):
        assert scores.shape == want_scores.shape and scores.shape[1] == 9
        np.testing.assert_array_equal(indices, want_indices)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)


def test_a_search_actor_holding_its_shard_in_fp16_answers_as_the_fp32_one():
    # As on a GPU, forced on the CPU: fp16 on the device, fp32 rows on the host for the rescoring.
    import torch

    from tests.test_mining import near_ties

    queries, corpus = near_ties(np.random.default_rng(3), queries=9, per_query=30, gap=3e-5)
    shard = corpus[100:]
    shard.setflags(write=False)  # as Ray hands it over: a read-only view of the object store
    ks = np.full(len(queries), 20)
    half = mine_ray.SearchActor(shard, 100, "cpu", half=True)
    assert half.shard.device_rows.dtype == torch.float16 and half.shard.host_rows.dtype == np.float32
    scores, indices = half.search(queries, ks)
    want_scores, want_indices = mine_ray.SearchActor(shard, 100, "cpu").search(queries, ks)
    assert indices.min() >= 100
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_the_embedding_cache_is_shared_with_the_local_executor(cluster, hq, tiny, local, on_ray, tmp_path,
                                                               monkeypatch):
    # Ray over the local run's cache: every vector is a hit, no actor encodes.
    encoder = RayEncoder(options(hq, tmp_path / "a", tiny, local.parent / "cache"))
    mine(options(hq, tmp_path / "a", tiny, local.parent / "cache"), encoder=encoder)
    assert encoder.stats["encoded"] == 0 and encoder.stats["cache_hits"] > 0
    assert_same_rows(local, tmp_path / "a")

    # And back: a local run over the Ray run's cache runs no forward pass.
    calls = []
    real = Encoder.__init__

    def counted_init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls.append(count_forwards(self))

    monkeypatch.setattr(Encoder, "__init__", counted_init)
    mine(options(hq, tmp_path / "b", tiny, on_ray[1]))
    assert calls == [[0]]
    assert_same_rows(local, tmp_path / "b")


def test_a_worker_killed_mid_encoding_is_retried_and_the_output_is_identical(cluster, hq, tiny, local_sym,
                                                                            tmp_path, monkeypatch):
    # The sharded search runs here too: the symmetric source's corpus (its positives and queries) in 3 shards.
    marker = tmp_path / "killed"
    monkeypatch.setattr(mine_ray, "KILL_ONCE_MARKER", marker)
    out = tmp_path / "mined"
    encoder = RayEncoder(options(hq, out, tiny, tmp_path / "cache", ["sym"]), max_corpus_bytes=10 * 32 * 4)
    results = mine(options(hq, out, tiny, tmp_path / "cache", ["sym"]), encoder=encoder)
    assert marker.exists()  # an actor did die mid-stage
    assert encoder.stats["shards"] == 3
    assert [r.status for r in results] == ["mined"]
    assert_same_rows(local_sym, out, ("sym",))


def test_the_cli_runs_on_ray_and_says_which_extra_is_missing(cluster, hq, tiny, local_sym, tmp_path, monkeypatch):
    args = ["mine", "--in", str(hq), "--out", str(tmp_path / "mined"), "--model", str(tiny), "--device", "cpu",
            "--batch-size", "4", "--chunk-size", "3", "--num-negatives", "3", "--consistency-topk", "3",
            "--semantic-dedup", "0.99", "--cache-dir", str(local_sym.parent / "cache"), "--only", "sym",
            "--executor", "ray"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert_same_rows(local_sym, tmp_path / "mined", ("sym",))

    result = CliRunner().invoke(main, [*args[:-2], "--ray-address", "auto"])
    assert result.exit_code == 2 and "--executor ray only" in result.output

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "pip install 'm3e-data[ray]'" in result.output


def test_shards_are_sized_in_the_bytes_the_device_holds():
    """A GPU actor holds its shard in fp16: a bound in device bytes fits twice the rows it would in fp32."""
    from m3e_data.executors.mine_ray import shard_count

    rows, dim = 1_000_000, 768
    fp32 = rows * dim * 4
    assert shard_count(rows, dim, fp32, half=False) == 1
    assert shard_count(rows, dim, fp32 - 1, half=False) == 2
    assert shard_count(rows, dim, fp32 // 2, half=True) == 1
    assert shard_count(rows, dim, fp32 // 4, half=True) == 2
    assert shard_count(0, dim, 1, half=True) == 1
