"""benchmarks/bench_hq.py at a toy size: every method finds the planted duplicates on the same corpus and is
scored one way, the shared verification is dedup's, and memory is measured over the whole process tree."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_hq as B  # noqa: E402
import corpus as C  # noqa: E402

from m3e_data.stages.hq.dedup import candidates, near_duplicates  # noqa: E402
from m3e_data.stages.hq.minhash import MinHashParams, band_keys, signatures  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, C.Corpus]:
    folder = tmp_path_factory.mktemp("bench_hq")
    return folder, B.prepare(800, folder, seed=5)


def test_verify_is_near_duplicates_rule(data: tuple[Path, C.Corpus]) -> None:
    _, corpus = data
    q, p = corpus.queries, corpus.positives
    n = len(q)
    params = MinHashParams(num_perm=B.NUM_PERM)
    bands = band_keys(np.minimum(signatures(q, params), signatures(p, params)), B.BANDS, B.ROWS)
    rows = np.arange(n)
    band_iter = [(rows, bands[:, i]) for i in range(B.BANDS)]
    _, verified = near_duplicates(n, iter(band_iter), lambda g: ([q[i] for i in g], [p[i] for i in g]), rows,
                                  B.THRESHOLD, np.zeros(n, bool), B.SIDE_THRESHOLD)
    edges = candidates(iter(band_iter))
    a, b = edges["a"].to_numpy(), edges["b"].to_numpy()
    ok = B.verify(q, p, a, b)
    assert ok.sum() == verified.height > 0
    assert set(zip(a[ok].tolist(), b[ok].tolist(), strict=True)) == set(zip(verified["a"].to_list(), verified["b"].to_list(), strict=True))


@pytest.mark.parametrize("method", ["m3e-data", "datasketch", "rensa"])
def test_verified_methods_find_the_truth(data: tuple[Path, C.Corpus], method: str) -> None:
    if method != "m3e-data":
        pytest.importorskip(method)
    folder, corpus = data
    predicted = B.RUNNERS[method](corpus.queries, corpus.positives, folder)
    got = C.score(corpus, predicted)
    assert got["recall"] >= 0.97 and got["precision"] == 1.0, got


def test_datatrove_runs_its_pipeline_and_is_scored(data: tuple[Path, C.Corpus]) -> None:
    pytest.importorskip("datatrove")
    folder, corpus = data
    predicted = B.run_datatrove(corpus.queries, corpus.positives, folder)
    got = C.score(corpus, predicted)
    # It finds the planted copies but verifies nothing: siblings over one passage merge too.
    assert got["recall"] >= 0.95
    assert got["removed"] > got["truth_removed"] and got["precision"] < 0.9


def test_child_reports_one_result(data: tuple[Path, C.Corpus]) -> None:
    folder, corpus = data
    fig = B._run_child(["--child", "m3e-data", "--data", str(folder)])
    assert fig["method"] == "m3e-data" and fig["recall"] >= 0.97 and fig["truth_removed"] == len(corpus.cluster) - len(np.unique(corpus.cluster))
    # A toy corpus finishes within a sample or two of the memory sampler: above-start may read 0.
    assert fig["cpu_s"] > 0 and fig["peak_pss_mb"] > 0 and fig["peak_pss_mb"] >= fig["above_start_mb"] >= 0
    assert "error" in B._run_child(["--child", "m3e-data", "--data", str(folder / "missing")])


def test_tree_memory_counts_children() -> None:
    hold = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    with B.TreeMemory(interval=0.02) as mem:
        subprocess.run([sys.executable, "-c", hold], check=True)
    assert (mem.peak - mem.base) / 2**20 > 250


def test_summary_table_marks_failures() -> None:
    run = {"wall_s": 2.0, "cpu_s": 1.5, "peak_pss_mb": 300.0, "above_start_mb": 100.0, "recall": 0.99,
           "precision": 1.0, "removed": 10, "truth_removed": 10, "siblings_merged": 0.0}
    lines = B.summary({"m3e-data": [run, {**run, "wall_s": 4.0}, {**run, "wall_s": 3.0}],
                       "datatrove": [{"error": "Traceback\nImportError: no spacy"}]})
    assert "| m3e-data | 2.0 / 3.0 | 1.5 / 1.5 | 300 (100) | 0.9900 |" in lines[2]
    assert "not measured: ImportError: no spacy" in lines[3]


def test_whole_stage_child_scores_hq_rejects(data: tuple[Path, C.Corpus]) -> None:
    folder, corpus = data
    fig = B._run_child(["--child-stage", "--data", str(folder), "--workers", "1"])
    assert fig["method"] == "hq stage", fig
    # The stage also drops rows for quality: only the dedup rejects count, and they are the planted copies.
    assert fig["recall"] >= 0.95 and fig["precision"] == 1.0 and fig["truth_removed"] == len(corpus.cluster) - len(np.unique(corpus.cluster)) > 0
    assert fig["cpu_s"] > 0 and fig["peak_pss_mb"] > 0
