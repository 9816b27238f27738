"""cmrc2018: question -> context, every split.

M3E's rule: one pair per question over train + validation + test (10,142 + 3,219 + 1,002 questions, the
card's 14,363); two trial (test) questions are empty, so 1,000 test pairs and 14,361 in all. Two layouts
give the same rows: the Hub's Parquet (hfl/cmrc2018, test = the trial set) and the SQuAD-style JSON of
ymcui/cmrc2018 (cmrc2018_train.json / cmrc2018_dev.json / cmrc2018_trial.json, found at any depth).
About 3.8 questions share a context, so a context is the positive of several rows.
"""

from m3e_data.recipe import Pair


def to_pairs(row, ctx):
    yield Pair(row["question"], row["context"], key=row["id"])
