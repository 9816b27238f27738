"""The m3e-hq report: one self-contained HTML file (inline SVG, no scripts, no CDN) and a terminal table.

Everything comes from the "hq" section of OUT/build-manifest.json, so a report can be redrawn without the
data: rows per source through the stages, drops by reason, the length floors and ceilings in force per
source and the rows each dropped, length distributions of query and positive per source (kept rows), and
which sources' rows were dropped as duplicates of which others.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rich.table import Table

from m3e_data.manifest import read_manifest
from m3e_data.quality import LENGTH_RULES
from m3e_data.store import atomic_write_text

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
svg text{font-size:11px;fill:#333}.note{color:#666;font-size:.85rem}
"""


class ReportError(ValueError):
    """OUT holds no hq stage to report on."""


def hq_section(out: Path) -> dict[str, Any]:
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
        f'<svg width="{label_w + bar_w + 140}" height="{height}" role="img">{"".join(parts)}</svg>'
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
    return f'<svg width="{label_w + bar_w + 80}" height="{len(ranked) * row_h}" role="img">{"".join(parts)}</svg>'


def _heat(share: float) -> str:
    # White to deep blue; sqrt so that small shares stay visible.
    t = share**0.5
    r, g, b = (int(255 - t * (255 - c)) for c in (31, 90, 160))
    return f"rgb({r},{g},{b})"


def _short(n: int) -> str:
    """1024 -> 1k, 2047 -> 2k: bin labels that fit their column."""
    return f"{round(n / 1024)}k" if n >= 1000 else str(n)


def lengths_chart(sources: dict[str, dict[str, Any]], bins: list[int], side: str) -> str:
    """A heat map: one row per source, one column per length bin, shade = share of the source's kept rows."""
    label_w, cell_w, row_h = 170, 52, 18
    edges = [*bins, None]
    parts = []
    for j in range(len(bins)):
        lo, hi = edges[j], edges[j + 1]
        label = f"{_short(lo)}+" if hi is None else f"{_short(lo)}-{_short(hi - 1)}"
        parts.append(f'<text x="{label_w + j * cell_w + cell_w / 2}" y="12" text-anchor="middle" '
                     f'font-size="10">{label}</text>')
    for i, (name, src) in enumerate(sources.items()):
        hist = src.get("lengths", {}).get(side, [])
        total = sum(hist) or 1
        y = 18 + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_esc(name)}</text>')
        for j, n in enumerate(hist):
            parts.append(
                f'<rect x="{label_w + j * cell_w}" y="{y}" width="{cell_w - 1}" height="{row_h - 1}" '
                f'fill="{_heat(n / total)}"><title>{_esc(name)} {side} {edges[j]}+ chars: {n:,}</title></rect>'
            )
    height = 18 + max(len(sources), 1) * row_h
    return f'<svg width="{label_w + cell_w * len(bins) + 10}" height="{height}" role="img">{"".join(parts)}</svg>'


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
        f'<svg width="{label_w + cell * len(cols) + 20}" height="{head + cell * len(rows) + 10}" role="img">'
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


def render_html(section: dict[str, Any], title: str = "m3e-hq report") -> str:
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
<h2>Length floors and ceilings</h2>
<p class="note">Per source: the threshold in force (characters without whitespace; per task in the catalog's
_tasks.yaml, per source in its <code>hq:</code> block, or --config) · the rows that rule dropped.</p>
{length_rules_html(section)}
<h2>Length of the query (characters, kept rows)</h2>{lengths_chart(sources, bins, "query")}
<h2>Length of the positive (characters, kept rows)</h2>{lengths_chart(sources, bins, "positive")}
<h2>Duplicates across sources</h2>
<p class="note">Row: the source whose row was dropped; column: the source whose copy was kept.</p>
{overlap_chart(section.get("overlap", {}))}
<h2>Decontamination</h2><ul>{decon_html}</ul>
<h2>Table</h2>{_table_html(sources)}
</body></html>
"""


def write_report(out: Path, path: Path | None = None) -> Path:
    """Write the HTML report of OUT (OUT/report.html by default) and return its path."""
    target = path or out / "report.html"
    atomic_write_text(target, render_html(hq_section(out)))
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
