"""Input files stay inside the folder they were found in.

A symbolic link under DIR/<source> that leads outside it (to /etc, a home folder, another source) would
make a build read, and publish, a file nobody put in the source folder: such a link is refused.
"""

from __future__ import annotations

from pathlib import Path


class OutsideSource(ValueError):
    """A file of a source resolves to a path outside the source's folder."""


def refuse_links_outside(root: Path, paths: list[Path]) -> list[Path]:
    """`paths` unchanged, or OutsideSource naming the first that resolves outside `root`."""
    top = root.resolve()
    for path in paths:
        target = path.resolve()
        if not target.is_relative_to(top):
            raise OutsideSource(
                f"{path}: a symbolic link to {target}, outside {root}; copy the file into {root} "
                "instead of linking to it"
            )
    return paths
