"""The search keeps the relevance recorded for the judged queries (issue 6, must-show 1).

The demo corpus (101 State Council policies, 2,816 answered messages) is seeded into a fresh suite
once for this module and indexed through the search consumer, as ``bench/search_relevance.py``
does (the same code: ``search.relevance.evaluate``). The judged queries and the floors live in
``search/relevance/queries.json``; when the ranking changes on purpose, re-record the floors with
``python -m bench.search_relevance --record``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from search.relevance.evaluate import (
    DemoIndex,
    Evaluation,
    RelevanceSet,
    below_floors,
    build_demo_index,
    engine_ranker,
    evaluate,
    load_set,
    ndcg_at,
    reciprocal_rank,
)


@pytest.fixture(scope="module")
def relevance_set() -> RelevanceSet:
    return load_set()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoIndex]:
    # INFO, as the other tests' settings: building the suite configures this process's logging.
    index = build_demo_index(tmp_path_factory.mktemp("relevance"), log_level="INFO")
    yield index
    index.close()


@pytest.fixture(scope="module")
def ranked(demo: DemoIndex, relevance_set: RelevanceSet) -> Evaluation:
    return evaluate("engine", engine_ranker(demo.engine, demo.alias), relevance_set, demo.keys)


def _worst(evaluation: Evaluation, count: int = 8) -> str:
    scores = sorted(evaluation.scores, key=lambda score: score.ndcg)[:count]
    return "; ".join(f"{score.query.id} {score.query.text} nDCG {score.ndcg:.2f}" for score in scores)


def test_the_metrics_match_hand_computed_values() -> None:
    judged = {"a": 2, "b": 1, "c": 1}
    # Ideal order a, b, c: 3/log2(2) + 1/log2(3) + 1/log2(4) = 3 + 0.6309 + 0.5.
    assert ndcg_at(["a", "b", "c"], judged) == pytest.approx(1.0)
    assert ndcg_at(["x", "a"], judged) == pytest.approx((3 / 1.5849625) / (3 + 0.6309298 + 0.5), rel=1e-6)
    assert ndcg_at(["x", "y"], judged) == 0.0
    assert ndcg_at(["x"] * 10 + ["a"], judged) == 0.0  # only the first 10 count
    assert reciprocal_rank(["x", "y", "b"], judged) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x"] * 10 + ["a"], judged) == 0.0


def test_the_judged_set_names_documents_of_the_demo_corpus(demo: DemoIndex, relevance_set: RelevanceSet) -> None:
    assert len(relevance_set.queries) >= 40
    assert all(query.judgments for query in relevance_set.queries)
    assert len(demo.documents) == 101 + 2816
    assert demo.check(relevance_set) == []


def test_ranking_keeps_the_recorded_ndcg_and_mrr(ranked: Evaluation, relevance_set: RelevanceSet) -> None:
    floors = relevance_set.floors
    assert floors is not None, "queries.json has no recorded figures: run python -m bench.search_relevance --record"
    problems = below_floors(ranked, floors)
    assert not problems, f"{'; '.join(problems)}. Lowest queries: {_worst(ranked)}"


def test_relevance_ranking_beats_listing_the_matches_newest_first(
    demo: DemoIndex, relevance_set: RelevanceSet, ranked: Evaluation
) -> None:
    by_date = evaluate("by date", engine_ranker(demo.engine, demo.alias, sort="date"), relevance_set, demo.keys)
    assert ranked.ndcg_at_10 > by_date.ndcg_at_10 + 0.05
    assert ranked.mrr > by_date.mrr
