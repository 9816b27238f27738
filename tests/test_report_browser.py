"""The report in a real browser: headless Chromium (Debian's `chromium`; .ci/run installs it) loads
OUT/report.html, logs no console message, draws every chart and shows the example rows; the screenshot
stays in the test's temp dir as an artefact. Skipped only where Chromium is absent outside CI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from m3e_data.cli.main import main
from tests.test_demo import EVAL_FILE, record_mining

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="no chromium (apt-get install chromium); required in CI"
)
CHARTS = ["stages", "reasons", "query-lengths", "positive-lengths", "overlap",
          "positive-scores", "negative-scores", "margin-scores"]


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM, "CI needs chromium: .ci/run installs it"
    # --no-sandbox: CI containers run as root; --enable-logging=stderr --v=0 prints console messages.
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--enable-logging=stderr", "--v=0", f"--user-data-dir={cwd / 'profile'}"]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_report_renders_in_headless_chromium(tmp_path):
    out = tmp_path / "out"
    built = CliRunner().invoke(main, ["build", "--recipe", "alpaca_gpt4,chatmed_consult,csl", "--sources", "demo",
                                      "--out", str(out), "--decontaminate", str(EVAL_FILE)])
    assert built.exit_code == 0, built.output
    record_mining(out)
    # A rejected row holding markup: it must show as text, never become an element.
    part = next((out / "rejects" / "quality" / "alpaca_gpt4").glob("part-*.parquet"))
    table = pq.read_table(part)
    rows = table.to_pylist()
    rows[0]["query"] = "<script>console.error('injected')</script>注入"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), part)
    report = CliRunner().invoke(main, ["report", str(out)])
    assert report.exit_code == 0, report.output
    url = (out / "report.html").as_uri()

    dom = chromium("--dump-dom", url, cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    page = dom.stdout
    for chart in CHARTS:
        svg = re.search(rf'<svg class="chart" data-chart="{chart}"[^>]*>(.*?)</svg>', page, re.S)
        assert svg and "<rect" in svg.group(1), f"chart {chart} missing or empty"
    assert page.count('class="examples"') >= 20  # a table per drop reason
    assert "quality:boilerplate" in page and "作为一个AI语言模型" in page
    assert "&lt;script&gt;console.error('injected')&lt;/script&gt;注入" in page
    assert 'class="legend heat-legend"' in page

    shot = tmp_path / "report.png"
    taken = chromium("--window-size=1280,6000", f"--screenshot={shot}", url, cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
