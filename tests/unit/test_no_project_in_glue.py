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


# One adapter per tool: the only module of the library that imports it (type-checking imports aside).
ADAPTERS = {"feast": "glue/adapters/feast.py", "mlflow": "glue/adapters/mlflow.py",
            "dvc": "glue/adapters/dvc.py", "airflow": "glue/adapters/airflow.py",
            "great_expectations": "glue/adapters/great_expectations.py", "ray": "glue/adapters/ray.py",
            "evidently": "monitoring/reports.py"}


def test_each_tool_is_imported_only_by_its_adapter() -> None:
    import ast

    root = GLUE.parent
    found = []
    for path in sorted([*GLUE.rglob("*.py"), *(root / "monitoring").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for child in node.body
                       for n in ast.walk(child)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            absolute = isinstance(node, ast.ImportFrom) and node.module and not node.level
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if absolute else [])
            for name in names:
                tool = name.split(".")[0]
                rel = str(path.relative_to(root))
                if tool in ADAPTERS and ADAPTERS[tool] != rel:
                    found.append(f"{rel}:{node.lineno} imports {name} (its adapter is {ADAPTERS[tool]})")
    assert not found, "\n".join(found)
