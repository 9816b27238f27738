"""Issue 12 item 3, re-run: commands given a folder holding a user's files, through the CLI.

For each case: how many of the user's files were lost (deleted or changed), the exit status, and what
the command wrote beside or above the folder it was given. `train` is left out (it needs a training run
before the fix); tests/test_train.py covers it.

    PYTHONPATH=. .venv/bin/python benchmarks/audit_ownership.py
    # the code before the fix: git archive 278f392 | tar -x -C /tmp/base; PYTHONPATH=/tmp/base ...
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

import m3e_data
from m3e_data.stages.normalize.locate import demo_root

CLI = "from m3e_data.cli.main import main; main()"


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True)


def write(files: dict[Path, str]) -> dict[Path, bytes]:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return {p: p.read_bytes() for p in files}


def lost(before: dict[Path, bytes]) -> int:
    return sum(1 for p, b in before.items() if not p.is_file() or p.read_bytes() != b)


def beside(parent: Path, given: Path, *also: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p != given and p.name not in also)


def main() -> None:
    root = Path(tempfile.mkdtemp())
    src, out = root / "src", root / "OUT"
    for name in ("hc3_chinese", "cmrc2018"):
        shutil.copytree(demo_root() / name, src / name)
    done = run("build", "--recipe", "hc3_chinese,cmrc2018", "--sources", src, "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    hq = out / "m3e-hq"
    results: dict[str, tuple[int, int, list[str]]] = {}

    d = root / "exp" / "D"
    before = write({d / "my-corpus.jsonl": '{"q": 1}\n', d / "old" / "my-precious.parquet": "PAR1"})
    rc = run("export", hq, "--format", "uniem", "--out", d).returncode
    results["export --out D (2 user files)"] = (lost(before), rc, beside(d.parent, d))

    d = root / "push" / "D"
    before = write({d / "README.md": "# mine\n"})
    rc = run("push", hq, "--repo-id", "me/x", "--dry-run", d).returncode
    results["push --dry-run D (the user's README.md)"] = (lost(before), rc, beside(d.parent, d))
    d = root / "push-new" / "E"
    d.parent.mkdir()
    rc = run("push", hq, "--repo-id", "me/x", "--dry-run", d).returncode
    results["push --dry-run E (new folder)"] = (0, rc, beside(d.parent, d))

    sys.path.insert(0, str(Path(m3e_data.__file__).parents[1]))
    from tests.test_encoder import make_tiny_bert

    texts = [t for p in hq.glob("*/part-*.parquet")
             for row in pq.read_table(p, columns=["query", "positive"]).to_pylist() for t in row.values()]
    model = make_tiny_bert(root / "tiny", texts)
    d = root / "mine" / "D"
    before = write({d / ".session.tmp" / "state": "tabs", d / ".viminfo.tmp": "history",
                    d.parent / "build-manifest.json": '{"my": "notes"}'})
    rc = run("mine", "--in", hq, "--out", d, "--model", model, "--device", "cpu", "--num-negatives", "2",
             "--range", "0:10").returncode
    results["mine --out D (3 user files)"] = (lost(before), rc, beside(d.parent, d, "build-manifest.json"))

    before = write({out / "m3e" / "hc3_chinese" / "notes.txt": "keep"})
    with (src / "hc3_chinese" / "all.jsonl").open("a", encoding="utf-8") as fh:  # a change: it rebuilds
        fh.write('{"question": "q", "human_answers": ["a"], "chatgpt_answers": []}\n')
    rc = run("build", "--recipe", "hc3_chinese", "--sources", src, "--out", out, "--no-hq").returncode
    results["build (OUT/m3e/<source>/notes.txt)"] = (lost(before), rc, [])

    for case, (n, rc, written) in results.items():
        print(f"{case:45s} user files lost: {n}  exit: {rc}  written beside/above: {written}")
    print(f"total: {sum(v[0] for v in results.values())} user files lost, "
          f"{sum(len(v[2]) for v in results.values())} files written beside/above the given folder")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
