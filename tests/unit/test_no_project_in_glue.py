"""The library knows no project: no demo column, entity, label or model name appears in glue/.

DESIGN.md "A project is configuration, not code": everything the demo needs lives in its Feast
repo (feature_repo/), its params.yaml and its own code (feature_repo/transform.py, the generator).
"""

from __future__ import annotations

import re
from pathlib import Path

GLUE = Path(__file__).resolve().parents[2] / "glue"
# The demo's columns, entities, labels, feature services and registered model names.
DEMO_NAMES = ("customer_id", "merchant_id", "transaction_id", "is_fraud", "amount", "card_present",
              "merchant_category", "spend_next_7d", "fraud", "merchant", "customer", "fraud-detector",
              "customer-spend", "fraud_model_v1", "spend_model_v1", "customer_transactions", "merchant_risk",
              "transaction_labels", "transaction_request")
PATTERN = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(re.escape(n) for n in DEMO_NAMES)
                     + r")s?(?![A-Za-z0-9_])", re.IGNORECASE)


def test_no_demo_identifier_in_the_library() -> None:
    found = []
    for path in sorted(GLUE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in PATTERN.finditer(line):
                where = f"{path.relative_to(GLUE.parent)}:{number}"
                found.append(f"{where}: {match.group(0)!r} in {line.strip()}")
    assert not found, "demo names inside glue/:\n" + "\n".join(found)


def test_the_check_finds_a_demo_name() -> None:
    assert PATTERN.search("df['customer_id']") and PATTERN.search("Fraud scores")
    assert not PATTERN.search("customers_of_mine = 1")  # other words are fine
