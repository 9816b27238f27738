"""Issue 12's audit, re-run on the code as it is: the five figures its closing note asks for.

1. Fuzzed inputs: one line of one file of a demo source damaged in one of ten ways (bad byte, cut line,
   stray quote, NULs, a GBK line, a garbage first line, a lone surrogate, an empty file, a cut gzip, a cut
   end), then built. Counted: tracebacks (an exception out of `build`), sources that fail with a clear
   message, and silent losses (a good row that is neither written nor counted as a drop).
2. Licence: build (full | commercial-only) x (fresh | reused folder) through the CLI, then every export
   format; counted: rows in a commercial-only output whose source is not commercial in the catalog.
3. Concurrency: two builds into one folder at once; counted: rows the first one lost.
4. User files: benchmarks/audit_ownership.py (export, push --dry-run, mine, build given folders holding a
   user's files); counted: user files lost.

    python benchmarks/audit_integrity.py
"""

from __future__ import annotations

import contextlib
import gzip
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from m3e_data.catalog import load_catalog
from m3e_data.stages.normalize.locate import demo_root
from m3e_data.stages.normalize.stage import BuildOptions, build, build_source

FUZZ_SOURCES = ("lawzhidao", "hc3_chinese", "firefly", "csl", "miracl_corpus", "cmrc2018", "cinlid", "webqa",
                "simclue", "zhuiyi_nl2sql", "chinese_squad", "dureader_robust")
DAMAGE = ("bad_byte", "cut_line", "quote", "nul", "gbk_line", "garbage_first_line", "surrogate", "empty_file",
          "cut_gzip", "cut_end")
CLI = [sys.executable, "-c", "from m3e_data.cli.main import main; main()"]


def damage(data: bytes, how: str, rng: random.Random) -> bytes:
    if how == "empty_file":
        return b""
    if how == "cut_end":
        return data[: max(1, len(data) - rng.randint(1, 40))]
    lines = data.splitlines(keepends=True)
    if not lines:
        return data
    k = rng.randrange(len(lines))
    line, i = lines[k], rng.randrange(len(lines[k]) + 1)
    if how == "bad_byte":
        line = line[:i] + b"\xff" + line[i:]
    elif how == "cut_line":
        line = line[:i] + b"\n"
    elif how == "quote":
        line = line[:i] + b'"' + line[i:]
    elif how == "nul":
        line = line[:i] + b"\x00" * 8 + line[i:]
    elif how == "gbk_line":
        with contextlib.suppress(UnicodeDecodeError):  # a line that is not UTF-8 stays as it is
            line = line.decode("utf-8").encode("gb18030")
    elif how == "garbage_first_line":
        k, line = 0, b"\x00garbage[\n" + lines[0]
    elif how == "surrogate" and b'"' in line:
        line = line.replace(b'"', b'"\\ud800', 1)
    lines[k] = line
    return b"".join(lines)


def fuzz() -> dict[str, int]:
    rng = random.Random(0)
    catalog = load_catalog()
    figures = dict.fromkeys(("cases", "tracebacks", "clear failures", "silent losses"), 0)
    for name in FUZZ_SOURCES:
        src = demo_root() / name
        files = [p for p in src.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".csv", ".tsv", ".gz")]
        if not files:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            clean = build_source(catalog[name], BuildOptions(out=Path(tmp) / "out", sources="demo")).counts
        for how in DAMAGE:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp) / "src" / name
                shutil.copytree(src, root)
                f = root / rng.choice(files).relative_to(src)
                if f.suffix == ".gz":
                    raw = gzip.decompress(f.read_bytes())
                    whole = gzip.compress(raw if how == "cut_gzip" else damage(raw, how, rng))
                    f.write_bytes(whole[: len(whole) * 2 // 3] if how == "cut_gzip" else whole)
                elif how == "cut_gzip":
                    continue
                else:
                    f.write_bytes(damage(f.read_bytes(), how, rng))
                figures["cases"] += 1
                try:
                    [r] = build([catalog[name]], BuildOptions(out=Path(tmp) / "out", sources=str(root.parent)))
                except Exception as exc:  # what the audit counts: an exception out of the build
                    figures["tracebacks"] += 1
                    print(f"  traceback: {name} {how} {f.name}: {type(exc).__name__}: {exc}")
                    continue
                if r.status != "built":
                    figures["clear failures"] += 1
                    continue
                # A damaged line can cost its row (a counted drop) but never a row that is not counted:
                # rows written fell by no more than the drops rose. Whole-file damage loses what it cuts.
                c = r.counts
                uncounted = (clean.written - c.written) - (sum(c.dropped.values()) - sum(clean.dropped.values()))
                if how not in ("empty_file", "cut_gzip", "cut_end") and uncounted > 0:
                    figures["silent losses"] += 1
                    print(f"  silent loss: {name} {how} {f.name}: {uncounted} rows")
    return figures


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True)


def non_commercial_rows(folder: Path) -> int:
    commercial = {s.name for s in load_catalog().values() if s.commercial}
    bad = 0
    for path in folder.rglob("*.parquet"):
        cols = pq.read_schema(path).names
        if "source" in cols:
            bad += sum(1 for s in pq.read_table(path, columns=["source"])["source"].to_pylist() if s not in commercial)
    for path in folder.rglob("*.jsonl"):  # uniem / FlagEmbedding exports carry no source column: by file name
        if not any(name in path.as_posix() for name in commercial):
            bad += sum(1 for _ in path.open(encoding="utf-8"))
    return bad


def licence() -> dict[str, int]:
    figures = {"commercial-only outputs checked": 0, "non-commercial rows in them": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for reused in (False, True):
            for commercial_only in (False, True):
                out = Path(tmp) / ("reused" if reused else f"fresh-{commercial_only}")
                if reused and not commercial_only:
                    continue  # the reused case is a full build, then a commercial-only one, into one folder
                if reused:
                    assert cli("build", "--sources", "demo", "--out", out, "--allow-empty").returncode in (0, 1)
                args = ["build", "--sources", "demo", "--out", out, "--allow-empty"]
                cli(*args, *(["--commercial-only"] if commercial_only else []))
                if not commercial_only:
                    continue
                figures["commercial-only outputs checked"] += 1
                figures["non-commercial rows in them"] += non_commercial_rows(out / "m3e-hq")
                for fmt in ("uniem", "sentence-transformers", "flagembedding"):
                    dest = Path(tmp) / f"export-{out.name}-{fmt}"
                    cli("export", out / "m3e-hq", "--format", fmt, "--out", dest)
                    if dest.exists():
                        figures["commercial-only outputs checked"] += 1
                        figures["non-commercial rows in them"] += non_commercial_rows(dest)
    return figures


def concurrency(rows: int = 300_000) -> dict[str, int]:
    """The audit's race: a build of a 300k-row source, and while it writes, a build of another source into
    the same folder."""
    import json
    import time

    from m3e_data.storage.lock import LOCK_FILE

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src" / "news2016zh" / "new2016zh"
        src.mkdir(parents=True)
        with (src / "news2016zh_train.json").open("w", encoding="utf-8") as fh:
            for i in range(rows):
                fh.write(json.dumps({"news_id": str(i), "title": f"第{i}条新闻的标题", "desc": "",
                                     "content": f"这是第{i}条新闻的正文，讲述了一件发生在本地的事情。"},
                                    ensure_ascii=False) + "\n")
        (src / "news2016zh_valid.json").write_text("", encoding="utf-8")
        out = Path(tmp) / "out"
        first = subprocess.Popen([*CLI, "build", "--recipe", "news2016zh", "--sources", str(src.parents[1]),
                                  "--out", str(out), "--no-hq", "--allow-empty"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (out / LOCK_FILE).exists() and first.poll() is None:
            time.sleep(0.05)
        second = cli("build", "--recipe", "paws_x", "--sources", "demo", "--out", out, "--no-hq")
        first.wait()
        written = sum(pq.read_metadata(p).num_rows for p in (out / "m3e" / "news2016zh").glob("part-*.parquet"))
        return {"second run refused while the first wrote": int(second.returncode != 0 and first.returncode == 0),
                "rows the first run lost": rows - written}


def user_files() -> dict[str, int]:
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("audit_ownership.py"))],
                          capture_output=True, text=True)
    found = re.search(r"total: (\d+) user files lost, (\d+) files written beside", done.stdout)
    if not found:
        raise SystemExit(f"audit_ownership failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    return {"user files lost": int(found[1]), "files written beside the given folder": int(found[2])}


def main() -> None:
    for title, part in (("fuzzed inputs", fuzz), ("licence", licence), ("two runs, one folder", concurrency),
                        ("user files", user_files)):
        print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in part().items()), flush=True)


if __name__ == "__main__":
    main()
