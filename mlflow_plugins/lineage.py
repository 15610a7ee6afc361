"""MLflow run-context provider: every run started in a glue project carries its lineage basics.

MLflow asks each registered provider for tags whenever a run starts (``mlflow.start_run``), so a
notebook experiment, a Feast-started run and ``glue train`` all get the same ``glue.*`` tags:
the settings profile, the project directory, the DVC version of the raw data that dvc.lock records
and whether the git tree was dirty (MLflow's own git provider already adds the commit). Registered
by the entry point ``[project.entry-points."mlflow.run_context_provider"] glue_lineage =
"mlflow_plugins.lineage:GlueLineageRunContext"``.

Modelled on ``mlflow/tracking/context/git_context.py``: a tiny class, facts computed once and
cached, and it never raises (a plugin error would otherwise break every ``mlflow.start_run``).

This module imports nothing from MLflow (nor any glue module) at import time, so it works whatever
the import order. MLflow loads its entry points while ``import mlflow`` builds the context registry
(``mlflow.tracking.context.registry``); had this module imported MLflow at its top, importing it
*before* ``mlflow`` would start that build from here, MLflow would find this module half-initialized,
without ``GlueLineageRunContext`` yet, and skip it ("Failure attempting to register context provider
glue_lineage ... circular import"): no tags on any run. So the class does not subclass
``mlflow.tracking.context.abstract_context.RunContextProvider``; it implements the same protocol
(``in_context()`` and ``tags()``), which is all the registry uses.
"""

from __future__ import annotations

import logging

_logger = logging.getLogger(__name__)


def _resolve_lineage_tags() -> dict[str, str]:
    """The glue context tags of the project around the current directory, or {} outside one."""
    try:
        from glue import lineage
        from glue.settings import get_settings

        settings = get_settings()
        tags = lineage.context_tags(settings.project_dir, settings.profile)
        return {str(key): str(value) for key, value in tags.items()}
    except Exception as exc:  # not a glue project, or broken settings: not this plugin's business
        _logger.debug("glue lineage context unavailable: %s", exc)
        return {}


class GlueLineageRunContext:
    """Adds ``glue.profile``, ``glue.project_dir``, ``glue.dvc_lock_data_version``, ``glue.git_dirty``.

    An MLflow ``RunContextProvider`` by protocol, not by inheritance (see the module docstring).
    """

    def __init__(self) -> None:
        self._cache: dict[str, dict[str, str]] = {}

    @property
    def _tags(self) -> dict[str, str]:
        if "tags" not in self._cache:
            self._cache["tags"] = _resolve_lineage_tags()
        return self._cache["tags"]

    def in_context(self) -> bool:
        return bool(self._tags)

    def tags(self) -> dict[str, str]:
        return dict(self._tags)
