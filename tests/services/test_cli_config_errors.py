"""Bad configuration stops every command at start with one readable line naming the setting."""

import subprocess
import sys
from pathlib import Path

import pytest

from support.env import subprocess_env
from support.servers import free_port


def run_gongkai(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def assert_one_line_naming(result: subprocess.CompletedProcess[str], setting: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["up", "migrate", "worker"])
def test_unreachable_database_url(tmp_path: Path, command: str) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing"
    result = run_gongkai(subprocess_env(tmp_path, DATABASE_URL=url), command)
    assert_one_line_naming(result, "DATABASE_URL")
    assert "cannot connect" in result.stderr


@pytest.mark.parametrize("command", ["up", "migrate", "seed-demo"])
def test_malformed_search_url(tmp_path: Path, command: str) -> None:
    result = run_gongkai(subprocess_env(tmp_path, SEARCH_URL="elastic:9200"), command)
    assert_one_line_naming(result, "SEARCH_URL")
