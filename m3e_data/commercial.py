"""The row check of a commercial-only output, shared by every command that makes one (push, export,
hq, train): each row's `commercial` flag, its licence, and its source's catalog entry must all agree."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from m3e_data.catalog import COMMERCIAL_LICENSES, Source, load_catalog


def row_problems(table: pa.Table, where: str, catalog: dict[str, Source] | None = None) -> list[str]:
    """What in `table` (columns source, license, commercial) a commercial-only output must not hold."""
    catalog = catalog if catalog is not None else load_catalog()
    problems: list[str] = []
    combos = table.select(["source", "license", "commercial"]).group_by(
        ["source", "license", "commercial"]).aggregate([([], "count_all")])
    for row in combos.to_pylist():
        source, spdx, commercial, n = row["source"], row["license"], row["commercial"], row["count_all"]
        src = catalog.get(source)
        if commercial is not True:
            problems.append(f"{where}: {n:,} row(s) of {source} have commercial={commercial}")
        if spdx not in COMMERCIAL_LICENSES:
            problems.append(f"{where}: {n:,} row(s) of {source} carry licence {spdx}, not a commercial one")
        if src is None:
            problems.append(f"{where}: {n:,} row(s) come from {source!r}, which the catalog does not know")
        elif not src.commercial or src.license.spdx != spdx:
            problems.append(
                f"{where}: {n:,} row(s) of {source} say {spdx}; the catalog says {src.license.spdx}, "
                f"commercial={src.commercial}"
            )
    return problems


def licences(table: pa.Table) -> set[str]:
    return set(table["license"].unique().to_pylist())


def commercial_folders(data_dir: Path, only: list[str] | None) -> list[str]:
    """The source folders of a stage output that a commercial-only run may read: commercial in the catalog,
    named by `only` if given, and every row passing `row_problems` (else ValueError naming them)."""
    import pyarrow.parquet as pq

    catalog = load_catalog()
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    chosen = [p for p in folders if (only is None or p.name in only) and p.name in catalog
              and catalog[p.name].commercial]
    problems: list[str] = []
    for folder in chosen:
        for part in sorted(folder.glob("part-*.parquet")):
            table = pq.read_table(part, columns=["source", "license", "commercial"])
            problems += row_problems(table, f"{folder.name}/{part.name}", catalog)
    if problems:
        raise ValueError("rows a commercial-only run must not read:\n  " + "\n  ".join(problems[:20]))
    if not chosen:
        raise ValueError(f"{data_dir}: holds no commercial source" + (" among --only" if only else ""))
    return [p.name for p in chosen]
