"""Shared fixtures: a throw-away copy of the project so tests never touch the real data or stores."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import prometheus_client  # noqa: F401 - before any Feast import; see below
import pytest
import yaml

from tests import services

if TYPE_CHECKING:
    from glue.settings import Settings

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


# The suite runs on every core (pytest-xdist, pyproject.toml), one test file per worker at a time
# (module fixtures build a project once), files handed out in collection order. The folders whose
# files run minutes each go first, so the workers do not end waiting on one long file started last.
_FOLDERS_LONGEST_FIRST = ("e2e", "prod", "ray", "browser", "integration", "unit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collection order by folder, longest-running first; within a folder, as collected."""
    def rank(item: pytest.Item) -> int:
        folder = Path(item.path).parent.name
        return _FOLDERS_LONGEST_FIRST.index(folder) if folder in _FOLDERS_LONGEST_FIRST else 0

    items.sort(key=rank)  # stable: a module's tests stay together and in order


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Give back what the run took: its prefixed databases and claimed Redis dbs (tests/services.py)."""
    services.release_all()


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


def clone_project(root: Path, demo: dict, models: dict[str, dict] | None = None) -> Path:
    """What a fresh clone holds (config and code, no data, no stores), as a git + DVC repo; `demo`
    updates params.yaml's demo: section, `models` (name -> keys) the models' specs."""
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
    for name, keys in (models or {}).items():
        params["models"][name].update(keys)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "clone"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    return root


def build_small_champion_project(root: Path) -> Settings:
    """A tiny built project in `root` (selected through GLUE_PROJECT_DIR by the caller): 15 demo
    days x 200 transactions validated, features materialized online, every model of the demo
    trained small and promoted (champion version 1 of each). ~60 s; for tests about what sits on
    top of a champion.
    """
    from feature_repo.demo import generate as demo_data
    from glue import features, promotion, training, validation
    from glue.settings import get_settings

    params_file = root / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for spec in params["models"].values():  # the tests are not about model quality
        spec["validation_days"] = 4
        spec["estimator"]["params"]["max_iter"] = 60
        spec["gate"]["floors"] = {}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    get_settings.cache_clear()
    settings = get_settings()
    demo_data.generate(SMALL_DEMO, settings.raw_dir)
    validation.validate_batches(settings)
    features.build_features(settings)
    for model in settings.models:
        with one_openmp_thread():
            training.train(settings, model)
        assert promotion.evaluate_and_promote(settings, model).promoted
    return settings


# The demo generator's `demo:` section for the small projects tests build.
SMALL_DEMO = {"days": 15, "transactions_per_day": 200, "customers": 300, "merchants": 40, "fraud_rate": 0.05,
              "label_delay_days": 2, "seed": 11}


def one_openmp_thread() -> Any:
    """Small fits on a shared 2-core host: OpenMP threads only wait for each other (30 s -> 5 s)."""
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime the limit applies to
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")
