"""paws_x (zh): sentence -> paraphrase (s2s); label-0 partners of the same sentence1 are negatives.

M3E's rule: label == 1 over every split (49,401 train + 2,000 validation + 2,000 test rows): 23,576 pairs.
Label-0 pairs share sentence1 and differ by word swaps: the hardest negatives a paraphrase model can get.
Some dev/test rows hold the placeholder "NS" (no sentence) instead of a translation: such rows are dropped,
and never serve as negatives. The id is the PAWS-X row id where the layout has one.
"""

from m3e_data.recipe import Pair, Skip
from m3e_data.stages.normalize.labels import label, label_of

GROUP_BY = "sentence1"
_PLACEHOLDER = "NS"


def is_placeholder(row) -> bool:
    return _PLACEHOLDER in (row["sentence1"].strip(), row["sentence2"].strip())


def _negative(row, positive):
    """The sibling's sentence2 when it is a usable negative; a malformed sibling (a TSV row cut short, a
    null text) is no negative and must not fail the row it would serve."""
    text = row.get("sentence2")
    if not isinstance(text, str) or label_of(row.get("label"), {}) != 0:
        return None
    text = text.strip()
    # Machine translation sometimes makes a word-swap partner identical to the paraphrase: not a negative.
    return None if text in (_PLACEHOLDER, positive) else text


def to_pairs(row, ctx):
    if is_placeholder(row):
        raise Skip("ns_placeholder")
    if label(row.get("label"), {}) != 1:
        raise Skip("label_not_1")
    positive = row["sentence2"].strip()
    negatives = [n for r in ctx.group if (n := _negative(r, positive)) is not None]
    key = row.get("id")
    yield Pair(row["sentence1"], row["sentence2"], negatives, key=None if key is None else str(key))
