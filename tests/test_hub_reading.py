"""The Hub path, offline: the real hf:// URLs, layout fallback across mirror repos, and `datasets`
streaming, with the Hub's file system replaced by local folders laid out as the Hub lays them out."""

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m3e_data.catalog import load_catalog
from m3e_data.stages.normalize import locate as locate_module
from m3e_data.stages.normalize.locate import SourceMissing, hub_url, locate, stream_with_datasets
from m3e_data.stages.normalize.stage import BuildOptions, build_source


def test_hub_urls_quote_the_revision():
    assert hub_url("shibing624/nli_zh", "refs/convert/parquet", "LCQMC/train/0000.parquet") == (
        "hf://datasets/shibing624/nli_zh@refs%2Fconvert%2Fparquet/LCQMC/train/0000.parquet"
    )
    assert hub_url("hfl/cmrc2018", "main", "data/x.parquet") == "hf://datasets/hfl/cmrc2018@main/data/x.parquet"


class FakeHub:
    """Serves `hf://datasets/<repo>@<revision>/<path>` from ROOT/<repo>/<revision>/<path>."""

    URL = re.compile(r"(?:hf://)?datasets/(?P<repo>[^@]+)@(?P<rev>[^/]+)/(?P<path>.*)")

    def __init__(self, root: Path) -> None:
        self.root = root

    def _parts(self, url: str) -> tuple[str, str, str]:
        m = self.URL.fullmatch(url)
        assert m, url
        return m["repo"], m["rev"], m["path"]

    def local(self, url: str) -> Path:
        repo, rev, path = self._parts(url)
        return self.root / repo / unquote(rev) / path

    def glob(self, url: str) -> list[str]:
        repo, rev, pattern = self._parts(url)
        base = self.root / repo / unquote(rev)
        # As HfFileSystem does: a repo or revision that does not exist is FileNotFoundError, not [].
        if not (self.root / repo).is_dir():
            raise FileNotFoundError(f"{url} (repository not found)")
        if not base.is_dir():
            raise FileNotFoundError(f"{url} (revision not found)")
        return [f"datasets/{repo}@{rev}/{p.relative_to(base).as_posix()}" for p in sorted(base.glob(pattern))]


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    hub = FakeHub(tmp_path / "hub")

    monkeypatch.setattr(locate_module, "hub_filesystem", lambda: hub)
    monkeypatch.setattr(locate_module, "hub_commit", lambda repo, revision: "0123abcd")
    real_stream = stream_with_datasets
    seen: list[str] = []

    def stream_local(fmt, urls):
        seen.extend(urls)
        return real_stream(fmt, [str(hub.local(u)) for u in urls])

    monkeypatch.setattr(locate_module, "stream_with_datasets", stream_local)
    downloads: list[tuple[str, str, str]] = []

    def download(repo_id, filename, revision):
        downloads.append((repo_id, filename, revision))
        path = hub.root / repo_id / revision / filename
        if not path.is_file():
            raise FileNotFoundError(path)
        return path

    monkeypatch.setattr(locate_module, "hub_download", download)
    hub.seen, hub.downloads = seen, downloads
    return hub


def write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_lcqmc_falls_back_to_the_c_mteb_mirror_and_streams_it_through_datasets(fake_hub, tmp_path):
    mirror = fake_hub.root / "C-MTEB" / "LCQMC" / "main" / "data"
    for split in ("train", "validation", "test"):
        write_parquet(
            mirror / f"{split}-00000-of-00001.parquet",
            [
                {"sentence1": f"{split}怎么退货", "sentence2": f"{split}如何退货", "score": 1},
                {"sentence1": f"{split}怎么退货", "sentence2": f"{split}运费多少", "score": 0},
            ],
        )
    located = locate(load_catalog()["lcqmc"], "hub")
    assert located.layout.name == "c-mteb" and located.origin == "hub:C-MTEB/LCQMC@main"
    assert located.files["train"] == ["hf://datasets/C-MTEB/LCQMC@main/data/train-00000-of-00001.parquet"]

    result = build_source(load_catalog()["lcqmc"], BuildOptions(out=tmp_path / "out", sources="hub"))
    assert result.status == "built" and result.counts.written == 3
    rows = pq.read_table(tmp_path / "out" / "m3e" / "lcqmc").to_pylist()
    assert [(r["query"], r["positive"], r["negatives"]) for r in rows][0] == ("train怎么退货", "train如何退货", ["train运费多少"])
    assert all(u.startswith("hf://datasets/C-MTEB/LCQMC@main/") for u in fake_hub.seen)


def test_the_parquet_export_branch_is_read_at_its_quoted_revision(fake_hub):
    export = fake_hub.root / "shibing624" / "nli_zh" / "refs/convert/parquet" / "LCQMC"
    for split in ("train", "validation", "test"):
        write_parquet(export / split / "0000.parquet", [{"sentence1": "甲", "sentence2": "乙", "label": 1}])
    located = locate(load_catalog()["lcqmc"], "hub")
    assert located.layout.name == "parquet-export"
    assert located.files["validation"] == [
        "hf://datasets/shibing624/nli_zh@refs%2Fconvert%2Fparquet/LCQMC/validation/0000.parquet"
    ]
    assert list(located.rows("train")) == [{"sentence1": "甲", "sentence2": "乙", "label": 1}]


def test_no_layout_on_the_hub_names_every_layout_tried(fake_hub):
    with pytest.raises(SourceMissing) as err:
        locate(load_catalog()["lcqmc"], "hub")
    message = str(err.value)
    assert "'parquet-export' (shibing624/nli_zh@refs/convert/parquet: repository not found)" in message
    assert "'c-mteb' (C-MTEB/LCQMC@main: repository not found)" in message


def test_a_missing_revision_falls_back_to_the_next_layout(fake_hub):
    """The Parquet export branch disappears when a repo's viewer is switched off, and a pull request ref can
    go: HfFileSystem then raises FileNotFoundError, and the next layout must still be tried."""
    (fake_hub.root / "shibing624" / "nli_zh" / "main").mkdir(parents=True)  # the repo, without its export
    mirror = fake_hub.root / "C-MTEB" / "BQ" / "main" / "data"
    for split in ("train", "validation", "test"):
        write_parquet(mirror / f"{split}-00000-of-00001.parquet", [{"sentence1": "甲", "sentence2": "乙", "score": 1}])
    located = locate(load_catalog()["bq"], "hub")
    assert located.layout.name == "c-mteb" and located.origin == "hub:C-MTEB/BQ@main"


def test_every_mlqa_layout_gone_is_one_message_naming_each_with_its_reason(fake_hub):
    (fake_hub.root / "facebook" / "mlqa" / "main").mkdir(parents=True)  # script only: no refs/pr/5, no export
    with pytest.raises(SourceMissing) as err:
        locate(load_catalog()["mlqa"], "hub")
    message = str(err.value)
    assert "'parquet-pr5' (facebook/mlqa@refs/pr/5: revision not found)" in message
    assert "'parquet-export' (facebook/mlqa@refs/convert/parquet: revision not found)" in message
    assert "'squad-tarball' (facebook/mlqa@main)" in message
    assert "hf download --repo-type dataset facebook/mlqa" in message


def test_a_download_source_is_not_looked_for_on_the_hub():
    with pytest.raises(SourceMissing, match="not on the Hub, pass --sources DIR"):
        locate(load_catalog()["news2016zh"], "hub")


def test_a_hub_json_file_with_a_bad_line_is_downloaded_and_read_with_the_bad_line_counted(fake_hub, tmp_path):
    """belle_2m's 1.9 GB JSON lines: datasets' JSON loader fails the whole file on one undecodable or
    truncated line (ArrowInvalid); the file goes through huggingface_hub's cache and our reader instead."""
    folder = fake_hub.root / "BelleGroup" / "train_2M_CN" / "main"
    folder.mkdir(parents=True)
    good = [{"instruction": f"写一句关于春天的诗{i}", "input": "", "output": f"春风又绿江南岸{i}"} for i in range(3)]
    with (folder / "train_2M_CN.json").open("wb") as fh:
        for row in good[:2]:
            fh.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
        fh.write(b'{"instruction": "\xff\xfe", "input": "", "output": "x"}\n')
        fh.write(b'{"instruction": "cut off\n')
        fh.write((json.dumps(good[2], ensure_ascii=False) + "\n").encode())
    result = build_source(load_catalog()["belle_2m"], BuildOptions(out=tmp_path / "out", sources="hub"))
    assert result.status == "built", result.reason
    assert result.counts.read == 5 and result.counts.written == 3
    assert result.counts.dropped == {"undecodable_bytes": 1, "malformed_json": 1}
    assert fake_hub.downloads == [("BelleGroup/train_2M_CN", "train_2M_CN.json", "main")]
    rows = pq.read_table(tmp_path / "out" / "m3e" / "belle_2m").to_pylist()
    assert [r["query"] for r in rows] == [r["instruction"] for r in good]
