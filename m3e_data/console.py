"""Where the command line prints: progress bars and messages go to stderr, summary tables to stdout.

A table printed to a pipe or a log file gets a fixed width that fits every column; at a terminal it takes
the terminal's width.
"""

from __future__ import annotations

import sys

from rich.console import Console

messages = Console(stderr=True)


def tables() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=160)
