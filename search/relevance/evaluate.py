"""Evaluate the search over the demo corpus against the judged queries of ``queries.json``.

Shared by ``bench/search_relevance.py`` (prints the figures) and ``tests/search/test_relevance.py``
(fails when they drop below the floors recorded in ``queries.json``).

The demo corpus is built the way the suite builds it: ``migrate`` and ``seed_demo`` into a fresh SQLite
data dir, then every outbox event the search service subscribes to is delivered, oldest first, to the
real consumer (``search.tasks.index_document``) in this process, as a worker would deliver it. The
services' publisher is switched off while seeding, so the events wait in the outbox (as when the broker is
down) instead of being written to a broker nobody reads.

Judged documents are named by stable keys, never by database ids (those depend on the order of inserts):

* ``policy:<title>``: a demo policy by its title (unique in the demo file once duplicates are dropped);
* ``answer:<tracking number>``: an answered message by the tracking number the import gives it
  (``ZX<day received>-<serial>``; deterministic for a fresh database, since rows are imported in the
  order received). Each judged answer also records its title, checked against the database, so a change
  in how numbers are given fails loudly instead of silently judging other documents.

Metrics, averaged over the queries: nDCG@10 with gains ``2**grade - 1`` (grade 2 = highly relevant,
1 = relevant) against the ideal ordering of all judged documents of the query, and MRR@10 (the
reciprocal rank of the first relevant document in the top 10, 0 when none is there).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUERIES_FILE = Path(__file__).with_name("queries.json")
TOP_K = 10

Ranker = Callable[[str], list[str]]
"""A ranking under test: query text -> document ids, best first (at most TOP_K are scored)."""


# -- the judged set ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgment:
    key: str
    grade: int
    title: str


@dataclass(frozen=True)
class JudgedQuery:
    id: str
    text: str
    kind: str
    """topic (what citizens ask), place, policy (what staff look up), title, number (文号), mixed."""
    need: str
    """The information need the documents were judged against."""
    judgments: tuple[Judgment, ...]

    @property
    def grades(self) -> dict[str, int]:
        return {judgment.key: judgment.grade for judgment in self.judgments}


@dataclass(frozen=True)
class Floors:
    """The figures recorded when the set was made (or last re-recorded), with a tolerance."""

    date: str
    engine: str
    ndcg_at_10: float
    mrr: float
    tolerance: float


@dataclass(frozen=True)
class RelevanceSet:
    queries: tuple[JudgedQuery, ...]
    floors: Floors | None

    def __repr__(self) -> str:
        return f"RelevanceSet({len(self.queries)} queries, floors={self.floors})"


def load_set(path: Path = QUERIES_FILE) -> RelevanceSet:
    """The judged queries; raises ValueError when the file is malformed."""
    data = json.loads(path.read_text(encoding="utf-8"))
    queries = []
    seen: set[str] = set()
    for item in data["queries"]:
        judgments = tuple(
            Judgment(str(entry["key"]), int(entry["grade"]), str(entry.get("title", ""))) for entry in item["relevant"]
        )
        problems = [
            f"grade {judgment.grade} of {judgment.key}" for judgment in judgments if judgment.grade not in (1, 2)
        ]
        problems += [f"key {judgment.key}" for judgment in judgments
                     if not judgment.key.startswith(("policy:", "answer:"))]
        if len({judgment.key for judgment in judgments}) != len(judgments):
            problems.append("a document judged twice")
        if not judgments:
            problems.append("no relevant document")
        if item["id"] in seen:
            problems.append("duplicate id")
        if problems:
            raise ValueError(f"{path.name}: query {item['id']} ({item['text']}): {'; '.join(problems)}")
        seen.add(item["id"])
        queries.append(JudgedQuery(str(item["id"]), str(item["text"]), str(item.get("kind", "")),
                                   str(item.get("need", "")), judgments))
    recorded = data.get("recorded")
    floors = None
    if recorded:
        floors = Floors(str(recorded["date"]), str(recorded["engine"]), float(recorded["ndcg_at_10"]),
                        float(recorded["mrr"]), float(recorded["tolerance"]))
    return RelevanceSet(tuple(queries), floors)


def format_set(data: dict[str, Any]) -> str:
    """``queries.json`` as written: the header indented, each query's judgments one to a line."""
    head = {key: value for key, value in data.items() if key != "queries"}
    text = json.dumps(head, ensure_ascii=False, indent=2)[:-2] + ',\n  "queries": [\n'
    blocks = []
    for query in data["queries"]:
        fields = ", ".join(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
                           for key, value in query.items() if key != "relevant")
        judged = ",\n".join("      " + json.dumps(entry, ensure_ascii=False) for entry in query["relevant"])
        blocks.append(f"    {{{fields}, \"relevant\": [\n{judged}\n    ]}}")
    return text + ",\n".join(blocks) + "\n  ]\n}\n"


def record_floors(evaluation: Evaluation, engine: str, day: str, tolerance: float,
                  path: Path = QUERIES_FILE) -> None:
    """Write ``evaluation``'s figures into the set file as the floors the tests hold the search to."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data["recorded"] = {
        "date": day, "engine": engine, "ndcg_at_10": round(evaluation.ndcg_at_10, 4),
        "mrr": round(evaluation.mrr, 4), "tolerance": tolerance,
    }
    path.write_text(format_set(data), encoding="utf-8")


# -- metrics -------------------------------------------------------------------------------------


def dcg(grades: Sequence[int]) -> float:
    return sum(((2**grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(grades)), 0.0)


def ndcg_at(ranked: Sequence[str], judged: dict[str, int], k: int = TOP_K) -> float:
    ideal = dcg(sorted(judged.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([judged.get(key, 0) for key in ranked[:k]]) / ideal


def reciprocal_rank(ranked: Sequence[str], judged: dict[str, int], k: int = TOP_K) -> float:
    for rank, key in enumerate(ranked[:k], start=1):
        if judged.get(key, 0) > 0:
            return 1.0 / rank
    return 0.0


@dataclass(frozen=True)
class QueryScore:
    query: JudgedQuery
    ranked: tuple[str, ...]
    """Keys of the top TOP_K results (``?<doc id>`` for a document with no key)."""
    ndcg: float
    rr: float


@dataclass(frozen=True)
class Evaluation:
    name: str
    scores: tuple[QueryScore, ...]
    seconds: float

    def __repr__(self) -> str:
        return (f"Evaluation({self.name!r}, {len(self.scores)} queries, "
                f"nDCG@10 {self.ndcg_at_10:.4f}, MRR {self.mrr:.4f})")

    @property
    def ndcg_at_10(self) -> float:
        return sum(score.ndcg for score in self.scores) / len(self.scores)

    @property
    def mrr(self) -> float:
        return sum(score.rr for score in self.scores) / len(self.scores)


def evaluate(name: str, ranker: Ranker, relevance_set: RelevanceSet, keys: dict[str, str]) -> Evaluation:
    """Run every query through ``ranker`` and score its top TOP_K against the judgments."""
    started = time.perf_counter()
    scores = []
    for query in relevance_set.queries:
        ranked = tuple(keys.get(doc_id, f"?{doc_id}") for doc_id in ranker(query.text)[:TOP_K])
        scores.append(QueryScore(query, ranked, ndcg_at(ranked, query.grades), reciprocal_rank(ranked, query.grades)))
    return Evaluation(name, tuple(scores), time.perf_counter() - started)


def below_floors(evaluation: Evaluation, floors: Floors) -> list[str]:
    """What fell below the recorded figures (beyond the tolerance); empty when nothing did."""
    problems = []
    for label, measured, floor in (("nDCG@10", evaluation.ndcg_at_10, floors.ndcg_at_10),
                                   ("MRR", evaluation.mrr, floors.mrr)):
        if measured < floor - floors.tolerance:
            problems.append(f"{label} {measured:.4f} < {floor:.4f} recorded {floors.date} "
                            f"(tolerance {floors.tolerance})")
    return problems


# -- the demo corpus in an index -----------------------------------------------------------------


@dataclass
class DemoIndex:
    """The demo corpus, indexed; ``keys`` maps document ids to the judged keys."""

    engine: Any
    alias: str
    keys: dict[str, str]
    documents: dict[str, dict[str, Any]]
    """doc id -> the document as indexed (for the baselines)."""
    titles: dict[str, str]
    """judged key -> the title in the service's database (to check the judged set against)."""
    seed_seconds: float
    index_seconds: float
    close: Callable[[], None] = field(default=lambda: None)

    def check(self, relevance_set: RelevanceSet) -> list[str]:
        """Judged documents that are missing from the corpus or whose title differs from the judged one."""
        problems = []
        for query in relevance_set.queries:
            for judgment in query.judgments:
                title = self.titles.get(judgment.key)
                if title is None:
                    problems.append(f"{query.id}: {judgment.key} is not in the demo corpus")
                elif judgment.title and judgment.title != title:
                    problems.append(f"{query.id}: {judgment.key} is {title!r}, judged as {judgment.title!r}")
        return problems


def demo_settings_env(data_dir: Path, search_url: str | None = None, **overrides: str) -> dict[str, str]:
    """The environment of a throwaway suite in ``data_dir`` (SQLite files, file broker unless overridden)."""
    env = {
        "GONGKAI_DATA_DIR": str(data_dir),
        "GONGKAI_ENV": "test",
        "SECRET_KEY": secrets.token_hex(32),
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "true",
    }
    if search_url:
        env["SEARCH_URL"] = search_url
    env.update(overrides)
    return env


def build_demo_index(data_dir: Path, *, search_url: str | None = None, progress: bool = False,
                     log_level: str = "WARNING") -> DemoIndex:
    """Seed the demo data into a fresh suite under ``data_dir`` and index it through the search consumer.

    Building the suite configures this process's logging at ``log_level`` (as every Gongkai process does)."""
    from sqlalchemy import select

    from consult.models import Consultation
    from interpret.models import Policy
    from services.db import EXTENSION_KEY, get_database
    from services.demo.seed import seed_demo
    from services.migrations import migrate_all
    from services.settings import load_settings
    from services.suite import create_worker_app
    from services.web import content_alias

    settings = load_settings(demo_settings_env(data_dir, search_url, LOG_LEVEL=log_level))
    started = time.perf_counter()
    migrate_all(settings)
    app = create_worker_app(settings)
    for database in app.extensions[EXTENSION_KEY].values():
        database.publisher = None  # the events wait in the outbox; delivered below
    seed_demo(app, progress=progress)
    seeded = time.perf_counter()
    with app.app_context():
        engine, alias = content_alias(app)
        sources = {service: _deliver_outbox(service) for service in ("interpret", "consult")}
        engine.refresh(alias)
        keys: dict[str, str] = {}
        titles: dict[str, str] = {}
        with get_database("interpret").transaction() as session:
            policies = {str(row.id): row.title for row in session.execute(select(Policy.id, Policy.title))}
        with get_database("consult").transaction() as session:
            answers = {str(row.id): (row.tracking_number, row.title) for row in session.execute(
                select(Consultation.id, Consultation.tracking_number, Consultation.title))}
        documents: dict[str, dict[str, Any]] = {}
        for doc_id, (aggregate_id, document) in sources["interpret"].items():
            if aggregate_id in policies:  # interpretations are not judged (the demo has none)
                keys[doc_id] = f"policy:{policies[aggregate_id]}"
                titles[keys[doc_id]] = policies[aggregate_id]
            documents[doc_id] = document
        for doc_id, (aggregate_id, document) in sources["consult"].items():
            number, title = answers[aggregate_id]
            keys[doc_id] = f"answer:{number}"
            titles[keys[doc_id]] = title
            documents[doc_id] = document
    return DemoIndex(engine, alias, keys, documents, titles, seeded - started, time.perf_counter() - seeded,
                     close=engine.close)


def _deliver_outbox(service: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Hand every search event of ``service``'s outbox, oldest first, to the search consumer, as the worker
    would; return the documents now live in the index: doc id -> (aggregate id, document)."""
    from sqlalchemy import select

    from search.tasks import index_document, remove_document
    from services.db import get_database
    from services.events import subscribers

    database = get_database(service)
    model = database.outbox_model
    with database.transaction() as session:
        events: list[Any] = list(session.scalars(select(model).order_by(model.created_at)))
        messages = [event.as_message() for event in events]
    live: dict[str, tuple[str, dict[str, Any]]] = {}
    for message in messages:
        doc_id = f"{message['aggregate_type']}-{message['aggregate_id']}"
        tasks = subscribers(message["topic"])
        if "search.index_document" in tasks:
            index_document(message)
            live[doc_id] = (str(message["aggregate_id"]), message["payload"]["document"])
        if "search.remove_document" in tasks:
            remove_document(message)
            live.pop(doc_id, None)
    return live


# -- rankings ------------------------------------------------------------------------------------


def engine_ranker(engine: Any, alias: str, sort: str = "relevance") -> Ranker:
    """The engine through the search port, as the public search asks it (relevance, 10 a page)."""
    from services.searchengine.port import SearchQuery

    def rank(text: str) -> list[str]:
        query = SearchQuery(text=" ".join(text.split()), sort=sort, per_page=TOP_K)  # type: ignore[arg-type]
        return [hit.id for hit in engine.search(alias, query).hits]

    return rank


def substring_ranker(documents: dict[str, dict[str, Any]]) -> Ranker:
    """The naive baseline a plain CMS offers (``LIKE '%word%'`` on title and body, newest first):
    a document matches when every space-separated part of the query occurs in its title or body."""
    ordered = sorted(documents.values(), key=lambda doc: (doc.get("published_at") or "", doc["id"]), reverse=True)

    def rank(text: str) -> list[str]:
        parts = text.split()
        return [
            doc["id"] for doc in ordered
            if all(part in (doc.get("title") or "") or part in (doc.get("body") or "") for part in parts)
        ][:TOP_K]

    return rank
