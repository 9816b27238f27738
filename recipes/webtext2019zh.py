"""webtext2019zh: question title -> reply, one pair per reply, every file.

M3E's rule: every row of web_text_zh_{train,valid,testa}.json (JSON lines {qid, title, desc, topic, star,
content, answer_id, answerer_tags}, one row per reply, train ~2 GB, streamed): 4,258,310 pairs. `<br>`
tags become line breaks in normalize's shared text repairs (m3e_data/stages/normalize/textclean.py). A qid repeats once
per reply; other replies to the same question are never negatives (they answer it too). Ids are row positions: a crawled file's answer_ids are not guaranteed
unique.

Option `best_answer_only` (default false) keeps one reply per question: the one with the most `star`s,
the first in file order on a tie. It costs a first pass over the split that keeps ~24 bytes per row in
Arrow/polars columns (about 100 MB for the train file), not the rows themselves.
"""

from array import array

import numpy as np
import polars as pl
import xxhash

from m3e_data.recipe import Pair, Skip
from m3e_data.stages.normalize.readers import BadRow

OPTIONS = {"best_answer_only": False}
READ_IF = "best_answer_only"  # without it the framework reads the files (and Ray may cut the 2 GB train file)


def _star(row) -> float:
    try:
        return float(row["star"])
    except (KeyError, TypeError, ValueError):
        return float("-inf")


def _usable(row) -> bool:
    """Whether a row can give a pair; the others are left to the framework to count by their reason."""
    return not isinstance(row, BadRow) and all(
        isinstance(row.get(k), str) and row[k].strip() for k in ("title", "content")
    )


def best_positions(items) -> np.ndarray:
    """Positions (in read order) of the best-starred usable reply of each qid; rows without a qid are kept."""
    # Hashed qids in flat arrays: 24 bytes a row, where a dict of Python objects would take ~10x that.
    qids, stars, positions = array("Q"), array("d"), array("q")
    for position, row in enumerate(items):
        if not _usable(row):
            continue  # a reply that gives no pair must not hide its question's best usable one
        qid = row.get("qid")
        qids.append(xxhash.xxh3_64_intdigest((f"q{qid}" if qid is not None else f"row{position}").encode()))
        stars.append(_star(row))
        positions.append(position)
    frame = pl.DataFrame(
        {
            "qid": np.frombuffer(qids, dtype=np.uint64),
            "star": np.frombuffer(stars, dtype=np.float64),
            "position": np.frombuffer(positions, dtype=np.int64),
        }
    )
    best = frame.group_by("qid").agg(
        pl.col("position").filter(pl.col("star") == pl.col("star").max()).min()
    )
    return best["position"].sort().to_numpy()


def read(located, split, ctx):
    keep = iter(best_positions(located.rows(split)))
    wanted = int(next(keep, -1))  # plain ints: a numpy bool would not be `False` in to_pairs
    for position, row in enumerate(located.rows(split)):
        if _usable(row):
            row["_best"] = position == wanted
            if position == wanted:
                wanted = int(next(keep, -1))
        yield row


def to_pairs(row, ctx):
    if row.get("_best") is False:
        raise Skip("not_best_answer")
    yield Pair(row["title"], row["content"])
