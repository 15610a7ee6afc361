"""The champion/challenger gate: promote a new model only if it is better on the same fresh data.

Both models (registry aliases ``challenger`` and ``champion``) score the SAME rows: the challenger's
held-out validation window (the most recent labelled days, tagged on its training run), as its
training run logged them (rebuilt from the training frame if the champion needs other columns).
The challenger must clear absolute floors, and beat the champion
on the model's gate metric by ``gate.min_improvement`` in at least ``gate.confidence`` of paired
bootstrap resamples of those rows (one set of resamples, applied to both models, so the noise of
the window is shared and only the models' difference is tested). Every task has its metrics and
their direction (settings.TASK_METRICS): "better" is higher average precision or R², lower RMSE;
a floor is a minimum for the first kind and a maximum for the second. The first model becomes
champion if it clears the floors.

Every verdict is written as tags on the challenger's model version (both metrics, the delta and
its interval, the window, the time) and to metrics/<model>/gate.json for DVC.

Concurrency and crash guarantees:
- Moving the ``champion`` alias is one registry call and the last step, so a crash at any point
  before it leaves the champion as it was; tags written before it record the verdict, and the
  ``glue.gate.promoted_at`` tag is written only after it.
- Gates on one machine (local profile, or workers sharing ``state_dir``) are serialized by an
  exclusive file lock held from the re-read of the champion to the alias move.
- Across machines the lock does not reach, the champion alias is re-read just before the move:
  if it changed since the comparison, nothing moves and the result says to re-run the gate. The
  remaining race is the few milliseconds between that re-read and the move.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glue import atomic, contract
from glue.contract import (
    CHALLENGER,
    CHAMPION,
    GATE_AWAITING_APPROVAL,
    GATE_DECLINED,
    GATE_PASSED,
    GATE_REJECTED,
    GATE_STALE,
    gate_tag,
)
from glue.errors import GlueError

if TYPE_CHECKING:
    import numpy as np

    from glue.adapters.mlflow import VersionRef
    from glue.features import TrainingFrame
    from glue.settings import GateParams, ModelSpec, Settings

LOCK_TIMEOUT_SECONDS = 120.0
BINARY = "binary_classification"


def gate_file(model: str) -> Path:
    """metrics/<model>/gate.json: what the promote stage decided (relative to the project)."""
    return Path("metrics") / model / "gate.json"


def evaluation_file(model: str) -> Path:
    """metrics/<model>/evaluation.json: `glue evaluate` -> `glue promote`."""
    return Path("metrics") / model / "evaluation.json"


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on score arrays; no registry involved (see :func:`decide`)."""

    passed: bool
    reason: str
    challenger: dict[str, float]
    champion: dict[str, float] | None = None
    delta: float | None = None  # challenger - champion on the gate metric, on all rows
    metric: str = ""  # the gate metric
    higher_is_better: bool = True
    ci_low: float | None = None  # central `confidence` interval of the bootstrapped delta
    ci_high: float | None = None
    prob_better: float | None = None  # share of resamples with delta > min_improvement
    failed_floors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    """Both models scored on one window, and the verdict; input of :func:`promote`."""

    model_name: str
    challenger: VersionRef
    champion: VersionRef | None
    decision: Decision
    window_start: str
    window_end: str
    rows: int
    positives: int | None  # binary classification: positive rows in the window

    @property
    def passed(self) -> bool:
        return self.decision.passed

    @property
    def challenger_version(self) -> str:
        return self.challenger.version

    def summary(self) -> str:
        d = self.decision
        champion = f"champion {self.champion.version}" if self.champion else "no champion"
        positives = f", {self.positives} positive" if self.positives is not None else ""
        return (f"{self.model_name} version {self.challenger.version} vs {champion} on "
                f"{self.window_start[:10]} .. {self.window_end[:10]} ({self.rows} rows{positives}): "
                f"{'passes' if d.passed else 'fails'} the gate\n  {d.reason}")

    def to_json(self) -> dict[str, Any]:
        """The record `glue promote` reads (metrics/<model>/evaluation.json, a DVC metrics file):
        the versions by name and number only. Their run ids, model ids, sources and tags are the
        registry's, and they differ run to run on the same data: kept out, so `dvc metrics diff`
        shows changes of the models and the data, not of ids."""
        data = asdict(self)
        for side in ("challenger", "champion"):
            if data[side] is not None:
                data[side] = {"name": data[side]["name"], "version": data[side]["version"]}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        from glue.adapters.mlflow import VersionRef

        def ref(value: dict[str, Any] | None) -> VersionRef | None:
            return VersionRef(name=value["name"], version=value["version"], run_id=value.get("run_id"),
                              source=value.get("source", "")) if value else None

        return cls(**{**data, "challenger": ref(data["challenger"]), "champion": ref(data["champion"]),
                      "decision": Decision(**data["decision"])})


@dataclass(frozen=True)
class Approval:
    """A person's answer on a challenger that passed the gate (params.yaml ``approval.by: person``).

    ``by`` is who answered (the Airflow user of the human-in-the-loop task, or the name given to
    `glue promote --approved-by`); ``via`` where (the DAG run's task, or the CLI).
    """

    approved: bool
    by: str
    at: str  # ISO time of the answer
    via: str
    comment: str = ""

    def tags(self) -> dict[str, str]:
        """On the model version: who answered (glue.gate.approver) and the whole answer."""
        return {gate_tag("approver"): self.by, gate_tag("approval"): self.text()}

    def text(self) -> str:
        said = "approved" if self.approved else "declined"
        note = f": {self.comment}" if self.comment else ""
        return f"{said} by {self.by} ({self.via}) at {self.at}{note}"


@dataclass(frozen=True)
class GateResult:
    """What the gate decided and did."""

    promoted: bool
    reason: str
    model_name: str
    challenger_version: str
    champion_before: str | None
    champion_after: str | None
    metrics: dict[str, Any]
    decided_at: str
    approver: str = contract.AUTOMATIC_APPROVER  # who said yes (or no); "" while a person is awaited
    awaiting_approval: bool = False  # passed the gate; the champion waits for a person

    def summary(self) -> str:
        verdict = ("passed the gate, AWAITING A PERSON'S APPROVAL" if self.awaiting_approval
                   else "PROMOTED" if self.promoted else "not promoted")
        return (
            f"{self.model_name} version {self.challenger_version}: {verdict}; champion "
            f"{self.champion_before or 'none'} -> {self.champion_after or 'none'}\n  {self.reason}"
        )


def evaluate_and_promote(settings: Settings, model: ModelSpec, frame: TrainingFrame | None = None
                         ) -> GateResult:
    """Both gate stages in one call: compare challenger with champion, then promote if it wins."""
    return promote(settings, model, compare(settings, model, frame))


def evaluate(settings: Settings, model: ModelSpec, frame: TrainingFrame | None = None) -> Comparison:
    """The `evaluate` stage: compare, and keep the comparison for `promote`
    (metrics/<model>/evaluation.json)."""
    comparison = compare(settings, model, frame)
    atomic.write_json(settings.outputs_dir / evaluation_file(model.name), comparison.to_json(),
                      indent=2, sort_keys=True)
    return comparison


def promote_evaluated(settings: Settings, model: ModelSpec, approval: Approval | None = None
                      ) -> GateResult:
    """The `promote` stage: act on the comparison `evaluate` wrote, if it is about today's challenger
    (with a person's answer where the model's ``approval`` asks for one)."""
    from glue.adapters import mlflow

    path = settings.outputs_dir / evaluation_file(model.name)
    try:
        comparison = Comparison.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise GlueError(f"{path}: no evaluation to act on; run `glue evaluate --model {model.name}` "
                        "first") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise GlueError(f"{path}: not an evaluation written by `glue evaluate` ({exc})") from None
    mlflow.configure(settings)
    current = mlflow.get_alias(comparison.model_name, CHALLENGER)
    if current is None or current.version != comparison.challenger.version:
        raise GlueError(
            f"{path} evaluated {comparison.model_name} version {comparison.challenger.version}, but the "
            f"challenger is now {current.version if current else 'none'}; run `glue evaluate` again"
        )
    return promote(settings, model, comparison, approval)


def compare(settings: Settings, model: ModelSpec, frame: TrainingFrame | None = None) -> Comparison:
    """Score challenger and champion on the challenger's validation window and decide."""
    from glue import training
    from glue.adapters import mlflow

    mlflow.configure(settings)
    name = model.name
    challenger = mlflow.get_alias(name, CHALLENGER)
    if challenger is None:
        raise GlueError(f"registered model '{name}' has no '{CHALLENGER}' version; "
                        f"run `glue train --model {name}` first")
    champion = mlflow.get_alias(name, CHAMPION)
    start = challenger.tags.get(contract.VALIDATION_START)
    end = challenger.tags.get(contract.VALIDATION_END)
    if not start or not end:
        raise GlueError(
            f"model '{name}' version {challenger.version} has no {contract.VALIDATION_START}/"
            f"{contract.VALIDATION_END} tags; it was not trained by `glue train`"
        )
    if frame is None:
        frame = logged_validation_frame(settings, model, challenger, champion)
    if frame is None:
        from glue.features import training_frame

        frame = training_frame(settings, model)
    rows = frame.df[training.window_mask(frame.df, start, end)]
    y = rows[frame.label_column].to_numpy()
    binary = model.task == BINARY
    if len(rows) == 0 or (binary and y.min() == y.max()):
        raise GlueError(
            f"the gate window {start} .. {end} (validation window of {name} version "
            f"{challenger.version}) has {len(rows)} labelled rows"
            + (" and not both classes" if binary else "")
            + "; the training frame no longer covers it"
        )
    challenger_scores = _scores(challenger, rows, frame, model.task)
    if champion is not None and champion.version == challenger.version:
        metrics = point_metrics(model.task, y, challenger_scores)
        decision = Decision(False, f"version {challenger.version} already is the champion", metrics,
                            metric=model.gate.metric or "", higher_is_better=model.metric_direction == "max")
    else:
        champion_scores = _scores(champion, rows, frame, model.task) if champion is not None else None
        decision = decide(y, challenger_scores, champion_scores, model.gate, task=model.task,
                          seed=model.random_state)
    positives = int(y.sum()) if binary else None
    return Comparison(name, challenger, champion, decision, start, end, len(rows), positives)


def logged_validation_frame(settings: Settings, model: ModelSpec, challenger: VersionRef,
                            champion: VersionRef | None) -> TrainingFrame | None:
    """The challenger's validation rows as its training run logged them, if the champion can use them.

    The same rows the training frame would give for that window (the features Feast served at
    training time), without rebuilding the whole point-in-time training set. None when the run
    has no such artifact or the champion was trained on columns it lacks: then the caller rebuilds.
    """
    import pandas as pd

    from glue.adapters import mlflow
    from glue.features import TrainingFrame

    run_id = challenger.tags.get(contract.TRAIN_RUN_ID) or challenger.run_id
    columns = contract.feature_columns(challenger.tags)
    if not run_id or not columns:
        return None
    path = mlflow.cached_artifact(settings, run_id, contract.VALIDATION_ARTIFACT)
    if path is None:
        return None
    df = pd.read_parquet(path)
    needed = set(columns)
    if champion is not None:
        needed |= set(contract.feature_columns(champion.tags))
    label = model.label.field
    if not needed <= set(df.columns) or label not in df.columns:
        return None
    service = challenger.tags.get(contract.FEATURE_SERVICE, "")
    refs = contract.feature_refs(challenger.tags)
    return TrainingFrame(df=df.drop(columns=[contract.PREDICTION_COLUMN], errors="ignore"),
                         feature_columns=columns, feature_service=service, feature_refs=refs,
                         label_column=label)


def promote(settings: Settings, model: ModelSpec, comparison: Comparison,
            approval: Approval | None = None) -> GateResult:
    """Record the verdict and, if it passed (and a person approved, where the model's ``approval``
    asks for one on this profile), move ``champion`` (locked, re-checked, last).

    A passed challenger without the person's answer keeps the champion where it is and is tagged
    ``awaiting_approval``; a person's no is tagged ``declined``. Either way the verdict, the
    approver and the reason are on the model version and its card.
    """
    from glue.adapters import mlflow

    mlflow.configure(settings)
    c = comparison
    name, version = c.model_name, c.challenger.version
    seen = c.champion.version if c.champion else None
    decided_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    tags = verdict_tags(c, decided_at)
    promoted, reason, after = False, c.decision.reason, seen
    person = model.approval.person_required(settings.profile)
    approver = approval.text() if approval else ("" if person else contract.AUTOMATIC_APPROVER)
    awaiting = False
    if c.decision.passed and seen != version and _is_champion(name, version):
        # promoted since this comparison (a person's `glue promote --approved-by`, then `dvc repro`
        # ran the stage again): its verdict and approver stay as they were
        held = mlflow.get_version(name, version).tags
        if gate_tag("promoted_at") not in held:  # a promote killed right after the alias move
            _record_promotion(name, version, seen, decided_at)
        how = held.get(gate_tag("approval")) or held.get(gate_tag("approver"), "promoted earlier")
        result = GateResult(False, f"version {version} already is the champion ({how})", name, version,
                            seen, version, gate_metrics(c), decided_at,
                            approver=held.get(gate_tag("approver"), ""))
        _write_gate_json(settings.outputs_dir / gate_file(model.name), result)
        return result

    if not c.decision.passed:
        approver = contract.AUTOMATIC_APPROVER  # the gate said no: nobody was asked
        if seen != version:  # do not overwrite the verdict that made it champion
            mlflow.set_version_tags(name, version, {**tags, gate_tag("decision"): GATE_REJECTED})
    elif person and approval is None:
        awaiting = True
        reason = (f"{c.decision.reason}; awaits a person's approval (params.yaml models.{name}.approval): "
                  f"the `approve` task of Airflow DAG glue_training__{name}, or `glue promote --model "
                  f"{name} --approved-by NAME`")
        mlflow.set_version_tags(name, version, {**tags, gate_tag("decision"): GATE_AWAITING_APPROVAL,
                                                  gate_tag("reason"): reason})
    elif approval is not None and not approval.approved:
        reason = f"{c.decision.reason}; {approval.text()}"
        mlflow.set_version_tags(name, version, {**tags, **approval.tags(),
                                                  gate_tag("decision"): GATE_DECLINED,
                                                  gate_tag("reason"): reason})
    else:
        if approval is not None:
            reason = f"{c.decision.reason}; {approval.text()}"
        tags |= (approval.tags() if approval else {gate_tag("approver"): approver})
        tags[gate_tag("reason")] = reason
        with promotion_lock(settings, name):
            current = mlflow.get_alias(name, CHAMPION)
            now = current.version if current else None
            if concurrent_change(seen, now):
                reason = (f"champion changed concurrently (was {seen or 'none'}, now {now}); "
                          "re-run the gate")
                after = now
                mlflow.set_version_tags(name, version, {**tags, gate_tag("decision"): GATE_STALE,
                                                          gate_tag("reason"): reason})
            else:
                mlflow.set_version_tags(name, version, {**tags, gate_tag("decision"): GATE_PASSED})
                mlflow.set_alias(name, CHAMPION, version)  # the commit point
                promoted, after = True, version
        if promoted:
            _record_promotion(name, version, seen, decided_at)

    result = GateResult(promoted, reason, name, version, seen, after, gate_metrics(c), decided_at,
                        approver=approver, awaiting_approval=awaiting)
    if c.decision.passed or seen != version:  # the champion re-judged keeps the card that made it one
        _record_on_card(name, version, result)
    _write_gate_json(settings.outputs_dir / gate_file(model.name), result)
    return result


def _record_promotion(name: str, version: str, replaced: str | None, at: str) -> None:
    """After the alias move: when it happened, on the new champion and on the one it replaced."""
    from glue.adapters import mlflow

    mlflow.set_version_tags(name, version, {gate_tag("promoted_at"): at})
    if replaced is not None:
        mlflow.set_version_tags(name, replaced, {gate_tag("replaced_by"): version,
                                                 gate_tag("replaced_at"): at})


def _is_champion(name: str, version: str) -> bool:
    from glue.adapters import mlflow

    current = mlflow.get_alias(name, CHAMPION)
    return current is not None and current.version == version


def decide(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray | None, gate: GateParams,
           *, task: str = BINARY, seed: int = 0) -> Decision:
    """The gate's rule on the two models' predictions of the same rows; pure, so it is tested
    without MLflow. Direction-aware: "better" and the floors follow the metric's direction."""
    import numpy as np

    from glue.settings import DEFAULT_METRIC, TASK_METRICS

    directions = TASK_METRICS[task]
    pm = gate.metric or DEFAULT_METRIC[task]
    if pm not in directions:
        raise GlueError(f"params.yaml gate.metric: '{pm}' is not a metric of task {task} "
                        f"(choose from {', '.join(directions)})")
    higher = directions[pm] == "max"
    y = np.asarray(y)
    chal = point_metrics(task, y, challenger)

    def clears(m: str, bound: float) -> bool:
        return chal[m] >= bound if directions[m] == "max" else chal[m] <= bound

    def bound_text(m: str, bound: float, ok: bool) -> str:
        if directions[m] == "max":
            return f"{m} {chal[m]:.4f} {'>=' if ok else '< floor'} {bound:g}"
        return f"{m} {chal[m]:.4f} {'<=' if ok else '> ceiling'} {bound:g}"

    failed = [bound_text(m, b, False) for m, b in gate.floors.items() if not clears(m, b)]
    floors_note = "beyond its bound: " + ", ".join(failed) if failed else ""
    if task == BINARY:
        floors_note = floors_note.replace("beyond its bound", "below floor")
    if champion is None:
        if failed:
            return Decision(False, f"first model, {floors_note}", chal, failed_floors=failed, metric=pm,
                            higher_is_better=higher)
        shown = ", ".join(bound_text(m, b, True) for m, b in gate.floors.items())
        return Decision(True, f"first model, clears the floors ({shown})" if shown else
                        "first model (no floors)", chal, metric=pm, higher_is_better=higher)

    champ = point_metrics(task, y, champion)
    deltas = paired_bootstrap_deltas(y, challenger, champion, pm, gate.bootstrap_samples, seed=seed,
                                     task=task)
    gains = deltas if higher else -deltas  # the improvement in the metric's better direction
    tail = (1 - gate.confidence) / 2
    ci_low, ci_high = (float(q) for q in np.quantile(deltas, [tail, 1 - tail]))
    prob = float(np.mean(gains > gate.min_improvement))
    delta = chal[pm] - champ[pm]
    better = "higher" if higher else "lower"
    numbers = (f"{pm} {chal[pm]:.4f} vs champion {champ[pm]:.4f}, delta {delta:+.4f} "
               f"({gate.confidence:.0%} CI {ci_low:+.4f} .. {ci_high:+.4f}); "
               f"P({better} by > {gate.min_improvement:g}) = {prob:.3f}")
    if task == BINARY:
        numbers = numbers.replace(f"P(higher by > {gate.min_improvement:g})",
                                  f"P(delta > {gate.min_improvement:g})")
    passed = not failed and prob >= gate.confidence
    if failed:
        reason = f"challenger {floors_note}; {numbers}"
    elif passed:
        reason = f"challenger better: {numbers} >= {gate.confidence:g}"
    else:
        reason = f"challenger not better enough: {numbers} < {gate.confidence:g}"
    return Decision(passed, reason, chal, champ, delta, metric=pm, higher_is_better=higher,
                    ci_low=ci_low, ci_high=ci_high, prob_better=prob, failed_floors=failed)


def point_metrics(task: str, y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Every gate metric of the task on all rows (what the verdict and its tags show)."""
    import numpy as np
    from sklearn import metrics as m

    if task == BINARY:
        p = np.clip(predictions, 1e-15, 1 - 1e-15)
        return {"average_precision": float(m.average_precision_score(y, predictions)),
                "roc_auc": float(m.roc_auc_score(y, predictions)),
                "log_loss": float(m.log_loss(y, p, labels=[0, 1])),
                "brier": float(m.brier_score_loss(y, predictions))}
    return {"rmse": float(np.sqrt(m.mean_squared_error(y, predictions))),
            "mae": float(m.mean_absolute_error(y, predictions)),
            "r2": float(m.r2_score(y, predictions))}


def concurrent_change(seen: str | None, now: str | None) -> bool:
    """True if the champion moved between the comparison and the promotion."""
    return seen != now


def paired_bootstrap_deltas(y: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str, samples: int,
                            *, seed: int = 0, task: str = BINARY) -> np.ndarray:
    """metric(a) - metric(b) on `samples` bootstrap resamples of the rows, the same ones for both.

    Resamples are row counts (multinomial weights). For ranking metrics each model's rows are
    sorted once, so a resample costs two cumulative sums instead of a sort: ~1000 resamples of 100k
    rows in seconds; the error metrics are weighted sums. Resamples where the metric is undefined
    (no positive case) are dropped.
    """
    import numpy as np

    from glue.settings import TASK_METRICS

    if metric not in TASK_METRICS[task]:
        raise GlueError(f"params.yaml gate.metric: '{metric}' is not a metric of task {task} "
                        f"(choose from {', '.join(TASK_METRICS[task])})")
    y = np.asarray(y, dtype=float)
    n = len(y)
    rng = np.random.default_rng(seed)
    ranking = metric in ("average_precision", "roc_auc")
    prepared = [_sorted_for(np.asarray(s, dtype=float), y) if ranking else np.asarray(s, dtype=float)
                for s in (a, b)]
    chunk = max(1, 2_000_000 // max(n, 1))
    out: list[np.ndarray] = []
    for first in range(0, samples, chunk):
        size = min(chunk, samples - first)
        picks = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        weights = np.bincount(picks.ravel(), minlength=size * n).reshape(size, n).astype(float)
        if ranking:
            va, vb = (_weighted_metric(weights[:, order], ys, last, metric) for order, ys, last in prepared)
        else:
            va, vb = (_weighted_error(weights, y, pred, metric) for pred in prepared)
        out.append(va - vb)
    deltas = np.concatenate(out)
    return deltas[~np.isnan(deltas)]


def verdict_tags(c: Comparison, decided_at: str) -> dict[str, str]:
    """The numbers behind a verdict, as model-version tags."""
    d = c.decision
    tags = {
        gate_tag("reason"): d.reason,
        gate_tag("decided_at"): decided_at,
        gate_tag("compared_with"): c.champion.version if c.champion else "none",
        gate_tag("window_start"): c.window_start,
        gate_tag("window_end"): c.window_end,
        gate_tag("window_rows"): str(c.rows),
        gate_tag("metric"): d.metric,
    }
    if c.positives is not None:
        tags[gate_tag("window_positives")] = str(c.positives)
    for m, v in d.challenger.items():
        tags[gate_tag(f"challenger_{m}")] = f"{v:.6f}"
    for m, v in (d.champion or {}).items():
        tags[gate_tag(f"champion_{m}")] = f"{v:.6f}"
    for key in ("delta", "ci_low", "ci_high", "prob_better"):
        value = getattr(d, key)
        if value is not None:
            tags[gate_tag(key)] = f"{value:.6f}"
    return tags


def gate_metrics(c: Comparison) -> dict[str, Any]:
    """Flat numbers of a comparison (metrics/gate.json, GateResult.metrics)."""
    d = c.decision
    metrics: dict[str, Any] = {f"challenger_{m}": v for m, v in d.challenger.items()}
    metrics.update({f"champion_{m}": v for m, v in (d.champion or {}).items()})
    metrics.update({k: v for k, v in asdict(d).items()
                    if k in ("delta", "ci_low", "ci_high", "prob_better") and v is not None})
    metrics.update(window_rows=c.rows, passed=d.passed, metric=d.metric)
    if c.positives is not None:
        metrics["window_positives"] = c.positives
    return metrics


@contextmanager
def promotion_lock(settings: Settings, name: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Exclusive lock for moving the champion of one model (fcntl, under state_dir/locks)."""
    import fcntl

    path = settings.state_dir / "locks" / f"promote-{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with path.open("a+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise GlueError(f"another gate holds {path} for more than {timeout:.0f} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _scores(ref: VersionRef, rows: Any, frame: TrainingFrame, task: str) -> np.ndarray:
    """One registered model's predictions on the window, fed the columns it was trained on."""
    from glue import training
    from glue.adapters import mlflow

    model = mlflow.load_sklearn_model(ref.uri)
    tagged = contract.feature_columns(ref.tags)
    columns = list(getattr(model, "feature_names_in_", None)
                   if getattr(model, "feature_names_in_", None) is not None
                   else (tagged or frame.feature_columns))
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise GlueError(
            f"model '{ref.name}' version {ref.version} needs feature column(s) {', '.join(missing)}, "
            f"which the training frame of feature service '{frame.feature_service}' lacks"
        )
    return training.predict(model, task, rows[columns])


def _weighted_error(w: np.ndarray, y: np.ndarray, pred: np.ndarray, metric: str) -> np.ndarray:
    """RMSE, MAE, R², log loss or Brier score of each weight row (weighted by the resample's row
    counts), as sklearn computes them with sample weights."""
    import numpy as np

    total = w.sum(axis=1)
    if metric == "rmse":
        return np.sqrt((w * (y - pred) ** 2).sum(axis=1) / total)
    if metric == "mae":
        return (w * np.abs(y - pred)).sum(axis=1) / total
    if metric == "brier":
        return (w * (y - pred) ** 2).sum(axis=1) / total
    if metric == "log_loss":
        p = np.clip(pred, 1e-15, 1 - 1e-15)
        return (w * -(y * np.log(p) + (1 - y) * np.log1p(-p))).sum(axis=1) / total
    if metric != "r2":
        raise GlueError(f"no bootstrap for metric '{metric}'")
    mean = (w * y).sum(axis=1, keepdims=True) / total[:, None]
    residual = (w * (y - pred) ** 2).sum(axis=1)
    spread = (w * (y - mean) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 0, 1.0 - residual / spread, math.nan)


def _sorted_for(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order by descending score, labels in that order, last index of each tied-score group."""
    import numpy as np

    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    return order, y[order], last


def _weighted_metric(w: np.ndarray, y: np.ndarray, last: np.ndarray, metric: str) -> np.ndarray:
    """Average precision or ROC AUC of each weight row, as sklearn computes them with weights."""
    import numpy as np

    tp = np.cumsum(w * y, axis=1)[:, last]
    fp = np.cumsum(w * (1 - y), axis=1)[:, last]
    pos, neg = tp[:, -1:], fp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "average_precision":
            precision = tp / np.maximum(tp + fp, np.finfo(float).tiny)
            recall = tp / pos
            gained = np.diff(recall, axis=1, prepend=0.0)
            value = np.sum(gained * precision, axis=1)
        else:
            tpr = np.concatenate([np.zeros_like(pos), tp / pos], axis=1)
            fpr = np.concatenate([np.zeros_like(neg), fp / neg], axis=1)
            value = np.trapezoid(tpr, fpr, axis=1)
    bad = (pos[:, 0] == 0) | ((neg[:, 0] == 0) if metric == "roc_auc" else False)
    return np.where(bad, math.nan, value)


def _record_on_card(name: str, version: str, result: GateResult) -> None:
    """The gate's verdict and its approver (the automatic gate, or the person who answered; a
    person still awaited is marked so) on the challenger's model card."""
    from glue import model_card
    from glue.adapters import mlflow

    ref = mlflow.get_version(name, version)
    run_id = ref.tags.get(contract.TRAIN_RUN_ID) or ref.run_id
    if not run_id:
        return
    decision = ref.tags.get(gate_tag("decision"), "rejected" if not result.promoted else "passed")
    model_card.record_gate(run_id, {"decision": decision, "reason": result.reason,
                                    "champion_before": result.champion_before or "none",
                                    "champion_after": result.champion_after or "none",
                                    "decided_at": result.decided_at,
                                    "approver": result.approver or "awaiting a person's approval",
                                    **{k: str(v) for k, v in result.metrics.items()}})


def _write_gate_json(path: Path, result: GateResult) -> None:
    # no decided_at: the time of the decision is on the model version (glue.gate.decided_at); this
    # file, a DVC metrics file, holds what was decided, the same bytes for the same models and data
    payload = {"promoted": result.promoted, "challenger_version": result.challenger_version,
               "champion_before": result.champion_before, "champion_after": result.champion_after,
               "reason": result.reason, "awaiting_approval": result.awaiting_approval, **result.metrics}
    atomic.write_json(path, payload, indent=2, sort_keys=True)
