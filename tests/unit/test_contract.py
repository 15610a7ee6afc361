"""The registry contract keeps its values: they are the format of every registry already written."""

from __future__ import annotations

from glue import contract


def test_values_are_the_registry_format() -> None:
    assert (contract.CHAMPION, contract.CHALLENGER) == ("champion", "challenger")
    assert contract.FEATURE_COLUMNS == "glue.feature_columns"
    assert contract.FEATURE_SERVICE == "glue.feast_feature_service"
    assert contract.TRAIN_RUN_ID == "glue.train_run_id"
    assert (contract.VALIDATION_START, contract.VALIDATION_END) == ("glue.validation_start",
                                                                    "glue.validation_end")
    assert contract.gate_tag("decision") == "glue.gate.decision"
    assert contract.MONITOR_LAST_CHECK == "glue.monitor.last_check"
    assert contract.REFERENCE_ARTIFACT == "monitoring/reference.parquet"
    assert contract.VALIDATION_ARTIFACT == "monitoring/validation.parquet"
    assert (contract.MODEL_ARTIFACT, contract.FEAST_FEATURES_FILE) == ("model", "feast_features.json")


def test_no_two_constants_share_a_tag_key() -> None:
    keys = [v for k, v in vars(contract).items()
            if k.isupper() and isinstance(v, str) and v.startswith(contract.TAG_PREFIX)]
    assert len(keys) > 20 and len(keys) == len(set(keys))


def test_feature_columns_round_trip() -> None:
    columns = ["customer_daily__txn_count_1d", "request_features__amount_log"]
    tags = {contract.FEATURE_COLUMNS: contract.join_tag(columns)}
    assert tags[contract.FEATURE_COLUMNS] == "customer_daily__txn_count_1d,request_features__amount_log"
    assert contract.feature_columns(tags) == columns


def test_an_untagged_version_has_no_columns() -> None:
    assert contract.feature_columns({}) == []
    assert contract.feature_columns({contract.FEATURE_COLUMNS: ""}) == []
    assert contract.feature_refs({contract.FEATURE_REFS: "v:a,v:b"}) == ["v:a", "v:b"]
