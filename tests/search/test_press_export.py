"""The query counts the search service hands to the press office (``search.press_export``).

Searches are logged with search's own ``record_query`` at set moments; the counts per normalised
query in the current window and the window before are exact, at the window edges too, for exactly
the queries handed over (``limit``), and carry nothing but the (masked) query text and two counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from search.press_export import QueryTrend, recent_query_counts
from search.query import record_query, resume_query_log

from support.clock import Clock

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.fixture
def clock(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    resume_query_log()
    clock = Clock(NOW)
    monkeypatch.setattr("search.query.utcnow", clock)
    yield clock
    resume_query_log()


def searched(suite: dict[str, Flask], clock: Clock, text: str, at: datetime, times: int = 1, results: int = 3) -> None:
    clock.set(at)
    for _ in range(times):
        record_query(suite["search"], text, {}, results, 4)


def test_counts_per_normalised_query_in_the_current_and_previous_window(suite: dict[str, Flask],
                                                                         clock: Clock) -> None:
    searched(suite, clock, "公积金提取", NOW - timedelta(hours=1), times=3)
    searched(suite, clock, "  公积金提取 ", NOW - timedelta(hours=5))  # the same query once normalised
    searched(suite, clock, "公积金提取", NOW - timedelta(hours=30), times=2)  # previous window
    searched(suite, clock, "ＥＴＣ办理", NOW - timedelta(hours=2), times=2, results=0)  # NFKC, lower-cased
    searched(suite, clock, "etc办理", NOW - timedelta(hours=40), times=5)
    searched(suite, clock, "停车位收费", NOW - DAY)  # the current window's first instant
    searched(suite, clock, "停车位收费", NOW - DAY - timedelta(seconds=1), times=4)  # the previous window's last
    searched(suite, clock, "停车位收费", NOW - 2 * DAY)  # the previous window's first instant
    searched(suite, clock, "停车位收费", NOW - 2 * DAY - timedelta(seconds=1), times=7)  # too old
    searched(suite, clock, "只在上一窗口", NOW - timedelta(hours=36), times=9)  # not searched lately: left out
    searched(suite, clock, "以后的搜索", NOW + timedelta(minutes=1))  # after ``now``: not counted

    counts = recent_query_counts(suite["search"], DAY, now=NOW)

    assert (counts.window_start, counts.window_end, counts.window) == (NOW - DAY, NOW, DAY)
    assert counts.queries == [
        QueryTrend("公积金提取", 4, 2),
        QueryTrend("etc办理", 2, 5),
        QueryTrend("停车位收费", 1, 5),
    ]


def test_limit_hands_over_the_most_searched_with_exact_previous_counts(suite: dict[str, Flask],
                                                                       clock: Clock) -> None:
    searched(suite, clock, "医保报销", NOW - timedelta(hours=3), times=5)
    searched(suite, clock, "医保报销", NOW - timedelta(hours=30), times=2)
    searched(suite, clock, "学校招生", NOW - timedelta(hours=3), times=2)
    searched(suite, clock, "学校招生", NOW - timedelta(hours=30), times=8)  # the previous window's most searched

    assert recent_query_counts(suite["search"], DAY, now=NOW, limit=1).queries == [QueryTrend("医保报销", 5, 2)]
    assert recent_query_counts(suite["search"], timedelta(hours=6), now=NOW).queries == [
        QueryTrend("医保报销", 5, 0), QueryTrend("学校招生", 2, 0)]


def test_only_masked_query_text_and_counts_leave_the_search_service(suite: dict[str, Flask], clock: Clock) -> None:
    searched(suite, clock, "我的电话13800138000为什么查不到", NOW - timedelta(hours=1))

    [trend] = recent_query_counts(suite["search"], DAY, now=NOW).queries
    assert "13800138000" not in trend.query and "［已隐去：电话号码］" in trend.query
    assert [field.name for field in fields(QueryTrend)] == ["query", "current", "previous"]


def test_nothing_searched_and_bad_arguments(suite: dict[str, Flask], clock: Clock) -> None:
    assert recent_query_counts(suite["search"], DAY, now=NOW).queries == []
    with pytest.raises(ValueError, match="window"):
        recent_query_counts(suite["search"], timedelta(0), now=NOW)
    with pytest.raises(ValueError, match="limit"):
        recent_query_counts(suite["search"], DAY, now=NOW, limit=0)
