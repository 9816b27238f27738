"""ocnli: premise -> entailed hypothesis; the contradiction hypothesis of the same premise is a negative.

M3E's rule: label == entailment over every split: 17,726 pairs. Two layouts: the Hub's clue/clue Parquet
(labels 0 neutral, 1 entailment, 2 contradiction; test rows -1), and CLUE's upstream JSON lines
(CLUEbenchmark/OCNLI `train.50k.json` / `dev.json` / `test.json`, labels as words, "-" where the five
annotators reached no gold label, no label in test), found by name at any depth. Labels compare by value
through the shared parser; rows without a gold label (-1, "-", none) are counted as `unlabelled`.
"""

from m3e_data.recipe import Pair, Skip
from m3e_data.stages.normalize.labels import CONTRADICTION, ENTAILMENT, label, label_of

GROUP_BY = "sentence1"


def to_pairs(row, ctx):
    if label(row.get("label")) != ENTAILMENT:
        raise Skip("label_not_entailment")
    negatives = [r["sentence2"] for r in ctx.group if label_of(r.get("label")) == CONTRADICTION]
    key = row.get("idx", row.get("id"))
    yield Pair(row["sentence1"], row["sentence2"], negatives, key=None if key is None else str(key))
