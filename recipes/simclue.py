"""simclue: query -> similar sentence (s2s), with train_rank.json's neg_title as native negatives.

M3E's rule: every row of simclue_public/train_pair_postive.json (JSON lines {query, title}; the file name
is upstream's spelling): 775,593 pairs. train_rank.json holds (query, title, neg_title) triplets for
389,370 of those pairs; each neg_title is attached to the pair with the same query and title. SimCLUE
re-packages LCQMC, AFQMC, OCNLI, PAWS-X and others, so it overlaps those sources: deduplicate across them.

Option `rank_negatives` (default true) attaches the negatives; false gives M3E's plain pairs. The file
with the triplets is the catalog layout's `ranks` option, looked up beside train_pair_postive.json.
"""

from collections import defaultdict

import xxhash

from m3e_data.recipe import Pair
from m3e_data.stages.normalize.readers import BadRow, iter_json

OPTIONS = {"rank_negatives": True}


def _pair_hash(query, title) -> int:
    # Hashing the pair keeps the index at a few dozen bytes per triplet besides the negative's text.
    return xxhash.xxh3_64_intdigest(f"{query}\0{title}".encode())


def rank_negatives(path) -> dict[int, list[str]]:
    """(query, title) hash -> neg_titles, from train_rank.json (unreadable rows are skipped)."""
    index: dict[int, list[str]] = defaultdict(list)
    for row in iter_json(path):
        if isinstance(row, BadRow) or not isinstance(row.get("neg_title"), str):
            continue
        index[_pair_hash(row.get("query"), row.get("title"))].append(row["neg_title"])
    return index


def read(located, split, ctx):
    negatives: dict[int, list[str]] = {}
    ranks = ctx.layout_options.get("ranks")
    for name in located.files[split]:
        path = located.local_path(name)
        side = path.with_name(ranks) if ranks else None
        if ctx.options["rank_negatives"] and side is not None and side.is_file():
            negatives = rank_negatives(side)
        for row in iter_json(path):
            if not isinstance(row, BadRow):
                row["_negatives"] = negatives.get(_pair_hash(row.get("query"), row.get("title")), [])
            yield row


def to_pairs(row, ctx):
    yield Pair(row["query"], row["title"], row["_negatives"])
