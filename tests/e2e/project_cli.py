"""The real `glue` CLI run in a copy of the project, for the end-to-end tests (tests/e2e)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GLUE = str(Path(sys.executable).with_name("glue"))
DVC = str(Path(sys.executable).with_name("dvc"))
FEAST = str(Path(sys.executable).with_name("feast"))


def env_for(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLUE_")}
    # as in an activated environment: `dvc repro` finds the `glue` its stages call
    path = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return {**env, "PATH": path, "GLUE_PROJECT_DIR": str(root), "TQDM_DISABLE": "1"}


def run(args: list[str], root: Path, timeout: float = 900) -> str:
    proc = subprocess.run(args, cwd=root, env=env_for(root), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def mlflow_client(root: Path, db: Path):  # noqa: ANN202
    from mlflow import MlflowClient

    uri = f"sqlite:///{db}"
    return MlflowClient(uri, uri)


def all_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


