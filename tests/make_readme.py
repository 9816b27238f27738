"""python -m tests.make_readme: rewrite the README's catalog blocks from manifests/ and the CLI.

The blocks between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->` are derived from the catalog,
so they cannot drift from it: tests/test_readme.py fails when the README and this output differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from m3e_data.catalog import Source, layout_files, load_catalog
from m3e_data.cli.main import main
from m3e_data.recipe import load_recipe

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(<!-- generated:(?P<name>[a-z]+) -->\n).*?(<!-- /generated:(?P=name) -->)", re.DOTALL)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def list_block() -> str:
    result = CliRunner().invoke(main, ["list"])
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    lines = [line.rstrip() for line in result.output.splitlines()]
    return "```\n" + "\n".join(lines).strip("\n") + "\n```\n"


def _options(source: Source) -> str:
    options = load_recipe(source.name).options
    return "<br>".join(f"`{key}={value}`" for key, value in options.items()) or ""


def sources_block() -> str:
    rows = [
        "| source | domain | task | s2s | M3E counted | what the recipe produces (defaults reproduce M3E) "
        "| options | licence | commercial |",
        "|---|---|---|---|---:|---|---|---|---|",
    ]
    for s in load_catalog().values():
        commercial = "**yes**" if s.commercial else "no"
        if not s.available:
            commercial += " (defunct: local copy only)"
        rows.append(
            f"| [{s.name}]({s.homepage}) | {s.domain} | {s.task} | {'yes' if s.homogeneous else 'no'} "
            f"| {s.card_rows:,} | {_cell(s.counting_rule)} | {_options(s)} | `{s.license.spdx}` "
            f"| {commercial}: {_cell(s.license.reason)} |"
        )
    return "\n".join(rows) + "\n"


def downloads_block() -> str:
    """One line per way of downloading a source: every source with a download layout (files found by name
    at any depth), Hub sources included, with its `how_to_get` and the files it reads."""
    parts = []
    for s in load_catalog().values():
        groups: dict[tuple[str, str], tuple[list[str], set[str]]] = {}
        for layout in s.access.layouts:
            if not layout.by_name:
                continue
            text = layout.how_to_get or s.access.how_to_get or ""
            names, files = groups.setdefault((layout.url or s.access.url or "", text), ([], set()))
            names.append(layout.name)
            files.update(layout_files(layout))
        for (url, text), (names, files) in groups.items():
            which = f" (layout {', '.join(f'`{n}`' for n in names)})" if s.access.kind == "hub" else ""
            parts.append(
                f"- **{s.name}**{which} — <{url}>. {_cell(text)} "
                f"Files read: {', '.join(f'`{f}`' for f in sorted(files))}."
            )
    return "\n".join(parts) + "\n"


BLOCKS = {"list": list_block, "sources": sources_block, "downloads": downloads_block}


def render(text: str) -> str:
    """The README text with every generated block rewritten."""
    def replace(match: re.Match[str]) -> str:
        return match.group(1) + BLOCKS[match.group("name")]() + match.group(3)

    return _BLOCK.sub(replace, text)


if __name__ == "__main__":
    old = README.read_text(encoding="utf-8")
    new = render(old)
    README.write_text(new, encoding="utf-8")
    print("README.md " + ("rewritten" if new != old else "already up to date"), file=sys.stderr)
