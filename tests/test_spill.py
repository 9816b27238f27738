"""Near dedup's spill of candidate texts (stages/hq/spill.py) and the stage's reader of rows by global number
(stage.SourceTexts.pieces): exact texts back whatever the characters, several writers read as one, and only
the row groups that hold the rows asked for are decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m3e_data.stages.hq import stage
from m3e_data.stages.hq.spill import SharedSpill, SpilledRows, write_rows

# Texts a UTF-8 spill must give back byte for byte: empty, astral (emoji, CJK extension B), NUL and line
# breaks, combining marks, and long text. (Arrow strings are valid UTF-8: no lone surrogates reach a spill.)
ODD = ["", "😀表情", "𠀀𠀁", "x\x00y\r\nz", "e\u0301e\u0301", "长" * 5000, "普通的问题？"]


def _rows(n: int) -> tuple[list[str], list[str]]:
    queries = [f"{ODD[i % len(ODD)]}问{i}" for i in range(n)]
    positives = [f"答{i}{ODD[(i * 3) % len(ODD)]}" for i in range(n)]
    return queries, positives


def test_write_rows_gives_each_row_back_exactly(tmp_path):
    queries, positives = _rows(50)
    order = np.random.default_rng(1).permutation(50)
    # Pieces come in any order of positions: row i lands at its own index entry.
    pieces = [(order[:20], pa.table({"query": [queries[i] for i in order[:20]], "positive": [positives[i] for i in order[:20]]})),
              (order[20:], pa.table({"query": [queries[i] for i in order[20:]], "positive": [positives[i] for i in order[20:]]}))]
    path = tmp_path / "texts.bin"
    index = write_rows(path, pieces, 50)
    assert not list(tmp_path.glob("*.tmp"))  # written whole, then renamed
    ask = np.array([49, 0, 7, 7, 3])
    rows = SpilledRows((str(path),), np.zeros(len(ask), dtype=np.int32), index["start"][ask], index["q_len"][ask],
                       index["p_len"][ask])
    assert rows.load() == ([queries[i] for i in ask], [positives[i] for i in ask])


def test_shared_spill_writers_read_as_one(tmp_path):
    """Rows spilled by several writers (Ray tasks) are found wherever they lie; a retried writer writes the
    same file again; a row that was never spilled is an error, not an empty text."""
    queries, positives = _rows(101)
    rows = np.arange(0, 303, 3, dtype=np.int64)  # global numbers of the 101 candidate rows
    spill = SharedSpill.plan(tmp_path / "spill", rows, 4)
    assert spill.writers == 4 and spill.bounds[0] == 0 and spill.bounds[-1] == 101

    def pieces(t: int):
        mine = spill.rows_of(t)
        k = (mine // 3).tolist()
        return [(np.arange(len(k)), pa.table({"query": [queries[i] for i in k], "positive": [positives[i] for i in k]}))]

    for t in range(spill.writers):
        spill.write(t, pieces(t))
    first = (tmp_path / "spill" / "texts-2.bin").read_bytes()
    spill.write(2, pieces(2))  # Ray's retry of a writer
    assert (tmp_path / "spill" / "texts-2.bin").read_bytes() == first

    ask = np.array([300, 0, 150, 3, 297, 90], dtype=np.int64)
    got = spill(ask)
    assert len(set(got.file.tolist())) == 4  # the rows come from every writer's file
    assert got.load() == ([queries[g // 3] for g in ask], [positives[g // 3] for g in ask])
    with pytest.raises(KeyError):
        spill(np.array([4]))
    with pytest.raises(KeyError):
        spill(np.array([303]))


def _source(folder: Path, texts: list[tuple[str, str]], files: int, group: int) -> None:
    """A source's part files of `group`-row row groups."""
    folder.mkdir(parents=True)
    for f, chunk in enumerate(np.array_split(np.arange(len(texts)), files)):
        pq.write_table(pa.table({"query": [texts[i][0] for i in chunk], "positive": [texts[i][1] for i in chunk]}),
                       folder / f"part-{f:05d}.parquet", row_group_size=group)


def test_pieces_read_only_the_row_groups_that_hold_the_rows(tmp_path, monkeypatch):
    queries, positives = _rows(1000)
    rows = list(zip(queries, positives, strict=True))
    sources, local, offsets = [], [], [0]
    for s, (lo, hi) in enumerate(((0, 600), (600, 1000))):
        _source(tmp_path / f"src{s}", rows[lo:hi], files=3, group=50)
        sources.append(stage.SourceInput(f"src{s}", tmp_path / f"src{s}", {}, "similarity", "good", {}))
        alive = np.array([r for r in range(hi - lo) if r % 5 != 2], dtype=np.int64)  # rows dropped before dedup
        local.append(alive)
        offsets.append(offsets[-1] + len(alive))
    texts = stage.SourceTexts(sources, np.array(offsets), local)
    row_of = [lo + r for lo, alive in zip((0, 600), local, strict=True) for r in alive.tolist()]

    decoded: list[int] = []
    real = pq.ParquetFile.iter_batches

    def counting(self, *a, **k):
        for batch in real(self, *a, **k):
            decoded.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    some = np.sort(np.random.default_rng(2).choice(offsets[-1], 40, replace=False))[::-1].copy()
    assert texts(some) == ([queries[row_of[g]] for g in some], [positives[row_of[g]] for g in some])
    # Rows 500..509 of src0 (its third part file, 200 rows) and one row of src1: two row groups decoded.
    decoded.clear()
    want = np.array([g for g in range(offsets[-1]) if 500 <= row_of[g] < 510 or row_of[g] == 990])
    assert texts(want) == ([queries[row_of[g]] for g in want], [positives[row_of[g]] for g in want])
    assert sum(decoded) <= 2 * 50, decoded
