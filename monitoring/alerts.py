"""The alert hook: tell someone when a check finds drift or decay.

A JSON POST to a webhook (Slack/Teams/Alertmanager-style receivers take it through their generic
webhook integrations). Unset, the alert is logged instead. An unreachable webhook is logged too,
never raised: a flaky chat service must not fail the monitoring run or block a retrain.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("glue.alerts")
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class AlertOutcome:
    """What happened to one alert: sent, logged (no webhook), or failed (and why)."""

    status: str  # "sent" | "logged" | "failed"
    detail: str = ""


def send_alert(webhook_url: str | None, payload: dict[str, Any]) -> AlertOutcome:
    """POST the payload as JSON to the webhook, or log it when there is none."""
    text = payload.get("text", "")
    if not webhook_url:
        log.warning("ALERT (no webhook configured; set GLUE_ALERT_WEBHOOK_URL): %s", text)
        return AlertOutcome("logged", "no webhook configured")
    request = urllib.request.Request(
        webhook_url, data=json.dumps(payload, default=str).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return AlertOutcome("sent", f"HTTP {response.status}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("alert webhook %s failed (%s); the alert was: %s", webhook_url, exc, text)
        return AlertOutcome("failed", str(exc))
