"""glue.prediction_log: which served predictions (of which model) the daily check takes as its window."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from types import SimpleNamespace

from glue import prediction_log


def _line(row: str, event: str | None, version: str = "3", arm: str = "champion", score: float = 0.2,
          model: str = "m") -> str:
    return json.dumps({"timestamp": "2026-03-02T08:00:00+00:00",
                       "request": {"row_id": row, "event_timestamp": event},
                       "features": {"a": 1.5, "b": None}, "score": score, "model_name": model,
                       "model_version": version, "arm": arm}) + "\n"


def test_reads_the_champion_versions_predictions_of_the_window_by_event_day(tmp_path: Path) -> None:
    settings = SimpleNamespace(state_dir=tmp_path)
    folder = prediction_log.log_folder(settings)
    folder.mkdir(parents=True)
    (folder / "2026-02-27.jsonl").write_text(_line("too-early-file", "2026-03-01T10:00:00"))
    (folder / "2026-03-01.jsonl").write_text(
        _line("t1", "2026-03-01T23:59:00")
        + _line("other-version", "2026-03-01T10:00:00", version="2")
        + _line("shadow", "2026-03-01T10:00:00", arm="shadow")
        + _line("other-model", "2026-03-01T10:00:00", model="n")
        + _line("day-before", "2026-02-28T23:00:00+00:00")
    )
    # logged after midnight, and a replay logged months later; then a torn line from a crash
    (folder / "2026-03-02.jsonl").write_text(_line("t2", "2026-03-01T12:00:00+00:00")
                                             + _line("next-day", "2026-03-02T01:00:00"))
    (folder / "2026-11-23.jsonl").write_text(_line("t3", "2026-03-01T06:00:00") + '{"request": {"ro')

    served = prediction_log.read_served(settings, dt.date(2026, 3, 1), dt.date(2026, 3, 2), "m", "3")

    assert sorted(served["row_id"]) == ["t1", "t2", "t3"]
    assert served["prediction"].tolist() == [0.2, 0.2, 0.2]
    assert served["a"].tolist() == [1.5, 1.5, 1.5] and all(math.isnan(v) for v in served["b"])


def test_no_log_is_an_empty_window(tmp_path: Path) -> None:
    settings = SimpleNamespace(state_dir=tmp_path)
    assert prediction_log.read_served(settings, dt.date(2026, 3, 1), dt.date(2026, 3, 2), "m", "1").empty


def test_a_regressions_lines_carry_prediction_instead_of_score(tmp_path: Path) -> None:
    settings = SimpleNamespace(state_dir=tmp_path)
    folder = prediction_log.log_folder(settings)
    folder.mkdir(parents=True)
    line = json.dumps({"timestamp": "2026-03-01T08:00:00+00:00", "model_name": "r", "model_version": "1",
                       "arm": "champion", "request": {"key": 4}, "features": {"a": 2.0}, "prediction": 123.5})
    (folder / "2026-03-01.jsonl").write_text(line + "\n")
    served = prediction_log.read_served(settings, dt.date(2026, 3, 1), dt.date(2026, 3, 2), "r", "1")
    assert served["prediction"].tolist() == [123.5] and served["key"].tolist() == [4]
