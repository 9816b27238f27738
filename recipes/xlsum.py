"""xlsum (chinese_simplified): title -> summary and title -> text, every split.

M3E's rule: two pairs per article, 2 × (37,362 + 4,670 + 4,670) = 2 × 46,702 = 93,404 pairs, read from the
Parquet export of the script repo or from the upstream JSON lines (chinese_simplified_{train,val,test}.jsonl
of the XLSum v2.0 archive, the same rows). `text` is a whole BBC article: it is cut at the last sentence end within
`max_text_chars` (the default, 1,024 characters, is twice what a 512-token encoder reads, so training sees
what M3E's did; 0 keeps the whole article). `positives` picks which pairs to make. Ids are
`<article id>-summary` and `<article id>-text`.
"""

from m3e_data.recipe import Pair

OPTIONS = {"positives": ["summary", "text"], "max_text_chars": 1024}
_SENTENCE_ENDS = "。！？!?\n"
_FIELDS = ("summary", "text")


class BadOption(Exception):
    """A wrong option value ends the source's build with this message (a ValueError would be counted per
    row as a drop instead)."""


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a sentence end when one lies in the second half."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = text[:limit]
    cut = max(head.rfind(end) for end in _SENTENCE_ENDS)
    return head[: cut + 1] if cut >= limit // 2 else head


def to_pairs(row, ctx):
    unknown = set(ctx.options["positives"]) - set(_FIELDS)
    if unknown:
        raise BadOption(f"xlsum.positives takes summary and/or text, not {', '.join(sorted(unknown))}")
    for field in ctx.options["positives"]:
        positive = row[field]
        if field == "text" and isinstance(positive, str):
            positive = truncate(positive, ctx.options["max_text_chars"])
        yield Pair(row["title"], positive, key=f"{row['id']}-{field}")
