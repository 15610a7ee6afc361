"""MLflow dataset source: a training or validation set named by its Feast feature service and the
DVC version of the data it was built from.

Why a source of its own: MLflow's built-in sources name a file, a table or a URL. A glue training
set is none of those; it is the point-in-time join of a Feast feature service over one DVC version
of the project's raw data, and that pair is what someone reading the run's Datasets panel needs to
find it again (`glue lineage`, `glue reproduce`). Registered by the entry point
``[project.entry-points."mlflow.dataset_source"] glue_feast_dvc =
"mlflow_plugins.dataset_source:FeastDvcDatasetSource"``; glue also registers it itself before
logging (glue/adapters/mlflow.py), so it works whatever the import order.

``load()`` fetches the DVC version from its remote with DVC's CLI (glue/adapters/dvc.py fetch).

Whatever the import order: the class must subclass MLflow's ``DatasetSource``, but importing MLflow
at this module's top would, when this module is imported *before* ``mlflow``, start MLflow's
source registry from here; the registry would load this entry point from the half-imported module
and skip it ("circular import"). So the class is built on first access, by the module's
``__getattr__`` (PEP 562), which exists from this module's first line on: the registry's lookup
then builds it from the already-imported ``mlflow.data.dataset_source``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SOURCE_TYPE = "glue_feast_dvc"  # glue/contract.py DATASET_SOURCE_TYPE
_FIELDS = ("feature_service", "feast_project", "dvc_data_path", "dvc_data_version", "dvc_remote",
           "window_start", "window_end")


def __getattr__(name: str) -> Any:
    if name == "FeastDvcDatasetSource":
        cls = _build_source_class()
        globals()[name] = cls  # built once: the registry and every caller see the same class
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build_source_class() -> type:
    from mlflow.data.dataset_source import DatasetSource

    class FeastDvcDatasetSource(DatasetSource):
        """Where a training set comes from: a Feast feature service over one DVC data version."""

        def __init__(self, feature_service: str, feast_project: str, dvc_data_path: str,
                     dvc_data_version: str, dvc_remote: str, window_start: str = "",
                     window_end: str = "") -> None:
            self.feature_service = feature_service
            self.feast_project = feast_project
            self.dvc_data_path = dvc_data_path
            self.dvc_data_version = dvc_data_version
            self.dvc_remote = dvc_remote
            self.window_start = window_start
            self.window_end = window_end

        @staticmethod
        def _get_source_type() -> str:
            return SOURCE_TYPE

        def load(self, dst_path: str | None = None) -> str:
            """Fetch the raw data of this version from its DVC remote; returns the local folder."""
            import tempfile

            from glue.adapters import dvc

            dest = Path(dst_path or tempfile.mkdtemp(prefix="glue-data-")) / Path(self.dvc_data_path).name
            return str(dvc.fetch(self.dvc_data_version, self.dvc_remote, dest))

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return isinstance(raw_source, dict) and {"feature_service", "dvc_data_version"} <= set(raw_source)

        @classmethod
        def _resolve(cls, raw_source: Any) -> DatasetSource:
            return cls.from_dict(raw_source)

        def to_dict(self) -> dict[str, Any]:
            return {field: getattr(self, field) for field in _FIELDS}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> DatasetSource:
            return cls(**{field: str(source_dict.get(field, "")) for field in _FIELDS})

    FeastDvcDatasetSource.__module__ = __name__
    return FeastDvcDatasetSource
