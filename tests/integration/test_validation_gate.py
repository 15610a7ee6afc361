"""The Great Expectations gate on real GE: good batches pass, every kind of broken batch is rejected
with a message naming the file, the column and the expectation, and nothing bad goes downstream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from feature_repo.demo.generate import DemoParams, generate
from glue.adapters.great_expectations import SUITE_NAME
from glue.errors import ValidationFailed
from glue.settings import get_settings, load_settings
from glue.validation import validate_batches, validate_file
from tests.integration.broken_batches import DAY, build_corpus

SMALL = DemoParams(
    seed=3, start_date="2026-01-01", days=6, transactions_per_day=300, customers=200, merchants=40
)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate(SMALL, out)
    return out


@pytest.fixture(scope="module")
def corpus(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path, list[str]]]:
    good = pd.read_parquet(raw_dir / "transactions" / f"{DAY}.parquet")
    return build_corpus(good, tmp_path_factory.mktemp("broken"))


def test_corpus_covers_at_least_twelve_kinds(corpus: list) -> None:
    assert len({kind for kind, _, _ in corpus}) >= 12


def test_good_batch_is_accepted(raw_dir: Path, tmp_project: Path) -> None:
    rules = load_settings().params.validation
    verdict = validate_file(raw_dir / "transactions" / f"{DAY}.parquet", rules)
    assert verdict.success, verdict.summary()
    assert verdict.rows > 0 and verdict.result["success"] is True


@pytest.mark.parametrize("index", range(14))
def test_each_broken_batch_is_rejected_with_a_clear_message(
    corpus: list, index: int, tmp_project: Path
) -> None:
    kind, path, words = corpus[index]
    verdict = validate_file(path, load_settings().params.validation)
    assert not verdict.success, f"{kind} was accepted"
    message = verdict.summary()
    assert str(path) in message
    for word in words:
        assert word in message, f"{kind}: {word!r} not in\n{message}"


def test_stage_quarantines_bad_batches_and_accepts_good_ones(raw_dir: Path, tmp_project: Path) -> None:
    settings = load_settings()
    shutil.copytree(raw_dir, settings.raw_dir)
    bad = settings.raw_events_dir / f"{DAY}.parquet"
    df = pd.read_parquet(bad)
    df.loc[0, "amount"] = -1.0
    df.to_parquet(bad, index=False)
    # an earlier, accepted copy of the same day must not survive the rejection
    settings.validated_events_dir.mkdir(parents=True)
    shutil.copy2(raw_dir / "transactions" / f"{DAY}.parquet", settings.validated_events_dir)

    with pytest.raises(ValidationFailed) as err:
        validate_batches(settings)

    message = str(err.value)
    assert (
        str(bad) in message
        and "column 'amount'" in message
        and "expect_column_values_to_be_between" in message
    )
    assert settings.validated_events_dir == settings.validated_dir / "transactions"
    accepted = sorted(p.name for p in settings.validated_events_dir.iterdir())
    assert f"{DAY}.parquet" not in accepted
    assert len(accepted) == SMALL.days - 1
    assert len(list((settings.validated_dir / "results").glob("*.json"))) == SMALL.days - 1
    kept = settings.quarantine_dir / DAY
    assert (kept / f"{DAY}.parquet").is_file()
    assert bad.is_file(), "the DVC-tracked raw file must be left in place"
    result = json.loads((kept / "result.json").read_text())
    assert result["success"] is False and result["failures"][0]["column"] == "amount"
    index_html = (kept / "data_docs" / "index.html").read_text()
    assert SUITE_NAME in index_html
    metrics = json.loads((tmp_project / "metrics" / "validation.json").read_text())
    assert metrics == {
        "batches_total": 6,
        "batches_accepted": 5,
        "batches_rejected": 1,
        "rows_accepted": metrics["rows_accepted"],
    }
    assert metrics["rows_accepted"] > 0
    # only the event batches are validated: the label folders beside them are not batches
    validated = sorted(p.name for p in settings.validated_dir.iterdir())
    assert validated == ["results", "summary.json", "transactions"]
    assert sorted(p.name for p in settings.quarantine_dir.iterdir()) == [DAY]


def test_the_events_folder_is_the_one_params_name(raw_dir: Path, tmp_project: Path) -> None:
    params_file = tmp_project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["data"]["events"] = "payments"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    get_settings.cache_clear()
    settings = load_settings()
    assert settings.raw_events_dir == settings.raw_dir / "payments"
    with pytest.raises(ValidationFailed, match="payments.*data.events"):
        validate_batches(settings)  # nothing there yet
    shutil.copytree(raw_dir / "transactions", settings.raw_events_dir)
    result = validate_batches(settings)
    assert len(result.accepted) == SMALL.days and not result.rejected
    assert sorted(p.name for p in settings.validated_events_dir.iterdir()) == sorted(
        p.name for p in (raw_dir / "transactions").iterdir())
    assert settings.validated_events_dir == settings.validated_dir / "payments"
    assert not (settings.validated_dir / "transactions").exists()


def test_cli_validate_exit_codes(raw_dir: Path, corpus: list, tmp_project: Path) -> None:
    env = {**os.environ, "GLUE_PROJECT_DIR": str(tmp_project)}
    good = subprocess.run(
        [sys.executable, "-m", "glue.cli", "validate", str(raw_dir / "transactions" / f"{DAY}.parquet")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
    _, bad_path, _ = next(c for c in corpus if c[0] == "negative_amounts")
    bad = subprocess.run(
        [sys.executable, "-m", "glue.cli", "validate", str(bad_path)], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 3
    assert "column 'amount'" in bad.stdout and "Traceback" not in bad.stderr


def test_the_same_data_and_rules_give_the_same_bytes(raw_dir: Path, tmp_project: Path, tmp_path: Path
                                                     ) -> None:
    """data/validated is a DVC output: validating the same batches under the same rules again, in
    another process at another time, writes identical files (no validation time, run id or GE id)."""
    import datetime as dt

    settings = load_settings()
    shutil.copytree(raw_dir, settings.raw_dir)
    first = validate_batches(settings, now=dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC))
    kept = tmp_path / "first"
    shutil.copytree(settings.validated_dir, kept)
    shutil.rmtree(settings.validated_dir)  # no incremental reuse: every batch checked again
    code = ("from glue.settings import load_settings; from glue.validation import validate_batches; "
            "validate_batches(load_settings())")  # a new process, at the real clock
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ}, timeout=300)
    files = sorted(p.relative_to(kept) for p in kept.rglob("*") if p.is_file())
    assert len(files) >= 2 * len(first.accepted)  # a parquet and a result per batch, and the summary
    for name in files:
        assert (settings.validated_dir / name).read_bytes() == (kept / name).read_bytes(), name
    result = json.loads((kept / "results" / f"{DAY}.json").read_text())
    assert "validation_time" not in json.dumps(result) and "run_id" not in json.dumps(result)
    assert result["latest_allowed"] == "validation time + 300 s"
    bounds = [r["expectation_config"]["kwargs"].get("max_value") for r in result["results"]]
    assert "validation time + 300 s" in bounds


def test_incremental_validation_checks_a_changed_batch_and_changed_rules_again(
        raw_dir: Path, tmp_project: Path) -> None:
    """The fingerprint (the batch's bytes and the rules' digest, in its result JSON) skips only what
    cannot have changed: an untouched batch under the same rules. A batch whose bytes changed after
    it was accepted is checked again (and rejected, its accepted copy removed); changed rules check
    every batch again. Re-checked files are new files (a new inode); skipped ones are untouched."""
    settings = load_settings()
    shutil.copytree(raw_dir, settings.raw_dir)
    results = settings.validated_dir / "results"

    def written() -> dict[str, int]:  # file -> inode: an atomic rewrite makes a new one
        return {p.name: p.stat().st_ino for folder in (results, settings.validated_events_dir)
                for p in folder.iterdir()}

    assert validate_batches(settings).rows_accepted > 0
    first = written()
    assert len(first) == 2 * SMALL.days
    validate_batches(settings)  # nothing changed: nothing checked again
    assert written() == first

    changed = settings.raw_events_dir / f"{DAY}.parquet"
    df = pd.read_parquet(changed)
    df.loc[0, "amount"] = -1.0  # the accepted day's bytes change (a late correction gone wrong)
    df.to_parquet(changed, index=False)
    with pytest.raises(ValidationFailed, match="column 'amount'"):
        validate_batches(settings)
    after = written()
    assert f"{DAY}.parquet" not in after and f"{DAY}.json" not in after  # no stale acceptance
    assert after == {k: v for k, v in first.items() if not k.startswith(DAY)}  # the rest skipped

    shutil.copy2(raw_dir / "transactions" / f"{DAY}.parquet", changed)  # the bytes restored
    validate_batches(settings)
    restored = written()
    assert restored[f"{DAY}.json"] != first[f"{DAY}.json"]
    assert {k: v for k, v in restored.items() if not k.startswith(DAY)} == after

    params_file = tmp_project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["validation"]["columns"]["channel"]["allowed"] = ["online", "in_store"]  # atm now refused
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    get_settings.cache_clear()
    with pytest.raises(ValidationFailed, match="channel") as err:
        validate_batches(load_settings())
    assert f"{SMALL.days} of {SMALL.days} batches failed" in str(err.value)  # every batch re-checked
    assert list(settings.validated_events_dir.iterdir()) == [] and list(results.iterdir()) == []
