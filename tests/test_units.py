"""A source cut into units (units.py) and put back together gives the local executor's exact output: the
same parts byte for byte, ids, counts and `_SUCCESS.json`. In-process (no Ray); the Ray executor's
coordination of units is tested in test_ray_build.py on the corpus written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from m3e_data.catalog import load_catalog
from m3e_data.stages.normalize import stage, units
from m3e_data.stages.normalize.readers import line_ranges
from m3e_data.stages.normalize.stage import BuildOptions, Prepared, build, prepare
from m3e_data.storage.fingerprint import HashCache

# Positional ids one pair a row (baike2018qa), positional ids several pairs a row (hc3_chinese), the
# source's own ids (news2016zh); every file is JSON lines.
RANGE_SOURCES = ["baike2018qa", "hc3_chinese", "news2016zh"]

_WORDS = ["怎么", "为什么", "哪里", "多少钱", "可以", "需要", "办理", "申请", "注意", "区别"]
_THINGS = ["护照", "社保卡", "驾照", "公积金", "户口", "签证", "医保", "居住证", "学籍", "银行卡"]


def _baike(i: int) -> dict[str, Any]:
    thing, word = _THINGS[i % 10], _WORDS[(i // 10) % 10]
    return {"qid": f"qid_{5000 + i}", "category": "生活-办事", "title": f"{thing}{word}办理？（{i}）",
            "desc": "" if i % 3 else f"{thing}{word}办理？（{i}）想知道具体流程", "answer": f"先到窗口取号，带好{thing}材料。\r\n第{i}条回答。"}


def _hc3(i: int) -> dict[str, Any]:
    thing = _THINGS[i % 10]
    return {"id": str(i), "question": f"{thing}丢了怎么补办（{i}）", "human_answers": [f"去派出所补办{thing}。"] * (1 + i % 2),
            "chatgpt_answers": [f"您可以携带身份证件前往相关部门补办{thing}（{i}）。"], "source": "baike"}


def _news(i: int) -> dict[str, str]:
    thing = _THINGS[i % 10]
    return {"news_id": str(640000000 + i), "keywords": thing, "title": f"{thing}办理新规出台（{i}）", "desc": "",
            "source": "示例新闻网", "time": "05-01 09:00", "content": f"记者获悉，{thing}的办理流程自下月起简化，第{i}条。"}


BAD_LINE = '{"qid": "qid_bad", "title": "断在半路的一行", "answer": "没有结尾\n'


def write_range_corpus(root: Path, n: int = 1000) -> None:
    """JSON-lines files of the three sources in their upstream layouts, with every quirk a byte range
    must keep: CRLF endings, a UTF-8 BOM, blank lines, a malformed line, a GBK line, a row that gives no
    pair, multi-byte text throughout, and a last line without its newline."""
    lines = [json.dumps(_baike(i), ensure_ascii=False) + ("\r\n" if i % 4 == 1 else "\n") for i in range(3 * n)]
    lines[n // 2] = BAD_LINE
    lines[n] = "\n"
    lines[n + 1] = "  \r\n"
    lines[n + 2] = json.dumps({"qid": "qid_x", "title": "", "answer": "空标题"}, ensure_ascii=False) + "\n"
    data = [line.encode() for line in lines]
    data[n + 3] = json.dumps(_baike(n + 3), ensure_ascii=False).encode("gbk") + b"\n"
    data[0] = b"\xef\xbb\xbf" + data[0]
    data[-1] = data[-1].rstrip(b"\r\n")
    folder = root / "baike2018qa" / "baike2018qa"
    folder.mkdir(parents=True)
    (folder / "baike_qa_train.json").write_bytes(b"".join(data))
    (folder / "baike_qa_valid.json").write_text(
        "".join(json.dumps(_baike(10 * n + i), ensure_ascii=False) + "\n" for i in range(n // 10)), encoding="utf-8")
    (root / "hc3_chinese").mkdir()
    (root / "hc3_chinese" / "all.jsonl").write_text(
        "".join(json.dumps(_hc3(i), ensure_ascii=False) + "\n" for i in range(n)), encoding="utf-8")
    folder = root / "news2016zh" / "new2016zh"
    folder.mkdir(parents=True)
    (folder / "news2016zh_train.json").write_text(
        "".join(json.dumps(_news(i), ensure_ascii=False) + "\r\n" for i in range(n)), encoding="utf-8")
    (folder / "news2016zh_valid.json").write_text("", encoding="utf-8")


def split_bytes_cutting_the_bad_line(root: Path) -> int:
    """A --split-bytes whose first range's budget ends inside the malformed line of baike's train file
    (the line then belongs to the range it starts in, and is counted once), in a multi-byte character."""
    path = root / "baike2018qa" / "baike2018qa" / "baike_qa_train.json"
    data = path.read_bytes()
    inside = data.index(BAD_LINE.encode()) + BAD_LINE.encode().index("半".encode()) + 1
    assert line_ranges(path, inside)[0][1] > inside  # the cut moved to the end of the bad line
    return inside


def build_in_units_here(names: list[str], options: BuildOptions, split_bytes: int) -> list[int]:
    """What the Ray executor does for a cut source, in this process: plan, each unit, commit; the number
    of units of each source."""
    catalog = load_catalog()
    counts = []
    for name in names:
        prepared = prepare(catalog[name], options, HashCache(options.out))
        assert isinstance(prepared, Prepared)
        plan = units.new_plan(prepared, split_bytes, options.out / "m3e")
        assert plan is not None
        outcomes = [units.run_unit(plan, i) for i in range(len(plan.units))]
        units.commit(plan, outcomes, options.out)
        counts.append(len(plan.units))
    return counts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("units")
    write_range_corpus(root / "src")
    return root


def _record(out: Path, name: str) -> dict[str, Any]:
    record = json.loads((out / "m3e" / name / "_SUCCESS.json").read_text())
    return {k: v for k, v in record.items() if k not in ("finished", "seconds")}


@pytest.mark.parametrize("batch_rows", [97])
def test_units_put_together_are_the_local_build_byte_for_byte(corpus, tmp_path, monkeypatch, batch_rows):
    # Small batches make a split many row groups and parts, cut after rows that a unit boundary splits.
    monkeypatch.setattr(stage, "BATCH_ROWS", batch_rows)
    monkeypatch.setattr(units, "BATCH_ROWS", batch_rows)
    src = corpus / "src"
    local = tmp_path / "local"
    results = build([load_catalog()[n] for n in RANGE_SOURCES], BuildOptions(out=local, sources=str(src)))
    assert [r.status for r in results] == ["built"] * 3
    baike = results[0].splits["train"]
    assert baike.dropped == {"malformed_json": 1, "empty_text": 1} and baike.notes == {"decoded_gb18030": 1}
    assert results[1].counts.written > results[1].counts.read  # several pairs a row: "<row>-<j>" ids

    split_bytes = split_bytes_cutting_the_bad_line(src)
    options = BuildOptions(out=tmp_path / "units", sources=str(src))
    assert min(build_in_units_here(RANGE_SOURCES, options, split_bytes)) >= 3
    for name in RANGE_SOURCES:
        assert _record(options.out, name) == _record(local, name), name  # parts' sha256, counts per split


def _webtext(root: Path, n: int) -> Path:
    """webtext2019zh's train file (JSON lines, one row per reply, a qid once per reply) with its quirks: `<br>`
    tags, stars as numbers and strings, a reply with no text, a truncated line, CRLF endings."""
    folder = root / "webtext2019zh" / "webtext2019zh"
    folder.mkdir(parents=True)
    lines = []
    for i in range(n):
        thing, word = _THINGS[i % 10], _WORDS[(i // 10) % 10]
        row = {"qid": 70000000 + i // 2, "title": f"{thing}{word}？（{i // 2}）", "desc": "", "topic": thing,
               "star": i % 5 if i % 3 else str(i % 5), "content": f"先去窗口。<br>带上{thing}，第{i}条回答。",
               "answer_id": 800000000 + i, "answerer_tags": "热心网友"}
        if i == n // 3:
            row["content"] = "  "
        lines.append(json.dumps(row, ensure_ascii=False) + ("\r\n" if i % 4 == 1 else "\n"))
    lines[n // 2] = '{"qid": 1, "title": "断在半路\n'
    path = folder / "web_text_zh_train.json"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_webtext2019zh_is_cut_unless_best_answer_only(tmp_path):
    """Its recipe's `read` runs only for best_answer_only (READ_IF), which needs a whole split to pick each
    question's best reply; without it the 2 GB train file is cut like any JSON-lines file, and the units
    put together are the local build byte for byte."""
    train = _webtext(tmp_path / "src", 600)
    catalog = load_catalog()
    local = tmp_path / "local"
    [result] = build([catalog["webtext2019zh"]], BuildOptions(out=local, sources=str(tmp_path / "src")))
    assert result.status == "built" and result.counts.dropped == {"malformed_json": 1, "empty_text": 1}
    options = BuildOptions(out=tmp_path / "units", sources=str(tmp_path / "src"))
    assert build_in_units_here(["webtext2019zh"], options, train.stat().st_size // 5) >= [5]
    assert _record(options.out, "webtext2019zh") == _record(local, "webtext2019zh")

    best = BuildOptions(out=tmp_path / "best", sources=str(tmp_path / "src"),
                        recipe_options={"webtext2019zh": {"best_answer_only": "true"}})
    prepared = prepare(catalog["webtext2019zh"], best, HashCache(best.out))
    assert isinstance(prepared, Prepared)
    assert units.plan_units(prepared, 64) is None  # its own `read` sees the whole split


def test_a_grouped_source_is_never_cut(tmp_path):
    """A GROUP_BY recipe (ocnli: the hypotheses of one premise) sees a group's rows together, which a byte
    range could split. A synthetic look-alike of OCNLI's JSON lines (research-only rows are never copied)."""
    folder = tmp_path / "src" / "ocnli" / "data" / "ocnli"
    folder.mkdir(parents=True)
    rows = [{"level": "easy", "sentence1": f"前提{i // 3}", "sentence2": f"假设{i}", "label": ["entailment", "neutral",
             "contradiction"][i % 3], "label0": "entailment", "genre": "news", "prem_id": f"news_{i // 3}", "id": i}
            for i in range(60)]
    (folder / "train.50k.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    prepared = prepare(load_catalog()["ocnli"], BuildOptions(out=tmp_path / "out", sources=str(tmp_path / "src")))
    assert isinstance(prepared, Prepared) and prepared.recipe.group_by == "sentence1"
    assert units.plan_units(prepared, 64) is None


def test_small_files_and_documents_stay_whole_units(corpus, tmp_path):
    src = corpus / "src"
    prepared = prepare(load_catalog()["baike2018qa"], BuildOptions(out=tmp_path / "out", sources=str(src)))
    assert isinstance(prepared, Prepared)
    train = src / "baike2018qa" / "baike2018qa" / "baike_qa_train.json"
    valid = train.with_name("baike_qa_valid.json")
    plan = units.plan_units(prepared, valid.stat().st_size)  # the valid file fits: one unit, read whole
    assert plan is not None and [u for u in plan if u.split == "validation"] == [units.Unit("validation", str(valid))]
    train_units = [u for u in plan if u.split == "train"]
    assert len(train_units) > 1 and train_units[0].start == 0 and train_units[-1].end == train.stat().st_size
    assert units.plan_units(prepared, train.stat().st_size) is None  # nothing over the threshold: built whole
