"""Models load from the registry only, and only with the files they were registered with.

Registration records the SHA-256 of the model's files on the version (glue.model_sha256); every
load (serving, the gate, batch scoring, monitoring) checks it first. A model file changed in the
artifact store afterwards is refused, naming the version and the tag; a run's model that was never
registered cannot be loaded at all.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from glue import contract, training
from glue.errors import GlueError
from tests.integration.synthetic_frame import synthetic_spend_frame

pytestmark = pytest.mark.slow


def test_a_model_changed_after_registration_is_refused(tmp_project: Path) -> None:
    from glue.adapters import mlflow
    from glue.settings import get_settings

    settings = get_settings()
    trained = training.train(settings, settings.model("customer-spend"), synthetic_spend_frame())
    ref = mlflow.get_version("customer-spend", trained.version)
    assert len(ref.tags[contract.MODEL_SHA256]) == 64
    model = mlflow.load_sklearn_model(ref.uri)  # the registered files: loads
    assert hasattr(model, "predict")

    with pytest.raises(GlueError, match="not a registered model URI"):
        mlflow.load_sklearn_model(f"runs:/{trained.run_id}/model")

    # someone replaces the pickle in the artifact store (same size, other bytes)
    pickles = [p for p in settings.mlflow_artifacts_dir.rglob("model.pkl")]
    assert len(pickles) == 1
    original = pickles[0].read_bytes()
    pickles[0].write_bytes((hashlib.sha256(original).digest() * (len(original) // 32 + 1))[:len(original)])
    with pytest.raises(GlueError, match=f"models:/customer-spend/{trained.version}: the model's files .* "
                                        "do not match the checksum recorded at registration"):
        mlflow.load_sklearn_model(ref.uri)
    pickles[0].write_bytes(original)  # put back: loads again
    assert hasattr(mlflow.load_sklearn_model(ref.uri), "predict")
