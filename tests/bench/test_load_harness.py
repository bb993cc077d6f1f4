"""The load harness: wrk against the bare Flask app for 2 seconds, its figures parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import LoadError, Request, bare_flask, parse_wrk_output, run_wrk

pytestmark = pytest.mark.slow


def test_a_two_second_load_against_the_bare_app_is_measured(tmp_path: Path) -> None:
    varied = [Request("GET", "/"), Request("GET", "/api"), Request("POST", "/api", {"标题": "公积金提取", "n": 1}),
              Request("GET", "/missing")]
    with bare_flask("production", tmp_path) as url:
        result = run_wrk(url, varied, connections=4, seconds=2)
    assert result.requests > 50
    assert 1.5 <= result.seconds <= 4
    assert result.per_second == pytest.approx(result.requests / result.seconds)
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    # Every kind of request was sent and answered as the bare app answers it.
    assert result.count("200") > 0 and result.count("201") > 0 and result.count("404") > 0
    assert result.answered == result.requests
    assert result.failures == 0


def test_wrk_output_without_figures_is_a_readable_error() -> None:
    with pytest.raises(LoadError, match="wrk printed no figures"):
        parse_wrk_output("Running 2s test @ http://127.0.0.1:1\n")


def test_request_paths_must_be_encoded() -> None:
    with pytest.raises(ValueError, match="URL-encoded"):
        Request("GET", "/api/search?q=公积金 提取").line()
