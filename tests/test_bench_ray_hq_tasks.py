"""benchmarks/bench_ray_hq_tasks.py's wrapper and summary: a wrapped task still returns its result and logs
one line, and the summary says which task raised a worker's high-water mark, and by how much."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_ray_hq_tasks as B  # noqa: E402


def test_logged_task_returns_its_result_and_logs_a_line(tmp_path):
    log = tmp_path / "tasks.jsonl"
    wrapped = B.logged("_verify", lambda a, b=1: [0] * (a + b), str(log))
    assert wrapped(2, b=3) == [0] * 5
    (line,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert line["task"] == "_verify" and line["rss0"] > 0 and line["max1"] >= line["max0"]


def test_summary_names_the_task_that_raised_the_peak():
    lines = [
        {"task": "_bucket_edges", "pid": 1, "rss0": 300, "rss1": 320, "max0": 400, "max1": 400, "s": 0.5},
        {"task": "_verify", "pid": 1, "rss0": 320, "rss1": 330, "max0": 400, "max1": 650, "s": 7.0},
        {"task": "_verify", "pid": 2, "rss0": 310, "rss1": 315, "max0": 500, "max1": 500, "s": 3.0},
    ]
    rows = {r.split()[0]: r.split()[1:] for r in B.summary(lines)[1:]}
    assert list(rows) == ["_bucket_edges", "_verify"]  # task order, kinds that ran only
    assert rows["_bucket_edges"] == ["1", "320", "0", "0", "0", "0.50"]
    assert rows["_verify"] == ["2", "330", "1", "650", "250", "7.00"]
