"""What the m3e-hq stage decided about each row, held compactly: the stage keeps these for every row of the
corpus at once (22M rows for the full M3E mix), so a row costs 9 bytes here, not a Python object."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from m3e_data.stages.hq.distinct import distinct


def reason_stage(reason: str) -> str:
    """The reject stage a drop reason belongs to (quality reasons are "quality:<rule>")."""
    if reason.startswith("quality:"):
        return "quality"
    return {"eval_split": "eval_split", "decontaminated": "decontaminate"}.get(reason, "dedup")


@dataclass
class Decisions:
    """Per row of one source: why it was dropped (code 0: kept; k: reasons[k - 1]), the row its duplicate
    cluster kept (a global row number, -1 unless a duplicate), and the evaluation file a decontaminated
    row matched (by row)."""

    code: np.ndarray  # uint8
    kept_gidx: np.ndarray  # int64
    reasons: list[str] = field(default_factory=list)
    matched: dict[int, str] = field(default_factory=dict)
    duplicate_ids: int = 0  # rows repeating another row's id (rejects and kept_id name rows by id)

    @classmethod
    def new(cls, rows: int, duplicate_ids: int = 0) -> Decisions:
        return cls(np.zeros(rows, dtype=np.uint8), np.full(rows, -1, dtype=np.int64), duplicate_ids=duplicate_ids)

    def drop(self, rows: np.ndarray, reason: str, kept: np.ndarray | None = None) -> None:
        """Mark `rows` (local row numbers) dropped for `reason`, pointing at the `kept` rows where given."""
        if reason not in self.reasons:
            if len(self.reasons) == 255:
                raise ValueError("more than 255 distinct drop reasons in one source")
            self.reasons.append(reason)
        self.code[rows] = self.reasons.index(reason) + 1
        if kept is not None:
            self.kept_gidx[rows] = kept

    def __len__(self) -> int:
        return len(self.code)

    @property
    def kept(self) -> np.ndarray:
        """Bool per row: survives."""
        return self.code == 0

    def _lookup(self, names: list[str | None]) -> np.ndarray:
        return np.array([None, *names], dtype=object)[self.code]

    @property
    def reason(self) -> np.ndarray:
        """The drop reason per row, None where kept (an object array, built on demand)."""
        return self._lookup(list(self.reasons))

    @property
    def stage(self) -> np.ndarray:
        """The reject stage per row, None where kept (an object array, built on demand)."""
        return self._lookup([reason_stage(r) for r in self.reasons])

    def stage_codes(self, stage: str) -> list[int]:
        """The codes whose reasons belong to `stage`."""
        return [k + 1 for k, r in enumerate(self.reasons) if reason_stage(r) == stage]


@dataclass
class KeptIds:
    """The ids of the rows that duplicates point to, by global row number (only those rows: the stage
    never holds every row's id)."""

    gidx: np.ndarray  # int64, sorted, unique
    ids: pl.Series

    def of(self, gidx: np.ndarray) -> np.ndarray:
        """The ids of rows `gidx` (each must be one of self.gidx)."""
        at = np.searchsorted(self.gidx, gidx)
        if len(at) and (at.max() >= len(self.gidx) or not np.array_equal(self.gidx[at], gidx)):
            raise KeyError("a kept row whose id was not collected")
        return self.ids.gather(at).to_numpy()

    def subset(self, gidx: np.ndarray) -> KeptIds:
        """Only the rows `gidx` point to (what one source's writer needs)."""
        wanted = distinct(gidx)
        return KeptIds(wanted, pl.Series(self.ids.name, self.of(wanted), dtype=pl.String))
