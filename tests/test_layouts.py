"""Every upstream layout of a source gives the same rows.

For each source with several layouts, synthetic look-alikes of two (or more) layouts (the exact upstream
file names, nesting, encodings and label spellings, invented sentences) are written into tmp_path and built
through the public build API (`--sources DIR`, so through locate). The rows must agree on query, positive,
negatives, split and key (the row id). Download layouts are found by file name at any depth.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from m3e_data.catalog import CatalogError, how_to_get, load_catalog, manifests_dir, parse_source
from m3e_data.stages.normalize.locate import SourceMissing, locate
from m3e_data.stages.normalize.stage import FAILED, BuildOptions, build
from tests.helpers import build_one
from tests.make_demo import jsonl, write_text
from tests.make_readme import downloads_block


def rows_of(name: str, src: Path, out: Path, layout: str, splits: list[str] | None = None) -> list[tuple]:
    rows, result = build_one(name, out, sources=str(src), splits=splits)
    assert result.layout == layout
    return [(r["split"], r["id"], r["query"], r["positive"], r["negatives"]) for r in rows], result


def parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def same_rows(name: str, tmp_path: Path, layouts: dict[str, callable], splits=None) -> list[tuple]:
    """Build `name` once per layout writer; every build gives the same rows. Returns those rows."""
    built = {}
    for layout, write in layouts.items():
        src = tmp_path / layout / "src"
        write(src / name)
        built[layout], _ = rows_of(name, src, tmp_path / layout / "out", layout, splits)
    first, *others = built.values()
    assert first, "the look-alikes give no rows"
    for layout, rows in built.items():
        assert rows == first, layout
    return first


# Catalog: every layout can be got, and the README lists every download layout ----------------------------


def test_every_layout_says_how_to_get_it():
    for source in load_catalog().values():
        for layout in source.access.layouts:
            text = how_to_get(source, layout)
            assert text.strip(), (source.name, layout.name)
            if layout.by_name:  # a download: its own words, not a Hub snapshot command
                assert "hf download" not in text, (source.name, layout.name)
            else:
                assert text.startswith("hf download --repo-type dataset "), (source.name, layout.name)


def test_a_download_layout_of_a_hub_source_without_how_to_get_is_a_catalog_error():
    data = yaml.safe_load((manifests_dir() / "bq.yaml").read_text("utf-8"))
    tsv = next(layout for layout in data["access"]["layouts"] if layout.get("by_name"))
    del tsv["how_to_get"]
    with pytest.raises(CatalogError, match=r"layouts\[2\]\.how_to_get' is missing"):
        parse_source(data, "bq.yaml")
    tsv["by_name"] = "yes"
    with pytest.raises(CatalogError, match="by_name' must be bool"):
        parse_source(data, "bq.yaml")


def test_readme_download_section_lists_every_source_with_a_download_layout():
    block = downloads_block()
    for source in load_catalog().values():
        for layout in source.access.layouts:
            if layout.by_name:
                assert f"**{source.name}**" in block, source.name
                for names in layout.splits.values():
                    assert all(f"`{n}`" in block for n in names), (source.name, layout.name)


def test_missing_source_names_how_to_get_each_download_layout(tmp_path):
    for source in load_catalog().values():
        (tmp_path / source.name).mkdir()
        with pytest.raises(SourceMissing) as err:
            locate(source, str(tmp_path))
        for layout in source.access.layouts:
            if layout.by_name:
                assert " ".join((layout.how_to_get or source.access.how_to_get).split()) in str(err.value)


# ocnli: clue/clue Parquet vs CLUE's upstream JSON lines ---------------------------------------------------

PREMISE_A = "小区门口新开了一家面包店，每天早上排队的人很多"
PREMISE_B = "他把旧自行车修好以后送给了邻居家的孩子"
OCNLI = [  # (split, premise, hypothesis, label word, id)
    ("train", PREMISE_A, "那家面包店生意不错", "entailment", 0),
    ("train", PREMISE_A, "那家面包店没人光顾", "contradiction", 1),
    ("train", PREMISE_A, "面包店的老板是外地人", "neutral", 2),
    ("train", PREMISE_B, "邻居家的孩子收到了一辆自行车", "entailment", 3),
    ("validation", PREMISE_B, "那辆自行车是新买的", "contradiction", 0),
    ("validation", PREMISE_B, "他会修自行车", "entailment", 1),
]
CODES = {"neutral": 0, "entailment": 1, "contradiction": 2}


def _ocnli_hub(root: Path) -> None:
    schema = pa.schema([("sentence1", pa.string()), ("sentence2", pa.string()), ("label", pa.int64()),
                        ("idx", pa.int32())])
    for split, file in (("train", "train"), ("validation", "validation")):
        rows = [{"sentence1": p, "sentence2": h, "label": CODES[w], "idx": i}
                for s, p, h, w, i in OCNLI if s == split]
        parquet(root / "ocnli" / f"{file}-00000-of-00001.parquet", rows, schema)
    parquet(root / "ocnli" / "test-00000-of-00001.parquet",
            [{"sentence1": PREMISE_A, "sentence2": "排队的人都是来买面包的", "label": -1, "idx": 0}], schema)


def _ocnli_upstream(root: Path) -> None:
    folder = root / "OCNLI-main" / "data" / "ocnli"  # a GitHub zip: the files sit deeper than DIR/ocnli/
    def line(premise, hypothesis, word, i, genre="news"):
        votes = [word] * 3 + ["neutral", word] if word != "-" else ["entailment", "neutral", "contradiction", "", ""]
        return {"level": "medium", "sentence1": premise, "sentence2": hypothesis, "label": word,
                "label0": votes[0], "label1": votes[1], "label2": votes[2], "label3": votes[3],
                "label4": votes[4], "genre": genre, "prem_id": f"{genre}_{i}", "id": i}
    write_text(folder / "train.50k.json", jsonl([line(p, h, w, i) for s, p, h, w, i in OCNLI if s == "train"]))
    write_text(folder / "train.3k.json", jsonl([line(PREMISE_A, "面包店很受欢迎", "entailment", 0)]))
    # "-": the annotators reached no gold label (the Hub export leaves such rows out).
    dev = [line(p, h, w, i) for s, p, h, w, i in OCNLI if s == "validation"]
    dev.append(line(PREMISE_B, "孩子很喜欢骑车", "-", 2))
    write_text(folder / "dev.json", jsonl(dev))
    write_text(folder / "test.json", jsonl([{"sentence1": PREMISE_A, "sentence2": "排队的人都是来买面包的",
                                              "genre": "news", "id": 0}]))


def test_ocnli_hub_parquet_and_upstream_json_give_the_same_rows(tmp_path):
    rows = same_rows("ocnli", tmp_path, {"parquet": _ocnli_hub, "clue-json": _ocnli_upstream})
    assert [r[1:4] for r in rows] == [
        ("ocnli/train/0", PREMISE_A, "那家面包店生意不错"),
        ("ocnli/train/3", PREMISE_B, "邻居家的孩子收到了一辆自行车"),
        ("ocnli/validation/1", PREMISE_B, "他会修自行车"),
    ]
    assert rows[0][4] == ["那家面包店没人光顾"] and rows[2][4] == ["那辆自行车是新买的"]


def test_ocnli_unlabelled_rows_have_one_reason_in_both_layouts(tmp_path):
    _ocnli_upstream(tmp_path / "src" / "ocnli")
    _, result = build_one("ocnli", tmp_path / "out", sources=str(tmp_path / "src"))
    assert result.splits["validation"].dropped == {"label_not_entailment": 1, "unlabelled": 1}  # the "-" row
    assert result.splits["test"].dropped == {"unlabelled": 1}  # test.json has no label field


# lcqmc and bq: nli_zh Parquet export, C-MTEB's `score`, and the upstream TSVs -----------------------------

Q1, Q2 = "怎么把微信聊天记录导到新手机", "花呗的额度可以提高吗"
PAIRS = {  # split -> (sentence1, sentence2, label)
    "train": [(Q1, "换手机了微信聊天记录怎么迁移", 1), (Q1, "微信聊天记录怎么删除", 0),
              (Q2, "怎样才能提升花呗额度", 1), (Q2, "花呗怎么还款", 0)],
    "validation": [(Q2, "花呗额度能不能调高", 1), (Q1, "微信怎么换头像", 0)],
    "test": [(Q1, "新手机怎么恢复微信聊天记录", 1), (Q2, "花呗逾期有什么后果", 0)],
}


def _pairs_export(config: str, column: str = "label", kind: pa.DataType | None = None, export: bool = True):
    kind = kind or pa.int64()

    def write(root: Path) -> None:
        schema = pa.schema([("sentence1", pa.string()), ("sentence2", pa.string()), (column, kind)])
        for split, rows in PAIRS.items():
            path = (root / config / split / "0000.parquet" if export
                    else root / "data" / f"{split}-00000-of-00001.parquet")
            parquet(path, [{"sentence1": a, "sentence2": b, column: kind.to_pandas_dtype()(y)} for a, b, y in rows],
                    schema)
    return write


def _pairs_tsv(names: dict[str, str], folder: str, label_first: bool = False, header: bool = False,
               unlabelled_test: bool = False):
    def write(root: Path) -> None:
        for split, rows in PAIRS.items():
            lines = ["label\tsentence1\tsentence2"] if header else []
            for a, b, y in rows:
                if split == "test" and unlabelled_test:
                    lines.append(f"{a}\t{b}")
                else:
                    lines.append(f"{y}\t{a}\t{b}" if label_first else f"{a}\t{b}\t{y}")
            write_text(root / folder / names[split], "\n".join(lines) + "\n")
    return write


TXT = {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}
TSV = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def test_lcqmc_every_layout_gives_the_same_rows(tmp_path):
    rows = same_rows("lcqmc", tmp_path, {
        "parquet-export": _pairs_export("LCQMC"),
        "c-mteb": _pairs_export("LCQMC", "score", pa.float64(), export=False),  # 1.0 / 0.0
        "csts-txt": _pairs_tsv(TXT, "LCQMC/data"),
        "qianyan-tsv": _pairs_tsv(TSV, "lcqmc"),
    })
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("train", Q1, "换手机了微信聊天记录怎么迁移", ["微信聊天记录怎么删除"]),
        ("train", Q2, "怎样才能提升花呗额度", ["花呗怎么还款"]),
        ("validation", Q2, "花呗额度能不能调高", []),
        ("test", Q1, "新手机怎么恢复微信聊天记录", []),
    ]
    assert [r[1] for r in rows] == ["lcqmc/train/0", "lcqmc/train/2", "lcqmc/validation/0", "lcqmc/test/0"]


def test_lcqmc_label_first_copy_with_a_header_gives_the_same_rows(tmp_path):
    same_rows("lcqmc", tmp_path, {
        "csts-txt": _pairs_tsv(TXT, "a/b/c"),
        "qianyan-tsv": _pairs_tsv(TSV, "lcqmc", label_first=True, header=True),
    })


def test_bq_qianyan_tsv_deep_in_the_folder_gives_the_hub_rows(tmp_path):
    # The 千言 zip extracted as DIR/bq/data/bq_corpus/*.tsv; its test file is unlabelled, so compare the
    # labelled splits, then check that the test rows are counted under `unlabelled`.
    splits = ["train", "validation"]
    same_rows("bq", tmp_path, {
        "parquet-export": _pairs_export("BQ"),
        "c-mteb": _pairs_export("BQ", "score", pa.int64(), export=False),
        "qianyan-tsv": _pairs_tsv(TSV, "data/bq_corpus", unlabelled_test=True),
    }, splits=splits)
    _, result = rows_of("bq", tmp_path / "qianyan-tsv" / "src", tmp_path / "all", "qianyan-tsv")
    assert result.splits["test"].dropped == {"unlabelled": 2}


# paws_x: the Hub's Parquet vs x-final TSV ----------------------------------------------------------------

PAWS = [(1, "他在1990年搬到了上海。", "1990年他搬去了上海。", "1"),
        (2, "他在1990年搬到了上海。", "他在上海搬到了1990年。", "0"),
        (3, "这座桥建于清朝。", "NS", "0")]


def _paws_hub(root: Path) -> None:
    schema = pa.schema([("id", pa.int32()), ("sentence1", pa.string()), ("sentence2", pa.string()),
                        ("label", pa.int64())])
    for split in ("train", "validation", "test"):
        parquet(root / "zh" / f"{split}-00000-of-00001.parquet",
                [{"id": i, "sentence1": a, "sentence2": b, "label": int(y)} for i, a, b, y in PAWS], schema)


def _paws_tsv(root: Path) -> None:
    text = "id\tsentence1\tsentence2\tlabel\n" + "".join(f"{i}\t{a}\t{b}\t{y}\n" for i, a, b, y in PAWS)
    for name in ("translated_train.tsv", "dev_2k.tsv", "test_2k.tsv"):
        write_text(root / "paws" / "x-final" / "zh" / name, text)


def test_paws_x_hub_parquet_and_x_final_tsv_give_the_same_rows(tmp_path):
    rows = same_rows("paws_x", tmp_path, {"parquet": _paws_hub, "x-final-tsv": _paws_tsv})
    assert [(r[0], r[1], r[4]) for r in rows] == [
        (split, f"paws_x/{split}/1", ["他在上海搬到了1990年。"]) for split in ("train", "validation", "test")
    ]


# cmrc2018: hfl/cmrc2018 Parquet vs the SQuAD-style JSON of ymcui/cmrc2018 ----------------------------------

CMRC_CONTEXT = "《山海经》是中国先秦古籍，一般认为成书于战国时期至汉代初年，内容涉及神话、地理和物产。"
CMRC = {  # split -> (id, question, answer)
    "train": [("TRAIN_1_QUERY_0", "《山海经》成书于什么时期？", "战国时期至汉代初年"),
              ("TRAIN_1_QUERY_1", "《山海经》的内容涉及哪些方面？", "神话、地理和物产")],
    "validation": [("DEV_1_QUERY_0", "《山海经》是哪个时代的古籍？", "先秦")],
    # The trial set holds questions that are empty: no pair, in either layout.
    "test": [("TRIAL_1_QUERY_0", "《山海经》是什么？", "中国先秦古籍"), ("TRIAL_1_QUERY_1", "", "神话")],
}
CMRC_FILES = {"train": "cmrc2018_train.json", "validation": "cmrc2018_dev.json", "test": "cmrc2018_trial.json"}


def _cmrc_hub(root: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("context", pa.string()), ("question", pa.string()),
                        ("answers", pa.struct([("text", pa.list_(pa.string())),
                                               ("answer_start", pa.list_(pa.int32()))]))])
    for split, qas in CMRC.items():
        rows = [{"id": i, "context": CMRC_CONTEXT, "question": q,
                 "answers": {"text": [a], "answer_start": [CMRC_CONTEXT.index(a)]}} for i, q, a in qas]
        parquet(root / "data" / f"{split}-00000-of-00001.parquet", rows, schema)


def _cmrc_squad(root: Path) -> None:
    for split, qas in CMRC.items():
        pid = qas[0][0].rsplit("_QUERY", 1)[0]
        doc = {"version": "v1.0", "data": [{"paragraphs": [{"id": pid, "context": CMRC_CONTEXT, "qas": [
            {"question": q, "id": i, "answers": [{"text": a, "answer_start": CMRC_CONTEXT.index(a)}]}
            for i, q, a in qas]}], "id": pid, "title": "山海经"}]}
        text = json.dumps(doc, ensure_ascii=False, indent=1)
        write_text(root / "cmrc2018-master" / "squad-style-data" / CMRC_FILES[split], text)


def test_cmrc2018_hub_parquet_and_squad_json_give_the_same_rows(tmp_path):
    rows = same_rows("cmrc2018", tmp_path, {"parquet": _cmrc_hub, "squad-json": _cmrc_squad})
    assert [r[1] for r in rows] == ["cmrc2018/train/TRAIN_1_QUERY_0", "cmrc2018/train/TRAIN_1_QUERY_1",
                                    "cmrc2018/validation/DEV_1_QUERY_0", "cmrc2018/test/TRIAL_1_QUERY_0"]
    for layout in ("parquet", "squad-json"):  # the trial set's empty question: 1,000 pairs of 1,002, not 1,002
        _, result = rows_of("cmrc2018", tmp_path / layout / "src", tmp_path / layout / "again", layout)
        assert result.splits["test"].read == 2 and result.splits["test"].dropped == {"empty_text": 1}


def test_cmrc2018_real_dev_squad_json_matches_the_hub_rows(tmp_path, shared_fixtures):
    real = shared_fixtures / "cmrc2018"
    hub_rows = [json.loads(line) for line in (real / "validation.hf_rows.jsonl").read_text().splitlines()]
    parquet(tmp_path / "hub" / "cmrc2018" / "data" / "validation-00000-of-00001.parquet", hub_rows)
    squad = tmp_path / "squad" / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json"
    squad.parent.mkdir(parents=True)
    squad.write_bytes((real / "cmrc2018_dev.squad_style.head.json").read_bytes())
    hub, _ = rows_of("cmrc2018", tmp_path / "hub", tmp_path / "o1", "parquet", ["validation"])
    raw, _ = rows_of("cmrc2018", tmp_path / "squad", tmp_path / "o2", "squad-json", ["validation"])
    # The excerpt's 201 questions are the 200 flattened rows and one more (its last article's third).
    assert len(hub) == len(hub_rows) == 200 and len(raw) == 201
    assert raw[:200] == hub


# zhuiyi_nl2sql: luge's NL2SQL arrays vs TableQA's JSON lines + tables --------------------------------------

TABLE = {"rows": [["杭州", 520, 180]], "name": "Table_5a1b", "title": "航线票价", "header": ["城市", "票价", "座位数"],
         "common": "", "id": "5a1b", "types": ["text", "real", "real"]}
SQL = {"agg": [2], "cond_conn_op": 1, "sel": [1], "conds": [[0, 2, "杭州"], [2, 0, "100"]]}
QUESTIONS = ["飞杭州且座位数超过100的航线最高票价是多少", "杭州座位多于100的航线里票价最高多少"]


def _tableqa(root: Path) -> None:
    for split, name in (("train", "train"), ("val", "val")):
        write_text(root / "TableQA-master" / split / f"{name}.json",
                   jsonl([{"table_id": "5a1b", "question": q, "sql": SQL} for q in QUESTIONS]))
        write_text(root / "TableQA-master" / split / f"{name}.tables.json", jsonl([TABLE]))


def _luge(root: Path) -> None:
    # luge's copy: JSON arrays; each row keeps the structured sql and a SQL text written its own way.
    text = "SELECT MAX(`票价`) FROM `Table_5a1b` WHERE `城市` = '杭州' AND `座位数` > 100"
    rows = [{"question_id": f"q{i}", "table_id": "5a1b", "question": q, "sql": SQL, "query": text}
            for i, q in enumerate(QUESTIONS)]
    for name in ("train", "dev"):
        write_text(root / "NL2SQL" / f"{name}.json", json.dumps(rows, ensure_ascii=False, indent=2))
        write_text(root / "NL2SQL" / f"{name}.tables.json", jsonl([TABLE]))


def test_zhuiyi_luge_and_tableqa_give_one_canonical_sql_string(tmp_path):
    rows = same_rows("zhuiyi_nl2sql", tmp_path, {"luge": _luge, "tableqa": _tableqa})
    sql = 'SELECT MAX(票价) FROM Table_5a1b WHERE 城市 == "杭州" and 座位数 > 100'
    assert [(r[0], r[3]) for r in rows] == [("train", sql)] * 2 + [("validation", sql)] * 2


def test_zhuiyi_copy_without_tables_is_an_error_naming_the_missing_files(tmp_path):
    _tableqa(tmp_path / "src" / "zhuiyi_nl2sql")
    for tables in (tmp_path / "src").rglob("*.tables.json"):
        tables.unlink()
    [result] = build([load_catalog()["zhuiyi_nl2sql"]], BuildOptions(out=tmp_path / "out", sources=str(tmp_path / "src")))
    assert result.status == FAILED
    assert "train.tables.json" in result.reason and "val.tables.json" in result.reason
    assert not (tmp_path / "out" / "m3e" / "zhuiyi_nl2sql").exists()


# Hub snapshots vs upstream archives, written from the demo rows ------------------------------------------

DEMO = Path(__file__).resolve().parents[1] / "m3e_data" / "demo"


def _squad_from_rows(rows: list[dict]) -> str:
    """The SQuAD v1.1 document holding `rows` (one paragraph per context, questions in row order)."""
    paragraphs: dict[str, list[dict]] = {}
    for r in rows:
        answers = [{"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"],
                                                                  strict=True)]
        paragraphs.setdefault(r["context"], []).append({"id": r["id"], "question": r["question"], "answers": answers})
    data = [{"title": "", "paragraphs": [{"context": c, "qas": qas}]} for c, qas in paragraphs.items()]
    return json.dumps({"version": "1.1", "data": data}, ensure_ascii=False)


def _copy_demo(name: str):
    def write(root: Path) -> None:
        for path in (DEMO / name).rglob("*"):
            if path.is_file():
                target = root / path.relative_to(DEMO / name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    return write


def _squad_archive(name: str, files: dict[str, str]):
    def write(root: Path) -> None:
        for split, file in files.items():
            demo = next((DEMO / name).rglob(f"{split}*.parquet"), None) or next((DEMO / name).rglob(f"{split}/*.parquet"))
            write_text(root / "downloads" / file, _squad_from_rows(pq.read_table(demo).to_pylist()))
    return write


def test_dureader_robust_parquet_export_and_upstream_tarball_give_the_same_rows(tmp_path):
    files = {s: f"dureader_robust-data/{f}.json" for s, f in (("train", "train"), ("validation", "dev"), ("test", "test"))}
    same_rows("dureader_robust", tmp_path, {
        "parquet-export": _copy_demo("dureader_robust"), "squad-tarball": _squad_archive("dureader_robust", files),
    })


def test_mlqa_parquet_and_translate_train_tarball_give_the_same_rows(tmp_path):
    files = {s: f"mlqa-translate-train/zh_squad-translate-train-{f}-v1.1.json" for s, f in (("train", "train"),
                                                                                            ("validation", "dev"))}
    same_rows("mlqa", tmp_path, {"parquet-pr5": _copy_demo("mlqa"), "squad-tarball": _squad_archive("mlqa", files)})


def _wiki_tsv(root: Path) -> None:
    import gzip

    for kind in ("insertions", "deletions"):
        rows = pq.read_table(DEMO / "wiki_atomic_edits" / f"chinese_{kind}" / "train" / "0000.parquet").to_pylist()
        # The upstream TSV: a header, one edit per line, no trailing newline inside the edited sentence.
        text = "base_sentence\tphrase\tedited_sentence\n" + "".join(
            f"{r['base_sentence']}\t{r['phrase']}\t{r['edited_sentence'].rstrip()}\n" for r in rows)
        path = root / "wiki-atomic-edits" / "chinese" / f"{kind}.tsv.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(text.encode()))


def test_wiki_atomic_edits_parquet_export_and_google_tsv_give_the_same_rows(tmp_path):
    same_rows("wiki_atomic_edits", tmp_path, {"parquet-export": _copy_demo("wiki_atomic_edits"), "tsv": _wiki_tsv})


def _webqa_export(root: Path) -> None:
    schema = pa.schema([("id", pa.int64()), ("input", pa.string()), ("output", pa.string())])
    for split, file in (("train", "train"), ("validation", "dev"), ("test", "test")):
        rows = [json.loads(line) for line in (DEMO / "webqa" / f"{file}.json").read_text("utf-8").splitlines()
                if line.strip()]
        parquet(root / "default" / split / "0000.parquet", rows, schema)


def test_webqa_json_and_parquet_export_give_the_same_rows(tmp_path):
    same_rows("webqa", tmp_path, {"json": _copy_demo("webqa"), "parquet-export": _webqa_export})


CINLID = [("画龙点睛", "锦上添花", "entailment"), ("画龙点睛", "画蛇添足", "contradiction"),
          ("画龙点睛", "龙飞凤舞", "neutral"), ("守口如瓶", "缄口不言", "entailment")]


def test_cinlid_jsonl_and_luge_gbk_copies_give_the_same_rows(tmp_path):
    def jsonl_copy(root: Path) -> None:
        write_text(root / "cinlid.json", jsonl([{"sentence1": a, "sentence2": b, "label": y} for a, b, y in CINLID]))

    def luge_copy(root: Path) -> None:
        data = {"data": [{"phrase1": a, "phrase2": b, "label": y} for a, b, y in CINLID]}
        write_text(root / "CINLID" / "train.json", json.dumps(data, ensure_ascii=False), encoding="gbk")

    rows = same_rows("cinlid", tmp_path, {"jsonl": jsonl_copy, "luge-gbk": luge_copy})
    assert [(r[2], r[3], r[4]) for r in rows] == [("画龙点睛", "锦上添花", ["画蛇添足"]), ("守口如瓶", "缄口不言", [])]


REVIEWS = {"train": [("zh_0001", "质量很好", "衣服做工精细，穿着很舒服。", "zh"), ("de_0001", "Gut", "Sehr gut.", "de")],
           "validation": [("zh_0002", "物流太慢", "等了两个星期才到货。", "zh")],
           "test": [("zh_0003", "性价比高", "这个价格能买到这样的耳机很值。", "zh")]}


def _review_rows(split: str) -> list[dict]:
    return [{"review_id": i, "product_id": f"p{i}", "reviewer_id": f"r{i}", "stars": 4, "review_body": body,
             "review_title": title, "language": lang, "product_category": "apparel"}
            for i, title, body, lang in REVIEWS[split]]


def test_amazon_reviews_multi_json_lines_and_old_parquet_export_give_the_same_rows(tmp_path):
    def s3_json(root: Path) -> None:
        for split, file in (("train", "train"), ("validation", "dev"), ("test", "test")):
            write_text(root / "json" / file / f"dataset_zh_{file}.json", jsonl(_review_rows(split)))

    def export(root: Path) -> None:
        for split in REVIEWS:
            parquet(root / "zh" / split / "0000.parquet", _review_rows(split))

    rows = same_rows("amazon_reviews_multi", tmp_path, {"json": s3_json, "parquet-export": export})
    assert [r[1] for r in rows] == ["amazon_reviews_multi/train/zh_0001", "amazon_reviews_multi/validation/zh_0002",
                                    "amazon_reviews_multi/test/zh_0003"]


def _xlsum_jsonl(root: Path) -> None:
    for split, file in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = pq.read_table(next((DEMO / "xlsum").rglob(f"{split}/*.parquet"))).to_pylist()
        write_text(root / "chinese_simplified_XLSum_v2.0" / f"chinese_simplified_{file}.jsonl", jsonl(rows))


def test_xlsum_parquet_export_and_upstream_jsonl_give_the_same_rows(tmp_path):
    same_rows("xlsum", tmp_path, {"parquet-export": _copy_demo("xlsum"), "xlsum-jsonl": _xlsum_jsonl})
