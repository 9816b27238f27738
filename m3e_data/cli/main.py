"""The `m3e-data` command line. Commands are thin: they parse options and call the library."""

from __future__ import annotations

import difflib
import json
import re
import shlex
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from m3e_data.catalog import Source, how_to_get, layout_files, load_catalog
from m3e_data.cli.console import Col, error_line, fit_table, messages, resumable, table_width, tables
from m3e_data.cli.failures import explain
from m3e_data.cli.hq import hold_for_command, hq_command, hq_options, report_command, run_hq_command
from m3e_data.cli.mine import mine_command
from m3e_data.cli.preflight import check_hub, local_folder
from m3e_data.cli.publish import export_command, push_command
from m3e_data.cli.remote import check_sources_url, open_out, work_dir_option
from m3e_data.executors import EXECUTORS
from m3e_data.executors.ray_session import check_ray_executor
from m3e_data.manifest import MANIFEST
from m3e_data.recipe import recipe_names
from m3e_data.stages.normalize.stage import (
    BUILT,
    UNCHANGED,
    BuildOptions,
    MapSources,
    SourceResult,
    build,
    map_local,
    select_sources,
)
from m3e_data.storage.remote import is_url


class _Main(click.Group):
    """The command group, with one handler for expected failures: a disk that fills up, a Hub that cannot
    be reached or refuses, a folder without permission. Each ends in one line on stderr and exit code 1;
    with --debug (or M3E_DEBUG=1) the traceback follows the line. Anything else is a bug and keeps its
    traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:  # build, hq and mine say more (console.resumable); the rest stop cleanly
            error_line(f"interrupted (Ctrl-C); {ctx.invoked_subcommand} did not finish")
            if ctx.params.get("debug"):
                raise
            ctx.exit(130)
        except Exception as exc:
            line = explain(exc, ctx.invoked_subcommand)
            if line is None:
                raise
            error_line(line)
            if ctx.params.get("debug"):
                raise
            ctx.exit(1)


@click.group(cls=_Main)
@click.version_option(package_name="m3e-data")
@click.option("--debug", is_flag=True, envvar="M3E_DEBUG",
              help="Show the traceback of a failure, not only its one-line message (or set M3E_DEBUG=1).")
def main(debug: bool) -> None:
    """Build the training data for Chinese text-embedding models (M3E)."""


def _fetch(source: Source) -> str:
    """Whether `build` can fetch the source now: "yes" (from the Hub), "by hand" (an upstream download the
    user makes, as `list NAME` says), "no" (withdrawn upstream; only an existing local copy builds)."""
    if not source.available:
        return "no"
    return "yes" if source.access.kind == "hub" else "by hand"


AVAILABLE_LEGEND = (
    "available: yes = build fetches it from the Hub now; by hand = download it yourself "
    "(m3e-data list NAME says how); no = withdrawn upstream (a copy you hold still builds). "
    "s2s: both sides are sentences of one kind."
)


def _catalog_rows(commercial_only: bool = False) -> list[dict]:
    implemented = set(recipe_names())
    return [
        {
            "name": s.name,
            "domain": s.domain,
            "task": s.task,
            "card_rows": s.card_rows,
            "license": s.license.spdx,
            "commercial": s.commercial,
            "homogeneous": s.homogeneous,
            "available": s.available,
            "fetch": _fetch(s),
            "recipe": s.name in implemented,
            "access": s.access.kind,
            "quality": s.quality,
            "reason": " ".join(s.license.reason.split()),
        }
        for s in load_catalog().values()
        if s.commercial or not commercial_only
    ]


def _entry(source: Source) -> dict:
    """One source's full catalog entry, with how to get each layout's files."""
    return {
        "name": source.name,
        "description": " ".join(source.description.split()),
        "provider": source.provider,
        "homepage": source.homepage,
        "domain": source.domain,
        "task": source.task,
        "quality": source.quality,
        "card_rows": source.card_rows,
        "homogeneous": source.homogeneous,
        "access": source.access.kind,
        "repo_id": source.access.repo_id,
        "available": _fetch(source),
        "availability": " ".join((source.availability or "").split()) or None,
        "counting_rule": " ".join(source.counting_rule.split()),
        "license": {
            "spdx": source.license.spdx, "commercial": source.commercial,
            "card_research": source.license.card_research, "card_commercial": source.license.card_commercial,
            "reason": " ".join(source.license.reason.split()),
        },
        "layouts": [
            {"name": layout.name, "format": layout.format, "files": layout_files(layout),
             "how_to_get": " ".join(how_to_get(source, layout).split())}
            for layout in source.access.layouts
        ],
        "recipe": source.name in recipe_names(),
        "citation": source.citation.rstrip(),
    }


def _print_entry(entry: dict) -> None:
    width = min(table_width(), 100)

    def para(label: str, text: str) -> None:
        indent = " " * (len(label) - len(label.lstrip()) + 2)
        click.echo(textwrap.fill(text, width, initial_indent=f"{label}: ", subsequent_indent=indent,
                                 break_on_hyphens=False, break_long_words=False))

    lic = entry["license"]
    click.echo(f"{entry['name']}  ({entry['domain']}, {entry['task']}, quality {entry['quality']}, "
               f"{entry['card_rows']:,} rows on the card)")
    para("description", entry["description"])
    para("provider", entry["provider"])
    para("homepage", entry["homepage"])
    para("licence", f"{lic['spdx']}, commercial use {'yes' if lic['commercial'] else 'no'}. {lic['reason']}")
    para("access", entry["access"] + (f" ({entry['repo_id']})" if entry["repo_id"] else "")
         + f"; available: {entry['available']}" + (f". {entry['availability']}" if entry["availability"] else ""))
    para("recipe", ("yes: " if entry["recipe"] else "not written yet; ") + entry["counting_rule"])
    click.echo("layouts (tried in this order):")
    for layout in entry["layouts"]:
        para(f"  {layout['name']} ({layout['format']})", "files " + ", ".join(layout["files"]))
        para("    how to get", layout["how_to_get"])
    click.echo("citation:")
    click.echo(textwrap.indent(entry["citation"], "  "))


@main.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the table (or NAME's entry) as JSON.")
@click.option("--commercial-only", is_flag=True, help="Only sources whose licence permits commercial use.")
@click.option("--wide", is_flag=True, help="Add each licence's reason (why commercial use is or is not allowed).")
def list_sources(name: str | None, as_json: bool, commercial_only: bool, wide: bool) -> None:
    """The catalog: every M3E source, its licence, how to get it, and whether its recipe exists.

    With NAME: that source's full entry (licence reason, layouts and how to get each, homepage, citation)."""
    if name is not None:
        catalog = load_catalog()
        if name not in catalog:
            close = difflib.get_close_matches(name, list(catalog), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; `m3e-data list` shows every name"
            raise click.BadParameter(f"no source named {name!r}{hint}", param_hint="NAME")
        entry = _entry(catalog[name])
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False, indent=2))
        else:
            _print_entry(entry)
        return
    rows = _catalog_rows(commercial_only)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    yes = {True: "yes", False: "-"}
    cols = [Col("name", fold=False), Col("domain", drop=5), Col("task", drop=4), Col("card rows", drop=3, number=True),
            Col("license", drop=1, min_width=10), Col("commercial", fold=False), Col("access", drop=2, fold=False),
            Col("available", fold=False), Col("recipe", drop=3, fold=False), Col("s2s", drop=6, fold=False)]
    if wide:
        cols.append(Col("reason", min_width=18))
    cells = [
        [r["name"], r["domain"], r["task"], f"{r['card_rows']:,}", r["license"], yes[r["commercial"]], r["access"],
         r["fetch"], yes[r["recipe"]], yes[r["homogeneous"]]] + ([r["reason"]] if wide else [])
        for r in rows
    ]
    title = f"{len(rows)} sources" + (" whose licence permits commercial use" if commercial_only else "")
    tables().print(fit_table(cols, cells, table_width(), title=title, caption=AVAILABLE_LEGEND))


def _choose(recipe_arg: str, commercial_only: bool) -> list:
    """The sources --recipe/--only names; an empty value or an unknown name stops with the closest names."""
    if recipe_arg.strip() != "all":
        names = [n.strip() for n in recipe_arg.split(",") if n.strip()]
        if not names:
            raise click.BadParameter(f"{recipe_arg!r} names no source: give 'all' or source names "
                                     "(`m3e-data list` shows them)", param_hint="--recipe")
        known = list(load_catalog())
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
                hint = f"did you mean {' or '.join(close)}?" if close else "`m3e-data list` shows the catalog"
                raise click.BadParameter(f"unknown source {name!r}: {hint}", param_hint="--recipe")
    try:
        return select_sources(recipe_arg, commercial_only)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--recipe") from None


def _parse_recipe_options(values: tuple[str, ...], building: set[str]) -> dict[str, dict[str, str]]:
    parsed: dict[str, dict[str, str]] = {}
    for value in values:
        name, sep, rest = value.partition(".")
        key, eq, text = rest.partition("=")
        if not sep or not eq or not name or not key:
            raise click.BadParameter(f"{value!r}: expected SOURCE.KEY=VALUE", param_hint="--option")
        # A misspelt or unselected source would otherwise be ignored and the build run with the defaults.
        if name not in recipe_names():
            close = difflib.get_close_matches(name, recipe_names(), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise click.BadParameter(f"{value!r}: no recipe named {name!r}{hint}", param_hint="--option")
        if name not in building:
            raise click.BadParameter(f"{value!r}: {name} is not being built (see --recipe/--only and "
                                     "--commercial-only)", param_hint="--option")
        parsed.setdefault(name, {})[key] = text
    return parsed


SUMMARY_CAPTION = (
    "read: records in the source's files. written: rows (query-positive pairs) in OUT/m3e; one record can "
    "give several rows, or none, so written can exceed read. dropped: records that gave no row and rows that "
    "failed validation, by reason. unchanged: built by an earlier run with the same input and recipe, "
    "not rebuilt (its seconds are that run's, so none are shown)."
)


def _summary(results: list[SourceResult], width: int) -> Table:
    cols = [Col("source", fold=False), Col("status", fold=False), Col("read", drop=1, number=True),
            Col("written", number=True), Col("dropped", drop=1, number=True),
            Col("top drop reasons / notes", min_width=14), Col("seconds", drop=2, number=True)]
    rows = []
    for r in results:
        if r.status in (BUILT, UNCHANGED):
            top = [f"{k} {v:,}" for k, v in r.counts.dropped.most_common(3)]
            marks = ([f"! {r.flag}"] if r.flag else []) + [f"no split {s}" for s in r.missing_splits]
            rows.append([
                r.name, r.status, f"{r.counts.read:,}", f"{r.counts.written:,}",
                f"{sum(r.counts.dropped.values()):,}", ", ".join(top + marks),
                f"{r.seconds:.1f}" if r.status == BUILT else "",
            ])
        else:  # its reason can be a paragraph (how to download it): printed whole below the table
            rows.append([r.name, r.status, "", "", "", "see below", ""])
    return fit_table(cols, rows, width, title="m3e build (normalize)", caption=SUMMARY_CAPTION)


def _reasons(results: list[SourceResult]) -> list[str]:
    """Why each source that was not built was not, one paragraph each (the table says "see below")."""
    lines = []
    for r in results:
        if r.status not in (BUILT, UNCHANGED):
            text = " ".join(r.reason.split())
            lines.append(text if text.startswith(f"{r.name}:") else f"{r.name}: {text}")
    return lines


def _where_and_next(out: Path | str, hq: bool, work_dir: Path | None = None) -> None:
    """Where build's outputs are and the commands that usually follow, with this build's paths (a URL for an
    object store OUT; push, export and train read local folders: its work dir)."""
    local = work_dir or out
    if isinstance(out, str):  # a URL: joined with "/", never a local path
        out = _Url(out)

    def q(path: Path | str) -> str:
        return shlex.quote(str(path))

    lines = ["", "outputs:", f"  {q(out / 'm3e')}/<source>/  unified rows, one folder per source"]
    if hq:
        lines += [f"  {q(out / 'm3e-hq')}/<source>/  after quality filter, dedup and decontamination",
                  f"  {q(out / 'rejects')}/<stage>/<source>/  every dropped row with its reason"]
    lines += [f"  {q(out / MANIFEST)}  what ran, with which options and counts", "", "next:"]
    if not hq:
        lines.append(f"  m3e-data hq {q(out)}  # the m3e-hq stage this build skipped (--no-hq)")
    else:
        hq_dir, scored = out / "m3e-hq", out / "m3e-hq-with-score"
        lines += [
            f"  m3e-data report {q(out)}  # HTML report: {q(out / 'report.html')}",
            f"  m3e-data mine --in {q(hq_dir)} --out {q(scored)}  # hard negatives, scores",
            f"  m3e-data push {q(local / 'm3e-hq')} --repo-id NAME/m3e-hq --dry-run {q(local / 'hub')}",
            f"  m3e-data export {q(local / 'm3e-hq')} --format sentence-transformers --out {q(local / 'st')}",
            f"  m3e-data train --in {q(local)} --model moka-ai/m3e-small --out {q(local / 'model')}",
        ]
    for line in lines:
        click.echo(line, err=True)


class _Url(str):
    """A URL that `/` joins as a path does, for the lines that name the outputs."""

    def __truediv__(self, part: str) -> _Url:
        return _Url(f"{self.rstrip('/')}/{part}")


def _executor(executor: str, ray_address: str | None, split_bytes: int | None = None) -> MapSources:
    """The executor --executor names, or a usage error (before any work) when Ray is asked for but absent."""
    if executor == "local":
        if ray_address:
            raise click.BadParameter("--ray-address is for --executor ray", param_hint="--ray-address")
        if split_bytes is not None:
            raise click.BadParameter("--split-bytes is for --executor ray", param_hint="--split-bytes")
        return map_local
    check_ray_executor(ray_address)
    from m3e_data.executors.normalize_ray import ray_executor
    from m3e_data.stages.normalize.units import DEFAULT_SPLIT_BYTES

    return ray_executor(ray_address, split_bytes=split_bytes or DEFAULT_SPLIT_BYTES)


_SIZE = re.compile(r"(\d+)\s*(?:([kmg])i?)?b?", re.IGNORECASE)


def _byte_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """'134217728', '128M', '128MiB' or '1G' as bytes (binary units), at least 1."""
    if value is None:
        return None
    match = _SIZE.fullmatch(value.strip())
    if match is None or int(match[1]) < 1:
        raise click.BadParameter(f"{value!r} is not a size such as 134217728, 128M or 1G")
    return int(match[1]) << {None: 0, "k": 10, "m": 20, "g": 30}[match[2] and match[2].lower()]


@main.command("build")
@click.option("--recipe", "--only", "recipe_arg", default="all", show_default=True, metavar="NAMES",
              help="Which sources: 'all' or a comma-separated list of names (`m3e-data list`). --only is the "
                   "same option, spelt as mine and train spell it.")
@click.option("--out", required=True, metavar="DIR|URL",
              help="Output folder, or an object store URL (s3://bucket/path, gs://..., any fsspec URL; see "
                   "--work-dir).")
@click.option("--sources", default="hub", show_default=True,
              help="'hub' (download from the Hugging Face Hub), 'demo' (bundled demo data), or a folder or "
                   "object store URL (s3://bucket/raw) holding one sub-folder per source.")
@click.option("--splits", default=None, help="Comma-separated splits to read (default: every split).")
@click.option("--commercial-only", is_flag=True, help="Build only sources whose licence permits commercial use.")
@click.option("--option", "recipe_option", multiple=True, metavar="SOURCE.KEY=VALUE",
              help="A recipe option, e.g. webtext2019zh.best_answer_only=true (repeatable).")
@click.option("--no-hq", is_flag=True, help="Stop after normalize (skip the m3e-hq stage).")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="Where normalize runs: 'local' (this machine, one source after another) or 'ray' (one Ray "
                   "task per source, and per byte range of a large JSON-lines file; needs the extra: pip "
                   "install 'm3e-data[ray]'). Same output either way.")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="The Ray cluster for --executor ray ('auto', HOST:6379, ray://HOST:10001). Default: "
                   "RAY_ADDRESS, else a local Ray started for this command.")
@click.option("--split-bytes", default=None, metavar="SIZE", callback=_byte_size,
              help="With --executor ray: JSON-lines files larger than this are cut into line-aligned byte "
                   "ranges of about this size, each its own Ray task (e.g. 64M, 1G). Default: 128M.")
@click.option("--allow-empty", is_flag=True,
              help="Exit 0 even when a source lost >= 99% of its rows to one drop reason (or read none).")
@hq_options
@work_dir_option
def build_command(
    recipe_arg: str, out: str, sources: str, splits: str | None, commercial_only: bool,
    recipe_option: tuple[str, ...], no_hq: bool, executor: str, ray_address: str | None,
    split_bytes: int | None, allow_empty: bool, config_path: Path | None, decontaminate: tuple[Path, ...],
    keep_eval_splits: bool, workers: int, verify: bool, work_dir: Path | None,
) -> None:
    """Normalize sources into OUT/m3e/<source>/ in the unified schema, then run m3e-hq (quality filter,
    dedup, decontamination) into OUT/m3e-hq and OUT/rejects unless --no-hq."""
    map_sources = _executor(executor, ray_address, split_bytes)
    chosen = _choose(recipe_arg, commercial_only)
    recipe_options = _parse_recipe_options(recipe_option, {s.name for s in chosen})
    if sources == "hub" and any(s.access.kind == "hub" and s.available for s in chosen):
        check_hub("build")
    elif is_url(sources):
        check_sources_url(sources)
    elif sources not in ("hub", "demo"):
        local_folder(sources, "--sources")
    shown = out.rstrip("/") if is_url(out) else Path(out)
    out_dir, session = open_out(out, work_dir, "--out")  # a URL: its local mirror, pushed as stages commit
    if session is None:
        hold_for_command(out_dir)  # one run per output folder, normalize and hq together
    out = out_dir
    options = BuildOptions(
        out=out,
        sources=sources,
        splits=[s.strip() for s in splits.split(",")] if splits else None,
        commercial_only=commercial_only,
        recipe_options=recipe_options,
        verify=verify,
    )
    resume = ("Rerun the same command to resume: each finished source is kept (it shows as unchanged) and "
              "the interrupted one starts over.")
    with resumable("build", resume) as track, Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(), console=messages, transient=True, disable=not messages.is_terminal,
    ) as progress:
        tasks: dict[str, int] = {}

        def on_start(name: str) -> None:
            track.start(name)
            tasks[name] = progress.add_task(name, total=None)

        def on_rows(name: str, n: int) -> None:
            progress.advance(tasks[name], n)

        results = build(chosen, options, on_start=on_start, on_rows=on_rows, map_sources=map_sources)
    if session is not None:  # what Ray workers committed, before hq starts
        session.push()
    tables().print(_summary(results, table_width()))
    for line in _reasons(results):
        tables().print(line, markup=False, highlight=False)
    for r in results:
        for line in r.warnings:
            messages.print(f"{r.name}: {line}", markup=False, highlight=False)
    if not any(r.status in (BUILT, UNCHANGED) for r in results):
        messages.print("nothing was built (see the reasons above); the m3e-hq stage did not run")
        sys.exit(1)
    if not no_hq:
        run_hq_command(out, config_path, decontaminate, keep_eval_splits, workers,
                       sources=[r.name for r in results if r.status in (BUILT, UNCHANGED)], verify=verify,
                       executor=executor, ray_address=ray_address)
    flagged = [r for r in results if r.flag]
    for r in flagged:
        messages.print(
            f"{r.name}: {r.flag} (a label read with the wrong type, a missing side file?); "
            + ("accepted with --allow-empty" if allow_empty else "pass --allow-empty to accept it"),
            markup=False, highlight=False,
        )
    _where_and_next(shown, hq=not no_hq, work_dir=out if session is not None else None)
    if any(r.status == "failed" for r in results) or (flagged and not allow_empty):
        sys.exit(1)


main.add_command(hq_command)
main.add_command(report_command)
main.add_command(push_command)
main.add_command(export_command)


def _register_plugins() -> None:
    """Commands other packages contribute (train/ adds `train`) without m3e_data importing them."""
    for ep in entry_points(group="m3e_data.commands"):
        if ep.name in main.commands:
            continue
        try:
            main.add_command(ep.load(), ep.name)
        except Exception as exc:  # an optional extra that is not installed must not break the CLI
            missing = f"{type(exc).__name__}: {exc}"

            @click.command(ep.name, help=f"(unavailable: {missing})", context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...], _why: str = missing) -> None:
                raise click.ClickException(f"this command is unavailable: {_why}")

            main.add_command(unavailable, ep.name)


main.add_command(mine_command)
_register_plugins()
