"""The serving policy of each model: its ``serving:`` entries (over ``defaults.serving``), then GLUE_SERVE_*.

Why a module of its own: the CLI checks every model's policy before uvicorn starts, the app and
the service read them, and none of that needs FastAPI or Feast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glue.contract import CHALLENGER, CHAMPION
from glue.errors import SettingsError

if TYPE_CHECKING:
    from glue.settings import ModelSpec, Settings

ENV_POLL_SECONDS = "GLUE_SERVE_POLL_SECONDS"
ENV_MODE = "GLUE_SERVE_MODE"
ENV_CHALLENGER_WEIGHT = "GLUE_SERVE_CHALLENGER_WEIGHT"


class ServingParams(BaseModel):
    """A model's ``serving:`` policy (over ``defaults.serving``); GLUE_SERVE_* variables override it."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "shadow", "ab"] = "off"
    # share of entities (by a hash of the request's join-key values) answered by the challenger in mode `ab`
    challenger_weight: float = Field(0.0, ge=0.0, le=1.0)
    poll_seconds: float = Field(10.0, gt=0.0)
    champion_alias: str = CHAMPION
    challenger_alias: str = CHALLENGER
    max_batch_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    unknown_entities: Literal["reject", "score"] = "reject"
    log_predictions: bool = True
    log_queue_rows: int = Field(200_000, ge=1000)  # pending log lines before new ones are dropped


def serving_params(settings: Settings, model: ModelSpec | None = None) -> ServingParams:
    """One model's policy (the project's only model if None): ``models.<name>.serving``, then the env."""
    model = model or settings.model()
    raw = model.serving
    if not isinstance(raw, dict):
        raise SettingsError(f"params.yaml models.{model.name}.serving: expected a mapping, "
                            f"got {type(raw).__name__}")
    values = dict(raw)
    for env, key in ((ENV_POLL_SECONDS, "poll_seconds"), (ENV_MODE, "mode"),
                     (ENV_CHALLENGER_WEIGHT, "challenger_weight")):
        if os.environ.get(env):
            values[key] = os.environ[env]
    try:
        return ServingParams.model_validate(values)
    except ValidationError as exc:
        where = "; ".join(f"models.{model.name}.serving.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                          for e in exc.errors())
        raise SettingsError(f"params.yaml / GLUE_SERVE_*: {where}") from None


def all_serving_params(settings: Settings) -> dict[str, ServingParams]:
    """Every model's policy, by registered model name (what `glue serve` checks before it starts)."""
    return {model.name: serving_params(settings, model) for model in settings.models}
