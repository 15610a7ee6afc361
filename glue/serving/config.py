"""The serving policy: the optional ``serving:`` section of params.yaml, overridden by GLUE_SERVE_*.

Why a module of its own: the CLI checks it before uvicorn starts, the app and the service read it,
and none of that needs FastAPI or Feast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glue.contract import CHALLENGER, CHAMPION
from glue.errors import SettingsError

if TYPE_CHECKING:
    from glue.settings import Settings

ENV_POLL_SECONDS = "GLUE_SERVE_POLL_SECONDS"
ENV_MODE = "GLUE_SERVE_MODE"
ENV_CHALLENGER_WEIGHT = "GLUE_SERVE_CHALLENGER_WEIGHT"


class ServingParams(BaseModel):
    """The optional ``serving:`` section of params.yaml; GLUE_SERVE_* variables override it."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "shadow", "ab"] = "off"
    # share of customers (by a hash of customer_id) answered by the challenger in mode `ab`
    challenger_weight: float = Field(0.0, ge=0.0, le=1.0)
    poll_seconds: float = Field(10.0, gt=0.0)
    champion_alias: str = CHAMPION
    challenger_alias: str = CHALLENGER
    max_batch_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    unknown_entities: Literal["reject", "score"] = "reject"
    log_predictions: bool = True
    log_queue_rows: int = Field(200_000, ge=1000)  # pending log lines before new ones are dropped


def serving_params(settings: Settings) -> ServingParams:
    """params.yaml ``serving:`` (Params keeps unknown sections as dicts), then the environment."""
    raw = getattr(settings.params, "serving", None) or {}
    if not isinstance(raw, dict):
        raise SettingsError(f"params.yaml serving: expected a mapping, got {type(raw).__name__}")
    values = dict(raw)
    for env, key in ((ENV_POLL_SECONDS, "poll_seconds"), (ENV_MODE, "mode"),
                     (ENV_CHALLENGER_WEIGHT, "challenger_weight")):
        if os.environ.get(env):
            values[key] = os.environ[env]
    try:
        return ServingParams.model_validate(values)
    except ValidationError as exc:
        where = "; ".join(f"serving.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"params.yaml / GLUE_SERVE_*: {where}") from None
