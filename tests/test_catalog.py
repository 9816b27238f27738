"""The catalog: 29 sources, validated on load, licence facts consistent with the commercial rule."""

from pathlib import Path

import pytest
import yaml

from m3e_data.catalog import COMMERCIAL_LICENSES, CatalogError, load_catalog, load_file, manifests_dir

M3E_TOTAL = 21_837_781  # the card's "2200W+"


def test_all_29_sources_load_and_sum_to_the_card_total():
    catalog = load_catalog()
    assert len(catalog) == 29
    assert sum(s.card_rows for s in catalog.values()) == M3E_TOTAL


def test_every_source_documents_its_rule_licence_and_access():
    for s in load_catalog().values():
        assert len(s.counting_rule) > 20, s.name
        assert s.license.spdx and s.license.reason, s.name
        assert s.citation.strip().startswith("@"), s.name
        if s.access.kind == "hub":
            assert "/" in (s.access.repo_id or ""), s.name
        else:
            assert s.access.url and s.access.how_to_get, s.name


def test_every_counting_rule_states_m3e_s_pairing_and_the_card_count():
    """Issue 3: for each source, the rule M3E used and the count it gives on the full data."""
    for s in load_catalog().values():
        assert "->" in s.counting_rule, s.name
        assert f"{s.card_rows:,}" in s.counting_rule, s.name


def test_commercial_only_where_the_licence_permits_and_the_card_does_not_say_no():
    catalog = load_catalog()
    for s in catalog.values():
        if s.commercial:
            assert s.license.spdx in COMMERCIAL_LICENSES and s.license.card_commercial != "no", s.name
        if "NC" in s.license.spdx or "research" in s.license.spdx or "unstated" in s.license.spdx:
            assert not s.commercial, s.name
    assert {n for n, s in catalog.items() if s.commercial} == {
        "csl", "miracl_corpus", "mlqa", "paws_x", "wiki_atomic_edits",
    }


def test_amazon_is_marked_defunct():
    amazon = load_catalog()["amazon_reviews_multi"]
    assert not amazon.available and "defunct" in (amazon.availability or "").lower()


def _broken_copy(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((manifests_dir() / "cmrc2018.yaml").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "cmrc2018.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("domain"), "field 'domain' is missing"),
        (lambda d: d.update(card_rows="many"), "field 'card_rows' must be int"),
        (lambda d: d.update(task="chat"), "field 'task' is 'chat'; expected one of"),
        (lambda d: d["access"].pop("repo_id"), "field 'access.repo_id' is missing"),
        (lambda d: d["access"]["layouts"][0].update(format="xml"), "field 'access.layouts[0].format'"),
        (lambda d: d["license"].update(card_commercial="maybe"), "field 'license.card_commercial'"),
        (lambda d: d["license"].update(commercial=True), "field 'license.commercial' is true"),
        (lambda d: d.update(name="other"), "field 'name' is 'other' but the file is named cmrc2018.yaml"),
    ],
)
def test_a_malformed_manifest_names_the_file_and_the_field(tmp_path, edit, message):
    path = _broken_copy(tmp_path, edit)
    with pytest.raises(CatalogError) as err:
        load_file(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_invalid_yaml_is_a_catalog_error(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_file(path)
