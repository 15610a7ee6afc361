"""The `ray` profile on a real multi-process Ray cluster: the same answers as the local profile.

One small demo project (tests/conftest.py build_small_champion_project: 15 days x 200 transactions
in January 2026, both demo models trained and promoted on the local profile) is then run on the
ray profile against a cluster of its own, started as processes by `glue ray start`'s function (a
head and one worker node on loopback, one CPU and a 256 MB object store each, free ports) and
stopped at the end:

1. the cluster has the head and the worker node, and only the processes glue started, and it
   authenticates with its own token even when ~/.ray/auth_token holds another cluster's;
2. `glue features` on the ray profile (the SQL registry in this run's PostgreSQL database, Feast's
   Ray compute engine materializing into this run's Redis db) and then each model's point-in-time
   training set through Feast's Ray offline store: the same rows and the same feature values as
   the local profile's (DuckDB), NaN-aware;
3. the online store after the Ray engine's materialization answers what the local one answers;
4. batch scoring on Ray Data gives the local scorer's scores, with the model loaded once per actor;
5. a hyperparameter search through joblib's ray backend picks what the local search picks.

The history ended long before the wall clock: Feast 0.67's Ray engine alone would materialize
nothing of it (it keeps rows newer than now - ttl; glue/adapters/feast.py _materialize_windows).

The databases and the Redis db carry the run's prefix (tests/services.py) and go at the run's end.
~5 minutes on 2 busy cores, most of it Ray starting worker processes.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests import services
from tests.conftest import build_small_champion_project, clone_project

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]

# What the module sets in the environment of this process (restored afterwards).
_ENV = ("HOME", "GLUE_PROJECT_DIR", "GLUE_PROFILE", "GLUE_RAY_HOST", "GLUE_RAY_PORT", "GLUE_RAY_WORKERS",
        "GLUE_MLFLOW_TRACKING_URI", "FEAST_POSTGRES_DB", "FEAST_REDIS_DB", "FEAST_RAY_ADDRESS")


def _free_port_pair() -> int:
    """A port p with p + 1 free too (the head's GCS and its client server)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two adjacent free ports")


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """(local settings, ray settings) of one built project, with its Ray cluster running."""
    from glue import features
    from glue.adapters import ray
    from glue.settings import get_settings, load_settings, ray_cluster

    saved = {name: os.environ.get(name) for name in _ENV}
    root = clone_project(tmp_path_factory.mktemp("ray") / "project", {})
    port = _free_port_pair()
    os.environ.update({"GLUE_PROJECT_DIR": str(root), "GLUE_RAY_PORT": str(port), "GLUE_RAY_WORKERS": "1",
                       "GLUE_RAY_HOST": "127.0.0.2", "FEAST_RAY_ADDRESS": f"127.0.0.2:{port}"})
    os.environ.pop("GLUE_PROFILE", None)
    # A ~/.ray/auth_token of some other cluster (any local ray.init() writes one): Ray then turned
    # token authentication on for the head only, and the worker node was rejected (InvalidAuthToken)
    home = tmp_path_factory.mktemp("home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("0" * 64)
    os.environ["HOME"] = str(home)
    get_settings.cache_clear()
    cluster, state = ray_cluster(root)
    try:
        ray.start_cluster(cluster, state)
        local = build_small_champion_project(root)
        os.environ.update({"FEAST_POSTGRES_DB": services.create_database("feast_ray"),
                           "FEAST_REDIS_DB": str(services.claim_redis_db()),
                           "GLUE_MLFLOW_TRACKING_URI": local.mlflow_tracking_uri})  # the local champions
        on_ray = load_settings("ray", root)
        features.build_features(on_ray)  # feast apply to the SQL registry; materialize with ray.engine
        yield local, on_ray
    finally:
        stopped = ray.stop_cluster(state)
        get_settings.cache_clear()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert stopped and not ray.cluster_status(cluster, state).running


def test_the_cluster_is_a_head_and_a_worker_node_of_glues_own_processes(profiles: tuple[Any, Any]) -> None:
    from glue.adapters import ray
    from glue.settings import ray_cluster

    _, on_ray = profiles
    status = ray.cluster_status(*ray_cluster(on_ray.project_dir))
    assert status.running and status.nodes == 2 and status.cpus == 2
    assert status.address == on_ray.ray.address and status.address.startswith("127.0.0.2:")
    assert status.processes >= 4  # gcs_server and a raylet per node at least
    assert round(status.object_store_mb) == 2 * 256
    token = on_ray.ray.token_file
    assert token.stat().st_mode & 0o077 == 0  # the token is its owner's only
    # a driver without the cluster's token is turned away; with `glue ray env`'s settings it gets in
    probe = (f"import ray; ray.init(address={on_ray.ray.address!r}, logging_level='ERROR'); "
             "print(int(ray.cluster_resources()['CPU']))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    stranger = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                              timeout=120)
    assert stranger.returncode != 0 and "InvalidAuthToken" in stranger.stderr + stranger.stdout
    member = subprocess.run([sys.executable, "-c", probe], env={**env, **on_ray.ray.auth_env()},
                            capture_output=True, text=True, timeout=120)
    assert member.returncode == 0 and member.stdout.split()[-1] == "2", member.stderr[-2000:]


@pytest.mark.parametrize("model_name", ["fraud-detector", "customer-spend"])
def test_the_training_set_on_ray_is_the_local_one(profiles: tuple[Any, Any], model_name: str) -> None:
    from glue import features

    local, on_ray = profiles
    store_type = _offline_store(on_ray)
    assert store_type == "ray"
    want = features.training_frame(local, local.model(model_name))
    got = features.training_frame(on_ray, on_ray.model(model_name))

    assert list(got.df.columns) == list(want.df.columns)
    assert got.feature_columns == want.feature_columns and len(want.feature_columns) > 0
    assert len(got.df) == len(want.df) > 100
    # Feast's Ray store floors every timestamp to the second (ray_shared_utils.normalize_timestamp_
    # columns); the snapshots are at midnight, so the point-in-time answers are the same
    ts = "event_timestamp"
    assert got.df[ts].equals(want.df[ts].dt.floor("s"))
    for column in want.df.columns.drop(ts):
        if column in want.feature_columns:
            a = want.df[column].astype("float64").to_numpy()
            b = got.df[column].astype("float64").to_numpy()
            assert np.array_equal(a, b, equal_nan=True), f"{model_name}: {column} differs"
        else:  # keys, request fields, the label
            assert got.df[column].tolist() == want.df[column].tolist(), f"{model_name}: {column} differs"


def test_online_values_after_the_ray_materialization_are_the_local_ones(profiles: tuple[Any, Any]) -> None:
    from glue import features
    from glue.adapters import feast

    local, on_ray = profiles
    assert feast.online_store_type(feast.open_store(on_ray)) == "redis"
    events = features.read_events(local).tail(60)
    for model in local.models:
        inputs = feast.service_inputs(feast.open_store(local), model.feature_service)
        wanted = [*inputs.join_keys, *inputs.request_fields]
        rows = [{k: v for k, v in row.items() if k in wanted}
                for row in events.drop_duplicates(list(inputs.join_keys)).to_dict("records")]
        want = features.online_features(local, model, rows)
        got = features.online_features(on_ray, on_ray.model(model.name), rows)
        assert list(got.columns) == list(want.columns)
        assert want.notna().any().any(), f"{model.name}: the local online store answered nothing"
        assert np.array_equal(got.to_numpy(), want.to_numpy(), equal_nan=True), model.name


def test_batch_scores_on_ray_data_are_the_local_scorers(profiles: tuple[Any, Any]) -> None:
    from glue import batch_scoring

    local, on_ray = profiles
    day = dt.date(2026, 1, 14)  # the day before the last
    for model in local.models:
        want_result = batch_scoring.score_batch(local, model, day)
        want = pd.read_parquet(want_result.path)
        got_result = batch_scoring.score_batch(on_ray, on_ray.model(model.name), day)
        got = pd.read_parquet(got_result.path)
        answer = "score" if "score" in want.columns else "prediction"
        assert got_result.rows == want_result.rows > 0
        keys = [c for c in want.columns if c not in (answer, "decision", "event_timestamp")]
        assert got[keys].equals(want[keys]), model.name
        np.testing.assert_allclose(got[answer].to_numpy(), want[answer].to_numpy(), rtol=0, atol=1e-12)
        if "decision" in want.columns:
            assert got["decision"].tolist() == want["decision"].tolist()


def test_ray_data_loads_the_model_once_per_actor(profiles: tuple[Any, Any], tmp_path: Path) -> None:
    from glue import features, training
    from glue.adapters import ray

    local, on_ray = profiles
    base = local.model("fraud-detector")
    frame = features.training_frame(local, base)
    X, y = frame.X.head(2000), frame.y.head(2000).to_numpy()
    model = training.build_pipeline(base.task, base.estimator, X, base.random_state).fit(X, y)
    loads = tmp_path / "loads.txt"

    def load() -> Any:  # shipped to the actors by value (cloudpickle); one line per load
        with open(loads, "a") as out:
            out.write(f"{os.getpid()}\n")
        return model

    got = ray.score_frame(on_ray, X, load, training.predict, base.task, batch_size=100)  # 20 chunks
    pids = loads.read_text().split()
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)  # one load per actor, one actor per CPU
    assert str(os.getpid()) not in pids  # loaded in the cluster's workers, not here
    np.testing.assert_array_equal(got, training.predict(model, base.task, X.astype("float64")))


def test_a_hyperparameter_search_on_the_cluster_picks_what_the_local_one_picks(
        profiles: tuple[Any, Any]) -> None:
    from glue import features, training
    from glue.settings import SearchSpec

    local, on_ray = profiles
    base = local.model("fraud-detector")
    estimator = base.estimator.model_copy(update={"search": SearchSpec(
        grid={"max_leaf_nodes": [7, 15], "learning_rate": [0.05, 0.2]}, cv=2)})
    model = base.model_copy(update={"estimator": estimator})
    frame = features.training_frame(local, base)
    X, y = frame.X, frame.y.to_numpy()
    found = {}
    for name, settings in (("local", local), ("ray", on_ray)):
        pipeline = training.build_pipeline(model.task, model.estimator, X, model.random_state)
        fitted, found[name] = training.fit_estimator(settings, model, pipeline, X, y)
        assert fitted.predict_proba(X.head(5)).shape == (5, 2)
    assert found["ray"] == found["local"]
    assert set(found["ray"]["best_params"]) == {"max_leaf_nodes", "learning_rate"}


def _offline_store(settings: Any) -> str:
    from glue.adapters import feast

    return str(feast.open_store(settings).config.offline_store.type)


def test_profile_paths_are_the_projects(profiles: tuple[Any, Any]) -> None:
    local, on_ray = profiles
    assert on_ray.feast_yaml == Path(on_ray.feast_repo) / "ray" / "feature_store.yaml"
    assert on_ray.features_dir == local.features_dir  # the same FileSource parquet files
