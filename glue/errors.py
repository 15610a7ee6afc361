"""Errors a user can act on.

A :class:`GlueError` is a mistake in the user's input or environment (bad data, bad settings, a
missing file). The CLI prints its message without a traceback and exits non-zero; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations


class GlueError(Exception):
    """A problem the user can fix; its message says what, where, and which rule was broken."""

    exit_code = 1


class SettingsError(GlueError):
    """The settings (environment or params.yaml) are invalid or incomplete."""

    exit_code = 2


class ValidationFailed(GlueError):
    """One or more data batches failed the validation gate and were quarantined."""

    exit_code = 3


class ServiceUnavailable(GlueError):
    """A service the command needs (the MLflow server, PostgreSQL, Redis) did not answer.

    Exit code 69 (EX_UNAVAILABLE), so a scheduler can tell "retry later" from "fix the input".
    """

    exit_code = 69


def service_outage(exc: BaseException) -> ServiceUnavailable | None:
    """The outage behind an exception, naming the service and its address; None for anything else."""
    unreachable = unreachable_service(exc)
    if unreachable is None:
        return None
    return ServiceUnavailable(f"{unreachable}; the command stopped there: run it again once the service "
                              "is back")


def unreachable_service(exc: BaseException) -> str | None:
    """"<service> at <address> is unreachable (<reason>)" when `exc` comes from a service that is
    down; None for anything else. The CLI's error (:func:`service_outage`) and glue serve's 503 say it.

    The tools raise their own types for a service that is down (requests' ConnectionError inside
    an MlflowException, redis' ConnectionError, psycopg's OperationalError...). They are told apart
    by their module and message, so this module still imports nothing heavy.
    """
    import os
    import re

    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " | ".join(f"{type(e).__module__}.{type(e).__name__}: {e}" for e in chain)
    lowered = text.lower()
    refused = any(isinstance(e, (ConnectionError, TimeoutError)) for e in chain) or any(
        word in lowered for word in ("connection refused", "max retries exceeded", "failed to establish",
                                     "connection reset", "could not connect", "timed out",
                                     "server closed the connection", "error 111 connecting"))
    if not refused:
        return None
    address = re.search(r"(\d{1,3}(?:\.\d{1,3}){3}|localhost)['\"]?,? ?(?:port[= ]?|:)(\d+)", text)
    where = f" at {address.group(1)}:{address.group(2)}" if address else ""
    reason = str(chain[-1]).splitlines()[0][:300] if chain else ""
    if "redis" in lowered:
        service = f"Redis{where} (Feast's online store)"
    elif "psycopg" in lowered or "postgres" in lowered or "sqlalchemy" in lowered:
        service = f"PostgreSQL{where}"
    elif "mlflow" in lowered or "api request to" in lowered:
        service = f"the MLflow tracking server {os.environ.get('MLFLOW_TRACKING_URI', '')}".rstrip()
    else:
        service = f"a service{where}"
    return f"{service} is unreachable ({reason})"
