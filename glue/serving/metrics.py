"""Prometheus metrics of `glue serve`: requests, latency, predictions by model and arm, reloads, freshness.

Why a module of its own: the app counts requests, the service counts predictions, the reloader
counts reloads; each app has a registry of its own, so several apps can share a process (tests).
Everything about a model carries its registered name in the label ``model``.
"""

from __future__ import annotations

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Prometheus metrics of one app, in a registry of its own (several apps can share a process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("glue_serve_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=r)
        self.latency = Histogram("glue_serve_request_latency_seconds", "Time to answer, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("glue_serve_errors", "Failed predictions by model and error code",
                              ["model", "code"], registry=r)
        self.predictions = Counter("glue_serve_predictions", "Rows scored, by model and arm",
                                   ["model", "arm"], registry=r)
        self.flagged = Counter("glue_serve_flagged", "Rows of a binary model answered with decision flag",
                               ["model"], registry=r)
        self.model_version = Gauge("glue_serve_model_version", "Registry version of the served model",
                                   ["model", "alias"], registry=r)
        self.reloads = Counter("glue_serve_model_reloads", "Model loads after an alias moved",
                               ["model", "alias", "result"], registry=r)
        self.ready = Gauge("glue_serve_ready", "1 when the model's champion and the feature store are loaded",
                           ["model"], registry=r)
        self.feature_age = Gauge("glue_serve_feature_age_seconds",
                                 "Age of the oldest online feature value in a model's last request",
                                 ["model", "view"], registry=r)
        self.log_dropped = Counter("glue_serve_prediction_log_dropped",
                                   "Prediction log lines dropped because the writer fell behind",
                                   registry=r)
        self.shadow_dropped = Counter("glue_serve_shadow_dropped",
                                      "Shadow scorings skipped because the shadow worker fell behind",
                                      ["model"], registry=r)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
