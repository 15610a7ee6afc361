"""The request schema of each model: a JSON body turned into validated rows, or a 4xx naming the field.

Why a module of its own: parsing and validation are apart from scoring and from the transport
(as in MLflow's scoring server). Nothing here is written for one project: a model's request is
derived from its Feast feature service (:func:`~glue.adapters.feast.service_inputs`) when the server
loads it:

- the entity join keys of the service's views, with their Feast types;
- the request-source fields of its on-demand views (a ``UnixTimestamp`` is an ISO-8601 string);
- the rules of params.yaml ``validation.columns`` for fields of the same name (min, max, allowed
  values, nullable), so the service accepts exactly what the pipeline would;
- optionally the project's event id (params.yaml ``data.event_id``), passed through to the answer
  and the prediction log.

Types are strict (pydantic's strict mode): ``"123"`` or ``true`` is not an integer, ``1`` is not a
boolean, NaN and infinity are no numbers, an unknown field is refused. The body is
``{"instances": [row, ...]}`` (the MLflow / TF-serving convention) or one row object. Errors follow
MLflow's scoring server: ``{"error_code", "message"}`` plus ``field`` naming the offending input,
e.g. ``instances[3].<field>``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    create_model,
)

from glue.errors import GlueError

if TYPE_CHECKING:
    from glue.adapters.feast import ServiceInputs
    from glue.settings import ColumnRule

INSTANCES = "instances"  # the body's list of rows (MLflow's scoring server and TF serving call it so)


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
    """A client error: 400 (not JSON, wrong shape), 413 (too large) or 422 (a field is wrong)."""
    code = {400: "BAD_REQUEST", 404: "ENDPOINT_NOT_FOUND", 405: "BAD_REQUEST",
            413: "RESOURCE_LIMIT_EXCEEDED"}.get(status, "INVALID_PARAMETER_VALUE")
    return ServingError(status, code, message, field)


def unavailable(message: str) -> ServingError:
    """A 503: the server cannot answer now (no model loaded, the feature store down)."""
    return ServingError(503, "TEMPORARILY_UNAVAILABLE", message)


class RequestSchema:
    """One model's request rows: their fields and types from its feature service, validated strictly.

    Built once per model when the server loads it; :meth:`parse` is the hot path (one ``json.loads``
    and one pydantic validation of all rows).
    """

    def __init__(self, model_name: str, inputs: ServiceInputs, rules: Mapping[str, ColumnRule],
                 event_id: str | None = None, max_rows: int = 1000) -> None:
        self.model_name = model_name
        self.feature_service = inputs.feature_service
        self.join_keys = tuple(inputs.join_keys)
        # what Feast needs of a row: the join keys, then the request fields, each with its Feast type
        self.types: dict[str, str] = {**inputs.join_keys, **inputs.request_fields}
        self.feast_fields = tuple(self.types)
        self.event_id = event_id
        self.max_rows = max_rows
        self.rules = dict(rules)
        fields: dict[str, Any] = {name: _field(self.feature_service, name, kind, self.rules.get(name))
                                  for name, kind in self.types.items()}
        if event_id and event_id not in fields:
            rule = self.rules.get(event_id)
            kind: Any = int if rule is not None and rule.dtype == "int" else str
            fields[event_id] = (Annotated[kind | None, Strict()], Field(None, **(
                {"max_length": 256} if kind is str else {})))
        self.model: type[BaseModel] = create_model(
            f"Request_{re.sub(r'[^0-9A-Za-z_]', '_', model_name)}",
            __config__=ConfigDict(extra="forbid", strict=True), **fields)
        self._rows = TypeAdapter(list[self.model])  # type: ignore[name-defined]

    def describe(self) -> dict[str, str]:
        """{field: Feast type}, the event id marked ``optional``: for /ready and error messages."""
        out = dict(self.types)
        if self.event_id and self.event_id not in out:
            out[self.event_id] = "optional"
        return out

    def parse(self, body: bytes) -> tuple[list[dict[str, Any]], bool]:
        """The validated rows of a body (field -> value) and whether they came as a list of
        ``instances`` (else one object), or a ServingError naming the field at fault."""
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise bad_request(f"request body is not JSON: {exc}", status=400) from None
        except RecursionError:  # arrays or objects nested past the parser's depth
            raise bad_request("request body is not JSON this server reads: nested too deeply",
                              status=400) from None
        if isinstance(payload, dict) and INSTANCES in payload:
            extra = sorted(set(payload) - {INSTANCES})
            if extra:
                raise bad_request(f"unknown field '{extra[0]}' next to '{INSTANCES}'", extra[0])
            rows, prefix = payload[INSTANCES], INSTANCES
            if not isinstance(rows, list):
                raise bad_request(f"'{INSTANCES}' must be a list of objects", INSTANCES)
        elif isinstance(payload, dict):
            rows, prefix = [payload], None  # one row without the list
        else:
            raise bad_request(f'body must be {{"{INSTANCES}": [...]}} or one object', status=400)
        if not rows:
            raise bad_request(f"'{INSTANCES}' is empty: send at least one row", INSTANCES)
        if len(rows) > self.max_rows:
            raise bad_request(f"'{INSTANCES}' has {len(rows)} rows, at most {self.max_rows} per request",
                              INSTANCES, status=413)
        try:
            parsed = self._rows.validate_python(rows)
        except ValidationError as exc:
            raise _validation_error(exc, prefix, self) from None
        except UnicodeEncodeError:  # a lone surrogate (a \\udXXX escape): pydantic-core cannot read it
            where = _not_unicode(rows, prefix)
            raise bad_request(f"{where}: text with a lone surrogate (an unpaired \\udXXX escape) is not "
                              "valid Unicode", where) from None
        return [row.__dict__ for row in parsed], prefix is not None

    def entity_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Feast entity rows: the join keys and the request fields of each row."""
        names = self.feast_fields
        return [{k: row[k] for k in names} for row in rows]

    def keys(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """The row's join-key values (what the A/B split hashes)."""
        return tuple(row[k] for k in self.join_keys)

    def field_name(self, index: int | None, name: str) -> str:
        """`instances[3].<name>` in a list body, `<name>` for a single object."""
        return f"{INSTANCES}[{index}].{name}" if index is not None else name

    def probe_row(self) -> dict[str, Any]:
        """A row of the right types within the rules (the reloader reads one to test a re-opened store)."""
        out: dict[str, Any] = {}
        for name, kind in self.types.items():
            rule = self.rules.get(name)
            python = _PYTHON_TYPES[kind]
            if python is bool:
                out[name] = True
            elif python is str:
                out[name] = rule.allowed[0] if rule is not None and rule.allowed else ""
            elif python is dt.datetime:
                out[name] = dt.datetime.now(dt.UTC)
            else:
                low = rule.min if rule is not None and rule.min is not None else 0
                out[name] = python(max(low, 0) if python is int else (low or 1.0))
        return out


# Feast's fixed-width integer types: the values they hold
_INT_RANGES: dict[str, tuple[int, int]] = {"Int64": (-(2**63), 2**63 - 1), "Int32": (-(2**31), 2**31 - 1)}

# Feast type name -> what a JSON request carries for it
_PYTHON_TYPES: dict[str, type] = {
    "Int64": int, "Int32": int, "Float64": float, "Float32": float, "String": str, "Bool": bool,
    "UnixTimestamp": dt.datetime,
}


def _iso_datetime(value: Any) -> Any:
    """Only an ISO-8601 string is a date-time in a request (not a number: seconds or milliseconds?),
    and one that exists in UTC (9999-12-31T23:59-14:00 does not: Feast's read would overflow)."""
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an ISO-8601 date-time string, e.g. 2026-01-16T09:30:00Z")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'{_short(value)}' is not an ISO-8601 date-time, "
                         "e.g. 2026-01-16T09:30:00Z") from None
    try:
        (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).timestamp()
    except (OverflowError, ValueError):
        raise ValueError(f"'{value}' is out of the range of date-times in UTC") from None
    return parsed


def _field(service: str, name: str, kind: str, rule: ColumnRule | None) -> tuple[Any, Any]:
    """The pydantic (type, Field) of one request field: its Feast type and params.yaml's rule."""
    python = _PYTHON_TYPES.get(kind)
    if python is None:
        raise GlueError(f"feature service '{service}': field '{name}' has Feast type {kind}, which a JSON "
                        f"request cannot carry (supported: {', '.join(_PYTHON_TYPES)})")
    limits: dict[str, Any] = {}
    annotated: Any = python
    if python is dt.datetime:
        annotated = Annotated[dt.datetime, BeforeValidator(_iso_datetime)]
    elif python in (int, float) and rule is not None:
        limits = {k: v for k, v in (("ge", rule.min), ("le", rule.max)) if v is not None}
    if python is float:
        limits["allow_inf_nan"] = False
    if kind in _INT_RANGES:  # Feast stores these as fixed-width integers: a larger one is no entity
        low, high = _INT_RANGES[kind]
        limits["ge"], limits["le"] = max(limits.get("ge", low), low), min(limits.get("le", high), high)
    if python is str and rule is not None and rule.allowed:
        annotated = Literal[tuple(rule.allowed)]  # type: ignore[valid-type]
    if rule is not None and rule.nullable:
        annotated = annotated | None
    return annotated, Field(..., **limits)


def _validation_error(exc: ValidationError, prefix: str | None, schema: RequestSchema) -> ServingError:
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:5]:
        loc = _field_name(prefix, err["loc"])
        if err["type"] == "missing":
            parts.append(f"{loc}: field required ({schema.model_name} takes "
                         f"{', '.join(f'{k} {v}' for k, v in schema.describe().items())})")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown field (the fields of {schema.model_name} are "
                         f"{', '.join(schema.describe())})")
        else:
            message = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {message} (got {_short(repr(err.get('input')))})")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return bad_request("; ".join(parts) + more, _field_name(prefix, errors[0]["loc"]))


def _not_unicode(rows: list[Any], prefix: str | None) -> str:
    """The field (or the name of one) holding text that is not valid Unicode; `body` if none is found."""

    def bad(value: Any) -> bool:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False

    for index, row in enumerate(rows):
        for name, value in (row.items() if isinstance(row, dict) else [("", row)]):
            if bad(name) or bad(value):
                field = name if not bad(name) else ascii(name)
                return _field_name(prefix, (index, field) if field else (index,))
    return "body"


def _short(text: str, limit: int = 100) -> str:
    """Input echoed in a message, cut: a 1 MB string is not worth sending back."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _field_name(prefix: str | None, loc: tuple[Any, ...]) -> str:
    """('instances', (3, 'price')) -> 'instances[3].price'; a single object -> 'price'."""
    index, rest = (loc[0], loc[1:]) if loc and isinstance(loc[0], int) else (None, loc)
    head = f"{prefix}[{index}]" if prefix else ""
    tail = ".".join(str(p) for p in rest if not isinstance(p, int))
    return ".".join(p for p in (head, tail) if p) or (prefix or "body")
