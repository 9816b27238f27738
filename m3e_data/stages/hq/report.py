"""The m3e-hq report: one self-contained HTML file (inline SVG, no scripts, no CDN) and a terminal table.

The numbers come from the "hq" section of OUT/build-manifest.json: rows per source through the stages,
drops by reason, the length floors and ceilings in force per source and the rows each dropped, length
distributions of query and positive per source (kept rows), and which sources' rows were dropped as
duplicates of which others. Two parts read rows, capped, so a curator can judge without opening Parquet:
a few example rows per drop reason (OUT/rejects/, with the row a duplicate was kept over or the evaluation
file a row matched), and, once `mine` has run (its "mine" section), the distributions of positive and
negative scores and of the margin per source, with the rows that got fewer negatives than asked.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.table import Table

from m3e_data.manifest import read_manifest
from m3e_data.stages.hq.quality import LENGTH_RULES
from m3e_data.storage.store import atomic_write_text, parquet_files

EXAMPLES_PER_REASON = 3
EXAMPLE_CHARS = 160  # a text longer than this is cut, with … and its full length
SCORE_BINS = [round(-0.2 + 0.1 * i, 1) for i in range(13)]  # -0.2 .. 1.0 in steps of 0.1 (cosine)
MARGIN_BINS = [round(-0.4 + 0.1 * i, 1) for i in range(11)]  # -0.4 .. 0.6

STAGE_COLOURS = {
    "kept": "#4c9f70",
    "eval_split": "#9aa5b1",
    "quality": "#e0a030",
    "decontaminate": "#b05cc6",
    "dedup": "#d9534f",
}
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.legend span{display:inline-block;margin-right:1rem;font-size:.85rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
svg text{font-size:11px;fill:#333}.note{color:#666;font-size:.85rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
table.examples th{text-align:left}table.examples td{text-align:left;vertical-align:top;max-width:24rem;word-break:break-all}
"""


class ReportError(ValueError):
    """OUT holds no hq stage to report on."""


def build_folder(out: Path) -> Path:
    """The build folder to report on: OUT itself, or, given a mined folder (`mine --out`), the build whose
    manifest records that mining (so `report OUT/m3e-hq-with-score` reports OUT, and writes beside it, never
    into a folder `mine` owns)."""
    if read_manifest(out).get("stages", {}).get("hq"):
        return out
    stages = read_manifest(out.parent).get("stages", {})
    mined = stages.get("mine", {}).get("options", {}).get("out")
    if stages.get("hq") and mined and {Path(mined).name, Path(mined).resolve()} & {out.name, out.resolve()}:
        return out.parent
    return out


def hq_section(out: Path) -> dict[str, Any]:
    out = build_folder(out)
    section = read_manifest(out).get("stages", {}).get("hq")
    if not section:
        raise ReportError(f"{out}: build-manifest.json has no hq stage; run `m3e-data hq {out}` first")
    return section


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _stage_drops(src: dict[str, Any]) -> dict[str, int]:
    through = src.get("through", {})
    out, before = {}, src["rows_in"]
    for stage in ("eval_split", "quality", "decontaminate", "dedup"):
        after = through.get(stage, before)
        out[stage] = before - after
        before = after
    return out


def _legend(keys: list[str]) -> str:
    items = "".join(
        f'<span><i class="swatch" style="background:{STAGE_COLOURS[k]}"></i>{_esc(k)}</span>' for k in keys
    )
    return f'<div class="legend">{items}</div>'


def stages_chart(sources: dict[str, dict[str, Any]]) -> str:
    """One horizontal bar per source: kept rows, then rows dropped at each stage."""
    label_w, bar_w, row_h = 170, 760, 20
    biggest = max((s["rows_in"] for s in sources.values()), default=1) or 1
    parts = []
    for i, (name, src) in enumerate(sources.items()):
        y = i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_esc(name)}</text>')
        x = float(label_w)
        segments = [("kept", src["rows_out"]), *_stage_drops(src).items()]
        for key, n in segments:
            w = bar_w * n / biggest
            if n:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="{row_h - 6}" '
                    f'fill="{STAGE_COLOURS[key]}"><title>{_esc(name)} {key}: {n:,}</title></rect>'
                )
            x += w
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 14}">{src["rows_out"]:,} / {src["rows_in"]:,}</text>')
    height = max(len(sources), 1) * row_h
    return _legend(list(STAGE_COLOURS)) + (
        f'<svg class="chart" data-chart="stages" width="{label_w + bar_w + 140}" height="{height}" role="img">{"".join(parts)}</svg>'
    )


def reasons_chart(sources: dict[str, dict[str, Any]]) -> str:
    """Drops by reason, summed over sources, largest first."""
    totals: dict[str, int] = {}
    for src in sources.values():
        for reason, n in src["dropped"].items():
            totals[reason] = totals.get(reason, 0) + n
    if not totals:
        return '<p class="note">No row was dropped.</p>'
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    label_w, bar_w, row_h = 260, 600, 20
    top = ranked[0][1]
    parts = []
    for i, (reason, n) in enumerate(ranked):
        y = i * row_h
        stage = "dedup" if reason.endswith("duplicate") else reason.split(":")[0]
        stage = {"decontaminated": "decontaminate"}.get(stage, stage)
        colour = STAGE_COLOURS.get(stage, "#888")
        w = bar_w * n / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_esc(reason)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="{row_h - 6}" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{n:,}</text>')
    return (f'<svg class="chart" data-chart="reasons" width="{label_w + bar_w + 80}" '
            f'height="{len(ranked) * row_h}" role="img">{"".join(parts)}</svg>')


def _heat(share: float) -> str:
    # White to deep blue; sqrt so that small shares stay visible.
    t = share**0.5
    r, g, b = (int(255 - t * (255 - c)) for c in (31, 90, 160))
    return f"rgb({r},{g},{b})"


def _short(n: int) -> str:
    """1024 -> 1k, 2047 -> 2k: bin labels that fit their column."""
    return f"{round(n / 1024)}k" if n >= 1000 else str(n)


def _heatmap(chart: str, labels: list[str], rows: list[tuple[str, list[int]]], cell_w: int, what: str) -> str:
    """One row per source, one column per bin, shade = the bin's share of the row; `what` names a cell in its
    tooltip ("<source> <what> <bin label>: n")."""
    label_w, row_h = 170, 18
    parts = [f'<text x="{label_w + j * cell_w + cell_w / 2}" y="12" text-anchor="middle" font-size="10">'
             f'{_esc(label)}</text>' for j, label in enumerate(labels)]
    for i, (name, hist) in enumerate(rows):
        total = sum(hist) or 1
        y = 18 + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_esc(name)}</text>')
        for j, n in enumerate(hist):
            parts.append(
                f'<rect x="{label_w + j * cell_w}" y="{y}" width="{cell_w - 1}" height="{row_h - 1}" '
                f'fill="{_heat(n / total)}"><title>{_esc(name)} {what} {_esc(labels[j])}: {n:,}</title></rect>'
            )
    height = 18 + max(len(rows), 1) * row_h
    return (f'<svg class="chart" data-chart="{chart}" width="{label_w + cell_w * len(labels) + 10}" '
            f'height="{height}" role="img">{"".join(parts)}</svg>')


def lengths_chart(sources: dict[str, dict[str, Any]], bins: list[int], side: str) -> str:
    """A heat map: one row per source, one column per length bin, shade = share of the source's kept rows."""
    edges = [*bins, None]
    labels = [f"{_short(lo)}+" if hi is None else f"{_short(lo)}-{_short(hi - 1)}"
              for lo, hi in zip(edges, edges[1:], strict=False)]
    rows = [(name, src.get("lengths", {}).get(side, [])) for name, src in sources.items()]
    return _heatmap(f"{side}-lengths", labels, rows, 52, f"{side} chars")


def overlap_chart(overlap: dict[str, dict[str, int]]) -> str:
    """Rows of source A (row) dropped as duplicates of a row kept in source B (column)."""
    if not overlap:
        return '<p class="note">No duplicate crosses sources.</p>'
    rows = sorted(overlap)
    cols = sorted({b for a in overlap.values() for b in a})
    top = max(n for a in overlap.values() for n in a.values())
    label_w, cell, head = 170, 34, 120
    parts = []
    for j, c in enumerate(cols):
        x = label_w + j * cell + cell / 2
        parts.append(f'<text transform="translate({x},{head - 4}) rotate(-60)">{_esc(c)}</text>')
    for i, r in enumerate(rows):
        y = head + i * cell
        parts.append(f'<text x="{label_w - 6}" y="{y + cell / 2 + 4}" text-anchor="end">{_esc(r)}</text>')
        for j, c in enumerate(cols):
            n = overlap[r].get(c, 0)
            x = label_w + j * cell
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{_heat(n / top)}">'
                f"<title>{_esc(r)} → {_esc(c)}: {n:,}</title></rect>"
            )
            if n:
                parts.append(f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 4}" text-anchor="middle">{n}</text>')
    return (
        f'<svg class="chart" data-chart="overlap" width="{label_w + cell * len(cols) + 20}" '
        f'height="{head + cell * len(rows) + 10}" role="img">'
        f'{"".join(parts)}</svg>'
    )


def length_rules(section: dict[str, Any]) -> dict[str, dict[str, tuple[Any, int]]]:
    """{source: {rule: (threshold in force, rows it dropped)}} for each length floor and ceiling. A row is
    counted under the first rule that fires (quality.rules' order), as in the drops by reason."""
    thresholds = section.get("thresholds", {})
    out: dict[str, dict[str, tuple[Any, int]]] = {}
    for name, src in section["sources"].items():
        applied = thresholds.get(name, {})
        out[name] = {
            rule: (applied.get(key), src["dropped"].get(f"quality:{rule}", 0)) for rule, key in LENGTH_RULES.items()
        }
    return out


def length_rules_html(section: dict[str, Any]) -> str:
    """One row per source: each length rule's limit (characters, not counting whitespace; ≥ for a floor, ≤
    for a ceiling) and the rows it dropped; a rule that is off shows —."""
    rules = length_rules(section)
    if not rules:
        return '<p class="note">No source.</p>'
    head = "".join(f"<th>{_esc(rule)}</th>" for rule in LENGTH_RULES)
    lines = [f"<table><tr><th>source</th>{head}</tr>"]
    for name, by_rule in rules.items():
        cells = []
        for rule, (value, dropped) in by_rule.items():
            limit = "—" if value is None else f"{'≥' if rule.endswith('short') else '≤'}{value}"
            cells.append(f"<td>{_esc(limit)} · {dropped:,}</td>")
        lines.append(f"<tr><td>{_esc(name)}</td>{''.join(cells)}</tr>")
    return "".join(lines) + "</table>"


def heat_legend() -> str:
    """What a heat-map cell's shade means: its share, on the square-root scale _heat draws."""
    stops = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
    cells = "".join(
        f'<span><i class="swatch" style="background:{_heat(t)};border:1px solid #ccc"></i>{t:.0%}</span>'
        for t in stops
    )
    return f'<div class="legend heat-legend">share of the source\'s rows in the cell: {cells}</div>'


def _cut(text: Any) -> str:
    text = "" if text is None else str(text)
    if len(text) <= EXAMPLE_CHARS:
        return text
    return f"{text[:EXAMPLE_CHARS]}… ({len(text):,} characters)"


def _read_rows(folder: Path, columns: list[str], ids: set[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a stage folder (its part files), only `ids` when given; [] when the folder is absent."""
    out: list[dict[str, Any]] = []
    for path in parquet_files(folder) if folder.is_dir() else []:
        table = pq.read_table(path, columns=columns)
        if ids is not None:
            table = table.filter(pc.is_in(table["id"], pa.array(sorted(ids), pa.string())))
        out += table.to_pylist()
    return out


def drop_examples(out: Path, per_reason: int = EXAMPLES_PER_REASON) -> dict[str, list[dict[str, Any]]]:
    """{reason: up to `per_reason` rejected rows}, taken in source order from OUT/rejects/<stage>/<source>/,
    each with what it was measured against: for a duplicate the row kept over it (`kept`), for a
    decontaminated row the evaluation file (`matched`)."""
    found: dict[str, list[dict[str, Any]]] = {}
    root = out / "rejects"
    for stage in ("eval_split", "quality", "decontaminate", "dedup"):
        for folder in sorted(p for p in (root / stage).glob("*") if p.is_dir()):
            for row in _read_rows(folder, ["id", "source", "split", "query", "positive", "reason", "kept_id", "matched"]):
                examples = found.setdefault(row["reason"], [])
                if len(examples) < per_reason:
                    examples.append(row)
    wanted: dict[str, set[str]] = {}
    for rows in found.values():
        for row in rows:
            if row.get("kept_id"):
                wanted.setdefault(row["kept_id"].split("/", 1)[0], set()).add(row["kept_id"])
    kept = {
        r["id"]: r for source, ids in wanted.items()
        for r in _read_rows(out / "m3e-hq" / source, ["id", "query", "positive"], ids)
    }
    for rows in found.values():
        for row in rows:
            if row.get("kept_id"):
                row["kept"] = kept.get(row["kept_id"])
    return found


def examples_html(examples: dict[str, list[dict[str, Any]]]) -> str:
    if not examples:
        return '<p class="note">No row was dropped.</p>'
    parts = []
    for reason in sorted(examples):
        lines = [f'<h3 class="reason">{_esc(reason)}</h3><table class="examples">'
                 "<tr><th>row</th><th>query</th><th>positive</th><th>measured against</th></tr>"]
        for row in examples[reason]:
            if row.get("kept_id"):
                k = row.get("kept") or {}
                against = (f"kept {_esc(row['kept_id'])}: {_esc(_cut(k.get('query')))} / "
                           f"{_esc(_cut(k.get('positive')))}")
            elif row.get("matched"):
                against = f"evaluation file {_esc(row['matched'])}"
            elif reason == "eval_split":
                against = f"split {_esc(row.get('split'))}"
            else:
                against = "the rule"
            lines.append(f"<tr><td>{_esc(row['id'])}</td><td>{_esc(_cut(row['query']))}</td>"
                         f"<td>{_esc(_cut(row['positive']))}</td><td>{against}</td></tr>")
        parts.append("".join(lines) + "</table>")
    return (f'<p class="note">Up to {EXAMPLES_PER_REASON} rows per reason (OUT/rejects/), texts cut at '
            f"{EXAMPLE_CHARS} characters.</p>" + "".join(parts))


def _hist(values: np.ndarray, bins: list[float]) -> list[int]:
    """Counts per bin [b_i, b_i+1); the first and last bins take everything below and above."""
    idx = np.clip(np.searchsorted(np.asarray(bins), values, side="right") - 1, 0, len(bins) - 1)
    return np.bincount(idx, minlength=len(bins)).tolist()


def mined_scores(out: Path) -> dict[str, Any] | None:
    """Per mined source: histograms of positive scores, negative scores and the margin (positive minus the
    best negative), their means, and the rows left with fewer negatives than asked; None before `mine`."""
    section = read_manifest(out).get("stages", {}).get("mine")
    if not section:
        return None
    options = section.get("options", {})
    folder = Path(options.get("out") or out / "m3e-hq-with-score")
    if not folder.is_absolute() and not folder.is_dir():
        folder = out / folder.name
    result: dict[str, Any] = {"model": section.get("model"), "asked": options.get("num_negatives"), "sources": {}}
    for name, record in sorted(section.get("sources", {}).items()):
        rows = _read_rows(folder / name, ["positive_score", "negative_scores"])
        pos = np.array([r["positive_score"] for r in rows if r["positive_score"] is not None], dtype=np.float64)
        neg = np.array([s for r in rows for s in (r["negative_scores"] or []) if s is not None], dtype=np.float64)
        margin = np.array([r["positive_score"] - max(r["negative_scores"]) for r in rows
                           if r["positive_score"] is not None and r["negative_scores"]], dtype=np.float64)
        result["sources"][name] = {
            "rows": len(rows), "rows_short": record.get("rows_short"),
            "positive": _hist(pos, SCORE_BINS), "negative": _hist(neg, SCORE_BINS), "margin": _hist(margin, MARGIN_BINS),
            "mean": {k: (float(v.mean()) if len(v) else None) for k, v in
                     (("positive", pos), ("negative", neg), ("margin", margin))},
        }
    return result


def score_chart(sources: dict[str, Any], key: str, bins: list[float]) -> str:
    """A heat map like the length charts: one row per source, one column per score bin."""
    labels = [f"<{bins[1]:g}" if j == 0 else (f"≥{lo:g}" if j == len(bins) - 1 else f"{lo:g}")
              for j, lo in enumerate(bins)]
    return _heatmap(f"{key}-scores", labels, [(name, src[key]) for name, src in sources.items()], 44, key)


def mined_html(scores: dict[str, Any] | None) -> str:
    if scores is None:
        return '<p class="note">Not mined yet: run <code>m3e-data mine</code>, then this report again.</p>'
    sources = scores["sources"]
    if not sources:
        return '<p class="note">The mine record names no source.</p>'
    head = ["source", "rows", "mean positive", "mean negative", "mean margin", f"fewer than {scores['asked']} negatives"]
    lines = ["<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for name, src in sources.items():
        means = ["—" if src["mean"][k] is None else f"{src['mean'][k]:.3f}" for k in ("positive", "negative", "margin")]
        short = "—" if src["rows_short"] is None else f"{src['rows_short']:,}"
        lines.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in [name, f"{src['rows']:,}", *means, short]) + "</tr>")
    return (
        f'<p class="note">Model {_esc(scores["model"])}; cosine scores of the mined folder. Margin: the positive\'s '
        "score minus its best negative's (below 0: a negative outscores the positive, possibly a false negative)."
        "</p>" + "".join(lines) + "</table>"
        + "<h3>Positive scores</h3>" + score_chart(sources, "positive", SCORE_BINS)
        + "<h3>Negative scores</h3>" + score_chart(sources, "negative", SCORE_BINS)
        + "<h3>Margin</h3>" + score_chart(sources, "margin", MARGIN_BINS) + heat_legend()
    )


def _table_html(sources: dict[str, dict[str, Any]]) -> str:
    head = ["source", "rows in", "eval split", "quality", "decontam.", "dedup", "rows out", "kept %", "top reasons"]
    lines = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for name, src in sources.items():
        d = _stage_drops(src)
        top = ", ".join(f"{r} {n:,}" for r, n in sorted(src["dropped"].items(), key=lambda kv: -kv[1])[:3])
        kept = 100 * src["rows_out"] / src["rows_in"] if src["rows_in"] else 0.0
        cells = [name, f"{src['rows_in']:,}", f"{d['eval_split']:,}", f"{d['quality']:,}", f"{d['decontaminate']:,}",
                 f"{d['dedup']:,}", f"{src['rows_out']:,}", f"{kept:.1f}", top]
        lines.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    return "".join(lines) + "</table>"


def render_html(
    section: dict[str, Any], title: str = "m3e-hq report",
    examples: dict[str, list[dict[str, Any]]] | None = None, scores: dict[str, Any] | None = None,
) -> str:
    sources = section["sources"]
    bins = section.get("length_bins", [])
    total_in = sum(s["rows_in"] for s in sources.values())
    total_out = sum(s["rows_out"] for s in sources.values())
    decon = section.get("decontamination", {})
    decon_html = "".join(f"<li>{_esc(f)}: {n:,} rows</li>" for f, n in decon.items()) or "<li>none</li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{_CSS}</style></head><body>
<h1>{_esc(title)}</h1>
<p>{len(sources)} sources · {total_in:,} rows in · <b>{total_out:,} rows kept</b>
({(100 * total_out / total_in) if total_in else 0:.1f}%) · finished {_esc(section.get("finished", ""))}</p>
<h2>Rows per source through the stages</h2>{stages_chart(sources)}
<h2>Drops by reason</h2>{reasons_chart(sources)}
<h2>Example rows per drop reason</h2>{examples_html(examples or {})}
<h2>Length floors and ceilings</h2>
<p class="note">Per source: the threshold in force (characters without whitespace; per task in the catalog's
_tasks.yaml, per source in its <code>hq:</code> block, or --config) · the rows that rule dropped.</p>
{length_rules_html(section)}
<h2>Length of the query (characters, kept rows)</h2>{lengths_chart(sources, bins, "query")}
<h2>Length of the positive (characters, kept rows)</h2>{lengths_chart(sources, bins, "positive")}
{heat_legend()}
<h2>Duplicates across sources</h2>
<p class="note">Row: the source whose row was dropped; column: the source whose copy was kept.</p>
{overlap_chart(section.get("overlap", {}))}
<h2>Decontamination</h2><ul>{decon_html}</ul>
<h2>Mined scores</h2>{mined_html(scores)}
<h2>Table</h2>{_table_html(sources)}
</body></html>
"""


def write_report(out: Path, path: Path | None = None) -> Path:
    """Write the HTML report of OUT (OUT/report.html by default) and return its path."""
    out = build_folder(out)
    target = path or out / "report.html"
    atomic_write_text(target, render_html(hq_section(out), examples=drop_examples(out), scores=mined_scores(out)))
    return target


def summary_table(section: dict[str, Any], title: str = "m3e-hq") -> Table:
    """The report's numbers for the terminal."""
    table = Table(title=title)
    for col in ("source", "rows in", "eval split", "quality", "decontam.", "dedup", "rows out", "kept %", "top reasons"):
        table.add_column(col, justify="left" if col in ("source", "top reasons") else "right")
    for name, src in section["sources"].items():
        d = _stage_drops(src)
        top = ", ".join(f"{r} {n:,}" for r, n in sorted(src["dropped"].items(), key=lambda kv: -kv[1])[:3])
        kept = 100 * src["rows_out"] / src["rows_in"] if src["rows_in"] else 0.0
        table.add_row(
            name, f"{src['rows_in']:,}", f"{d['eval_split']:,}", f"{d['quality']:,}", f"{d['decontaminate']:,}",
            f"{d['dedup']:,}", f"{src['rows_out']:,}", f"{kept:.1f}", top,
        )
    return table
