"""benchmarks/bench_half_search.py at a toy size on the CPU: both paths run on the same vectors and the
figures it prints say they agree (the benchmark would report a disagreement, not hide it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_half_search.py"


def test_half_search_benchmark_prints_agreeing_figures_for_each_case():
    out = subprocess.run([sys.executable, str(SCRIPT), "--corpus", "1500", "--queries", "120", "--k", "20",
                          "--common", "0", "1.0"], capture_output=True, text=True, timeout=300, check=True).stdout
    cases = [ast.literal_eval(line) for line in out.splitlines() if line.startswith("{")]
    assert [c["common"] for c in cases] == [0.0, 1.0]
    for c in cases:
        assert c["device"] == "cpu" and c["corpus"] == 1500 and c["queries"] == 120 and c["k"] == 20
        assert c["max_score_diff"] < 1e-5  # the rescored fp16 path gives fp32's scores
        assert float(c["same_indices_rows"].rstrip("%")) > 80.0
        assert c["rescored_per_query"] >= 20 + 16  # k + the margin at least
        assert c["corpus_device_mib"]["fp16"] <= c["corpus_device_mib"]["fp32"]
