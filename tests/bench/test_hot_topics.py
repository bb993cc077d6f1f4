"""bench.hot_topics at a tiny scale: the real recompute and incremental update, rows in the common shape."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import hot_topics
from bench.generate import DEFAULT_SOURCE, load_corpus
from services.press import topics

pytestmark = pytest.mark.slow


def test_the_keyword_cache_gives_the_words_ingest_would_store() -> None:
    corpus = load_corpus(DEFAULT_SOURCE)
    planned = hot_topics.plan_messages(corpus, 60, random.Random(1), datetime(2026, 1, 1, tzinfo=UTC),
                                       datetime(2026, 2, 1, tzinfo=UTC))
    cache = hot_topics.KeywordCache()
    for item in planned:
        cached = cache.keywords(item.title, item.sentences)
        real = topics.keywords_of(item.title, "".join(item.sentences))
        assert sorted(cached) == sorted(real)


def test_a_small_run_measures_recompute_and_incremental_updates(tmp_path: Path) -> None:
    results = tmp_path / "hot_topics.json"
    assert hot_topics.main(["--messages", "400", "--batch", "50", "--batches", "2", "--results", str(results)]) == 0
    document = json.loads(results.read_text(encoding="utf-8"))
    rows = {row["name"]: row for row in document["rows"]}
    recompute = rows["full recompute at 400 messages"]
    assert recompute["target"] == "<= 60 s" and recompute["value"] > 0
    incremental = rows["incremental update per 50 new consultations (median of 2)"]
    assert incremental["target"] == "<= 2 s" and incremental["value"] > 0
    assert [run["imported"] for run in document["incremental"]] == [50, 50]
    assert all(run["assigned"] == 50 for run in document["incremental"])
    assert document["topics"] > 0 and document["largest_topic"] >= 2
    assert document["baselines"]["dense_messages"] == 400


def test_plan_messages_are_real_texts_in_time_order() -> None:
    corpus = load_corpus(DEFAULT_SOURCE)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    planned = hot_topics.plan_messages(corpus, 200, random.Random(2), start, start + timedelta(days=30))
    titles = {message.title for message in corpus.messages}
    assert all(item.title in titles for item in planned)
    assert [item.received_at for item in planned] == sorted(item.received_at for item in planned)
    assert all(start <= item.received_at <= start + timedelta(days=30) for item in planned)
