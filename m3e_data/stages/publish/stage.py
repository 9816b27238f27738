"""Publish m3e-hq / m3e-hq-with-score to the Hugging Face Hub: stage, write the card, check, upload.

The upload is the resumable large-folder upload of the installed huggingface_hub: `upload_large_folder`
where it exists (huggingface_hub < 2; it keeps its progress in the folder's .cache/huggingface/), else
`upload_folder`, which in huggingface_hub 2.x replaced it: with hf_xet installed (a dependency of
huggingface_hub) it streams the files, commits large folders in several batches and resumes an
interrupted upload when re-run with the same folder (committed files are skipped, uploaded chunks
deduplicated). So a push stages into a folder that outlives the run
(OUT/hub/<owner>--<name>/) and reuses it while its inputs are unchanged: re-running a push after a broken
connection re-sends only what is missing.

The token is never handled here: huggingface_hub reads HF_TOKEN or the login cache itself, and
HF_ENDPOINT (a mirror) is read by huggingface_hub.constants at import.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, HfApi, get_token

from m3e_data import __version__
from m3e_data.catalog import Source, load_catalog
from m3e_data.commercial import licences, row_problems
from m3e_data.manifest import read_manifest
from m3e_data.stages.publish.card import build_card, card_licenses_commercial, write_card
from m3e_data.stages.publish.hub_stage import (
    HUB_UPLOAD_CACHE,
    OWNER,
    SHARD_BYTES,
    StagedRepo,
    StageError,
    input_sources,
    scan_staged,
    stage,
    staged_parquet,
)
from m3e_data.storage import ownership
from m3e_data.storage.store import SUCCESS

_UPLOADABLE = ("README.md", ".gitattributes")


class PublishError(RuntimeError):
    """A push that must not go ahead (not logged in, nothing to publish)."""


class CommercialRefusal(PublishError):
    """A commercial-only push whose staged rows or card say something is not commercial."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n  ".join(problems[:20]) + (f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else "")
        super().__init__(f"refusing a commercial-only push; nothing was uploaded:\n  {shown}")


@dataclass
class Prepared:
    staged: StagedRepo
    card: Path
    reused: bool  # the staged folder of an earlier run was still current


def is_mined(data_dir: Path, staged: StagedRepo) -> bool:
    return data_dir.name.endswith("with-score") or bool(staged.mining)


def input_key(data_dir: Path, *, commercial_only: bool, shard_bytes: int) -> dict[str, Any]:
    """What a staging was made from: each source's completion record, and the staging options."""
    records = {p.name: hashlib.sha256((p / SUCCESS).read_bytes()).hexdigest() for p in input_sources(data_dir)}
    return {
        "data_dir": str(data_dir.resolve()),
        "sources": records,
        "commercial_only": commercial_only,
        "shard_bytes": shard_bytes,
        "m3e_data": __version__,
    }


def commercial_problems(folder: Path, catalog: dict[str, Source] | None = None) -> list[str]:
    """Everything in a staged folder that a commercial-only release must not hold ([] when clean).

    Reads the files themselves, not the staging's own bookkeeping: every row's `commercial` flag, its
    licence and its source against the catalog, every licence the card declares, and any file that is
    neither Parquet nor the card (it would be uploaded unchecked).
    """
    catalog = catalog if catalog is not None else load_catalog()
    problems: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(HUB_UPLOAD_CACHE + "/"):
            continue  # huggingface_hub's own upload progress, which it never uploads
        if rel == ownership.MARKER:
            continue  # the staging's bookkeeping, which upload() never sends
        if path.suffix != ".parquet" and rel not in _UPLOADABLE:
            problems.append(f"{rel}: unexpected file in the release (only Parquet shards and README.md)")
    spdx_seen: set[str] = set()
    for path in staged_parquet(folder):
        rel = path.relative_to(folder).as_posix()
        try:
            table = pq.read_table(path, columns=["source", "license", "commercial"])
        except (pa.ArrowInvalid, KeyError, OSError) as exc:
            problems.append(f"{rel}: unreadable or lacks source/license/commercial columns ({exc})")
            continue
        spdx_seen |= licences(table)
        problems += row_problems(table, rel, catalog)
    readme = folder / "README.md"
    if not readme.is_file():
        problems.append("README.md: the dataset card is missing")
    else:
        licenses = DatasetCard.load(readme).data.get("license") or []
        licenses = [licenses] if isinstance(licenses, str) else list(licenses)
        if not licenses:
            problems.append("README.md: the card declares no licence")
        problems += [f"README.md: {p}" for p in card_licenses_commercial(licenses, spdx_seen)]
    return problems


def prepare(
    data_dir: Path,
    dest: Path,
    *,
    repo_id: str,
    commercial_only: bool = False,
    shard_bytes: int = SHARD_BYTES,
    catalog: dict[str, Source] | None = None,
    dry_run: bool = False,
) -> Prepared:
    """Stage `data_dir` into `dest` and write the card; reuse `dest` if an earlier run staged the same inputs.

    `dry_run`: `dest` is the folder a user asked a dry run to stage into; its marker says so, so that a real
    push never stages there (see push).
    """
    catalog = catalog if catalog is not None else load_catalog()
    key = input_key(data_dir, commercial_only=commercial_only, shard_bytes=shard_bytes)
    # The key lives in the staging's own marker, inside the folder (never beside it); upload() skips it.
    marker = ownership.read_marker(dest) if dest.is_dir() else None
    reused = marker is not None and marker.get("command") == OWNER and marker.get("key") == key
    if reused:
        # A reused folder is uploaded whole: a file the staging did not write must not go with it (a shard
        # changed since is the commercial check's to judge, which reads every row).
        added = ownership.foreign_files(dest, OWNER, sizes=False)
        if added:
            raise StageError(str(ownership.ForeignFiles(dest, OWNER, added)))
        staged = scan_staged(dest)
    else:
        staged = stage(data_dir, dest, commercial_only=commercial_only, shard_bytes=shard_bytes)
    if not staged.configs:
        raise PublishError(f"{data_dir}: no rows to publish" + (" under --commercial-only" if commercial_only else ""))
    # A mine run outside a build folder keeps its record inside its output (m3e_data.stages.mine.stage.record_folder).
    card = build_card(
        staged, catalog, read_manifest(data_dir) or read_manifest(data_dir.parent), repo_id=repo_id, mined=is_mined(data_dir, staged),
        commercial_only=commercial_only,
    )
    card_path = write_card(card, dest)
    ownership.mark(dest, OWNER, trees=[HUB_UPLOAD_CACHE], key=key, dry_run=dry_run)
    return Prepared(staged, card_path, reused)


def default_stage_dir(data_dir: Path, repo_id: str, commercial_only: bool) -> Path:
    name = repo_id.replace("/", "--") + ("-commercial" if commercial_only else "")
    return data_dir.parent / "hub" / name


def dry_run_folder_around(folder: Path) -> Path | None:
    """The dry-run staging `folder` is, or lies inside, if any.

    A dry run's folder is the user's copy to read (`load_dataset(folder, CONFIG)`): a real push staging in
    it would write the upload cache into it, re-stage it under another key, or (a folder inside it) add
    shards that `load_dataset` then reads as part of the dry run's configs.
    """
    folder = folder.absolute()
    for candidate in (folder, *folder.parents):
        marker = ownership.read_marker(candidate) if candidate.is_dir() else None
        if marker is not None and marker.get("command") == OWNER and marker.get("dry_run"):
            return candidate
    return None


def real_stage_dir(data_dir: Path, repo_id: str, commercial_only: bool, stage_dir: Path | None) -> Path:
    """Where a real push stages: `stage_dir`, or OUT/hub/OWNER--NAME, or, when that is inside a dry run's
    folder (a dry run into OUT/hub), OUT/hub-upload/OWNER--NAME. Never inside a dry run's folder."""
    if stage_dir is not None:
        taken = dry_run_folder_around(stage_dir)
        if taken is not None:
            raise PublishError(
                f"--stage-dir {stage_dir}: {'is' if taken == stage_dir.absolute() else 'lies inside'} the dry-run "
                f"staging {taken}, which a real push never stages into (it stays as the dry run left it): "
                "choose another --stage-dir, or leave it out"
            )
        return stage_dir
    dest = default_stage_dir(data_dir, repo_id, commercial_only)
    if dry_run_folder_around(dest) is None:
        return dest
    fallback = data_dir.parent / "hub-upload" / dest.name
    taken = dry_run_folder_around(fallback)
    if taken is not None:
        raise PublishError(f"{dest} and {fallback} lie inside the dry-run staging {taken}, which a real push "
                           "never stages into: choose a --stage-dir outside it")
    return fallback


def upload(folder: Path, repo_id: str, *, private: bool = False, api: HfApi | None = None) -> str:
    """Create the dataset repo if needed and upload `folder`; returns the repo's URL.

    Re-running after a broken connection resumes (see the module note). `private` applies when the repo
    is created; an existing public repo is not made private, so a private push to one is refused before
    anything is sent.
    """
    if get_token() is None:
        raise PublishError("not logged in to the Hugging Face Hub: set HF_TOKEN or run `hf auth login`")
    api = api or HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if private and not getattr(api.repo_info(repo_id, repo_type="dataset"), "private", False):
        raise PublishError(
            f"{repo_id} already exists and is public; --private does not change an existing repository, so "
            "nothing was uploaded: make it private on the Hub first, or push without --private"
        )
    large = getattr(api, "upload_large_folder", None)
    if large is not None:  # huggingface_hub < 2
        large(repo_id=repo_id, folder_path=folder, repo_type="dataset", private=private,
              ignore_patterns=[ownership.MARKER])
    else:
        api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=folder,
            ignore_patterns=[ownership.MARKER],  # the staging's own bookkeeping
            commit_message=f"Upload {repo_id} with m3e-data {__version__}",
        )
    return str(url)


def push(
    data_dir: Path,
    repo_id: str,
    *,
    commercial_only: bool = False,
    private: bool = False,
    dry_run: Path | None = None,
    shard_bytes: int = SHARD_BYTES,
    stage_dir: Path | None = None,
    api: HfApi | None = None,
) -> tuple[Prepared, str | None]:
    """Stage, write the card, verify (commercial-only), and upload unless `dry_run` names the folder to stage.

    Returns what was staged and the repo URL (None for a dry run). A commercial-only push whose staged
    folder fails the check raises CommercialRefusal before anything is sent. `stage_dir` overrides where
    a real push stages (default OUT/hub/<owner>--<name>/); a real push never stages inside a dry run's folder.
    """
    if "/" not in repo_id:
        raise PublishError(f"--repo-id {repo_id!r}: expected OWNER/NAME")
    dest = dry_run or real_stage_dir(data_dir, repo_id, commercial_only, stage_dir)
    prepared = prepare(data_dir, dest, repo_id=repo_id, commercial_only=commercial_only, shard_bytes=shard_bytes,
                       dry_run=dry_run is not None)
    if commercial_only:
        problems = commercial_problems(dest)
        if problems:
            raise CommercialRefusal(problems)
    if dry_run is not None:
        return prepared, None
    return prepared, upload(dest, repo_id, private=private, api=api)
