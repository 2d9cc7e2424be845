"""The repository stands alone: a copy of the tracked files, in a folder with no siblings, starts the
local stack and answers a statement. Fails when anything the stack runs reads outside the checkout
(as the OpenAPI description once did from a sibling folder).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV = Path(os.environ.get("VENV", REPO / ".venv"))


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_tracked_file_names_a_path_outside_the_checkout():
    outside = re.compile(r"\.\./" + "shared/|/" + "work/")
    offenders = []
    for rel in _tracked_files():
        if rel.startswith(("local/specs/", "target/")):
            continue
        try:
            text = (REPO / rel).read_text()
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [f"{rel}:{n}" for n, line in enumerate(text.splitlines(), 1) if outside.search(line)]
    assert offenders == [], f"paths outside the checkout: {offenders}"


@pytest.mark.skipif(not (VENV / "bin/python").exists(), reason="needs the project's .venv (make venv)")
def test_a_copy_with_no_siblings_starts_the_stack_and_runs_a_statement():
    with tempfile.TemporaryDirectory(prefix="standalone-") as tmp:
        clone = Path(tmp) / "clone"
        for rel in _tracked_files():
            dst = clone / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCAL_SF_")}
        env.update(
            MOTO_PORT=str(_free_port()), LOCAL_SF_PORT=str(_free_port()), VENV=str(VENV),
            RUN_DIR=str(clone / "local/.run"),
        )
        stack = str(clone / "local/stack.sh")
        up = subprocess.run([stack, "up"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        try:
            log = (clone / "local/.run/snowflake.log")
            assert up.returncode == 0, up.stderr + (log.read_text() if log.exists() else "")
            sys.path.insert(0, str(HERE))
            from test_snowflake_service import Client  # noqa: PLC0415
            from snowflake_service import Spec  # noqa: PLC0415

            client = Client(f"http://127.0.0.1:{env['LOCAL_SF_PORT']}",
                            Spec(clone / "local/specs/snowflake-sqlapi.yaml"))
            r = client.submit("SELECT 40 + 2 AS answer")
            assert r.status_code == 200, r.text
            assert r.json()["data"] == [["42"]]
            assert requests.get(f"http://127.0.0.1:{env['MOTO_PORT']}/moto-api/", timeout=5).ok
        finally:
            subprocess.run([stack, "down"], env=env, stdin=subprocess.DEVNULL, check=False, capture_output=True)
