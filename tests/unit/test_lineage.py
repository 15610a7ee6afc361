"""Lineage facts: git commit and dirty flag, DVC data version, validation summary, plugin tags."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from glue import contract, lineage
from glue.adapters import dvc


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "code.py").write_text("x = 1\n")
    _git(root, "add", "code.py")
    _git(root, "commit", "-qm", "first")
    return root


def test_git_state_clean_then_dirty(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    assert lineage.git_state(repo) == lineage.GitState(head, False)
    (repo / "scratch.txt").write_text("untracked files do not make the tree dirty")
    assert lineage.git_state(repo).dirty is False
    (repo / "code.py").write_text("x = 2\n")
    assert lineage.git_state(repo) == lineage.GitState(head, True)


def test_pipeline_records_staged_by_dvc_do_not_make_the_code_dirty(repo: Path) -> None:
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    (repo / "metrics").mkdir()
    (repo / "metrics" / "train.json").write_text("{}\n")
    _git(repo, "add", "dvc.lock", "metrics")  # what DVC's autostage does during `dvc repro`
    assert lineage.git_state(repo).dirty is False
    (repo / "code.py").write_text("changed = True\n")
    assert lineage.git_state(repo).dirty is True


def test_git_state_outside_git(tmp_path: Path) -> None:
    assert lineage.git_state(tmp_path) == lineage.GitState(None, None)
    tags = lineage.data_lineage_tags(tmp_path, tmp_path / "data" / "validated", lineage.NOT_A_DVC_REPO)
    assert tags[contract.GIT_COMMIT] == lineage.NO_GIT
    assert tags[contract.GIT_DIRTY] == "unknown"
    assert tags[contract.DVC_DATA_VERSION] == lineage.NOT_A_DVC_REPO
    assert tags[contract.DVC_REMOTE] == "none"
    assert tags[contract.VALIDATION_SUMMARY] == lineage.NO_SUMMARY
    assert tags[contract.VALIDATION_BATCH_DAYS] == "none"
    assert all(isinstance(v, str) and v for v in tags.values())


def test_data_lineage_tags_name_the_exact_data(repo: Path) -> None:
    # dvc.lock names what `dvc repro` last saw; the tags name the version the training read
    (repo / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  demo_data:\n    cmd: glue demo-data\n    outs:\n"
        "    - path: data/raw\n      md5: ffff0000.dir\n      size: 10\n      nfiles: 2\n"
    )
    read = dvc.DataVersion(path="data/raw", md5="0123abcd.dir", files=3, size=12,
                           remote=str(repo / ".glue" / "dvc-remote"))
    validated = repo / "data" / "validated"
    (validated / "results").mkdir(parents=True)  # one validation result per accepted batch
    for day in ("2026-01-02", "2026-01-01"):
        (validated / "results" / f"{day}.json").write_text("{}")
    summary = validated / "summary.json"
    summary.write_text('{"accepted": 2}')
    tags = lineage.data_lineage_tags(repo, validated, read)
    assert tags[contract.GIT_COMMIT] == _git(repo, "rev-parse", "HEAD")
    assert tags[contract.GIT_DIRTY] == "false"
    assert tags[contract.DVC_DATA_VERSION] == "0123abcd.dir"
    assert tags[contract.DVC_DATA_FILES] == "3" and tags[contract.DVC_DATA_PATH] == "data/raw"
    assert tags[contract.DVC_REMOTE] == str((repo / ".glue" / "dvc-remote").resolve())  # from any clone
    assert tags[contract.VALIDATION_SUMMARY] == "data/validated/summary.json"
    assert tags[lineage.VALIDATION_SUMMARY_SHA256] == hashlib.sha256(b'{"accepted": 2}').hexdigest()
    assert tags[contract.VALIDATION_BATCH_DAYS] == "2026-01-01,2026-01-02"


def test_run_context_plugin_tags_a_glue_project(tmp_project: Path) -> None:
    from mlflow_plugins.lineage import GlueLineageRunContext

    provider = GlueLineageRunContext()
    assert provider.in_context()
    tags = provider.tags()
    assert tags[contract.PROFILE] == "local"
    assert tags[contract.PROJECT_DIR] == str(tmp_project)
    assert tags[contract.DVC_LOCK_DATA_VERSION] == lineage.NO_DVC
    assert contract.DVC_DATA_VERSION not in tags  # only a training knows what it read
    assert tags[contract.GIT_DIRTY] in ("true", "false", "unknown")


def test_run_context_plugin_outside_a_project_never_raises(tmp_path: Path, monkeypatch) -> None:
    from glue.settings import get_settings
    from mlflow_plugins.lineage import GlueLineageRunContext

    monkeypatch.delenv("GLUE_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        provider = GlueLineageRunContext()
        assert not provider.in_context()
        assert provider.tags() == {}
    finally:
        get_settings.cache_clear()
