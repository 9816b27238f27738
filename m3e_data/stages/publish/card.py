"""The dataset card (README.md) of a staged Hub repository: YAML metadata the Hub and `datasets` read,
and a body a user can act on (sources and licences, how the data was built, caveats, citations).

Everything in it comes from three places: the staged files (configs, splits, row counts, features), the
catalog (licences, M3E's counting rules, links, citations) and OUT/build-manifest.json (what each stage
dropped and why; the mining model and parameters). A stage the manifest does not record is said to be
unrecorded in the card rather than guessed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
from huggingface_hub import DatasetCard, DatasetCardData

from m3e_data.catalog import COMMERCIAL_LICENSES, Source
from m3e_data.schema import UNIFIED_SCHEMA
from m3e_data.stages.mine.teacher import public_name
from m3e_data.stages.publish.hub_stage import ALL_CONFIG, StagedRepo, public_mining_record, public_model_name
from m3e_data.storage.store import atomic_write_text

# Licence ids the Hub's `license:` field accepts, for the licences our catalog uses
# (https://huggingface.co/docs/hub/repositories-licenses). Anything else is "other" (a named licence the
# Hub has no id for) or "unknown" (no licence published).
HUB_LICENSE_IDS = frozenset(
    {
        "apache-2.0", "mit", "cc0-1.0", "cc-by-2.0", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
        "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
        "cc-by-nd-4.0", "cc-by-nc-nd-4.0", "odc-by", "odbl", "pddl",
    }
)
UNSTATED = "LicenseRef-unstated"
GENERATED_BY_LLM = ("hc3_chinese", "belle_2m", "alpaca_gpt4", "chatmed_consult")
MACHINE_TRANSLATED = ("mlqa", "chinese_squad", "paws_x")  # paws_x: its train split
# Known overlaps between sources (design.md, Dedup): rows can repeat across their configs.
OVERLAPS = (
    ("simclue", "lcqmc, afqmc, ocnli, paws_x (SimCLUE re-packages them)"),
    ("belle_2m", "firefly, alpaca_gpt4 (instruction sets that share seed prompts)"),
    ("news2016zh", "xlsum (news titles and summaries)"),
)
M3E_CITATION = """@software{MokaMassiveMixedEmbedding,
  author = {Wang Yuxin and Sun Qingxuan and He Sicheng},
  title = {M3E: Moka Massive Mixed Embedding Model},
  year = {2023}
}"""
COLUMN_MEANINGS = {
    "id": "stable across rebuilds: source/split/the source's own row key",
    "source": "the config (source) the row comes from",
    "split": "the source's own split",
    "query": "the anchor text",
    "positive": "the text that matches it",
    "negatives": "hard negatives (native to the source, or mined)",
    "positive_score": "encoder similarity of (query, positive); null unless mined",
    "negative_scores": "one score per negative; null unless mined",
    "task": "qa / summary / similarity / nli / sql / none (M3E's prompt column)",
    "homogeneous": "true for sentence-to-sentence (s2s), false for sentence-to-passage (s2p)",
    "domain": "the source's domain",
    "license": "the source's licence (SPDX id, or LicenseRef-… where it has none)",
    "commercial": "true only where the licence is known to permit commercial use",
}


def hub_license(spdx: str) -> str:
    """The Hub's id for an SPDX licence: lower-cased when the Hub knows it, else "other"/"unknown"."""
    if spdx == UNSTATED:
        return "unknown"
    return spdx.lower() if spdx.lower() in HUB_LICENSE_IDS else "other"


def size_category(rows: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    return next((label for bound, label in bounds if rows < bound), "100M<n<1B")


def config_entries(staged: StagedRepo) -> list[dict[str, Any]]:
    """The `configs:` list: `all` (the default, every source) first, then one per source."""
    entries = [
        {
            "config_name": ALL_CONFIG,
            "default": True,
            "data_files": [{"split": s, "path": f"*/{s}-*.parquet"} for s in staged.splits],
        }
    ]
    for config, splits in sorted(staged.configs.items()):
        entries.append(
            {
                "config_name": config,
                "data_files": [{"split": s, "path": f"{config}/{s}-*.parquet"} for s in sorted(splits)],
            }
        )
    return entries


def dataset_infos(staged: StagedRepo) -> list[dict[str, Any]]:
    """The `dataset_info:` list in the form `datasets` writes it: features, split sizes, row counts."""
    from datasets import Features, SplitDict, SplitInfo
    from datasets.info import DatasetInfo

    features = Features.from_arrow_schema(UNIFIED_SCHEMA)
    per_config = {
        config: {s: (f.rows, f.num_bytes, f.download_size) for s, f in splits.items()}
        for config, splits in staged.configs.items()
    }
    per_config[ALL_CONFIG] = {
        s: tuple(
            sum(vals) for vals in zip(*(c[s] for c in per_config.values() if s in c), strict=True)
        )
        for s in staged.splits
    }
    infos = []
    for config, splits in sorted(per_config.items(), key=lambda kv: (kv[0] != ALL_CONFIG, kv[0])):
        split_dict = SplitDict()
        for split, (rows, num_bytes, _) in splits.items():
            split_dict.add(SplitInfo(name=split, num_bytes=num_bytes, num_examples=rows))
        info = DatasetInfo(
            features=features,
            splits=split_dict,
            download_size=sum(v[2] for v in splits.values()),
            dataset_size=sum(v[1] for v in splits.values()),
        )
        infos.append({"config_name": config, **info._to_yaml_dict()})
    return infos


def licenses_present(staged: StagedRepo, catalog: dict[str, Source]) -> list[str]:
    """Hub licence ids of the sources actually staged (a source missing from the catalog is "unknown")."""
    return sorted({hub_license(catalog[c].license.spdx) if c in catalog else "unknown" for c in staged.configs})


def card_data(
    staged: StagedRepo, catalog: dict[str, Source], *, pretty_name: str, mined: bool
) -> DatasetCardData:
    tags = ["sentence-transformers", "embeddings", "text-embedding", "chinese", "m3e", "contrastive-learning"]
    if mined:
        tags.append("hard-negatives")
    return DatasetCardData(
        pretty_name=pretty_name,
        language=["zh"],
        license=licenses_present(staged, catalog),
        task_categories=["sentence-similarity", "feature-extraction"],
        size_categories=[size_category(staged.rows)],
        tags=tags,
        configs=config_entries(staged),
        dataset_info=dataset_infos(staged),
    )


def _type_name(t: pa.DataType) -> str:
    """The type as `datasets` names it (float32, list<string>), not Arrow's `list<item: float>`."""
    if pa.types.is_list(t):
        return f"list<{_type_name(t.value_type)}>"
    return "float32" if pa.types.is_float32(t) else str(t)


def _cell(text: str) -> str:
    """One Markdown table cell: no newlines, no bare pipes."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _source_table(staged: StagedRepo, catalog: dict[str, Source]) -> str:
    lines = [
        "| config | rows | M3E card rows | M3E's rule | licence | commercial | link |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for config, splits in sorted(staged.configs.items()):
        rows = sum(f.rows for f in splits.values())
        src = catalog.get(config)
        if src is None:
            lines.append(f"| {config} | {rows:,} | – | not in the catalog | unknown | no | – |")
            continue
        lines.append(
            f"| `{config}` | {rows:,} | {src.card_rows:,} | {_cell(src.counting_rule)} | {src.license.spdx} | "
            f"{'yes' if src.commercial else 'no'} | [{_cell(src.provider)}]({src.homepage}) |"
        )
    return "\n".join(lines)


def _drops(d: Any) -> str:
    if not isinstance(d, dict) or not d:
        return "–"
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in sorted(d.items()))


def _num(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else "–"


def _file_names(d: dict[str, Any]) -> dict[str, Any]:
    """An evaluation-file mapping keyed by local paths, keyed by file name instead (the card is public)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = str(key).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or str(key)
        while name in out:  # two eval files of one name in different folders
            name += "'"
        out[name] = value
    return out


def _hq_settings(options: dict[str, Any]) -> list[str]:
    """The hq stage's settings as sentences a reader can check (the manifest keeps the raw record)."""
    config = options.get("config") or {}
    stats = options.get("stats") or {}
    minhash = stats.get("minhash") or {}
    out = []
    if minhash:
        out.append(
            f"- **Near dedup**: MinHash over character {minhash.get('ngram', 3)}-grams of each pair "
            f"({minhash.get('num_perm')} permutations, datasketch's `{minhash.get('scheme')}` scheme with the "
            f"`{minhash.get('hash')}` shingle hash, seed {minhash.get('seed')}), LSH with {stats.get('bands')} bands "
            f"of {stats.get('rows')} rows, candidates verified exactly: a duplicate has the pair's 3-gram Jaccard "
            f"≥ {config.get('jaccard', 0.8)} and each side's (query with query, positive with positive) "
            f"≥ {config.get('side_jaccard', 0.5)}; but two questions about a passage (s2p rows whose query is no "
            f"longer than the positive) are duplicates only with the same normalised query and positives of "
            f"Jaccard ≥ {config.get('jaccard', 0.8)}. Exact duplicates share the normalised (query, positive)."
        )
    overrides = {k: v for k, v in (("all sources", config.get("defaults")),) if v}
    overrides.update({f"`{name}`": v for name, v in (config.get("sources") or {}).items() if v})
    out.append(
        "- **Quality thresholds**: m3e-data's defaults and the catalog's per-source settings"
        + ("; changed for this build: " + "; ".join(f"{k}: `{json.dumps(v, ensure_ascii=False)}`"
                                                      for k, v in overrides.items()) if overrides else "")
        + "."
    )
    if "keep_eval_splits" in options:
        out.append(
            "- **Evaluation splits** of the sources (validation/test): "
            + ("kept." if options["keep_eval_splits"] else "left out (they are evaluation data).")
        )
    return out


def _build_section(
    staged: StagedRepo, manifest: dict[str, Any], emptied_ok: Any = lambda source: True
) -> str:
    """`emptied_ok(source)`: whether a source the hq stage emptied belongs in this release's table."""
    stages = manifest.get("stages") if isinstance(manifest.get("stages"), dict) else {}
    normalize = (stages.get("normalize") or {}).get("sources") or {}
    hq = (stages.get("hq") or {}).get("sources") or {}
    out = [
        "Every source goes through the same stages; each writes Parquet and counts every row it drops, "
        "with a reason.",
        "",
        "1. **normalize**: the source's recipe turns its rows into (query, positive, negatives) pairs the way "
        "M3E counted them (the *M3E's rule* column above).",
        "2. **hq**: pair-suited quality filters (empty text, query equal to positive, length bounds, CJK share, "
        "repetition, special characters, LLM boilerplate, language), exact and MinHash near-duplicate removal "
        "within and across sources, and decontamination against evaluation sets.",
        "",
    ]
    if not normalize:
        out.append("The build manifest does not record the normalize stage for this release.")
    if not hq:
        out.append("The build manifest does not record the hq stage (filters, dedup, decontamination) for this "
                   "release: the counts below stop at normalize.")
    hq_section = stages.get("hq") or {}
    hq_options = hq_section.get("options")
    if isinstance(hq_options, dict) and hq_options:
        if isinstance(hq_options.get("decontaminate"), dict):
            hq_options = {**hq_options, "decontaminate": _file_names(hq_options["decontaminate"])}
        out += ["", *_hq_settings(hq_options)]
    if hq:
        decontamination = hq_section.get("decontamination")
        if isinstance(decontamination, dict) and decontamination:
            out += ["", "Decontamination: training rows removed because their query or positive matched an evaluation "
                    "set (exactly after normalisation, or MinHash Jaccard ≥ 0.8):", ""]
            out += [f"- `{name}`: {n:,} rows" if isinstance(n, int) else f"- `{name}`: {json.dumps(n)}"
                    for name, n in _file_names(decontamination).items()]
        else:
            out += ["", "No evaluation set was named for decontamination in this build."]
        overlap = hq_section.get("overlap")
        if isinstance(overlap, dict) and overlap:
            out += ["", "Duplicates across sources (the row dropped from the first, the copy kept in the second):", ""]
            out += [f"- `{a}` → `{b}`: {n:,} rows" for a, kept in overlap.items() if isinstance(kept, dict)
                    for b, n in kept.items()]
    out += [
        "",
        "*rows read* counts the source's own rows and *pairs kept* the pairs normalize made of them (a row can "
        "give several, e.g. one per answer); the drop columns name each reason with its count.",
        "",
        "| config | rows read | pairs kept | normalize drops | hq in | hq kept | hq drops | published |",
        "|---|---:|---:|---|---:|---:|---|---:|",
    ]
    # A source the hq stage left without rows has no config, but its drops are part of how this was built.
    emptied = {
        s for s, r in hq.items()
        if isinstance(r, dict) and r.get("rows_out") == 0 and s not in staged.configs and emptied_ok(s)
    }
    for config in sorted(set(staged.configs) | emptied):
        n = normalize.get(config) or {}
        h = hq.get(config) or {}
        published = sum(f.rows for f in staged.configs.get(config, {}).values())
        out.append(
            f"| `{config}` | {_num(n.get('rows_read'))} | {_num(n.get('rows_written'))} | {_drops(n.get('dropped'))} "
            f"| {_num(h.get('rows_in'))} | {_num(h.get('rows_out'))} | {_drops(h.get('dropped'))} "
            f"| {published:,} |"
        )
    if emptied:
        out += ["", f"The hq stage left no rows of {', '.join(f'`{c}`' for c in sorted(emptied))}: "
                "they have no config here."]
    return "\n".join(out)


def _mining_section(staged: StagedRepo, manifest: dict[str, Any]) -> str:
    mine = (manifest.get("stages") or {}).get("mine")
    out = [
        "Negatives were mined per source (in-domain) with an encoder. `positive_score` is the encoder's "
        "similarity of (query, positive) and `negative_scores[i]` that of (query, negatives[i]); they are "
        "comparable within one model and revision only.",
        "",
    ]
    if isinstance(mine, dict) and mine.get("score_model"):
        out[0] = (f"Negatives were mined per source (in-domain) with an encoder; `positive_score` and "
                  f"`negative_scores[i]` are teacher scores of (query, positive) and (query, negatives[i]) from "
                  f"the cross-encoder `{public_name(str(mine['score_model']))}` (raw logits).")
    if isinstance(mine, dict) and mine:
        # Local paths and timestamps say nothing to a reader of the card.
        described = {k: v for k, v in mine.items() if k not in ("sources", "finished")}
        if isinstance(described.get("options"), dict):
            described["options"] = {k: v for k, v in described["options"].items() if k not in ("in", "out", "cache_dir", "device")}
        if "model" in described:
            described["model"] = public_model_name(str(described["model"]), described.get("revision"))
        if isinstance(described.get("options"), dict) and "model" in described["options"]:
            described["options"]["model"] = public_model_name(
                str(described["options"]["model"]), described.get("revision"))
        if "score_model" in described:
            described["score_model"] = public_name(str(described["score_model"]))
        if isinstance(described.get("options"), dict) and described["options"].get("score_model"):
            described["options"]["score_model"] = public_name(str(described["options"]["score_model"]))
        for key, label in (("model", "model"), ("revision", "revision"), ("score", "score"),
                           ("score_meaning", "score meaning"), ("score_model", "score model"),
                           ("mining_score", "mining score")):
            if key in described:
                out.append(f"- **{label}**: {_cell(described.pop(key))}")
        if described:
            out += ["", "```json", json.dumps(described, ensure_ascii=False, indent=2, default=str), "```"]
    else:
        out.append("The build manifest does not record the mine stage.")
    if staged.mining:
        out += ["", "Per-source mining record (from the Parquet metadata of the mined files):", ""]
        for config, text in sorted(staged.mining.items()):
            try:
                record = json.dumps(json.loads(public_mining_record(text.encode("utf-8"))), ensure_ascii=False,
                                    sort_keys=True)
            except json.JSONDecodeError:
                record = text
            out.append(f"- `{config}`: `{_cell(record)}`")
    return "\n".join(out)


def _caveats(staged: StagedRepo, catalog: dict[str, Source], commercial_only: bool) -> str:
    present = set(staged.configs)
    out = []
    if commercial_only:
        out.append("- This release holds only rows whose licence is known to permit commercial use. "
                   "Attribution and share-alike terms still apply (see each source's licence).")
    else:
        closed = sorted(c for c in present if c in catalog and not catalog[c].commercial)
        if closed:
            out.append(f"- **Not for commercial use**: {', '.join(f'`{c}`' for c in closed)}. Their licences are "
                       "research-only, non-commercial or unstated; filter on the `commercial` column, or use "
                       "the commercial-only release.")
    notes = [f"  - `{c}` ({catalog[c].license.spdx}): {_cell(catalog[c].license.reason)}"
             for c in sorted(present) if c in catalog]
    if notes:
        out.append("- **Licences, source by source** (\"the card\" in these notes is M3E's model card, whose "
                   "table says whether each source may be used commercially; where it and the licence disagree, "
                   "the stricter one is taken):")
        out += notes
    generated = sorted(present.intersection(GENERATED_BY_LLM))
    if generated:
        out.append(f"- **LLM-generated text**: {', '.join(f'`{c}`' for c in generated)} hold answers written by "
                   "ChatGPT/GPT-4; the provider's terms of use may apply on top of the licence.")
    translated = sorted(present.intersection(MACHINE_TRANSLATED))
    if translated:
        out.append(f"- **Machine translation**: {', '.join(f'`{c}`' for c in translated)} are translated from "
                   "English (PAWS-X: its train split), with translation artefacts.")
    for config, others in OVERLAPS:
        if config in present:
            out.append(f"- **Overlap**: `{config}` overlaps {others}; rows can repeat across these configs "
                       "unless the hq stage's cross-source dedup removed them (see How it was built).")
    out.append("- Rows of the same source can share a query (one pair per answer): in-batch negatives from the "
               "same query are false negatives; sample batches from one source and deduplicate queries.")
    return "\n".join(out)


def _citations(staged: StagedRepo, catalog: dict[str, Source]) -> str:
    blocks = [M3E_CITATION]
    for config in sorted(staged.configs):
        citation = catalog[config].citation.strip() if config in catalog else ""
        if citation and citation not in blocks:  # sources of one corpus share an entry: cite it once
            blocks.append(citation)
    return "```bibtex\n" + "\n\n".join(blocks) + "\n```"


def card_body(
    staged: StagedRepo,
    catalog: dict[str, Source],
    manifest: dict[str, Any],
    *,
    repo_id: str,
    pretty_name: str,
    mined: bool,
    commercial_only: bool,
) -> str:
    example = next(iter(sorted(staged.configs)), ALL_CONFIG)
    all_split = next(iter(staged.splits), "train")
    first_split = next(iter(sorted(staged.configs.get(example, {}), key=lambda s: (s != "train", s))), "train")
    columns = "\n".join(
        f"| `{f.name}` | {_type_name(f.type)} | {COLUMN_MEANINGS.get(f.name, '')} |" for f in UNIFIED_SCHEMA
    )
    splits = ", ".join(f"`{s}` ({staged.split_rows(s):,} rows)" for s in staged.splits)
    what = (
        f"# {pretty_name}\n\n"
        f"Chinese (query, positive, negatives) pairs for training text-embedding models, rebuilt from the "
        f"sources M3E ([moka-ai/m3e-base](https://huggingface.co/moka-ai/m3e-base)) was trained on, with "
        f"licence metadata on every row, one config per source and an `all` config (the default). "
        f"{staged.rows:,} rows from {len(staged.configs)} sources; splits: {splits}."
    )
    if commercial_only:
        what += "\n\nThis is the **commercial-use** subset: every row's licence permits commercial use."
    sections = [
        what,
        "## Use it\n\n```python\nfrom datasets import load_dataset\n\n"
        f'everything = load_dataset("{repo_id}")  # the `all` config\n'
        f'one_source = load_dataset("{repo_id}", "{example}", split="{first_split}")\n'
        + ("" if commercial_only else
           f'commercial = everything["{all_split}"].filter(lambda row: row["commercial"])\n')
        + "```\n\n"
        "Each source is one config, so a trainer can draw each batch from one source (as M3E did). "
        "`m3e-data export` writes the layouts uniem, sentence-transformers and FlagEmbedding read.",
        "## Sources\n\n" + _source_table(staged, catalog),
        "## Columns\n\n| column | type | meaning |\n|---|---|---|\n" + columns,
        "## How it was built\n\n" + _build_section(
            staged, manifest,
            lambda source: not commercial_only or (source in catalog and catalog[source].commercial),
        ),
    ]
    if mined:
        sections.append("## Hard negatives and scores\n\n" + _mining_section(staged, manifest))
    sections += [
        "## Known caveats\n\n" + _caveats(staged, catalog, commercial_only),
        "## Citation\n\nCite M3E and every source you use:\n\n" + _citations(staged, catalog),
    ]
    versions = manifest.get("versions")
    if isinstance(versions, dict) and versions:
        built = ", ".join(f"{k} {v}" for k, v in versions.items())
        sections.append(f"## Build\n\nBuilt with {built}.")
    return "\n\n".join(sections) + "\n"


def build_card(
    staged: StagedRepo,
    catalog: dict[str, Source],
    manifest: dict[str, Any],
    *,
    repo_id: str,
    mined: bool,
    commercial_only: bool,
) -> DatasetCard:
    pretty_name = "M3E-HQ with scores" if mined else "M3E-HQ"
    if commercial_only:
        pretty_name += " (commercial use)"
    data = card_data(staged, catalog, pretty_name=pretty_name, mined=mined)
    body = card_body(
        staged, catalog, manifest, repo_id=repo_id, pretty_name=pretty_name, mined=mined,
        commercial_only=commercial_only,
    )
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_card(card: DatasetCard, folder: Path) -> Path:
    path = folder / "README.md"
    atomic_write_text(path, str(card))
    return path


def card_licenses_commercial(licenses: list[str], staged_spdx: set[str]) -> list[str]:
    """Why a card's `license:` list is not that of a commercial-only release ([] when it is).

    Each Hub id must be the id of a commercial licence actually present in the staged rows: "other" is
    accepted only for a commercial LicenseRef (PAWS-X's), never as a blanket.
    """
    allowed = {hub_license(s) for s in staged_spdx if s in COMMERCIAL_LICENSES}
    return [f"card licence {lic!r} is not a commercial licence of the staged rows" for lic in licenses
            if lic not in allowed]
