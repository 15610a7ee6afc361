"""The CI/CD workflows (.github/) checked statically: they parse and do what the README says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPT = ROOT / ".github" / "scripts" / "gate_comment.py"


def _workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _runs(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


@pytest.mark.parametrize("name", ["tests.yml", "model-pr.yml", "promote.yml"])
def test_each_workflow_parses_and_its_scripts_exist(name: str) -> None:
    workflow = _workflow(name)
    assert workflow["on"] and workflow["jobs"]
    for run in _runs(workflow):
        for path in re.findall(r"(?:bash|python)\s+((?:\.ci|\.github)/[\w./-]+)", run):
            assert (ROOT / path).is_file(), f"{name} runs {path}, which does not exist"


def test_every_push_runs_the_readme_test_command() -> None:
    workflow = _workflow("tests.yml")
    assert "push" in workflow["on"] and "pull_request" in workflow["on"]
    assert any("bash .ci/run" in run for run in _runs(workflow))
    services = workflow["jobs"]["tests"]["services"]
    assert {"postgres", "redis"} <= set(services)  # the prod tests need them


def test_a_data_or_params_pull_request_reproduces_and_posts_the_diff_and_the_verdict() -> None:
    workflow = _workflow("model-pr.yml")
    paths = workflow["on"]["pull_request"]["paths"]
    assert {"params.yaml", "dvc.yaml", "feature_repo/**"} <= set(paths)
    runs = "\n".join(_runs(workflow))
    assert "dvc repro" in runs and "dvc metrics diff" in runs and "gate_comment.py" in runs
    assert "gh pr comment" in runs
    assert workflow["permissions"]["pull-requests"] == "write"


def test_merges_promote_through_the_gate_one_at_a_time() -> None:
    workflow = _workflow("promote.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    job = workflow["jobs"]["promote"]
    assert job["environment"] == "production" and job["env"]["GLUE_PROFILE"] == "prod"
    runs = "\n".join(_runs(workflow))
    assert "glue run" in runs and "--force" not in runs
    for secret in ("MLFLOW_TRACKING_PASSWORD", "GLUE_MLFLOW_TRACKING_URI"):
        assert "secrets." in job["env"][secret]  # never a value in the repo


def test_the_gate_comment_shows_the_verdict_and_both_models(tmp_path: Path) -> None:
    evaluation = {
        "model_name": "fraud-detector", "rows": 12086, "fraud": 185,
        "window_start": "2026-02-23T00:00:00+00:00", "window_end": "2026-03-02T00:00:00+00:00",
        "challenger": {"version": "4"}, "champion": {"version": "3"},
        "decision": {"passed": False, "challenger": {"average_precision": 0.6512, "roc_auc": 0.9},
                     "champion": {"average_precision": 0.6490, "roc_auc": 0.899}, "delta": 0.0022,
                     "ci_low": -0.011, "ci_high": 0.015, "prob_better": 0.31, "failed_floors": [],
                     "reason": "not better by 0.005 with 95% confidence"},
    }
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    (tmp_path / "diff.md").write_text("| Path | Metric | HEAD | workspace | Change |\n|---|---|---|---|\n")
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "evaluation.json"),
                          str(tmp_path / "diff.md")], capture_output=True, text=True, check=True).stdout
    assert "rejected" in out and "challenger version 4 vs champion 3" in out
    assert "| average_precision | 0.6512 | 0.6490 |" in out and "+0.0022" in out
    assert "not better by 0.005" in out and "dvc metrics diff" in out
