"""The gate against a real SQLite MLflow: first model, better, worse, and a concurrent change, for
the binary fraud model and the regression customer-spend model (lower RMSE is better); two gates
promoting at the same moment from two processes."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from glue import contract, promotion, training
from glue.errors import GlueError
from glue.settings import EstimatorSpec, ModelSpec
from tests.integration.synthetic_frame import synthetic_frame, synthetic_spend_frame

MODEL = "fraud-detector"
SPEND = "customer-spend"


def _with_estimator(model: ModelSpec, estimator: EstimatorSpec) -> ModelSpec:
    return model.model_copy(update={"estimator": estimator})


def _with_floors(model: ModelSpec, floors: dict[str, float]) -> ModelSpec:
    return model.model_copy(update={"gate": model.gate.model_copy(update={"floors": floors})})


@pytest.mark.slow
def test_gate_story(tmp_project: Path) -> None:
    from glue.adapters import mlflow
    from glue.settings import get_settings

    settings = get_settings()
    model = settings.model(MODEL)
    frame = synthetic_frame()
    champion = lambda: mlflow.get_alias(MODEL, contract.CHAMPION)  # noqa: E731

    # 1. a first model that learnt nothing (shuffled labels) fails the floors: no champion
    noise = training.train(settings, model, synthetic_frame(shuffle_labels=True))
    result = promotion.evaluate_and_promote(settings, model, frame)
    assert not result.promoted and "first model" in result.reason and "floor" in result.reason
    assert result.model_name == MODEL and result.metrics["metric"] == "average_precision"
    assert champion() is None
    assert mlflow.get_version(MODEL, noise.version).tags["glue.gate.decision"] == "rejected"

    # 2. a modest first model (logistic regression on three columns) clears them: champion
    modest_frame = dataclasses.replace(frame, feature_columns=["amount", "channel", "card_present"])
    modest = training.train(settings, _with_estimator(model, EstimatorSpec(type="logistic_regression")),
                            modest_frame)
    result = promotion.evaluate_and_promote(settings, model, frame)
    assert result.promoted, result.reason
    assert champion().version == modest.version
    assert result.champion_before is None and result.champion_after == modest.version

    # 3. a clearly better model, but the champion moves between comparison and promotion
    strong = training.train(settings, model, frame)
    comparison = promotion.compare(settings, model, frame)
    assert comparison.decision.passed, comparison.decision.reason
    assert comparison.positives is not None and 0 < comparison.positives < comparison.rows
    mlflow.set_alias(MODEL, contract.CHAMPION, noise.version)  # another gate got there first
    result = promotion.promote(settings, model, comparison)
    assert not result.promoted and "changed concurrently" in result.reason
    assert champion().version == noise.version  # not moved by us
    assert mlflow.get_version(MODEL, strong.version).tags["glue.gate.decision"] == "stale"

    # 4. re-run after restoring: the better model is promoted, with the numbers as tags
    mlflow.set_alias(MODEL, contract.CHAMPION, modest.version)
    result = promotion.evaluate_and_promote(settings, model, frame)
    assert result.promoted, result.reason
    assert champion().version == strong.version
    tags = mlflow.get_version(MODEL, strong.version).tags
    assert tags["glue.gate.decision"] == "passed"
    assert tags["glue.gate.compared_with"] == modest.version
    assert float(tags["glue.gate.delta"]) > model.gate.min_improvement
    assert tags["glue.gate.metric"] == "average_precision"
    assert int(tags["glue.gate.window_positives"]) == comparison.positives
    assert float(tags["glue.gate.ci_low"]) < float(tags["glue.gate.delta"]) < float(tags["glue.gate.ci_high"])
    assert tags["glue.gate.window_start"] == "2026-01-24T00:00:00+00:00"
    for key in ("challenger_average_precision", "champion_average_precision", "prob_better",
                "decided_at", "promoted_at", "reason"):
        assert "glue.gate." + key in tags
    assert mlflow.get_version(MODEL, modest.version).tags["glue.gate.replaced_by"] == strong.version

    # 5. a worse challenger is rejected; the champion stays, the reason is on the challenger
    worse = training.train(settings, model, synthetic_frame(shuffle_labels=True, seed=1))
    result = promotion.evaluate_and_promote(settings, model, frame)
    assert not result.promoted
    assert champion().version == strong.version
    tags = mlflow.get_version(MODEL, worse.version).tags
    assert tags["glue.gate.decision"] == "rejected" and tags["glue.gate.reason"] == result.reason
    assert float(tags["glue.gate.delta"]) < 0

    gate_json = json.loads((tmp_project / promotion.gate_file(MODEL)).read_text())
    assert gate_json["promoted"] is False and gate_json["challenger_version"] == worse.version
    assert gate_json["champion_after"] == strong.version
    assert "decided_at" not in gate_json  # a DVC metrics file: no time of the decision

    # each version's model card carries the gate's verdict and its approver
    def card(run_id: str) -> dict:
        return mlflow.read_run_json(run_id, contract.MODEL_CARD_JSON)

    assert card(strong.run_id)["gate"]["decision"] == "passed"
    assert card(strong.run_id)["gate"]["approver"].startswith("automatic gate")
    assert card(worse.run_id)["gate"]["decision"] == "rejected"
    assert card(worse.run_id)["gate"]["reason"] == result.reason

    # 6. the two DVC stages: `evaluate` keeps the verdict, `promote` acts on it only while the
    # challenger it judged is still the challenger
    comparison = promotion.evaluate(settings, model, frame)
    saved = json.loads((tmp_project / promotion.evaluation_file(MODEL)).read_text())
    assert saved["challenger"]["version"] == worse.version and saved["decision"]["passed"] is False
    assert promotion.promote_evaluated(settings, model).champion_after == strong.version
    newer = training.train(settings, model, frame)
    with pytest.raises(GlueError, match=f"evaluated {MODEL} version {worse.version}, but the challenger "
                                        f"is now {newer.version}"):
        promotion.promote_evaluated(settings, model)
    assert comparison.summary().startswith(f"{MODEL} version {worse.version} vs champion {strong.version}")

    # the other model's evaluation is its own: none yet
    with pytest.raises(GlueError, match="no evaluation to act on"):
        promotion.promote_evaluated(settings, settings.model(SPEND))


@pytest.mark.slow
def test_regression_gate_story(tmp_project: Path) -> None:
    """customer-spend: RMSE is the gate metric (lower is better), r2 >= 0.1 its floor."""
    from glue.adapters import mlflow
    from glue.settings import get_settings

    settings = get_settings()
    model = settings.model(SPEND)
    assert model.gate.metric == "rmse" and model.gate.floors == {"r2": 0.1}
    frame = synthetic_spend_frame()
    champion = lambda: mlflow.get_alias(SPEND, contract.CHAMPION)  # noqa: E731

    # 1. a first model that learnt nothing (shuffled labels) is below the r2 floor: no champion
    noise = training.train(settings, model, synthetic_spend_frame(shuffle_labels=True))
    result = promotion.evaluate_and_promote(settings, model, frame)
    assert not result.promoted and "first model" in result.reason and "r2" in result.reason
    assert champion() is None
    tags = mlflow.get_version(SPEND, noise.version).tags
    assert tags["glue.gate.decision"] == "rejected" and tags["glue.gate.metric"] == "rmse"
    assert "glue.gate.window_positives" not in tags

    # 2. a modest first model (ridge on the weekly spending alone) clears the floor: champion
    modest_frame = dataclasses.replace(frame, feature_columns=["amount_sum_7d"])
    modest = training.train(settings, _with_estimator(model, EstimatorSpec(type="ridge")), modest_frame)
    result = promotion.evaluate_and_promote(settings, model, frame)
    assert result.promoted, result.reason
    assert champion().version == modest.version and "first model" in result.reason

    # 3. a challenger with a lower RMSE, but beyond an RMSE ceiling of 5: rejected, champion kept
    strong = training.train(settings, model, frame)
    ceiling = _with_floors(model, {"r2": 0.1, "rmse": 5.0})
    result = promotion.evaluate_and_promote(settings, ceiling, frame)
    assert not result.promoted and "rmse" in result.reason and "ceiling 5" in result.reason
    assert champion().version == modest.version
    assert result.metrics["delta"] < 0  # it was better; the ceiling stopped it

    # 4. under the configured floors the lower RMSE wins
    result = promotion.evaluate_and_promote(settings, model, frame)
    assert result.promoted, result.reason
    assert champion().version == strong.version and result.champion_before == modest.version
    tags = mlflow.get_version(SPEND, strong.version).tags
    assert tags["glue.gate.decision"] == "passed" and tags["glue.gate.metric"] == "rmse"
    assert float(tags["glue.gate.challenger_rmse"]) < float(tags["glue.gate.champion_rmse"])
    delta = float(tags["glue.gate.delta"])
    assert delta < -model.gate.min_improvement  # RMSE down by more than 1.0
    assert float(tags["glue.gate.ci_low"]) < delta < float(tags["glue.gate.ci_high"]) < 0
    assert float(tags["glue.gate.prob_better"]) >= model.gate.confidence
    assert "challenger_r2" in result.metrics and "champion_mae" in result.metrics
    assert "window_positives" not in result.metrics
    gate_json = json.loads((tmp_project / promotion.gate_file(SPEND)).read_text())
    assert gate_json["promoted"] is True and gate_json["metric"] == "rmse"
    assert gate_json["champion_after"] == strong.version
    assert not (tmp_project / promotion.gate_file(MODEL)).exists()  # the other model is untouched

    # 5. a worse challenger (higher RMSE) is rejected
    worse = training.train(settings, model, synthetic_spend_frame(shuffle_labels=True, seed=1))
    comparison = promotion.evaluate(settings, model, frame)
    assert not comparison.decision.passed and comparison.decision.delta > 0
    assert comparison.positives is None and comparison.rows == 7 * 150
    assert "rows)" in comparison.summary() and "positive" not in comparison.summary()
    saved = json.loads((tmp_project / promotion.evaluation_file(SPEND)).read_text())
    assert saved["challenger"]["version"] == worse.version
    result = promotion.promote_evaluated(settings, model)
    assert not result.promoted and result.champion_after == strong.version
    assert mlflow.get_version(SPEND, worse.version).tags["glue.gate.decision"] == "rejected"
    assert mlflow.get_alias(MODEL, contract.CHAMPION) is None


@pytest.mark.slow
def test_a_person_approves_where_the_model_asks_for_one(tmp_project: Path) -> None:
    """params.yaml approval.by person on this profile: a challenger that passed the gate waits for a
    person; a no keeps the champion, a yes moves it, and who said it is on the version and its card.
    A challenger the gate rejects is never put to anyone."""
    from glue.adapters import mlflow
    from glue.settings import ApprovalParams, get_settings

    settings = get_settings()
    assert settings.profile == "local"
    model = settings.model(MODEL)
    assert not model.approval.person_required("local")  # the demo: the gate alone
    model = model.model_copy(update={"approval": ApprovalParams(by="person", profiles=["local"])})
    frame = synthetic_frame()
    champion = lambda: mlflow.get_alias(MODEL, contract.CHAMPION)  # noqa: E731
    card = lambda run_id: mlflow.read_run_json(run_id, contract.MODEL_CARD_JSON)["gate"]  # noqa: E731

    # 1. the first model clears the floors, but nobody has answered: the champion does not move
    first = training.train(settings, model, frame)
    promotion.evaluate(settings, model, frame)
    result = promotion.promote_evaluated(settings, model)
    assert result.awaiting_approval and not result.promoted and champion() is None
    assert "AWAITING A PERSON'S APPROVAL" in result.summary()
    assert f"glue promote --model {MODEL} --approved-by NAME" in result.reason
    tags = mlflow.get_version(MODEL, first.version).tags
    assert tags["glue.gate.decision"] == "awaiting_approval" and "glue.gate.approver" not in tags
    assert card(first.run_id)["approver"] == "awaiting a person's approval"
    gate_json = json.loads((tmp_project / promotion.gate_file(MODEL)).read_text())
    assert gate_json["awaiting_approval"] is True and gate_json["promoted"] is False

    # 2. a person declines: still no champion, the answer recorded
    no = promotion.Approval(False, by="alice", at="2026-12-02T10:00:00+00:00", via="test",
                            comment="window too short")
    result = promotion.promote_evaluated(settings, model, no)
    assert not result.promoted and not result.awaiting_approval and champion() is None
    tags = mlflow.get_version(MODEL, first.version).tags
    assert tags["glue.gate.decision"] == "declined" and tags["glue.gate.approver"] == "alice"
    assert "declined by alice (test)" in tags["glue.gate.approval"] and "window too short" in result.reason
    assert card(first.run_id)["approver"].startswith("declined by alice")

    # 3. a person approves: champion, and the approver on the version and its card
    yes = promotion.Approval(True, by="bob", at="2026-12-02T11:00:00+00:00", via="test")
    result = promotion.promote_evaluated(settings, model, yes)
    assert result.promoted and champion().version == first.version
    tags = mlflow.get_version(MODEL, first.version).tags
    assert tags["glue.gate.decision"] == "passed" and tags["glue.gate.approver"] == "bob"
    assert tags["glue.gate.approval"] == "approved by bob (test) at 2026-12-02T11:00:00+00:00"
    assert card(first.run_id)["approver"] == tags["glue.gate.approval"]

    # 4. the stage run again without an answer (`dvc repro` after `glue promote --approved-by`):
    # the champion and its record stay as the person left them
    result = promotion.promote_evaluated(settings, model)
    assert not result.promoted and not result.awaiting_approval and "already is the champion" in result.reason
    assert champion().version == first.version
    assert mlflow.get_version(MODEL, first.version).tags["glue.gate.approver"] == "bob"
    assert mlflow.get_version(MODEL, first.version).tags["glue.gate.decision"] == "passed"

    # 5. a worse challenger: the gate rejects it, nobody is asked, the champion stays
    worse = training.train(settings, model, synthetic_frame(shuffle_labels=True, seed=1))
    promotion.evaluate(settings, model, frame)
    result = promotion.promote_evaluated(settings, model)
    assert not result.promoted and not result.awaiting_approval and champion().version == first.version
    tags = mlflow.get_version(MODEL, worse.version).tags
    assert tags["glue.gate.decision"] == "rejected"
    assert card(worse.run_id)["approver"] == contract.AUTOMATIC_APPROVER


def _promote_in_another_process(project_dir: str, comparison: dict, barrier: Any, answers: Any) -> None:
    """One gate's promotion in its own process, started together with another's by `barrier`.

    The registry is made slow between the champion's re-read and the alias move (a second's
    sleep before `set_alias`, as a busy registry server would be): without the promotion lock both
    gates would read the same champion and both would move the alias.
    """
    import time

    os.environ["GLUE_PROJECT_DIR"] = project_dir
    from glue.adapters import mlflow
    from glue.settings import get_settings

    settings = get_settings()
    set_alias = mlflow.set_alias

    def slow_set_alias(*args: str) -> None:
        time.sleep(1.0)
        set_alias(*args)

    mlflow.set_alias = slow_set_alias
    barrier.wait(timeout=120)
    result = promotion.promote(settings, settings.model(MODEL), promotion.Comparison.from_json(comparison))
    answers.put((result.challenger_version, result.promoted, result.reason))


@pytest.mark.slow
def test_two_gates_at_once_promote_exactly_one(tmp_project: Path) -> None:
    """Two challengers, each compared with the same champion and both better, promoted by two
    processes at the same moment (a barrier after the comparison): exactly one becomes champion,
    the other is recorded as stale and names the champion that got there first."""
    import multiprocessing

    from glue.adapters import mlflow
    from glue.settings import get_settings

    settings = get_settings()
    model = settings.model(MODEL)
    frame = synthetic_frame()
    modest_frame = dataclasses.replace(frame, feature_columns=["amount", "channel", "card_present"])
    modest = training.train(settings, _with_estimator(model, EstimatorSpec(type="logistic_regression")),
                            modest_frame)
    assert promotion.evaluate_and_promote(settings, model, frame).promoted
    comparisons = {}
    for seed in (42, 7):  # two strong challengers, each judged against the modest champion
        strong = training.train(settings, model.model_copy(update={"random_state": seed}), frame)
        comparison = promotion.compare(settings, model, frame)
        assert comparison.decision.passed and comparison.champion.version == modest.version
        comparisons[strong.version] = comparison.to_json()

    spawn = multiprocessing.get_context("spawn")
    barrier, answers = spawn.Barrier(2), spawn.Queue()
    workers = [spawn.Process(target=_promote_in_another_process,
                             args=(str(tmp_project), comparison, barrier, answers))
               for comparison in comparisons.values()]
    for worker in workers:
        worker.start()
    results = {version: (promoted, reason) for version, promoted, reason in
               (answers.get(timeout=180) for _ in workers)}
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    promoted = [version for version, (ok, _) in results.items() if ok]
    assert len(promoted) == 1, results
    (winner,), (loser,) = promoted, [v for v in results if v not in promoted]
    assert mlflow.get_alias(MODEL, contract.CHAMPION).version == winner
    assert f"champion changed concurrently (was {modest.version}, now {winner})" in results[loser][1]
    tags = mlflow.get_version(MODEL, loser).tags
    assert tags["glue.gate.decision"] == "stale" and "glue.gate.promoted_at" not in tags
    assert mlflow.get_version(MODEL, winner).tags["glue.gate.decision"] == "passed"
    assert mlflow.get_version(MODEL, modest.version).tags["glue.gate.replaced_by"] == winner
