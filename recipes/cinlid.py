"""cinlid: idiom -> idiom it entails (s2s); contradiction partners of the same idiom are negatives.

M3E's rule: label == "entailment" (about one third of the pairs; the card counts 34,746, and which copy
uniem read is not documented). Two copies circulate: JSON lines {sentence1, sentence2, label} (91,247
rows) and luge's GBK-encoded {"data": [{phrase1, phrase2, label}]} (106,832 pairs); labels are the words
entailment / neutral / contradiction. The source is small (~100k rows), so a split is grouped by premise.
"""

from m3e_data.recipe import Pair, Skip
from m3e_data.stages.normalize.labels import CONTRADICTION, ENTAILMENT, label, label_of


def premise(row):
    return row["sentence1"] if "sentence1" in row else row["phrase1"]


def hypothesis(row):
    return row["sentence2"] if "sentence2" in row else row["phrase2"]


GROUP_BY = premise


def to_pairs(row, ctx):
    if label(row.get("label")) != ENTAILMENT:
        raise Skip("label_not_entailment")
    # A sibling row with a missing field must not fail the row it would give a negative to.
    siblings = [r for r in ctx.group if label_of(r.get("label")) == CONTRADICTION]
    negatives = [r.get("sentence2", r.get("phrase2")) for r in siblings]
    yield Pair(premise(row), hypothesis(row), negatives)
