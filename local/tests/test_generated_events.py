"""Events that AWS's own tooling generates (`sam local generate-event`), committed under
events/generated/ so the Rust handlers' tests can feed them to the decoders.

This test regenerates every file with the installed SAM CLI (offline, no credentials) and
compares it with the committed one structurally (same keys and value types everywhere, and the
values the pipeline reads), so a SAM CLI upgrade that changes the events' shape shows up here.

Regenerate the committed files after changing EVENTS (or upgrading aws-sam-cli):
    .venv/bin/python local/tests/test_generated_events.py --write
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import sys
from urllib.parse import unquote

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "events" / "generated"

# What the orchestrator writes for the record of kinesis-get-records.json with TABLE=sensor_readings
# and PARTITION_FIELD=/sensorId (arrival 1428537600 = 2015-04-09T00 UTC, shard 0, one record).
SEQUENCE = "49545115243490985018280067714973144582180062593244200961"
SENSOR_PAYLOAD = '{"sensorId": 6, "currentTemperature": 64, "status": "OK"}'
BUCKET = "kinesis-snowflake-raw-123456789012"
OBJECT_KEY = (
    f"raw/sensor_readings/2015/04/09/00/sensorId=6/shardId-000000000000-{SEQUENCE}-{SEQUENCE}.ndjson.gz"
)
QUEUE = "kinesis-snowflake-notifications"


def _sqs_body(event_file: str) -> str:
    """`--body` is pasted unescaped into a JSON string ("body": "{{{body}}}"), so a JSON body must
    be passed already escaped; the event's `body` is then the JSON text itself."""
    compact = json.dumps(json.loads((OUT / event_file).read_text()), separators=(",", ":"))
    return json.dumps(compact)[1:-1]


# file name → (generate-event arguments, or a function of the already generated files)
EVENTS: dict[str, list[str] | callable] = {
    # one sensor record, as Lambda delivers a Kinesis batch to the orchestrator and upsert
    "kinesis-get-records.json": [
        "kinesis", "get-records", "--partition-key", "6", "--sequence", SEQUENCE,
        "--data", SENSOR_PAYLOAD,
    ],
    # the tool's defaults: the payload "Hello, this is a test 123." is not JSON (quarantined), the
    # eventSourceARN "arn:aws:kinesis:EXAMPLE" names no stream
    "kinesis-get-records-default.json": ["kinesis", "get-records"],
    # S3 → Lambda directly, for the object the orchestrator writes for kinesis-get-records.json;
    # the tool URL-encodes the key (= → %3D), as S3 does
    "s3-put.json": ["s3", "put", "--bucket", BUCKET, "--key", OBJECT_KEY],
    # the tool's defaults: bucket example-bucket, key test/key (outside the raw zone: not loaded)
    "s3-put-default.json": ["s3", "put"],
    # S3 → SQS → Lambda: the loader's trigger, wrapping s3-put.json
    "sqs-receive-message.json": lambda: [
        "sqs", "receive-message", "--queue-name", QUEUE, "--body", _sqs_body("s3-put.json"),
    ],
    # the tool's defaults: body "Hello from SQS!" (not a notification)
    "sqs-receive-message-default.json": ["sqs", "receive-message"],
}


def sam_binary() -> str:
    sam = os.environ.get("SAM") or str(ROOT / ".venv-deploy" / "bin" / "sam")
    if not pathlib.Path(sam).exists():
        pytest.fail(f"SAM CLI not found at {sam}: run `make venv-deploy` (or set SAM=/path/to/sam)")
    return sam


def generate(name: str) -> dict:
    args = EVENTS[name]
    if callable(args):
        args = args()
    r = subprocess.run(
        [sam_binary(), "local", "generate-event", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    assert r.returncode == 0, f"sam local generate-event {' '.join(args)} failed:\n{r.stderr}"
    return json.loads(r.stdout)


def shape(value):
    """The structure of a JSON value: keys and value types, not the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def committed(name: str) -> dict:
    path = OUT / name
    assert path.exists(), f"{path} missing: run `.venv/bin/python {pathlib.Path(__file__).relative_to(ROOT)} --write`"
    return json.loads(path.read_text())


# ------------------------------------------------------------------ the tool still produces them

@pytest.mark.parametrize("name", sorted(EVENTS))
def test_regenerated_event_matches_the_committed_file(name):
    fresh, saved = generate(name), committed(name)
    assert shape(fresh) == shape(saved), f"{name}: the structure changed; regenerate with --write"
    # the fields the handlers read are the same values
    for f, s in zip(fresh["Records"], saved["Records"]):
        if "kinesis" in s:
            for k in ("data", "sequenceNumber", "partitionKey", "approximateArrivalTimestamp"):
                assert f["kinesis"][k] == s["kinesis"][k], (name, k)
            for k in ("eventID", "eventSourceARN", "eventSource"):
                assert f[k] == s[k], (name, k)
        elif "s3" in s:
            assert f["s3"]["bucket"]["name"] == s["s3"]["bucket"]["name"]
            assert f["s3"]["object"]["key"] == s["s3"]["object"]["key"]
            assert f["eventName"] == s["eventName"]
        else:
            for k in ("messageId", "body", "eventSource", "eventSourceARN"):
                assert f[k] == s[k], (name, k)


def test_every_committed_file_is_generated():
    assert sorted(p.name for p in OUT.glob("*.json")) == sorted(EVENTS)


# ------------------------------------------------------------------ what the handlers will see

def test_kinesis_event_carries_the_sensor_record():
    (rec,) = committed("kinesis-get-records.json")["Records"]
    assert rec["eventSource"] == "aws:kinesis"
    assert json.loads(base64.b64decode(rec["kinesis"]["data"])) == json.loads(SENSOR_PAYLOAD)
    assert rec["kinesis"]["sequenceNumber"] == SEQUENCE
    assert rec["eventID"] == f"shardId-000000000000:{SEQUENCE}"
    assert rec["kinesis"]["approximateArrivalTimestamp"] == 1428537600.0


def test_default_kinesis_event_is_not_json():
    (rec,) = committed("kinesis-get-records-default.json")["Records"]
    data = base64.b64decode(rec["kinesis"]["data"])
    assert data == b"Hello, this is a test 123."
    with pytest.raises(ValueError):
        json.loads(data)


def test_s3_event_key_is_url_encoded():
    (rec,) = committed("s3-put.json")["Records"]
    assert rec["eventName"] == "ObjectCreated:Put"
    assert rec["s3"]["bucket"]["name"] == BUCKET
    raw_key = rec["s3"]["object"]["key"]
    assert "sensorId%3D6" in raw_key
    assert unquote(raw_key.replace("+", " ")) == OBJECT_KEY


def test_sqs_event_wraps_the_s3_event():
    (msg,) = committed("sqs-receive-message.json")["Records"]
    assert msg["eventSource"] == "aws:sqs"
    assert msg["eventSourceARN"].endswith(f":{QUEUE}")
    assert json.loads(msg["body"]) == committed("s3-put.json")


def test_default_sqs_event_body_is_not_a_notification():
    (msg,) = committed("sqs-receive-message-default.json")["Records"]
    assert msg["body"] == "Hello from SQS!"


def write_all() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in EVENTS:  # in order: sqs-receive-message.json reads s3-put.json
        event = generate(name)
        (OUT / name).write_text(json.dumps(event, indent=2) + "\n")
        print(f"wrote {(OUT / name).relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {sys.argv[0]} --write")
    write_all()
