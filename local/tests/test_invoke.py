"""The three real function binaries through the Runtime API stand-in (local/tools/invoke.py) against
the local stack: the JSON Lambda gets back, warm invocations on one process, and init errors.

Needs target/debug/{orchestrator,upsert,loader,bootstrap} (`make test` builds them).
Run: .venv/bin/python -m pytest local/tests/test_invoke.py -q
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from test_snowflake_service import (  # noqa: E402,F401 - fixtures are used by name
    Client,
    _reset,
    client,
    spec,
    stack,
)

BIN = REPO / "target" / "debug"
SENSORS = json.dumps({"sensor_readings": {"table": "SENSOR_READINGS", "keys": ["SENSORID"], "columns": [
    {"name": "SENSORID", "path": "/sensorId", "type": "NUMBER"},
    {"name": "CURRENTTEMPERATURE", "path": "/currentTemperature", "type": "FLOAT"},
    {"name": "STATUS", "path": "/status", "type": "TEXT"}]}})


def binary(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path} is missing: cargo build --locked -p orchestrator -p upsert -p loader -p tools --bin bootstrap"
    return str(path)


@pytest.fixture(scope="module")
def aws_env(stack) -> dict:
    moto = stack[1]
    env = {"PATH": os.environ.get("PATH", ""), "AWS_ENDPOINT_URL": moto, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "RUST_LOG": "info"}
    return env


@pytest.fixture(scope="module")
def world(stack, aws_env) -> dict:
    """A bucket and a bootstrapped database (sql/, profile local) for the three functions."""
    bucket = f"invoke-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket=bucket)
    database = f"INVOKE_{uuid.uuid4().hex[:8].upper()}"
    snowflake = {"SNOWFLAKE_ACCOUNT": "localtest", "SNOWFLAKE_URL": stack[0], "SNOWFLAKE_AUTH": "pat",
                 "SNOWFLAKE_TOKEN": "local-dev-token", "SNOWFLAKE_DATABASE": database, "SNOWFLAKE_SCHEMA": "RAW"}
    out = subprocess.run([binary("bootstrap"), "--profile", "local", "--sql-dir", str(REPO / "sql")],
                         env={**aws_env, **snowflake, "STAGE_URL": f"s3://{bucket}/raw/"}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return {"bucket": bucket, "s3": s3, "snowflake": snowflake}


def invoke(name: str, event: dict | Path | list[Path], env: dict, times: int = 1) -> tuple[int, list[dict], str]:
    if isinstance(event, dict):
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"event-{uuid.uuid4().hex}.json"
        path.write_text(json.dumps(event))
        paths = [str(path)]
    else:
        paths = [str(p) for p in (event if isinstance(event, list) else [event])]
    out = subprocess.run([sys.executable, str(REPO / "local/tools/invoke.py"), "--binary", binary(name), "--event",
                          *paths, "--times", str(times), "--timeout", "60"],
                         env=env, capture_output=True, text=True, timeout=180)
    return out.returncode, [json.loads(line) for line in out.stdout.splitlines() if line.strip()], out.stderr


def emf_documents(logs: str) -> list[dict]:
    """The EMF documents among the function's log lines, each checked against what the
    specification requires (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
    `_aws.Timestamp` in ms, directives with a Namespace, dimension sets naming string members and
    metrics naming numeric members with a Unit."""
    docs = []
    for line in logs.splitlines():
        if '"_aws"' not in line:
            continue
        doc = json.loads(line)
        aws = doc["_aws"]
        assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000
        for d in aws["CloudWatchMetrics"]:
            assert d["Namespace"] == "KinesisSnowflake"
            for dims in d["Dimensions"]:
                assert 1 <= len(dims) <= 30 and all(isinstance(doc[k], str) for k in dims)
            assert 1 <= len(d["Metrics"]) <= 100
            for m in d["Metrics"]:
                assert isinstance(doc[m["Name"]], (int, float)) and m["Unit"] in ("Count", "Bytes", "Milliseconds")
        docs.append(doc)
    return docs


def keys(world: dict) -> list[str]:
    return sorted(o["Key"] for o in world["s3"].list_objects_v2(Bucket=world["bucket"]).get("Contents", []))


def test_orchestrator_quarantines_bad_records_and_a_warm_second_invocation_writes_the_same_objects(aws_env, world):
    env = {**aws_env, "RAW_BUCKET": world["bucket"], "TABLE": "sensor_readings"}
    code, results, logs = invoke("orchestrator", REPO / "events/kinesis-bad-records.json", env, times=2)
    assert code == 0, logs
    assert [r["response"] for r in results] == [{"batchItemFailures": []}] * 2
    assert logs.count('"message":"orchestrator batch"') == 2  # one process, two invocations
    written = keys(world)
    assert len([k for k in written if k.startswith("raw/sensor_readings/")]) == 1, written
    assert len([k for k in written if k.startswith("errors/orchestrator/")]) == 1, written
    assert '"records":6,"quarantined":4' in logs
    docs = emf_documents(logs)
    assert len(docs) == 2  # one per invocation
    assert [(d["Function"], d["Table"], d["Records"], d["RecordsInObjects"], d["Quarantined"],
             d["ReconciliationMismatches"]) for d in docs] == [("orchestrator", "sensor_readings", 6, 2, 4, 0)] * 2


def test_upsert_lands_the_sample_and_answers_no_failures(aws_env, world, client):
    env = {**aws_env, **world["snowflake"], "TABLE": "sensor_readings", "UPSERT_TABLES": SENSORS,
           "ERROR_BUCKET": world["bucket"]}
    code, results, logs = invoke("upsert", REPO / "events/kinesis-sensors.json", env, times=2)
    assert code == 0, logs
    assert [r["response"] for r in results] == [{"batchItemFailures": []}] * 2
    # The replay sends the same statement with the same request id, and Snowflake answers it with
    # the first execution's result: the second document reports what that one did.
    docs = emf_documents(logs)
    assert [(d["Function"], d["Table"], d["Records"], d["DuplicatesCollapsed"], d["RowsInserted"])
            for d in docs] == [("upsert", "sensor_readings", 6, 3, 3)] * 2
    db = {"database": world["snowflake"]["SNOWFLAKE_DATABASE"], "schema": "RAW"}
    rows = client.run("SELECT SENSORID, CURRENTTEMPERATURE, STATUS FROM SENSOR_READINGS ORDER BY SENSORID", **db)
    assert rows["data"] == [["6", "66.0", "OK"], ["7", "95.0", "FAIL"], ["8", "40.0", "OK"]]


def test_loader_loads_the_orchestrators_object_from_an_sqs_notification(aws_env, world, client):
    data = [k for k in keys(world) if k.startswith("raw/sensor_readings/")]
    assert data, "run after the orchestrator test"
    template = json.loads((REPO / "events/sqs-s3-notification.json").read_text())
    message = template["Records"][0]
    body = json.loads(message["body"])
    body["Records"][0]["s3"]["bucket"]["name"] = world["bucket"]
    body["Records"][0]["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{world['bucket']}"
    body["Records"][0]["s3"]["object"]["key"] = data[0]
    event = {"Records": [{**message, "body": json.dumps(body)}]}
    env = {**aws_env, **world["snowflake"], "RAW_BUCKET": world["bucket"], "RAW_PREFIX": "raw"}
    code, results, logs = invoke("loader", event, env)
    assert code == 0, logs
    assert results[0]["response"] == {"batchItemFailures": []}
    db = {"database": world["snowflake"]["SNOWFLAKE_DATABASE"], "schema": "RAW"}
    assert client.run("SELECT COUNT(*) FROM SENSOR_READINGS_RAW", **db)["data"] == [["2"]]
    [doc] = emf_documents(logs)
    assert (doc["Function"], doc["FilesLoaded"], doc["RowsLoaded"], doc["ReconciliationMismatches"]) == ("loader", 1, 2, 0)


@pytest.mark.parametrize("name, missing", [("orchestrator", "RAW_BUCKET"), ("upsert", "SNOWFLAKE_ACCOUNT"),
                                           ("loader", "RAW_BUCKET")])
def test_missing_configuration_is_an_init_error_naming_the_variable(aws_env, name, missing):
    code, results, logs = invoke(name, REPO / "events/kinesis-sensors.json", aws_env)
    assert code == 1
    assert results[0]["error_type"] == "Runtime.InitError"
    assert missing in results[0]["init_error"]["errorMessage"], results


def test_each_invocation_reports_the_duration_lambda_bills_and_the_first_its_init(aws_env, world):
    """`--event` with two files serves both to one process; each line carries the duration from /next
    handing the event out to the /response post, billed rounded up to the next ms, and the cold
    invocation also bills the process's init (exec until its first /next poll), as Lambda bills an
    OS-only runtime (invoke.py's docstring cites the pricing pages)."""
    env = {**aws_env, "RAW_BUCKET": world["bucket"], "TABLE": "sensor_readings"}
    events = [REPO / "events/kinesis-sensors.json", REPO / "events/kinesis-bad-records.json"]
    code, results, logs = invoke("orchestrator", events, env, times=2)
    assert code == 0, logs
    assert [r["response"] for r in results] == [{"batchItemFailures": []}] * 4
    first, *warm = results
    assert 0 < first["init_ms"] < 10_000 and first["duration_ms"] > 0
    assert first["billed_ms"] == math.ceil(first["init_ms"] + first["duration_ms"])
    for r in warm:
        assert "init_ms" not in r and r["duration_ms"] > 0
        assert r["billed_ms"] == math.ceil(r["duration_ms"])
    assert logs.count('"message":"orchestrator batch"') == 4  # one process, four invocations
