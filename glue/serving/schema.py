"""The request schema: a JSON body turned into validated transactions, or a 4xx naming the field.

Why a module of its own: parsing and validation are apart from scoring and from the transport
(as in MLflow's scoring server), so the rules can be read, tested and later derived from the Feast
feature service in one place. Errors follow MLflow's scoring server: ``{"error_code", "message"}``
plus ``field`` naming the offending input.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

if TYPE_CHECKING:
    from glue.serving.config import ServingParams
    from glue.settings import Settings


class ServingError(Exception):
    """An answer other than 200, with the MLflow-style error code and the input field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self, request_id: str) -> dict[str, Any]:
        out = {"error_code": self.code, "message": self.message, "request_id": request_id}
        if self.field:
            out["field"] = self.field
        return out


def bad_request(message: str, field: str | None = None, status: int = 422) -> ServingError:
    code = {400: "BAD_REQUEST", 413: "RESOURCE_LIMIT_EXCEEDED"}.get(status, "INVALID_PARAMETER_VALUE")
    return ServingError(status, code, message, field)


def unavailable(message: str) -> ServingError:
    return ServingError(503, "TEMPORARILY_UNAVAILABLE", message)



class RequestParser:
    """Turns a request body into validated transactions, or a 4xx naming the field at fault.

    The field rules (id minimums, amount range, channel values) come from the raw-batch schema in
    params.yaml ``validation.columns``, so the service accepts exactly what the pipeline would.
    """

    def __init__(self, settings: Settings, params: ServingParams) -> None:
        self.max_rows = params.max_batch_rows
        self.channels = _channels(settings)
        self.model = _transaction_model(settings, self.channels)
        self._rows = TypeAdapter(list[self.model])  # type: ignore[name-defined]

    def parse(self, body: bytes) -> list[Any]:
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise bad_request(f"request body is not JSON: {exc}", status=400) from None
        if isinstance(payload, dict) and "transactions" in payload:
            extra = sorted(set(payload) - {"transactions"})
            if extra:
                raise bad_request(f"unknown field '{extra[0]}' next to 'transactions'", extra[0])
            rows, prefix = payload["transactions"], "transactions"
            if not isinstance(rows, list):
                raise bad_request("'transactions' must be a list of transactions", "transactions")
        elif isinstance(payload, dict):
            rows, prefix = [payload], None  # one transaction without the list
        else:
            raise bad_request('body must be {"transactions": [...]} or one transaction object', status=400)
        if not rows:
            raise bad_request("'transactions' is empty: send at least one transaction", "transactions")
        if len(rows) > self.max_rows:
            raise bad_request(f"'transactions' has {len(rows)} rows, at most {self.max_rows} per request",
                       "transactions", status=413)
        try:
            txns = self._rows.validate_python(rows)
        except ValidationError as exc:
            raise _validation_error(exc, prefix) from None
        for i, t in enumerate(txns):
            if t.event_timestamp is None and t.event_hour is None:
                where = _field_name(prefix, (i, "event_timestamp"))
                raise bad_request(f"{where}: required (or event_hour, the UTC hour 0-23)", where)
        return txns


def _channels(settings: Settings) -> tuple[str, ...]:
    rule = settings.params.validation.columns.get("channel")
    return tuple((rule.allowed if rule else None) or ("online", "in_store", "atm"))


def _transaction_model(settings: Settings, channels: tuple[str, ...]) -> type[BaseModel]:
    """The pydantic model of one transaction, with the limits of params.yaml validation.columns."""
    import datetime as _dt

    rules = settings.params.validation.columns

    def limits(name: str, default_min: float | None = None) -> dict[str, float]:
        rule = rules.get(name)
        low = rule.min if rule and rule.min is not None else default_min
        high = rule.max if rule else None
        return {k: v for k, v in (("ge", low), ("le", high)) if v is not None}

    return create_model(
        "Transaction",
        __config__=ConfigDict(extra="forbid"),
        transaction_id=(str | None, Field(None, max_length=256)),
        customer_id=(int, Field(..., **limits("customer_id", 0))),
        merchant_id=(int, Field(..., **limits("merchant_id", 0))),
        amount=(float, Field(..., allow_inf_nan=False, **limits("amount"))),
        channel=(Literal[channels], ...),  # type: ignore[valid-type]
        card_present=(bool, ...),
        event_timestamp=(_dt.datetime | None, None),
        event_hour=(int | None, Field(None, ge=0, le=23)),
    )


def _validation_error(exc: ValidationError, prefix: str | None) -> ServingError:
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:5]:
        loc = _field_name(prefix, err["loc"])
        if err["type"] == "missing":
            parts.append(f"{loc}: field required")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown field")
        else:
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return bad_request("; ".join(parts) + more, _field_name(prefix, errors[0]["loc"]))


def _field_name(prefix: str | None, loc: tuple[Any, ...]) -> str:
    """('transactions', (3, 'amount')) -> 'transactions[3].amount'; a single object -> 'amount'."""
    index, rest = (loc[0], loc[1:]) if loc and isinstance(loc[0], int) else (None, loc)
    head = f"{prefix}[{index}]" if prefix else ""
    tail = ".".join(str(p) for p in rest if not isinstance(p, int))
    return ".".join(p for p in (head, tail) if p) or (prefix or "body")


def event_hour(txn: Any) -> int:
    """The request-time feature `event_hour`: UTC hour of event_timestamp (naive means UTC)."""
    if txn.event_hour is not None:
        return int(txn.event_hour)
    ts = txn.event_timestamp
    return (ts.astimezone(dt.UTC) if ts.tzinfo else ts).hour


def entity_rows(txns: list[Any], hours: list[int]) -> list[dict[str, Any]]:
    """Feast entity rows: the join keys and the request fields of each transaction."""
    return [{"customer_id": t.customer_id, "merchant_id": t.merchant_id, "amount": t.amount,
             "channel": t.channel, "card_present": t.card_present, "event_hour": h}
            for t, h in zip(txns, hours, strict=True)]
