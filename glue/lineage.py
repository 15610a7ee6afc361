"""Lineage facts: which code, data, validation result and features a model was built from.

One record per model version is the point of the glue (README: Architecture): the training run and the
registered model version both carry these facts as tags, and the MLflow run-context plugin
(mlflow_plugins/lineage.py) adds the cheap ones to every run. This module only *gathers* the facts
(git, DVC, the validation gate's files); it imports no MLflow, so it is quick and easy to test, and
every fact is None-safe: a project without git, DVC lock or validation results still trains, and the
tag says plainly what is missing instead of being absent.
The tag keys are the registry contract's (glue/contract.py).
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from glue.adapters import dvc
from glue.contract import (
    DVC_DATA_FILES,
    DVC_DATA_PATH,
    DVC_DATA_VERSION,
    DVC_LOCK_DATA_VERSION,
    DVC_REMOTE,
    GIT_COMMIT,
    GIT_DIRTY,
    PROFILE,
    PROJECT_DIR,
    VALIDATION_BATCH_DAYS,
    VALIDATION_SUMMARY,
    VALIDATION_SUMMARY_SHA256,
)
from glue.contract import TAG_PREFIX as TAG_PREFIX  # re-exported: tests check no glue tag outside a project

RAW_DATA_PATH = "data/raw"  # the DVC-tracked output whose hash names the data version
VALIDATION_SUMMARY_FILE = "summary.json"  # written by the validation stage under validated_dir

# What a tag says when the fact does not exist yet (never an empty or missing tag).
PIPELINE_RECORDS = ("dvc.lock", "metrics")  # written by `dvc repro` itself: not "dirty" code
NO_GIT = "unknown (not a git repository)"
NO_DVC = "untracked (no dvc.lock entry or .dvc file for data/raw; run `dvc repro`)"
NOT_A_DVC_REPO = "untracked (the data is not inside a DVC repository)"
FRAME_GIVEN = "untracked (trained on a frame the caller gave, not on the project's data)"
NO_SUMMARY = "missing"


@dataclass(frozen=True)
class GitState:
    """The commit the code came from and whether the working tree differed from it."""

    commit: str | None
    dirty: bool | None


def git_state(project_dir: Path) -> GitState:
    """HEAD commit and dirty flag of the project's git repository (None, None outside git).

    Dirty means a *tracked* file differs from HEAD: untracked files (scratch notebooks, local
    state) do not change what `git checkout <commit>` would rebuild, so they do not count. Nor do
    the records the pipeline itself writes while it runs (dvc.lock, which DVC stages in git, and
    metrics/): they are the data's version, tagged separately, not a change to the code.
    """
    commit = _git(project_dir, "rev-parse", "HEAD")
    if commit is None:
        return GitState(None, None)
    status = _git(project_dir, "status", "--porcelain", "--untracked-files=no", "--",
                  ".", *(f":(exclude){p}" for p in PIPELINE_RECORDS))
    return GitState(commit, None if status is None else bool(status))


def dvc_data_version(project_dir: Path, path: str = RAW_DATA_PATH) -> str | None:
    """The DVC content hash of the raw batches (from dvc.lock or `<path>.dvc`), None if none yet."""
    try:
        return dvc.data_version(project_dir, path)
    except Exception:  # a corrupt lock file must not stop training; the tag will say "untracked"
        return None


def file_sha256(path: Path) -> str | None:
    """Content hash of a file, so a tag pins the exact validation result used; None if absent."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validated_days(validated_dir: Path) -> list[str]:
    """The batch days the validation gate accepted (the stems of its per-batch result files)."""
    folder = validated_dir / "results"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def data_lineage_tags(project_dir: Path, validated_dir: Path, data: dvc.DataVersion | str) -> dict[str, str]:
    """Git, DVC and validation facts as MLflow tag values (strings, never empty).

    `data` is the DVC version of the data the model read (:func:`glue.adapters.dvc.snapshot`), or
    the reason there is none (NOT_A_DVC_REPO, FRAME_GIVEN): never dvc.lock's hash, which names
    what `dvc repro` last saw, not necessarily what this training read.
    """
    git = git_state(project_dir)
    summary = validated_dir / VALIDATION_SUMMARY_FILE
    sha = file_sha256(summary)
    days = validated_days(validated_dir)
    versioned = isinstance(data, dvc.DataVersion)
    return {
        GIT_COMMIT: git.commit or NO_GIT,
        GIT_DIRTY: _flag(git.dirty),
        DVC_DATA_PATH: data.path if versioned else RAW_DATA_PATH,
        DVC_DATA_VERSION: data.md5 if versioned else data,
        DVC_REMOTE: _remote_url(data.remote) if versioned else "none",
        DVC_DATA_FILES: str(data.files) if versioned else "0",
        VALIDATION_SUMMARY: _relative(summary, project_dir) if sha else NO_SUMMARY,
        VALIDATION_SUMMARY_SHA256: sha or NO_SUMMARY,
        VALIDATION_BATCH_DAYS: ",".join(days) if days else "none",
    }


def context_tags(project_dir: Path, profile: str) -> dict[str, str]:
    """The cheap facts every MLflow run of the project gets (used by the run-context plugin).

    The raw data's version here is dvc.lock's (DVC_LOCK_DATA_VERSION), under a key of its own: a
    run that trains through glue gets DVC_DATA_VERSION, the version of what it read, on top.
    """
    git = git_state(project_dir)
    return {
        PROFILE: profile,
        PROJECT_DIR: str(project_dir),
        DVC_LOCK_DATA_VERSION: dvc_data_version(project_dir) or NO_DVC,
        GIT_DIRTY: _flag(git.dirty),
    }


def _remote_url(url: str) -> str:
    """The remote as anyone on this machine or network reaches it: a URL as given, a folder as its
    absolute path (a clean clone elsewhere reaches the same folder, not one of its own)."""
    return url if "://" in url else str(Path(url).resolve())


def _flag(value: bool | None) -> str:
    return "unknown" if value is None else str(value).lower()


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _git(cwd: Path, *args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.strip()
