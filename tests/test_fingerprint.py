"""Reruns are never stale: every byte of every input file, side files included, is in the fingerprint."""

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from m3e_data.catalog import load_catalog
from m3e_data.stages.normalize.locate import demo_root
from m3e_data.stages.normalize.stage import BuildOptions, build, build_source, select_sources
from m3e_data.storage.fingerprint import CACHE_FILE, HashCache, fingerprint_files, hash_file, input_files

HOUR_NS = 3600 * 10**9


def write_news(folder: Path, rows: int) -> Path:
    """news2016zh's upstream layout (new2016zh/news2016zh_{train,valid}.json, JSON lines), a few MB."""
    folder.mkdir(parents=True)
    train = folder / "news2016zh_train.json"
    with train.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            row = {"news_id": str(610000000 + i), "keywords": "科技", "title": f"第{i:06d}条新闻的标题",
                   "desc": "摘要", "source": "示例网", "time": "03-22 12:00",
                   "content": f"第{i:06d}条新闻的正文，讲述一家厂商发布了新款手机，续航比上一代提升三成。"}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (folder / "news2016zh_valid.json").write_text(
        json.dumps({"news_id": "1", "title": "验证集标题", "content": "验证集正文。"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return train


def age(path: Path, ns: int = HOUR_NS) -> None:
    """Move a file's mtime into the past, as for data downloaded long before the build."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns - ns, st.st_mtime_ns - ns))


def test_a_same_length_edit_in_the_middle_of_a_multi_mb_file_rebuilds(tmp_path):
    train = write_news(tmp_path / "src" / "news2016zh" / "new2016zh", 20_000)
    assert train.stat().st_size > 2_500_000
    age(train), age(train.with_name("news2016zh_valid.json"))
    options = BuildOptions(out=tmp_path / "out", sources=str(tmp_path / "src"))
    news = load_catalog()["news2016zh"]
    assert build_source(news, options).status == "built"
    cache = HashCache(options.out)
    assert build_source(news, options, cache=cache).status == "unchanged"
    assert cache.hashed == 0  # an unchanged rerun reads no file: size and mtime match the cache

    data = train.read_bytes()
    middle = data.index("第010000条新闻的标题".encode())
    edited = data.replace("第010000条新闻的标题".encode(), "第010000条新闻的题目".encode(), 1)
    assert len(edited) == len(data) and middle > len(data) // 3
    train.write_bytes(edited)
    age(train, 2 * HOUR_NS)  # even an mtime set back by a tool: it differs from the cached one
    result = build_source(news, options)
    assert result.status == "built"
    rows = {r["id"]: r for r in pq.read_table(options.out / "m3e" / "news2016zh").to_pylist()}
    assert rows["news2016zh/train/610010000"]["query"] == "第010000条新闻的题目"
    assert rows["news2016zh/train/610010001"]["query"] == "第010001条新闻的标题"


def test_a_second_write_within_the_same_mtime_tick_is_not_missed(tmp_path):
    # File systems keep mtime coarsely: an edit right after a build may keep size and mtime both.
    train = write_news(tmp_path / "src" / "news2016zh" / "new2016zh", 10)
    options = BuildOptions(out=tmp_path / "out", sources=str(tmp_path / "src"))
    news = load_catalog()["news2016zh"]
    assert build_source(news, options).status == "built"
    st = train.stat()
    train.write_bytes(train.read_bytes().replace("第000005条".encode(), "第000009条".encode()))
    os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert train.stat().st_size == st.st_size
    assert build_source(news, options).status == "built"


def test_adding_a_side_file_rebuilds_simclue_with_its_negatives(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(demo_root() / "simclue", src / "simclue")
    ranks = src / "simclue" / "simclue_public" / "train_rank.json"
    kept = ranks.read_bytes()
    ranks.unlink()
    options = BuildOptions(out=tmp_path / "out", sources=str(src))
    chosen = select_sources("simclue")
    [first] = build(chosen, options)
    assert first.status == "built"
    assert not any(r["negatives"] for r in pq.read_table(options.out / "m3e" / "simclue").to_pylist())

    ranks.write_bytes(kept)
    [second] = build(chosen, options)
    assert second.status == "built" and second.fingerprint != first.fingerprint
    rows = pq.read_table(options.out / "m3e" / "simclue").to_pylist()
    by_query = {r["query"]: r["negatives"] for r in rows}
    assert by_query["花呗怎么提前还款"] == ["花呗怎么开通", "借呗怎么提前还款"]

    # and an edit of the side file alone, same length, rebuilds too
    ranks.write_bytes(kept.replace("借呗".encode(), "余额".encode(), 1))
    [third] = build(chosen, options)
    assert third.status == "built"
    assert "余额怎么提前还款" in {n for r in pq.read_table(options.out / "m3e" / "simclue").to_pylist()
                            for n in r["negatives"]}


def test_editing_a_zhuiyi_tables_file_rebuilds(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(demo_root() / "zhuiyi_nl2sql", src / "zhuiyi_nl2sql")
    options = BuildOptions(out=tmp_path / "out", sources=str(src))
    chosen = select_sources("zhuiyi_nl2sql")
    assert build(chosen, options)[0].status == "built"
    assert build(chosen, options)[0].status == "unchanged"
    tables = src / "zhuiyi_nl2sql" / "train" / "train.tables.json"
    tables.write_text(tables.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert build(chosen, options)[0].status == "built"


def test_the_cache_lives_in_out_and_a_damaged_one_costs_only_a_rehash(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    a, b = folder / "a.json", folder / "b.json"
    a.write_bytes(b"x" * 3_000_000)
    b.write_bytes(b"{}\n")
    age(a), age(b)
    cache = HashCache(tmp_path / "out")
    first = fingerprint_files([a, b], folder, cache)
    cache.save()
    saved = json.loads((tmp_path / "out" / CACHE_FILE).read_text())
    entry = {"size": 3_000_000, "mtime_ns": a.stat().st_mtime_ns, "hash": hash_file(a)}
    assert saved[str(a.resolve())] == entry
    again = HashCache(tmp_path / "out")
    assert fingerprint_files([a, b], folder, again) == first and again.hashed == 0

    (tmp_path / "out" / CACHE_FILE).write_text("{not json", encoding="utf-8")
    damaged = HashCache(tmp_path / "out")
    assert fingerprint_files([a, b], folder, damaged) == first and damaged.hashed == 2
    # a renamed file is a different input even with the same bytes; the old name leaves the cache
    b.rename(folder / "c.json")
    age(folder / "c.json")
    assert fingerprint_files([a, folder / "c.json"], folder, damaged) != first
    damaged.save()
    kept = json.loads((tmp_path / "out" / CACHE_FILE).read_text())
    assert set(kept) == {str(a.resolve()), str((folder / "c.json").resolve())}


def test_input_files_are_the_main_files_and_their_visible_siblings(tmp_path):
    (tmp_path / "train").mkdir()
    main = tmp_path / "train" / "train.json"
    for p in (main, tmp_path / "train" / "train.tables.json", tmp_path / "train" / ".train.json.swp",
              tmp_path / "elsewhere.json"):
        p.write_text("{}", encoding="utf-8")
    (tmp_path / "train" / "nested").mkdir()
    assert input_files([main]) == [main, tmp_path / "train" / "train.tables.json"]


_OPENED: list[str] | None = None


def _record_opens(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, Path)):
        _OPENED.append(str(args[0]))


def test_every_file_a_recipe_opens_is_in_its_fingerprint(tmp_path):
    """The net under "side files are whatever lies beside the main ones": build the demo of every recipe
    that reads files itself (a `read()`; the framework reads only the located files) while recording each
    file Python opens, and require that each one under the source's folder was hashed. A recipe that reads
    a file from elsewhere (a parent folder, a sibling tree) fails here."""
    import sys

    from m3e_data.recipe import load_recipe, recipe_names
    from m3e_data.stages.normalize.locate import locate

    global _OPENED
    sys.addaudithook(_record_opens)  # hooks cannot be removed; this one is idle while _OPENED is None
    checked = 0
    for name, source in load_catalog().items():
        root = demo_root() / name
        if name not in recipe_names() or not root.is_dir() or not source.available:
            continue
        if load_recipe(name).read is None:
            continue
        located = locate(source, "demo")
        hashed = {p.resolve() for p in input_files(Path(f) for fs in located.files.values() for f in fs)}
        _OPENED = []
        try:
            result = build_source(source, BuildOptions(out=tmp_path / name, sources="demo"))
        finally:
            opened, _OPENED = _OPENED, None
        assert result.status == "built", (name, result.reason)
        under = {Path(p).resolve() for p in opened if Path(p).resolve().is_relative_to(root.resolve())}
        assert under <= hashed, f"{name} read {sorted(under - hashed)} outside its fingerprint"
        checked += 1
    assert checked >= 4  # simclue, webqa, webtext2019zh, zhuiyi_nl2sql at least
