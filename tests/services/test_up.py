"""`gongkai up` on the single-machine defaults: ready, Chinese, searchable, and gone after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from support.env import subprocess_env
from support.servers import free_port

pytestmark = pytest.mark.slow


def processes_using(data_dir: Path) -> list[int]:
    """Every live process whose environment names this data directory."""
    marker = f"GONGKAI_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        assert process.poll() is None, "gongkai up exited early"
        if get(f"{base}/readyz")[0] == 200:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"/readyz not 200 within {timeout}s")


def run_up(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = subprocess_env(data_dir, GONGKAI_PORT=str(port), WEB_CONCURRENCY="1", WORKER_CONCURRENCY="1")
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def interrupt(process: subprocess.Popen[bytes], data_dir: Path) -> None:
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while processes_using(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_using(data_dir) == [], "processes left behind after Ctrl-C"


def test_up_runs_the_suite_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"

    first = run_up(data_dir, port, log)
    try:
        first_ready = wait_ready(base, first, 240)
        status, body = get(f"{base}/readyz")
        assert set(json.loads(body)["services"]) == {"identity", "interpret", "consult", "search", "press"}
        status, home = get(f"{base}/")
        assert status == 200
        assert all(label in home for label in ("政策文件", "政策解读", "咨询回复", "搜索"))

        # The seeded policies flow through the outbox and the worker into search.
        query = urllib.parse.urlencode({"q": "煤矿", "type": "policy"})
        deadline = time.monotonic() + 120
        total = 0
        while time.monotonic() < deadline and total == 0:
            status, body = get(f"{base}/api/search?{query}")
            total = json.loads(body)["total"] if status == 200 else 0
            time.sleep(1)
        assert total > 0, "seeded policies never became searchable"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "seeded demo data" not in log.read_text():
            time.sleep(0.5)
    finally:
        interrupt(first, data_dir)

    second = run_up(data_dir, port, log)
    try:
        second_ready = wait_ready(base, second, 30)
        assert log.read_text().count("seeded demo data") == 1  # seeded on the first run only
        status, body = get(f"{base}/api/interpret/policies")
        assert json.loads(body)["total"] > 0  # the data of the first run is reused
    finally:
        interrupt(second, data_dir)
    print(f"\ngongkai up: first ready in {first_ready:.1f}s, second in {second_ready:.1f}s")
