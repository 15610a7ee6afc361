"""The Airflow DAGs: they load, are wired as documented, parse light, and run for real.

Airflow reads its configuration when first imported, so everything that imports Airflow runs in a
subprocess with the environment glue.adapters.airflow builds: the test process never gets an
~/airflow of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from glue import project_code
from glue.adapters import airflow
from glue.errors import GlueError
from glue.settings import Settings, load_settings

PROJECT_DIR = Path(__file__).resolve().parents[2]
DAGS_DIR = PROJECT_DIR / "dags"
DAG_FILES = sorted(p.name for p in DAGS_DIR.glob("glue_*.py"))
HEAVY = ("feast", "mlflow", "great_expectations", "evidently", "sklearn", "pandas", "pyarrow",
         "numpy", "glue")

_DESCRIBE = """
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
def assets(cond):
    if cond is None:
        return []
    if hasattr(cond, "uri"):
        return [cond.uri]
    return sorted(u for c in cond.objects for u in assets(c))
folder = Path(sys.argv[1])
bag = BundleDagBag(folder, bundle_path=folder, bundle_name="dags-folder")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {
        "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks},
        "outlets": {t.task_id: sorted(a.uri for a in t.outlets) for t in d.tasks},
        "trigger_rules": {t.task_id: str(getattr(t.trigger_rule, "value", t.trigger_rule))
                          for t in d.tasks},
        "retries": {t.task_id: t.retries for t in d.tasks},
        "operators": {t.task_id: type(t).__name__ for t in d.tasks},
        "hitl": {t.task_id: {"options": t.options, "defaults": t.defaults,
                             "timeout_s": t.response_timeout.total_seconds(),
                             "users": t.assigned_users, "params": sorted(t.params)}
                 for t in d.tasks if hasattr(t, "response_timeout")},
        "timetable": type(d.timetable).__name__,
        "cron": getattr(getattr(d.timetable, "timetable", d.timetable), "expression", None),
        "assets": assets(getattr(d.timetable, "asset_condition", None)),
        "catchup": d.catchup, "tags": sorted(d.tags), "doc_md": bool(d.doc_md), "doc": d.doc_md or "",
    } for d in bag.dags.values()},
}))
"""

_IMPORTS = """
import sys
from pathlib import Path
import airflow.sdk  # noqa: F401  (Airflow itself may import what it likes)
from airflow.dag_processing.dagbag import BundleDagBag
before = set(sys.modules)
folder = Path(sys.argv[1])
bag = BundleDagBag(str(folder / sys.argv[2]), bundle_path=folder, bundle_name="dags-folder")
assert bag.dags and not bag.import_errors, bag.import_errors
heavy = tuple(sys.argv[3].split(","))
print("heavy=" + ",".join(sorted(m for m in set(sys.modules) - before if m.split(".")[0] in heavy)))
"""


def generate_demo(settings: Settings, **overrides: object) -> None:
    """The project's own data generator (params.yaml data.generator), with demo: overrides."""
    generate = project_code.load_callable(settings.params.data.generator or "", settings.project_dir,
                                          "data.generator")
    generate({**settings.params.demo, **overrides}, settings.raw_dir)


def _airflow_python(script: str, *args: str, home: Path, project: Path = PROJECT_DIR) -> str:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"), "GLUE_PROJECT_DIR": str(project)}
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    return json.loads(_airflow_python(_DESCRIBE, str(DAGS_DIR), home=home))


def test_all_dags_load_without_import_errors(dagbag: dict) -> None:
    assert dagbag["errors"] == {}
    settings = load_settings("local", PROJECT_DIR)
    assert sorted(dagbag["dags"]) == sorted(airflow.dag_ids(settings))
    models = [m.name for m in settings.models]
    assert len(models) >= 2  # the demo's two models: one DAG pair each
    for name in models:
        assert airflow.training_dag_id(name) == f"glue_training__{name}"
        assert airflow.monitoring_dag_id(name) == f"glue_monitoring__{name}"


def test_features_dag_validates_then_builds_features_daily(dagbag: dict) -> None:
    dag = dagbag["dags"]["glue_features"]
    assert dag["tasks"] == {"validate": [], "features": ["validate"]}
    assert dag["outlets"]["features"] == ["glue://features/"]
    assert dag["timetable"] == "CronTriggerTimetable" and dag["cron"] == "0 0 * * *"  # @daily


def test_each_model_trains_weekly_or_on_its_own_retrain_request(dagbag: dict) -> None:
    for model in load_settings("local", PROJECT_DIR).models:
        dag = dagbag["dags"][f"glue_training__{model.name}"]
        assert dag["tasks"] == {"refresh_needed": [], "validate": ["refresh_needed"],
                                "features": ["validate"], "train": ["features", "refresh_needed"],
                                "evaluate": ["train"], "promote": ["evaluate"]}
        assert dag["trigger_rules"]["train"] == "none_failed_min_one_success"
        assert dag["timetable"] == "AssetOrTimeSchedule"
        assert dag["cron"] == "0 3 * * 1"  # Mondays
        assert dag["assets"] == [f"glue://{model.name}/retrain-request"]
        # its refresh announces no fresh features: that would start the monitoring DAGs again
        assert all(uris == [] for uris in dag["outlets"].values())
        assert dag["tags"] == sorted(["mlops-glue", model.name])
        assert f"`{model.feature_service}`" in dag["doc"]


def test_each_model_is_monitored_after_a_feature_refresh_and_requests_only_its_own_retrain(
    dagbag: dict,
) -> None:
    for model in load_settings("local", PROJECT_DIR).models:
        dag = dagbag["dags"][f"glue_monitoring__{model.name}"]
        assert dag["tasks"] == {"check": [], "retrain_needed": ["check"],
                                "request_retrain": ["check", "retrain_needed"]}
        assert dag["timetable"] == "AssetTriggeredTimetable"
        assert dag["assets"] == ["glue://features/"]
        # Only the task behind the short-circuit emits the asset the model's training is scheduled on.
        assert {t: uris for t, uris in dag["outlets"].items() if uris} == {
            "request_retrain": [f"glue://{model.name}/retrain-request"]}


def test_every_dag_is_tagged_documented_retried_and_never_backfills(dagbag: dict) -> None:
    for dag_id, dag in dagbag["dags"].items():
        assert "mlops-glue" in dag["tags"], dag_id
        assert dag["doc_md"], dag_id
        assert dag["catchup"] is False, dag_id
        assert all(1 <= r <= 2 for r in dag["retries"].values()), dag_id


def test_the_dags_follow_params_yaml(tmp_path: Path) -> None:
    """A project's models are configuration: a third model in params.yaml is a third DAG pair."""
    import yaml

    shutil.copytree(DAGS_DIR, tmp_path / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((PROJECT_DIR / "params.yaml").read_text())
    first = next(iter(params["models"]))
    params["models"]["another-model"] = params["models"][first]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    home = tmp_path / "airflow_home"
    bag = json.loads(_airflow_python(_DESCRIBE, str(tmp_path / "dags"), home=home,
                                     project=tmp_path))
    assert bag["errors"] == {}
    assert {"glue_training__another-model", "glue_monitoring__another-model"} <= set(bag["dags"])
    assert len(bag["dags"]) == 1 + 2 * len(params["models"])


def test_a_model_that_wants_a_person_gets_an_approval_step_before_promote(tmp_path: Path) -> None:
    """params.yaml approval.by person: evaluate -> ask_approval -> approve (Airflow 3's
    human-in-the-loop operator: Approve or Reject, Reject when nobody answers in time) -> promote,
    and promote also right after ask_approval (when nobody needs to be asked). The other model's
    DAG keeps evaluate -> promote."""
    import yaml

    shutil.copytree(DAGS_DIR, tmp_path / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((PROJECT_DIR / "params.yaml").read_text())
    first, second = list(params["models"])[:2]
    params["models"][second]["approval"] = {"by": "person", "timeout_hours": 2, "approvers": ["alice"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bag = json.loads(_airflow_python(_DESCRIBE, str(tmp_path / "dags"), home=tmp_path / "airflow_home",
                                     project=tmp_path))
    assert bag["errors"] == {}
    dag = bag["dags"][f"glue_training__{second}"]
    assert dag["tasks"]["ask_approval"] == ["evaluate"]
    assert dag["tasks"]["approve"] == ["ask_approval"]
    assert dag["tasks"]["promote"] == ["approve", "ask_approval"]
    assert dag["trigger_rules"]["promote"] == "none_failed_min_one_success"
    assert dag["operators"]["approve"] == "HITLOperator"
    assert dag["hitl"]["approve"] == {"options": ["Approve", "Reject"], "defaults": ["Reject"],
                                      "timeout_s": 7200.0, "users": [{"id": "alice", "name": "alice"}],
                                      "params": ["comment"]}
    assert "Required Actions" in dag["doc"] and "no answer in 2 h: Reject" in dag["doc"]
    other = bag["dags"][f"glue_training__{first}"]
    assert other["tasks"]["promote"] == ["evaluate"] and "approve" not in other["tasks"]


def test_the_answer_of_the_approval_step_becomes_the_gates_approval() -> None:
    import datetime as dt

    at = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)
    answer = {"chosen_options": ["Approve"], "params_input": {"comment": "looks right"},
              "responded_at": at, "responded_by_user": {"id": "7", "name": "alice"}}
    approval = airflow.approval_from_answer(answer, "Airflow glue_training__m run r1")
    assert approval.approved and approval.by == "alice" and approval.comment == "looks right"
    assert approval.text() == ("approved by alice (Airflow glue_training__m run r1) at "
                               "2026-12-02T11:00:00+00:00: looks right")
    timed_out = airflow.approval_from_answer(
        {"chosen_options": ["Reject"], "params_input": {}, "responded_at": at, "responded_by_user": None},
        "Airflow glue_training__m run r2")
    assert not timed_out.approved and timed_out.by.startswith("nobody (no answer in time")
    assert airflow.approval_from_answer(None, "x") is None  # nobody was asked


@pytest.mark.parametrize("name", DAG_FILES)
def test_dag_file_imports_nothing_heavy_at_parse_time(name: str, tmp_path: Path) -> None:
    loaded = _airflow_python(_IMPORTS, str(DAGS_DIR), name, ",".join(HEAVY), home=tmp_path)
    assert loaded == "heavy=", f"{name} imports {loaded} at parse time"


def test_airflow_env_switches_metadata_db_and_executor_by_profile(
    tmp_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = airflow.airflow_env(load_settings("local"))
    assert local["AIRFLOW_HOME"] == str(tmp_project / ".glue" / "airflow")
    assert local["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_project / "dags")
    assert local["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"sqlite:///{tmp_project / '.glue' / 'airflow' / 'airflow.db'}")
    assert local["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert local["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert local["GLUE_PROJECT_DIR"] == str(tmp_project) and local["GLUE_PROFILE"] == "local"
    assert local["MLFLOW_TRACKING_URI"].startswith("sqlite:///")

    monkeypatch.setenv("GLUE_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    prod = airflow.airflow_env(load_settings("prod"))
    assert prod["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == airflow.PROD_DB_DEFAULT
    assert prod["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert prod["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/1"
    assert prod["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert prod["GLUE_PROFILE"] == "prod"


@pytest.mark.slow
def test_features_dag_runs_end_to_end_and_fails_loudly_on_a_bad_batch(tmp_project: Path) -> None:
    shutil.copytree(DAGS_DIR, tmp_project / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    settings = load_settings("local")
    generate_demo(settings, days=10, transactions_per_day=300, customers=300, merchants=40)

    airflow.init_airflow(settings)
    stamp = settings.airflow_home / "glue-db-migrated.json"
    assert stamp.is_file()
    migrated_at = stamp.stat().st_mtime_ns
    result = airflow.test_dag(settings, "glue_features", "2026-01-10")
    assert stamp.stat().st_mtime_ns == migrated_at  # second init was a no-op

    assert result.task_states == {"validate": "success", "features": "success"}
    assert result.logical_date.startswith("2026-01-10")
    validated = sorted(p.name for p in (settings.validated_dir / "transactions").glob("*.parquet"))
    assert validated == [f"2026-01-{d:02d}.parquet" for d in range(1, 11)]
    snapshots = pd.read_parquet(settings.features_dir / "customer_daily.parquet")
    assert len(snapshots) > 0
    assert result.returns["features"].startswith("features: ")  # the task's return value (XCom)
    assert set(result.returns) <= set(result.task_states)

    # A broken batch: the gate task fails (no retry), the error names the DAG and the task, and
    # the batch is kept in quarantine.
    bad = pd.read_parquet(settings.raw_events_dir / "2026-01-10.parquet")
    bad.loc[0, "amount"] = -5.0
    bad.to_parquet(settings.raw_events_dir / "2026-01-11.parquet", index=False)
    with pytest.raises(GlueError) as failed:
        airflow.test_dag(settings, "glue_features", "2026-01-11")
    message = str(failed.value)
    assert "'glue_features'" in message and "task 'validate' failed" in message
    assert (settings.quarantine_dir / "2026-01-11").is_dir()


def test_simulation_delivers_what_arrived_each_day_and_trains_only_when_asked(
    tmp_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The day loop of `glue simulate`: what each DAG run sees, and when training runs.

    The two Airflow calls are recorded instead of run (the real runs are in tests/e2e); this pins
    the delivery schedule: events on their day, labels when they became known (a week late).
    """
    import pyarrow.parquet as pq

    from glue import simulation

    (tmp_project / "params.yaml").write_text(
        (tmp_project / "params.yaml").read_text().replace("transactions_per_day: 1700",
                                                          "transactions_per_day: 120"))
    settings = load_settings("local")
    model = next(m for m in settings.models if m.label.view)  # labels the simulation can replay
    training_dag = airflow.training_dag_id(model.name)
    monitoring_dag = airflow.monitoring_dag_id(model.name)
    calls: list[tuple[str, str, list[str], list[str], dict | None]] = []

    def fake_test_dag(sim, dag_id, day, conf=None):  # noqa: ANN001, ANN202
        events = sorted(p.stem for p in sim.raw_events_dir.glob("*.parquet"))
        labels = sorted(p.stem for p in (sim.raw_dir / "labels").glob("*.parquet"))
        calls.append((dag_id, day.isoformat(), events, labels, conf))
        retrain = dag_id == monitoring_dag and day.isoformat() >= "2026-01-25"
        states = {"check": "success", "request_retrain": "success" if retrain else "skipped"}
        returns = {"check": {"summary": f"checked run-{day}", "drift": True, "decay": False},
                   "promote": {"promoted": True, "challenger_version": "7", "champion_after": "7"}}
        return airflow.DagTestResult(dag_id, day.isoformat(), f"run-{day}", states, 0.0, "", returns)

    monkeypatch.setattr(airflow, "test_dag", fake_test_dag)
    result = simulation.simulate(settings, days=3, start_day=23, model=model.name,
                                 overrides={"shift_day": 24, "shift_kind": "spending_change"})

    assert [c[:2] for c in calls] == [
        (training_dag, "2026-01-23"),  # the first champion, on the history
        ("glue_features", "2026-01-24"), (monitoring_dag, "2026-01-24"),
        ("glue_features", "2026-01-25"), (monitoring_dag, "2026-01-25"), (training_dag, "2026-01-25"),
        ("glue_features", "2026-01-26"), (monitoring_dag, "2026-01-26"), (training_dag, "2026-01-26")]
    # the first champion refreshes the features; a retrain comes right after glue_features
    assert calls[0][4] == {"refresh": True} and calls[5][4] == {"refresh": False}
    # The history: days 0..22; the labels known by the end of day 22: those of days 0..15.
    assert calls[0][2][-1] == "2026-01-23" and len(calls[0][2]) == 23
    assert calls[0][3][-1] == "2026-01-16" and len(calls[0][3]) == 16
    # a label file still arriving holds only the rows known by then; an arrived one is the original
    staging = result.staging_dir
    arriving = pq.read_table(staging / "raw" / "labels" / "2026-01-19.parquet").to_pandas()
    generated = pq.read_table(staging / "source" / "labels" / "2026-01-19.parquet").to_pandas()
    assert (arriving["label_timestamp"] <= pd.Timestamp("2026-01-27", tz="UTC")).all()
    assert 0 < len(arriving) <= len(generated)
    assert (staging / "raw" / "labels" / "2026-01-10.parquet").read_bytes() == (
        staging / "source" / "labels" / "2026-01-10.parquet").read_bytes()
    # Then one more day of events per simulated day, and the labels that arrived with it.
    assert calls[2][2][-1] == "2026-01-24" and len(calls[2][2]) == 24
    assert calls[2][3][-1] == "2026-01-17"
    assert [d.retrain for d in result.days] == [False, True, True]
    assert result.days[1].promoted is True and result.days[1].champion == "7"
    assert result.days[0].promoted is None and {d.model for d in result.days} == {model.name}
    assert result.bootstrap_champions == {model.name: "7"}
    # The project's own raw data and MLflow store are untouched.
    assert not settings.raw_events_dir.exists() or not any(settings.raw_events_dir.iterdir())
    assert result.mlflow_tracking_uri.endswith("simulation/mlflow.db")
    feast_yaml = staging / "feature_store.yaml"
    assert str(staging / "feast" / "registry.db") in feast_yaml.read_text()
    assert f"{model.name}: first champion v7; retrained on 2 day(s)" in result.summary()
    assert "shift_day=24" in result.summary()


def test_simulation_names_what_it_cannot_replay(tmp_project: Path) -> None:
    from glue import simulation

    settings = load_settings("local")
    with pytest.raises(GlueError, match="--days must be >= 1"):
        simulation.simulate(settings, days=0)
    with pytest.raises(GlueError, match="wrote 10 days of events; ask it for more days"):
        simulation.simulate(settings, days=5, start_day=8, model=settings.models[0].name,
                            overrides={"days": 10, "transactions_per_day": 50})
