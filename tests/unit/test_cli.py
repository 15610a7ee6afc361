"""The CLI starts fast (no heavy imports) and turns user mistakes into one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("feast", "mlflow", "great_expectations", "evidently", "airflow", "sklearn", "pandas", "dvc", "ray")


def _run(*args: str, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "glue.cli", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )


def test_help_imports_no_heavy_tool() -> None:
    probe = (
        "import sys\n"
        "from glue.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_command_has_help() -> None:
    from glue.cli import cli

    for name in cli.commands:
        result = _run(name, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


def test_user_error_is_one_line_without_traceback(tmp_project: Path) -> None:
    import os

    env = {**os.environ, "GLUE_PROFILE": "staging"}
    result = _run("validate", "x.parquet", env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown profile 'staging'" in result.stderr


def test_debug_shows_the_traceback(tmp_project: Path) -> None:
    import os

    env = {**os.environ, "GLUE_PROFILE": "staging"}
    result = _run("--debug", "validate", "x.parquet", env=env)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
