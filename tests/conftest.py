"""Shared fixtures: a throw-away copy of the project so tests never touch the real data or stores."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent

# Files and folders a test project needs; data and stores are created fresh inside it.
_PROJECT_FILES = ("params.yaml", "dvc.yaml", "feature_repo")

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
