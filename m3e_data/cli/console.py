"""Where the command line prints: progress bars and messages go to stderr, summary tables to stdout.

Width: at a terminal a table takes the terminal's width. Printed to a pipe or a log file it takes $COLUMNS
when that is set (`COLUMNS=80 m3e-data list | less`), else it is never folded: a log keeps whole rows.
A table that does not fit folds its text columns and then leaves out its least important columns; a
number is never folded or cut (`fit_table`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import click
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

messages = Console(stderr=True)

# Wide enough that no table of this package folds: a log line is grep-able whole.
LOG_WIDTH = 1000


def table_width() -> int:
    """The width tables are printed at (see the module's docstring)."""
    if sys.stdout.isatty():
        return Console().width  # the terminal's, or $COLUMNS when set
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) >= 20 else LOG_WIDTH


def tables() -> Console:
    return Console(width=table_width())


@dataclass(frozen=True)
class Col:
    """One column of a `fit_table`. `drop`: 0 keeps the column at any width; when the table does not fit,
    the column with the highest `drop` goes first. `number`: right-aligned and never folded. `fold`: a text
    column that may fold to `min_width` (a name or a status does not fold)."""

    header: str
    drop: int = 0
    number: bool = False
    fold: bool = True
    min_width: int = 8


def _text_width(text: str) -> int:
    return max((cell_len(line) for line in text.splitlines()), default=0)


def _narrowest(col: Col, cells: list[str]) -> int:
    header_words = max((cell_len(w) for w in col.header.split()), default=0)
    natural = max([_text_width(c) for c in cells] + [cell_len(col.header)])
    if col.number or not col.fold:
        return max([_text_width(c) for c in cells] + [header_words])
    return min(natural, max(col.min_width, header_words))


def fit_table(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int, *, title: str | None = None,
              caption: str | None = None) -> Table:
    """A rich Table of `rows` that fits `width` columns of text (box borders and padding included).

    Text columns fold, widest first, down to their narrowest; if the table still does not fit, columns are
    left out by `drop` (the caption says which). Numbers and names keep their full width."""
    keep = list(range(len(cols)))
    cells = [[str(r[i]) for r in rows] for i in range(len(cols))]
    need = [_narrowest(c, cells[i]) for i, c in enumerate(cols)]

    def total(indices: list[int], widths: list[int]) -> int:
        return sum(widths[i] for i in indices) + 3 * len(indices) + 1  # padding 2 and one border per column

    while total(keep, need) > width and any(cols[i].drop for i in keep):
        keep.remove(max((i for i in keep if cols[i].drop), key=lambda i: (cols[i].drop, i)))
    natural = [max([_text_width(c) for c in cells[i]] + [cell_len(col.header)]) for i, col in enumerate(cols)]
    widths = list(natural)
    excess = total(keep, widths) - width
    folding = [i for i in keep if cols[i].fold and not cols[i].number]
    while excess > 0:
        room = [i for i in folding if widths[i] > need[i]]
        if not room:
            break
        widest = max(room, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    left_out = [cols[i].header for i in range(len(cols)) if i not in keep]
    if left_out:
        note = f"left out at {width} columns: {', '.join(left_out)} (a wider terminal shows them)"
        caption = f"{caption}\n{note}" if caption else note
    table = Table(title=title, caption=caption, caption_justify="left")
    for i in keep:
        col = cols[i]
        if col.number:
            # A no_wrap header does not wrap either: stack its words when the numbers are narrower.
            header = col.header.replace(" ", "\n") if cell_len(col.header) > need[i] else col.header
            table.add_column(header, justify="right", no_wrap=True, min_width=need[i])
        elif not col.fold:
            table.add_column(col.header, no_wrap=True, min_width=need[i])
        else:
            table.add_column(col.header, overflow="fold", width=widths[i] if widths[i] < natural[i] else None)
    for r in rows:
        table.add_row(*(str(r[i]) for i in keep))
    return table


def error_line(text: str) -> None:
    """One line on stderr, never wrapped (rich would wrap it to the terminal's width), grep-able."""
    click.echo(f"error: {' '.join(text.split())}", err=True)




class Finished:
    """What a long command has finished so far, for the message Ctrl-C prints. `start(x)` marks the item
    before it as finished unless `finish` already did (an item's end is often seen only as the next one's
    start)."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.current: str | None = None

    def start(self, item: str) -> None:
        if item == self.current:
            return
        if self.current is not None:
            self.finish(self.current)
        self.current = item

    def finish(self, item: str) -> None:
        if item not in self.done:
            self.done.append(item)
        if item == self.current:
            self.current = None


@contextmanager
def resumable(what: str, resume: str) -> Iterator[Finished]:
    """Ctrl-C inside the block prints what `what` had finished and how a rerun resumes, then exits 130
    (the shell's code for SIGINT) with no traceback. Progress displays opened inside are closed first."""
    track = Finished()
    try:
        yield track
    except KeyboardInterrupt:
        doing = f" while {track.current} was running" if track.current else ""
        messages.print(f"interrupted (Ctrl-C){doing}.", markup=False, highlight=False)
        finished = ", ".join(track.done) if track.done else "nothing"
        messages.print(f"{what} finished before that: {finished}.", markup=False, highlight=False)
        messages.print(resume, markup=False, highlight=False)
        click.get_current_context().exit(130)
