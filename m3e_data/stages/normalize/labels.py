"""Labels compared by value, whichever way a copy of a source writes them.

The same label reaches a recipe as 1, "1", 1.0, "1.0", True or a word ("entailment"), depending on the
layout (Parquet ints, TSV text, C-MTEB's float `score`, CLUE's JSON words). A row with no label (a null,
"", "-" for no annotator consensus, -1 as the Hub marks test rows, a 2-column TSV test file) is counted
under one reason, `unlabelled`, in every recipe; a label that is none of these is `unknown_label`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from m3e_data.recipe import Skip

UNLABELLED = "unlabelled"
UNKNOWN = "unknown_label"
# clue/clue's integer codes for the CLUE NLI words (OCNLI, CMNLI); CINLID uses the same words.
NLI = {"neutral": 0, "entailment": 1, "contradiction": 2}
ENTAILMENT = NLI["entailment"]
CONTRADICTION = NLI["contradiction"]
_BOOL_WORDS = {"true": 1, "false": 0}
_NONE_WORDS = ("", "-", "none", "null", "nan")


class _Unknown(ValueError):
    pass


def _parse(value: Any, words: Mapping[str, int]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if not value.is_integer():
            raise _Unknown(value)
        value = int(value)
    if isinstance(value, int):
        return None if value < 0 else value
    if not isinstance(value, str):
        raise _Unknown(value)
    text = value.strip().lower()
    if text in _NONE_WORDS:
        return None
    if text in words:
        return words[text]
    if text in _BOOL_WORDS:
        return _BOOL_WORDS[text]
    try:
        return _parse(float(text), words)
    except ValueError:
        raise _Unknown(value) from None


def label(value: Any, words: Mapping[str, int] = NLI) -> int:
    """The label of the row being turned into pairs; `Skip` (counted) when it has none or an unknown one."""
    try:
        found = _parse(value, words)
    except _Unknown:
        raise Skip(UNKNOWN) from None
    if found is None:
        raise Skip(UNLABELLED)
    return found


def label_of(value: Any, words: Mapping[str, int] = NLI) -> int | None:
    """The label of a sibling row (a would-be negative): None when it has none or an unknown one, since a
    malformed sibling must not fail the row it would serve."""
    try:
        return _parse(value, words)
    except _Unknown:
        return None
