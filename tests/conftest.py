"""Shared fixtures: a throw-away copy of the project so tests never touch the real data or stores."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import prometheus_client  # noqa: F401 - before any Feast import; see below
import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent

# Files and folders a test project needs; data and stores are created fresh inside it.
_PROJECT_FILES = ("params.yaml", "dvc.yaml", "feature_repo")

# Importing feast.metrics sets PROMETHEUS_MULTIPROC_DIR, which makes a prometheus_client imported
# after it keep metric values in per-process files shared by every metric of the same name: the
# apps several tests create in one process would then count each other's requests. `glue serve`
# imports prometheus_client before Feast; so does this test process, by the import above.

# Keep the tools quiet and offline in tests.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


def copy_project_config(root: Path) -> Path:
    """Copy the project's configuration (no data, no stores) into a new folder `root`."""
    root.mkdir()
    for name in _PROJECT_FILES:
        src = PROJECT_DIR / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "data"))
        elif src.exists():
            shutil.copy2(src, root / name)
    return root


@pytest.fixture
def tmp_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's configuration in tmp_path, selected through GLUE_PROJECT_DIR."""
    root = copy_project_config(tmp_path / "project")
    monkeypatch.setenv("GLUE_PROJECT_DIR", str(root))
    monkeypatch.delenv("GLUE_PROFILE", raising=False)
    from glue.settings import get_settings

    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


def clone_project(root: Path, demo: dict) -> Path:
    """What a fresh clone holds (config and code, no data, no stores), as a git + DVC repo."""
    root.mkdir()
    for name in ("params.yaml", "dvc.yaml", "feature_repo", "dags", "glue", "monitoring", ".dvcignore",
                 ".gitignore"):
        src = PROJECT_DIR / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "data"))
        elif src.exists():
            shutil.copy2(src, root / name)
    (root / ".dvc").mkdir()
    shutil.copy2(PROJECT_DIR / ".dvc" / "config", root / ".dvc" / "config")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["demo"].update(demo)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "clone"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    return root
