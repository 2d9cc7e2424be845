#!/usr/bin/env python3
"""Runs a real function binary behind a loopback stand-in of the Lambda Runtime API, the way
Lambda's `provided.al2023` runtime runs it: no cargo-lambda, no Docker.

    invoke.py --binary target/debug/upsert --event events/kinesis-sensors.json [--times 2]
    invoke.py --binary target/release/loader --cold-start 20      median exec → first /next poll
    invoke.py --report target/release                             cold start and size of all three
    invoke.py ... --local-stack http://127.0.0.1:8787             fill in the local stack's configuration
                                                                  (what `make invoke` does)

The binary gets AWS_LAMBDA_RUNTIME_API pointing here plus the variables Lambda sets
(AWS_LAMBDA_FUNCTION_NAME, _VERSION, _MEMORY_SIZE, log group/stream, _HANDLER), on top of this
process's environment (the function's own configuration: export it, or use `make invoke`).
Served, as https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html documents them:

    GET  /2018-06-01/runtime/invocation/next           the event, with Lambda-Runtime-Aws-Request-Id,
                                                        -Deadline-Ms, -Invoked-Function-Arn, -Trace-Id
    POST /2018-06-01/runtime/invocation/{id}/response  the function's result
    POST /2018-06-01/runtime/invocation/{id}/error     an invocation error
    POST /2018-06-01/runtime/init/error                an error before the first /next

Prints one JSON line per invocation on stdout: {"request_id", "response"} or {"request_id",
"error"}, or {"init_error"}; the function's log lines go to stderr as they come. Exits 0 when
every invocation answered a response, 1 on an error, an init error, or a process that died.
`--event` takes several files: they are served in turn to one process (warm invocations).

Each invocation's line also carries what Lambda would bill [BILL]:
  "duration_ms"  from the moment /next hands the event out to the /response or /error post;
  "billed_ms"    that duration rounded up to the next whole millisecond [PRICING], plus, on the
                 first invocation of a process, its init: for an OS-only (`provided.al2023`)
                 runtime the INIT phase (exec until the first /next poll) is billed [INIT];
  "init_ms"      that init (first invocation only).

[PRICING] https://aws.amazon.com/lambda/pricing/ - "Duration is calculated from the time your code
          begins executing until it returns or otherwise terminates, rounded up to the nearest 1 ms".
[BILL]    https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html - the invocation starts
          when /next returns the event and ends with the runtime's /response or /error post.
[INIT]    https://aws.amazon.com/blogs/compute/aws-lambda-standardizes-billing-for-init-phase/ -
          custom runtimes (and container images) already had the INIT phase billed; since
          1 August 2025 every configuration does.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
ARN = "arn:aws:lambda:{region}:123456789012:function:{name}"


class RuntimeApi:
    def __init__(self, events: list[bytes], function_name: str, timeout_s: float):
        self.events: queue.Queue[bytes] = queue.Queue()
        for e in events:
            self.events.put(e)
        self.function_name = function_name
        self.timeout_s = timeout_s
        self.results: queue.Queue[dict] = queue.Queue()
        self.first_poll = threading.Event()
        self.first_poll_at: float | None = None
        self.started_at = time.monotonic()
        # exec until the first /next poll; billed once, with the first invocation [INIT]
        self.init_ms: float | None = None
        self.stopping = threading.Event()
        self.log_tail: collections.deque[str] = collections.deque(maxlen=20)
        # request id -> monotonic time /next handed the event out (the billed duration's start)
        self.handed_out: dict[str, float] = {}

    def timing(self, request_id: str) -> dict:
        """The invocation's duration as Lambda bills it [BILL][PRICING]; the process's init [INIT]
        is added to the first invocation's."""
        started = self.handed_out.pop(request_id, None)
        if started is None:
            return {}
        duration_ms = (time.monotonic() - started) * 1000
        timing = {"duration_ms": round(duration_ms, 3)}
        if self.init_ms is not None:
            timing["init_ms"] = round(self.init_ms, 3)
            duration_ms += self.init_ms
            self.init_ms = None
        timing["billed_ms"] = math.ceil(duration_ms)
        return timing

    def handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self):  # noqa: N802
                if self.path != f"{PREFIX}/invocation/next":
                    return self._send(404, b'{"errorMessage":"not found"}')
                if not api.first_poll.is_set():
                    api.first_poll_at = time.monotonic()
                    api.init_ms = (api.first_poll_at - api.started_at) * 1000
                    api.first_poll.set()
                while True:
                    try:
                        event = api.events.get(timeout=0.2)
                        break
                    except queue.Empty:
                        if api.stopping.is_set():
                            # The process is being stopped: hold the poll until it is.
                            time.sleep(3600)
                request_id = str(uuid.uuid4())
                api.handed_out[request_id] = time.monotonic()
                deadline_ms = int((time.time() + api.timeout_s) * 1000)
                region = os.environ.get("AWS_REGION", "us-east-1")
                self._send(200, event, {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": ARN.format(region=region, name=api.function_name),
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                })

            def do_POST(self):  # noqa: N802
                body = self._body()
                parts = self.path[len(PREFIX):].strip("/").split("/")
                try:
                    doc = json.loads(body) if body else None
                except json.JSONDecodeError:
                    doc = body.decode("utf-8", "replace")
                if parts == ["init", "error"]:
                    api.results.put({"init_error": doc, "error_type": self.headers.get("Lambda-Runtime-Function-Error-Type")})
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    key = "response" if parts[2] == "response" else "error"
                    api.results.put({"request_id": parts[1], key: doc, **api.timing(parts[1])})
                else:
                    return self._send(404, b'{"errorMessage":"not found"}')
                self._send(202, b'{"status":"OK"}')

        return Handler


def lambda_env(port: int, name: str) -> dict:
    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
        "_HANDLER": "bootstrap",
        "AWS_REGION": env.get("AWS_REGION", "us-east-1"),
    })
    return env


def start(binary: str, events: list[bytes], name: str, timeout_s: float):
    api = RuntimeApi(events, name, timeout_s)
    server = ThreadingHTTPServer(("127.0.0.1", 0), api.handler())
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = api.started_at = time.monotonic()
    proc = subprocess.Popen([binary], env=lambda_env(server.server_address[1], name), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    threading.Thread(target=forward_logs, args=(proc, api.log_tail), daemon=True).start()
    return api, server, proc, started


def forward_logs(proc: subprocess.Popen, tail: collections.deque) -> None:
    """The function's log lines to stderr as they come; the last ones kept for an init error."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        tail.append(line)
        print(line, file=sys.stderr, flush=True)


def stop(api: RuntimeApi, server: ThreadingHTTPServer, proc: subprocess.Popen) -> None:
    api.stopping.set()
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
    server.shutdown()


def invoke(binary: str, events: list[bytes], name: str, timeout_s: float) -> int:
    api, server, proc, _ = start(binary, events, name, timeout_s)
    failed = False
    try:
        for _ in events:
            result = None
            deadline = time.monotonic() + timeout_s + 5
            while result is None:
                try:
                    result = api.results.get(timeout=0.2)
                except queue.Empty:
                    if proc.poll() is not None:
                        time.sleep(0.1)  # the last log lines
                        result = {"init_error": f"the process exited with status {proc.returncode} before answering",
                                  "log_tail": list(api.log_tail)}
                    elif time.monotonic() > deadline:
                        result = {"error": f"no answer within {timeout_s} s"}
            print(json.dumps(result), flush=True)
            if "response" not in result:
                failed = True
                break
    finally:
        stop(api, server, proc)
    return 1 if failed else 0


def init_times(binary: str, runs: int, name: str) -> list[float] | None:
    """Milliseconds from exec to the first /next poll, per run; None when a run never polled."""
    times = []
    for _ in range(runs):
        api, server, proc, started = start(binary, [], name, 30)
        ok = api.first_poll.wait(10)
        at = api.first_poll_at
        stop(api, server, proc)
        if not ok or at is None:
            return None
        times.append((at - started) * 1000)
    return times


def cold_start(binary: str, runs: int, name: str) -> int:
    times = init_times(binary, runs, name)
    if times is None:
        print(json.dumps({"error": "no /next poll within 10 s"}))
        return 1
    print(json.dumps({"binary": binary, "runs": runs, "median_ms": round(statistics.median(times), 2),
                      "min_ms": round(min(times), 2), "max_ms": round(max(times), 2)}))
    return 0


# What each function needs on the local stack (`make local-up`, `make bootstrap`), applied only
# where the caller's environment does not say otherwise.
LOCAL_DEFAULTS = {
    "orchestrator": {"RAW_BUCKET": "raw-zone", "TABLE": "sensor_readings"},
    "upsert": {
        "TABLE": "sensor_readings",
        "ERROR_BUCKET": "raw-zone",
        "UPSERT_TABLES": json.dumps({"sensor_readings": {"table": "SENSOR_READINGS", "keys": ["SENSORID"], "columns": [
            {"name": "SENSORID", "path": "/sensorId", "type": "NUMBER"},
            {"name": "CURRENTTEMPERATURE", "path": "/currentTemperature", "type": "FLOAT"},
            {"name": "STATUS", "path": "/status", "type": "TEXT"}]}}),
    },
    "loader": {"RAW_BUCKET": "raw-zone", "RAW_PREFIX": "raw"},
}


def defaults_for(name: str, snowflake_url: str) -> dict:
    defaults = dict(LOCAL_DEFAULTS.get(name, {}))
    if name != "orchestrator":
        defaults.update({"SNOWFLAKE_ACCOUNT": "localtest", "SNOWFLAKE_URL": snowflake_url, "SNOWFLAKE_AUTH": "pat",
                         "SNOWFLAKE_TOKEN": "local-dev-token", "SNOWFLAKE_DATABASE": "INGEST",
                         "SNOWFLAKE_SCHEMA": "RAW"})
    return defaults


def local_stack(name: str, snowflake_url: str) -> None:
    env = os.environ
    for k, v in defaults_for(name, snowflake_url).items():
        env.setdefault(k, v)
    endpoint = env.get("AWS_ENDPOINT_URL", "")
    bucket = env.get("RAW_BUCKET") or env.get("ERROR_BUCKET")
    if bucket and endpoint.startswith(("http://127.", "http://localhost")):
        import boto3  # only here: the stand-in itself needs nothing beyond the standard library

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=env.get("AWS_REGION", "us-east-1"))
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception:  # noqa: BLE001 - missing: make it
            s3.create_bucket(Bucket=bucket)


def report(directory: str, runs: int) -> int:
    """Init as Lambda measures it: exec until the runtime asks for its first event, with a valid
    configuration (nothing in init may need the network: the services are not running)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    print(f"{'function':<13} {'size MB':>8} {'init ms (median of ' + str(runs) + ')':>24}")
    for name in ("orchestrator", "upsert", "loader"):
        path = os.path.join(directory, name)
        saved = dict(os.environ)
        os.environ.update(defaults_for(name, "http://127.0.0.1:9"))
        times = init_times(path, runs, name)
        os.environ.clear()
        os.environ.update(saved)
        if times is None:
            print(f"{name}: no /next poll within 10 s")
            return 1
        size = os.path.getsize(path) / 1e6
        print(f"{name:<13} {size:>8.1f} {statistics.median(times):>24.1f}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary")
    p.add_argument("--event", nargs="+", help="JSON files; the events served, in turn, to one process")
    p.add_argument("--times", type=int, default=1, help="serve the events this many times to one process")
    p.add_argument("--function-name", default=None)
    p.add_argument("--timeout", type=float, default=60, help="seconds until each invocation's deadline")
    p.add_argument("--cold-start", type=int, default=0, metavar="RUNS")
    p.add_argument("--local-stack", metavar="SNOWFLAKE_URL", help="fill in the local stack's configuration")
    p.add_argument("--report", metavar="DIR", help="cold start and size of the three binaries in DIR")
    a = p.parse_args()
    if a.report:
        return report(a.report, a.cold_start or 20)
    if not a.binary:
        p.error("--binary is required (or --report)")
    name = a.function_name or os.path.basename(a.binary)
    if a.local_stack:
        local_stack(name, a.local_stack)
    if a.cold_start:
        return cold_start(a.binary, a.cold_start, name)
    if not a.event:
        p.error("--event is required (or --cold-start)")
    events = []
    for path in a.event:
        with open(path, "rb") as f:
            events.append(f.read())
        json.loads(events[-1])  # a clear error for a file that is not JSON
    return invoke(a.binary, events * a.times, name, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
