"""Build what is there: a Hub layout missing a split is built from the others when no layout is complete."""

import pytest

from m3e_data.catalog import load_catalog
from m3e_data.stages.normalize.locate import locate
from tests.test_hub_reading import fake_hub, write_parquet  # noqa: F401 - the fixture is used by name


@pytest.mark.parametrize("complete_mirror", [False, True])
def test_a_hub_layout_missing_a_split_is_built_without_it_unless_another_is_complete(fake_hub, complete_mirror):  # noqa: F811
    export = fake_hub.root / "shibing624" / "nli_zh" / "refs/convert/parquet" / "LCQMC"
    for split in ("validation", "test"):  # the export lost its train split
        write_parquet(export / split / "0000.parquet", [{"sentence1": "甲", "sentence2": "乙", "label": 1}])
    if complete_mirror:
        mirror = fake_hub.root / "C-MTEB" / "LCQMC" / "main" / "data"
        for split in ("train", "validation", "test"):
            write_parquet(mirror / f"{split}-00000-of-00001.parquet", [{"sentence1": "甲", "sentence2": "乙", "score": 1}])
    located = locate(load_catalog()["lcqmc"], "hub")
    if complete_mirror:
        assert located.layout.name == "c-mteb" and not located.missing and not located.warnings()
        return
    assert located.layout.name == "parquet-export" and located.splits == ["validation", "test"]
    assert located.missing == {"train": ["LCQMC/train/*.parquet"]}
    assert located.warnings() == [
        "split train not found: looked for LCQMC/train/*.parquet in shibing624/nli_zh@refs/convert/parquet "
        "(layout 'parquet-export'); built the others; pass --splits validation,test to leave it out"
    ]
