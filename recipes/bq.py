"""bq: bank customer question -> same-intent question (s2s); label-0 partners of the same question are
negatives.

M3E's rule: label == 1 over every split; the 100,000 / 10,000 / 10,000 splits are balanced, so
50,000 + 5,000 + 5,000 = 60,000 pairs. The rows are read as lcqmc's are (the same pair layouts): the
Parquet export of shibing624/nli_zh (`label`), C-MTEB/BQ (`score`), or 千言's bq_corpus TSV found at any
depth, whose test file has two columns and is counted as unlabelled.
"""

from m3e_recipes.lcqmc import GROUP_BY, read, to_pairs

__all__ = ["GROUP_BY", "read", "to_pairs"]
