"""The gate and training on a real built project (Feast features, no injected frame): what must NOT happen.

- A close-but-worse challenger, trained from Feast and judged by `glue evaluate` on the window its
  run logged, is rejected by `glue promote`; the champion, its tags and the serving alias stay.
- A challenger equal to the champion is not "better" either.
- Two trainings of one model at once (two `glue train` processes on one host): each registers its
  own version; neither takes the other's for a killed attempt's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from glue import contract, promotion, training
from glue.settings import Settings, get_settings
from tests.conftest import build_small_champion_project, copy_project_config, one_openmp_thread

FRAUD, SPEND = "fraud-detector", "customer-spend"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A small built project with a champion (version 1) of each model."""
    root = copy_project_config(tmp_path_factory.mktemp("gate") / "project")
    mp = pytest.MonkeyPatch()
    mp.setenv("GLUE_PROJECT_DIR", str(root))
    mp.delenv("GLUE_PROFILE", raising=False)
    yield build_small_champion_project(root)
    get_settings.cache_clear()
    mp.undo()


def _variant(settings: Settings, name: str, **params: float) -> object:
    model = settings.model(name)
    estimator = model.estimator.model_copy(update={"params": {**model.estimator.params, **params}})
    return model.model_copy(update={"estimator": estimator})


def test_a_close_but_worse_challenger_is_rejected_through_evaluate_and_promote(project: Settings) -> None:
    from glue.adapters import mlflow

    champion = mlflow.get_alias(SPEND, contract.CHAMPION)
    assert champion is not None
    # a faster learning rate over-fits the small demo a little: RMSE ~1% worse on the same window
    worse = _variant(project, SPEND, learning_rate=0.15)
    with one_openmp_thread():
        trained = training.train(project, worse)
    comparison = promotion.evaluate(project, worse)
    decision = comparison.decision
    assert comparison.champion.version == champion.version
    assert 0 < decision.delta < 0.05 * decision.champion["rmse"], decision.reason  # close, and worse
    assert not decision.passed and "not better enough" in decision.reason
    result = promotion.promote_evaluated(project, worse)

    assert not result.promoted and result.champion_after == champion.version
    assert mlflow.get_alias(SPEND, contract.CHAMPION).version == champion.version
    tags = mlflow.get_version(SPEND, trained.version).tags
    assert tags["glue.gate.decision"] == "rejected" and "glue.gate.promoted_at" not in tags
    assert float(tags["glue.gate.delta"]) == pytest.approx(decision.delta, abs=1e-6)
    assert "glue.gate.replaced_by" not in mlflow.get_version(SPEND, champion.version).tags
    gate = json.loads((project.outputs_dir / promotion.gate_file(SPEND)).read_text())
    assert gate["promoted"] is False and gate["champion_after"] == champion.version


def test_a_challenger_equal_to_the_champion_is_not_promoted(project: Settings) -> None:
    from glue.adapters import mlflow

    model = project.model(FRAUD)
    champion = mlflow.get_alias(FRAUD, contract.CHAMPION)
    with one_openmp_thread():  # the same spec, data and threads as the champion: the same model
        same = training.train(project, model)
    comparison = promotion.evaluate(project, model)
    assert comparison.decision.delta == 0.0 and not comparison.decision.passed
    result = promotion.promote_evaluated(project, model)
    assert not result.promoted and mlflow.get_alias(FRAUD, contract.CHAMPION).version == champion.version
    assert mlflow.get_version(FRAUD, same.version).tags["glue.gate.decision"] == "rejected"


def test_two_trainings_of_one_model_at_once_each_register_one_version(project: Settings) -> None:
    from glue.adapters import mlflow

    before = {v.version for v in mlflow.all_versions() if v.name == SPEND}
    champion = mlflow.get_alias(SPEND, contract.CHAMPION).version
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CTX_")}
    env.update(GLUE_PROJECT_DIR=str(project.project_dir), TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    glue = str(Path(sys.executable).with_name("glue"))
    runs = [subprocess.Popen([glue, "train", "--model", SPEND], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=400)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert not any("killed earlier attempt" in out for out in outputs)  # neither took the other's

    new = {v.version for v in mlflow.all_versions() if v.name == SPEND} - before
    assert len(new) == 2
    statuses = {mlflow.run_data(mlflow.get_version(SPEND, v).run_id)[0].get(contract.TRAIN_ATTEMPT)
                for v in new}
    assert statuses == {training.attempt_key()}
    assert mlflow.get_alias(SPEND, contract.CHALLENGER).version in new
    assert mlflow.get_alias(SPEND, contract.CHAMPION).version == champion
