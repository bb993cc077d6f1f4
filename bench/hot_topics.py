"""Hot topics at scale (issue 8): incremental update per 1,000 new consultations <= 2 s; full recompute
at 100,000 messages <= 60 s.

    .venv/bin/python -m bench.hot_topics [--messages 100000] [--batch 1000] [--batches 3]
        [--database sqlite|postgres] [--profile]

The press office's topic engine (``services.press``) on its own database in a temporary data directory
(SQLite, the single-machine default; ``--database postgres`` puts it in PostgreSQL schemas of its own,
dropped afterwards).

Messages are realistic, not random: each resamples a real message of ``../shared/data`` (its real title
and opening sentences, plus 0-2 sentences of other messages of its category, see ``bench.generate``'s
corpus loader), received over the year before now, from about 60,000 distinct askers. The
``--messages`` of the corpus are written in bulk as ``ingest.import_messages`` stores them (redacted,
keywords segmented with ``topics.keywords_of``'s rules): to keep the run short each distinct sentence is
segmented once and a message's keywords are the union of its sentences' (jieba cuts at sentence
punctuation, so it is the same set of words).

Measured, in this order:

1. **Full recompute** at ``--messages``: ``engine.recompute`` (what ``gongkai press recompute`` and the
   console's button run: read every stored keyword list, TF-IDF, ``scalable_cluster``, stable topic ids,
   statistics of every topic), wall time. Same-run baselines: the time to only read the stored keywords,
   and exact average-linkage clustering of 5,000 messages (``topics.cluster``, the dense step the
   recompute repeats), so the figure can be compared across machines.
2. **Incremental update** per ``--batch`` new consultations, ``--batches`` times: the new messages are
   imported through the real ``ingest.import_messages`` (segmentation and redaction per message: the
   worker's intake, reported apart), then one ``engine.update_topics`` run in one transaction (what the
   debounced ``press.update_topics`` task runs: the assignment, the touched topics' statistics and the
   alert rules), committed. The figure is the median of the batches; the slowest is shown too.

``--profile`` prints where the recompute spends its time (cProfile, cumulative).
Results: ``bench/results/hot_topics.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Row, judge, print_rows, write_result
from bench.generate import DEFAULT_DATABASE_URL, DEFAULT_SOURCE, Corpus, GenerateError, load_corpus, settings_for

INCREMENTAL_TARGET_SECONDS = 2.0
RECOMPUTE_TARGET_SECONDS = 60.0
DEFAULT_MESSAGES = 100_000
DENSE_BASELINE = 5000
ASKERS = 60_000
INSERT_CHUNK = 2000


@dataclass(frozen=True)
class Planned:
    """One resampled message: a real title and sentences, when, who (a number), likes."""

    title: str
    sentences: tuple[str, ...]
    received_at: datetime
    asker: int
    likes: int


def plan_messages(corpus: Corpus, count: int, rng: random.Random, start: datetime, end: datetime) -> list[Planned]:
    """``count`` messages resampled from the corpus, received between ``start`` and ``end`` (in order)."""
    span = (end - start).total_seconds()
    moments = sorted(start + timedelta(seconds=rng.random() * span) for _ in range(count))
    planned = []
    for moment in moments:
        base = rng.choice(corpus.messages)
        pool = corpus.message_sentences.get(base.category or "*") or corpus.message_sentences["*"]
        own = list(base.sentences[:rng.randint(1, max(1, min(4, len(base.sentences))))])
        extra = [rng.choice(pool) for _ in range(rng.choice((0, 1, 1, 2)))]
        likes = int(rng.paretovariate(1.6)) - 1 if rng.random() < 0.3 else 0
        planned.append(Planned(base.title, tuple(own + extra), moment, rng.randrange(ASKERS), min(likes, 5000)))
    return planned


class KeywordCache:
    """``topics.keywords_of`` of a resampled message from its title's and sentences' words, each piece
    segmented once (jieba cuts at 。！？；, so a text's words are the union of its sentences')."""

    def __init__(self) -> None:
        self.parts: dict[str, list[str]] = {}

    def part(self, text: str) -> list[str]:
        found = self.parts.get(text)
        if found is None:
            from services.press import ingest, topics

            found = self.parts[text] = topics._part_keywords(ingest.MARKER.sub(" ", text))
        return found

    def keywords(self, title: str, sentences: Sequence[str]) -> list[str]:
        from services.press import topics

        text_words = list(dict.fromkeys(word for sentence in sentences for word in self.part(sentence)))
        return self.part(title) * topics.TITLE_WEIGHT + text_words


def bulk_store(database: Any, settings: Any, corpus: Corpus, planned: Sequence[Planned],
               progress: Callable[[int], None]) -> None:
    """The planned messages as ``ingest.import_messages`` stores them (redacted, segmented, emergency
    terms found, no topic yet), written in bulk."""
    from sqlalchemy import Table, insert

    from services.db import utcnow
    from services.press import ingest
    from services.press.models import PressMessage

    cache = KeywordCache()
    asker_keys: dict[int, str | None] = {}
    table: Table = PressMessage.__table__  # type: ignore[assignment]
    rows: list[dict[str, Any]] = []
    ingested = utcnow()

    def flush() -> None:
        with database.transaction() as session:
            session.execute(insert(table), rows)
        progress(len(rows))
        rows.clear()

    for number, message in enumerate(planned):
        title = corpus.redacted(message.title)[:300]
        shown = [corpus.redacted(sentence) for sentence in message.sentences]
        text = "".join(shown)
        if message.asker not in asker_keys:
            asker_keys[message.asker] = ingest.keyed_asker(settings, f"asker-{message.asker}")
        rows.append({
            "source": "import", "source_id": f"bench-{number}", "tracking_number": None, "title": title,
            "text": text, "category": None, "department": None, "asker_key": asker_keys[message.asker],
            "received_at": message.received_at, "likes": message.likes,
            "keywords": cache.keywords(title, shown),
            "emergency_terms": ingest._emergency(settings, title, text), "topic_id": None, "state": None,
            "reply_due": None, "replied_at": None, "source_version": 0, "ingested_at": ingested,
        })
        if len(rows) >= INSERT_CHUNK:
            flush()
    if rows:
        flush()


def as_import(planned: Sequence[Planned], first_number: int) -> list[Any]:
    from services.press import topics

    return [topics.Message(id=f"bench-{first_number + n}", title=item.title, text="".join(item.sentences),
                           asker=f"asker-{item.asker}", time=item.received_at, likes=item.likes)
            for n, item in enumerate(planned)]


def _bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="msg", disable=not sys.stderr.isatty(), leave=False,
                dynamic_ncols=True)


def baselines(database: Any) -> dict[str, float]:
    """Same-run yardsticks: reading every stored keyword list; exact clustering of DENSE_BASELINE messages."""
    from sqlalchemy import select

    from services.press import topics
    from services.press.models import PressMessage

    began = time.perf_counter()
    with database.transaction() as session:
        keywords = [list(words or ()) for words in session.scalars(
            select(PressMessage.keywords).order_by(PressMessage.id))]
    read_seconds = time.perf_counter() - began
    sample = keywords[:: max(1, len(keywords) // DENSE_BASELINE)][:DENSE_BASELINE]
    began = time.perf_counter()
    vectors, _vocabulary = topics.build_vectors(sample)
    topics.cluster(vectors)
    return {"read_keywords_seconds": read_seconds, "dense_messages": float(len(sample)),
            "dense_cluster_seconds": time.perf_counter() - began}


def run_recompute(database: Any, profile: bool) -> tuple[float, dict[str, float], str | None]:
    """Seconds of one ``engine.recompute``, the seconds each stage took, the profile if asked."""
    from services.press import engine

    stages: dict[str, float] = {}
    current = ["start"]
    since = [time.perf_counter()]

    def progress(stage: str, _done: int, _total: int) -> None:
        now = time.perf_counter()
        if stage != current[0]:
            stages[current[0]] = stages.get(current[0], 0.0) + now - since[0]
            current[0], since[0] = stage, now

    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    engine.recompute(database, progress=progress)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - began
    stages[current[0]] = stages.get(current[0], 0.0) + time.perf_counter() - since[0]
    stages.pop("start", None)
    text = None
    if profiler is not None:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(30)
        text = stream.getvalue()
    return seconds, stages, text


def run_incremental(database: Any, settings: Any, corpus: Corpus, rng: random.Random, batch: int, batches: int,
                    after: datetime, first_number: int) -> list[dict[str, Any]]:
    """``batches`` times: import ``batch`` new messages (real ingest), then one timed ``update_topics``."""
    from services.press import engine, ingest

    runs = []
    for number in range(batches):
        start = after + timedelta(hours=number)
        planned = plan_messages(corpus, batch, rng, start, start + timedelta(minutes=50))
        began = time.perf_counter()
        report = ingest.import_messages(database.transaction, settings,
                                        as_import(planned, first_number + number * batch))
        ingest_seconds = time.perf_counter() - began
        began = time.perf_counter()
        with database.transaction() as session:
            update = engine.update_topics(session, settings, now=start + timedelta(hours=1))
        seconds = time.perf_counter() - began
        runs.append({"imported": report.imported, "ingest_seconds": round(ingest_seconds, 3),
                     "update_seconds": round(seconds, 3), "assigned": update.assigned,
                     "new_topics": update.new_topics, "touched": len(update.touched), "alerts": len(update.alerts)})
        print(f"  incremental batch {number + 1}: {report.imported} imported in {ingest_seconds:.2f} s; "
              f"update_topics {seconds:.3f} s (assigned {update.assigned}, {update.new_topics} new topics, "
              f"{len(update.touched)} touched, {len(update.alerts)} alerts)")
    return runs


def measure(database: Any, settings: Any, messages: int, batch: int, batches: int, seed: int, source: Path,
            profile: bool) -> tuple[list[Row], dict[str, Any]]:
    from sqlalchemy import func, select

    from services.press.models import Topic
    from services.text.segment import get_segmenter

    get_segmenter().segment("预热分词词典")  # the dictionary loads once per process: in no figure
    rng = random.Random(seed)
    corpus = load_corpus(source)
    now = datetime.now(UTC).replace(microsecond=0)
    planned = plan_messages(corpus, messages, rng, now - timedelta(days=365), now)
    began = time.perf_counter()
    with _bar(len(planned), "留言 messages") as bar:
        bulk_store(database, settings, corpus, planned, bar.update)
    stored_seconds = time.perf_counter() - began
    print(f"  {len(planned):,} messages stored in {stored_seconds:.1f} s")

    yardsticks = baselines(database)
    print(f"  baselines: read every keyword list {yardsticks['read_keywords_seconds']:.2f} s; exact clustering of "
          f"{yardsticks['dense_messages']:.0f} messages {yardsticks['dense_cluster_seconds']:.2f} s")
    recompute_seconds, stages, profile_text = run_recompute(database, profile)
    with database.transaction() as session:
        topic_count = int(session.scalar(select(func.count()).select_from(Topic).where(Topic.size > 0)) or 0)
        largest = int(session.scalar(select(func.max(Topic.size))) or 0)
    print(f"  recompute: {recompute_seconds:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in stages.items())}); "
          f"{topic_count:,} topics, the largest {largest:,} messages")
    if profile_text:
        print(profile_text)
    runs = run_incremental(database, settings, corpus, rng, batch, batches, now + timedelta(minutes=1), messages)
    updates = [run["update_seconds"] for run in runs]
    ingests = [run["ingest_seconds"] for run in runs]
    scale = f"{messages:,}"
    rows = [
        judge(f"full recompute at {scale} messages", recompute_seconds, "s", at_most=RECOMPUTE_TARGET_SECONDS,
              digits=1),
        judge(f"incremental update per {batch:,} new consultations (median of {len(runs)})",
              statistics.median(updates) if updates else None, "s", at_most=INCREMENTAL_TARGET_SECONDS, digits=3),
        Row(f"incremental update, slowest of {len(runs)}", round(max(updates), 3) if updates else None, "s", "info",
            True, ""),
        Row(f"ingest of {batch:,} new consultations (segmentation, redaction; the worker's intake)",
            round(statistics.median(ingests), 2) if ingests else None, "s", "info", True, ""),
        Row("recompute / exact clustering of 5,000 (same run)",
            round(recompute_seconds / yardsticks["dense_cluster_seconds"], 2)
            if yardsticks["dense_cluster_seconds"] else None, "ratio", "baseline", True, ""),
        Row("baseline: exact clustering of 5,000 messages", round(yardsticks["dense_cluster_seconds"], 2), "s",
            "baseline", True, ""),
        Row(f"baseline: read the {scale} stored keyword lists", round(yardsticks["read_keywords_seconds"], 2), "s",
            "baseline", True, ""),
    ]
    extra = {"messages": messages, "topics": topic_count, "largest_topic": largest,
             "stored_seconds": round(stored_seconds, 1),
             "recompute_stages_seconds": {key: round(value, 2) for key, value in stages.items()},
             "baselines": {key: round(value, 3) for key, value in yardsticks.items()}, "incremental": runs,
             "profile": profile_text}
    return rows, extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_topics", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES, help="messages of the full recompute")
    parser.add_argument("--batch", type=int, default=1000, help="new consultations per incremental update")
    parser.add_argument("--batches", type=int, default=3, help="incremental updates measured")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", default=None, help=f"PostgreSQL (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--schema-prefix", default="benchpress_")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--source-dir", type=Path, default=DEFAULT_SOURCE, help="the real texts (../shared/data)")
    parser.add_argument("--profile", action="store_true", help="profile the full recompute")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.messages < 2 or args.batch < 1 or args.batches < 1:
        parser.error("--messages must be at least 2, --batch and --batches at least 1")

    from services.db import get_database
    from services.migrations import migrate_all
    from services.suite import create_worker_app

    folder = Path(tempfile.mkdtemp(prefix="gongkai-bench-press-"))
    try:
        settings, _env = settings_for(folder, args.database, args.database_url, args.schema_prefix)
        migrate_all(settings)
        app = create_worker_app(settings)
        with app.app_context():
            rows, extra = measure(get_database("press", app), settings, args.messages, args.batch, args.batches,
                                  args.seed, args.source_dir, args.profile)
    except GenerateError as error:
        print(f"bench.hot_topics: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if args.database == "postgres":
            from bench.freshness import drop_schemas

            drop_schemas(args.database_url or DEFAULT_DATABASE_URL, args.schema_prefix)
    extra["settings"] = {"messages": args.messages, "batch": args.batch, "batches": args.batches,
                         "database": args.database, "seed": args.seed}
    path = write_result("hot_topics", rows, extra, path=args.results)
    print_rows("hot_topics", rows)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
