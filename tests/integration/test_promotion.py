"""The gate against a real SQLite MLflow: first model, better, worse, and a concurrent change."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from glue import contract, promotion, training
from glue.errors import GlueError
from glue.settings import ModelParams, Settings
from tests.integration.synthetic_frame import synthetic_frame

MODEL = "fraud-detector"


def _with_model(settings: Settings, model: ModelParams) -> Settings:
    train = settings.params.train.model_copy(update={"model": model})
    return settings.model_copy(update={"params": settings.params.model_copy(update={"train": train})})


@pytest.mark.slow
def test_gate_story(tmp_project: Path) -> None:
    from glue import tracking
    from glue.settings import get_settings

    settings = get_settings()
    frame = synthetic_frame()
    champion = lambda: tracking.get_alias(MODEL, contract.CHAMPION)  # noqa: E731

    # 1. a first model that learnt nothing (shuffled labels) fails the floors: no champion
    noise = training.train(settings, synthetic_frame(shuffle_labels=True))
    result = promotion.evaluate_and_promote(settings, frame)
    assert not result.promoted and "first model" in result.reason and "floor" in result.reason
    assert champion() is None
    assert tracking.get_version(MODEL, noise.version).tags["glue.gate.decision"] == "rejected"

    # 2. a modest first model (logistic regression on three columns) clears them: champion
    modest_frame = dataclasses.replace(frame, feature_columns=["amount", "channel", "card_present"])
    modest = training.train(_with_model(settings, ModelParams(type="logistic_regression")), modest_frame)
    result = promotion.evaluate_and_promote(settings, frame)
    assert result.promoted, result.reason
    assert champion().version == modest.version
    assert result.champion_before is None and result.champion_after == modest.version

    # 3. a clearly better model, but the champion moves between comparison and promotion
    strong = training.train(settings, frame)
    comparison = promotion.compare(settings, frame)
    assert comparison.decision.passed, comparison.decision.reason
    tracking.set_alias(MODEL, contract.CHAMPION, noise.version)  # another gate got there first
    result = promotion.promote(settings, comparison)
    assert not result.promoted and "changed concurrently" in result.reason
    assert champion().version == noise.version  # not moved by us
    assert tracking.get_version(MODEL, strong.version).tags["glue.gate.decision"] == "stale"

    # 4. re-run after restoring: the better model is promoted, with the numbers as tags
    tracking.set_alias(MODEL, contract.CHAMPION, modest.version)
    result = promotion.evaluate_and_promote(settings, frame)
    assert result.promoted, result.reason
    assert champion().version == strong.version
    tags = tracking.get_version(MODEL, strong.version).tags
    assert tags["glue.gate.decision"] == "passed"
    assert tags["glue.gate.compared_with"] == modest.version
    assert float(tags["glue.gate.delta"]) > settings.params.gate.min_improvement
    assert float(tags["glue.gate.ci_low"]) < float(tags["glue.gate.delta"]) < float(tags["glue.gate.ci_high"])
    assert tags["glue.gate.window_start"] == "2026-01-24T00:00:00+00:00"
    for key in ("challenger_average_precision", "champion_average_precision", "prob_better",
                "decided_at", "promoted_at", "reason"):
        assert "glue.gate." + key in tags
    assert tracking.get_version(MODEL, modest.version).tags["glue.gate.replaced_by"] == strong.version

    # 5. a worse challenger is rejected; the champion stays, the reason is on the challenger
    worse = training.train(settings, synthetic_frame(shuffle_labels=True, seed=1))
    result = promotion.evaluate_and_promote(settings, frame)
    assert not result.promoted
    assert champion().version == strong.version
    tags = tracking.get_version(MODEL, worse.version).tags
    assert tags["glue.gate.decision"] == "rejected" and tags["glue.gate.reason"] == result.reason
    assert float(tags["glue.gate.delta"]) < 0

    gate_json = json.loads((tmp_project / promotion.GATE_METRICS_FILE).read_text())
    assert gate_json["promoted"] is False and gate_json["challenger_version"] == worse.version
    assert gate_json["champion_after"] == strong.version

    # 6. the two DVC stages: `evaluate` keeps the verdict, `promote` acts on it only while the
    # challenger it judged is still the challenger
    comparison = promotion.evaluate(settings, frame)
    saved = json.loads((tmp_project / promotion.EVALUATION_FILE).read_text())
    assert saved["challenger"]["version"] == worse.version and saved["decision"]["passed"] is False
    assert promotion.promote_evaluated(settings).champion_after == strong.version
    newer = training.train(settings, frame)
    with pytest.raises(GlueError, match=f"evaluated {MODEL} version {worse.version}, but the challenger "
                                        f"is now {newer.version}"):
        promotion.promote_evaluated(settings)
    assert comparison.summary().startswith(f"{MODEL} version {worse.version} vs champion {strong.version}")
