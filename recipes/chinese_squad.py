"""chinese_squad: question -> context for answerable questions, train + dev.

M3E's rule: answerable questions only (unanswerable ones carry `is_impossible: true` and `answers: []`),
train + dev of squad-zen: the repo's README counts 68,213 + 8,326 = 76,539 answerable questions, the card
76,449 pairs (not re-counted here: the squad-zen files were not reachable). The squad_2.0 copy
(train-v2.0-zh.json, dev-v2.0-zh.json: 46,530 + 3,991 = 50,521 answerable questions) is read when squad-zen
is absent, then squad_1.1. Ids are positions, not SQuAD ids: squad-zen merges two translations of the same questions,
so a SQuAD id is not known to be unique in it.
"""

from m3e_data.recipe import Pair, Skip


def to_pairs(row, ctx):
    if row.get("is_impossible") or not row["answers"]["text"]:
        raise Skip("unanswerable")
    yield Pair(row["question"], row["context"])
