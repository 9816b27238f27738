"""The shared label parser: labels compare by value, and a row without one has one reason name."""

import pytest

from m3e_data.recipe import Skip
from m3e_data.stages.normalize.labels import CONTRADICTION, ENTAILMENT, UNKNOWN, UNLABELLED, label, label_of


@pytest.mark.parametrize("value", [1, "1", 1.0, "1.0", " 1 ", True, "true", "entailment", " Entailment\n"])
def test_every_spelling_of_one_is_one(value):
    assert label(value) == 1 == ENTAILMENT


@pytest.mark.parametrize("value", [0, "0", 0.0, "0.0", False, "neutral"])
def test_every_spelling_of_zero_is_zero(value):
    assert label(value) == 0


def test_contradiction_word_and_code_agree():
    assert label("contradiction") == label(2) == label("2") == CONTRADICTION


@pytest.mark.parametrize("value", [None, "", "-", " - ", -1, "-1", float("nan"), "null"])
def test_no_label_is_skipped_as_unlabelled(value):
    with pytest.raises(Skip) as raised:
        label(value)
    assert raised.value.reason == UNLABELLED == "unlabelled"
    assert label_of(value) is None


@pytest.mark.parametrize("value", ["maybe", 0.5, "1.5", ["1"]])
def test_unknown_label_is_its_own_reason(value):
    with pytest.raises(Skip) as raised:
        label(value)
    assert raised.value.reason == UNKNOWN
    assert label_of(value) is None
