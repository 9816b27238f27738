"""lcqmc: question -> paraphrased question (s2s); label-0 partners of the same question are negatives.

M3E's rule: label == 1 over every split: 149,226 pairs of 238,766 + 8,802 + 12,500 rows. Layouts:
- the Parquet export of shibing624/nli_zh (`label`) and C-MTEB/LCQMC (`score`, the column the catalog
  names); labels compare by value (0/1 ints, "1" text, 1.0 floats all mean the same);
- the upstream TSV files, found by name at any depth: HIT's (CSTS) `train.txt` / `dev.txt` / `test.txt`
  and 千言's `train.tsv` / `dev.tsv` / `test.tsv`, `sentence1<TAB>sentence2<TAB>label` without a header,
  or label first (`label<TAB>sentence1<TAB>sentence2`, as some copies ship; a header row, if any, is
  skipped). Which way a file goes is decided from its first row; a 2-column (test) row is unlabelled.
"""

from m3e_data.recipe import Pair, Skip
from m3e_data.stages.normalize.labels import label, label_of
from m3e_data.stages.normalize.readers import BadRow, iter_tsv

GROUP_BY = "sentence1"
_FIELDS = ("f0", "f1", "f2")
_NAMES = ("sentence1", "sentence2", "label")
NO_WORDS: dict[str, int] = {}  # 0/1 only: a word here is an unknown label, not a guess


def _is_header(fields: list[str]) -> bool:
    return any(f.strip().lower() in ("label", "sentence1", "text_a", "query1") for f in fields)


def pair_tsv(path):
    """Rows {sentence1, sentence2, label} of one upstream pair TSV, whichever side its label is on."""
    label_first = None
    for row in iter_tsv(path, columns=list(_FIELDS), header=False):
        if isinstance(row, BadRow):
            yield row
            continue
        fields = [row[k] for k in _FIELDS if k in row]
        if label_first is None:
            if _is_header(fields):
                continue
            label_first = (
                len(fields) == 3
                and label_of(fields[0], NO_WORDS) is not None
                and label_of(fields[2], NO_WORDS) is None
            )
        if label_first:
            fields = fields[1:] + fields[:1]
        yield dict(zip(_NAMES, fields, strict=False))


def read(located, split, ctx):
    if located.layout.format != "tsv":
        yield from located.rows(split)
        return
    for name in located.files[split]:
        yield from pair_tsv(located.local_path(name))


def _label(row, ctx):
    return row.get(ctx.layout_options.get("label_column", "label"))


def to_pairs(row, ctx):
    if label(_label(row, ctx), NO_WORDS) != 1:
        raise Skip("label_not_1")
    negatives = [r["sentence2"] for r in ctx.group if label_of(_label(r, ctx), NO_WORDS) == 0]
    yield Pair(row["sentence1"], row["sentence2"], negatives)
