"""The validation gate: every raw batch passes the Great Expectations suite or is quarantined.

Why a gate and not a warning: a bad batch that reaches the feature store poisons the features of
every model trained afterwards. So a rejected batch never reaches `data/validated/`, it is kept in
`data/quarantine/<batch>/` with GE's result (JSON and HTML data docs) for a person to inspect, and
the stage exits non-zero so `dvc repro` and the Airflow run stop there.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from glue import atomic
from glue.adapters import great_expectations
from glue.errors import ValidationFailed
from glue.settings import Settings, ValidationParams

BATCH_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")
METRICS_FILE = Path("metrics/validation.json")
GLUE_KEY = "glue"  # what glue adds to GE's result JSON: the digests of the batch and the rules


@dataclass(frozen=True)
class BatchValidation:
    """The verdict on one batch file, with every broken rule."""

    path: Path
    success: bool
    rows: int
    failures: list[great_expectations.ExpectationOutcome] = field(default_factory=list)
    result: dict = field(default_factory=dict)  # GE's validation result, or the read error

    def summary(self) -> str:
        if self.success:
            return f"{self.path}: OK ({self.rows} rows)"
        lines = [f"{self.path}: REJECTED"]
        for f in self.failures:
            where = f"column '{f.column}'" if f.column else "table"
            lines.append(f"  {self.path}: {where}: {f.expectation} {f.detail}")
        return "\n".join(lines)


@dataclass(frozen=True)
class GateResult:
    """What the gate did with a directory of batches."""

    accepted: list[BatchValidation]
    rejected: list[BatchValidation]
    quarantine_dir: Path

    @property
    def rows_accepted(self) -> int:
        return sum(b.rows for b in self.accepted)

    def summary(self) -> str:
        total = len(self.accepted) + len(self.rejected)
        text = (f"validated {total} batches: {len(self.accepted)} accepted ({self.rows_accepted} rows), "
                f"{len(self.rejected)} rejected")
        if self.rejected:
            text += f" (kept in {self.quarantine_dir})"
        return text


def validate_file(path: Path, rules: ValidationParams, now: datetime | None = None) -> BatchValidation:
    """Check one batch file (parquet or CSV named YYYY-MM-DD) against the raw schema."""
    now = now or datetime.now(UTC)
    day_or_error = _batch_day(path)
    if isinstance(day_or_error, great_expectations.ExpectationOutcome):
        return _unreadable(path, day_or_error)
    df_or_error = read_batch(path, rules)
    if isinstance(df_or_error, great_expectations.ExpectationOutcome):
        return _unreadable(path, df_or_error)
    result = great_expectations.run_suite(df_or_error, rules, day_or_error, now)
    failures = great_expectations.outcomes(result)
    return BatchValidation(path=path, success=not failures, rows=len(df_or_error), failures=failures,
                           result=result)


def validate_batches(settings: Settings, now: datetime | None = None) -> GateResult:
    """The stage: accept every good batch into validated_dir, quarantine the rest, then fail loudly.

    Incremental: a batch accepted earlier with the same bytes under the same rules is not checked
    again (its result JSON records both digests), so the daily DAG validates only the new day.
    Under `dvc repro` the outputs start empty and every batch is checked.
    """
    now = now or datetime.now(UTC)  # one validation time for every batch of the run
    rules = settings.params.validation
    source = settings.raw_events_dir
    if not source.is_dir():
        raise ValidationFailed(f"{source}: no raw batches (params.yaml data.events; run `glue demo-data` "
                               "or `dvc pull`)")
    out_tx = settings.validated_events_dir
    out_results = settings.validated_dir / "results"
    for folder in (out_tx, out_results):
        folder.mkdir(parents=True, exist_ok=True)
        atomic.remove_leftovers(folder)  # of a run killed mid-write
    accepted, rejected = [], []
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    rules_digest = hashlib.sha256(rules.model_dump_json().encode()).hexdigest()
    for path in tqdm(files, desc="validate", unit="batch", leave=False):
        stem = path.name.split(".")[0]
        fingerprint = {"source_sha256": _sha256(path), "rules_sha256": rules_digest}
        earlier = _accepted_before(out_tx / f"{stem}.parquet", out_results / f"{stem}.json", fingerprint)
        if earlier is not None:  # same bytes, same rules: the verdict cannot have changed
            accepted.append(BatchValidation(path=path, success=True, rows=earlier))
            continue
        verdict = validate_file(path, rules, now)
        if verdict.success:
            df = read_batch(path, rules)
            # the batch first, its result (with the fingerprint that lets the next run skip it) last:
            # a run killed in between checks the batch again
            atomic.write_with(out_tx / f"{stem}.parquet", lambda tmp, df=df: df.to_parquet(tmp, index=False))
            _write_json(out_results / f"{stem}.json",  # same data, same rules: the same bytes
                        {**great_expectations.stable_result(verdict.result, rules, now),
                         GLUE_KEY: {**fingerprint, "rows": verdict.rows}})
            accepted.append(verdict)
        else:
            for stale in (out_tx / f"{stem}.parquet", out_results / f"{stem}.json"):
                stale.unlink(missing_ok=True)
            quarantine(verdict, settings.quarantine_dir / stem, rules, now)
            rejected.append(verdict)
    result = GateResult(accepted=accepted, rejected=rejected, quarantine_dir=settings.quarantine_dir)
    _write_json(settings.outputs_dir / METRICS_FILE, {
        "batches_total": len(files), "batches_accepted": len(accepted),
        "batches_rejected": len(rejected), "rows_accepted": result.rows_accepted,
    })
    _write_json(settings.validated_dir / "summary.json", {
        "accepted": [p.path.name for p in accepted], "rejected": [p.path.name for p in rejected],
    })
    if rejected:
        details = "\n".join(v.summary() for v in rejected)
        raise ValidationFailed(
            f"{len(rejected)} of {len(files)} batches failed validation and were quarantined in "
            f"{settings.quarantine_dir}:\n{details}"
        )
    return result


def quarantine(verdict: BatchValidation, folder: Path, rules: ValidationParams, now: datetime | None) -> Path:
    """Keep a rejected batch with its GE result (JSON) and, when it could be read, GE's data docs."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copy2(verdict.path, folder / verdict.path.name)
    _write_json(folder / "result.json", {
        "file": str(verdict.path), "success": False,
        "failures": [f.__dict__ for f in verdict.failures], "great_expectations": verdict.result,
    })
    day = _batch_day(verdict.path)
    df = read_batch(verdict.path, rules) if isinstance(day, datetime) else None
    if isinstance(day, datetime) and isinstance(df, pd.DataFrame):
        great_expectations.build_data_docs(df, rules, day, now or datetime.now(UTC), folder / "data_docs")
    return folder


def read_batch(path: Path, rules: ValidationParams) -> pd.DataFrame | great_expectations.ExpectationOutcome:
    """Read a parquet or CSV batch; an unreadable file becomes a failure that names why."""
    def fail(detail: str) -> great_expectations.ExpectationOutcome:
        return great_expectations.ExpectationOutcome(column=None, expectation="readable_batch_file",
                                                     detail=detail)

    if not path.is_file():
        return fail("file does not exist")
    if path.stat().st_size == 0:
        return fail("file is empty (0 bytes)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            df = pd.read_csv(path, encoding="utf-8")
            ts = rules.timestamp_column
            if ts in df.columns:
                parsed = pd.to_datetime(df[ts], utc=True, errors="coerce", format="ISO8601")
                if parsed.notna().sum() == df[ts].notna().sum():
                    df[ts] = parsed  # unparseable timestamps stay text and fail the dtype check
            return df
    except UnicodeDecodeError as exc:
        return fail(f"not UTF-8 text: {exc.reason} at byte {exc.start}")
    except Exception as exc:  # pyarrow and pandas raise many kinds for corrupt files
        return fail(f"cannot be read as {suffix[1:]}: {type(exc).__name__}: {exc}")
    return fail(f"unsupported file type '{suffix}' (expected .parquet or .csv)")


def _batch_day(path: Path) -> datetime | great_expectations.ExpectationOutcome:
    match = BATCH_NAME.match(path.name)
    if match:
        try:
            return datetime.strptime(match.group(1), "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            pass
    return great_expectations.ExpectationOutcome(
        column=None, expectation="batch_file_name",
        detail="the file name must be the batch's day, YYYY-MM-DD.parquet or YYYY-MM-DD.csv",
    )


def _unreadable(path: Path, failure: great_expectations.ExpectationOutcome) -> BatchValidation:
    return BatchValidation(path=path, success=False, rows=0, failures=[failure],
                           result={"success": False, "error": failure.detail})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _accepted_before(batch: Path, result: Path, fingerprint: dict[str, str]) -> int | None:
    """Rows of an earlier acceptance of the same batch under the same rules, else None."""
    if not (batch.is_file() and result.is_file()):
        return None
    try:
        recorded = json.loads(result.read_text()).get(GLUE_KEY, {})
    except ValueError:
        return None
    if {k: recorded.get(k) for k in fingerprint} != fingerprint:
        return None
    return int(recorded.get("rows", 0))


def _write_json(path: Path, payload: dict) -> None:
    atomic.write_json(path, payload, indent=2, sort_keys=True, default=str)
