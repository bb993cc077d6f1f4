"""The topic engine over the press database: incremental assignment and the full recompute.

Incremental (:func:`update_topics`, run by the debounced ``press.update_topics`` task)
    Takes the messages whose ``topic_id`` is NULL (oldest first), adds their words to the
    document frequencies of :class:`TopicModel` (so the IDF follows the corpus), and weighs each
    with the same TF-IDF as ``topics.build_vectors`` (sublinear tf, smoothed idf
    ``ln((1 + N) / (1 + df)) + 1``, L2 norm). A message joins the topic whose centroid (the mean
    of its members' vectors) gives the highest dot product, when it is at least
    ``topics.SIMILARITY_THRESHOLD``: ``v · mean(members)`` *is* the average cosine similarity of
    the message to the members, the very criterion of average linkage. Otherwise it starts a
    topic. Only topics sharing one of their shared keywords with the batch are loaded (the ids
    and keywords of every topic, then the centroids of those candidates), never every message
    of every topic. Centroids are updated as running means, trimmed to :data:`CENTROID_WORDS`.
    Then the touched topics' statistics are refreshed from SQL aggregates plus a sample of their
    :data:`SAMPLE` latest messages (shared keywords, label, representatives), and the alert
    rules evaluated for them (``services.press.alerts``).

Full recompute (:func:`recompute`, ``gongkai press recompute``)
    Reclusters every message from its stored keywords (no re-segmentation) with
    ``topics.build_vectors``. Up to :data:`DENSE_LIMIT` messages: ``topics.cluster`` (exact
    average linkage, O(n²) memory). Beyond: a sample of :data:`DENSE_LIMIT` messages is
    clustered exactly; every other message joins the nearest sample cluster centroid when the
    similarity reaches the threshold; those left over are clustered exactly in chunks of
    :data:`DENSE_LIMIT`, each chunk first offered to the centroids found so far. Topic ids stay
    stable: a new cluster takes the id of the old topic that holds at least half of its
    messages (largest overlaps first, each old id once), since alerts and responses link ids.
    An old topic no cluster took is deleted when nothing links it, else kept empty (size 0).
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from scipy import sparse
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from services.db import ServiceDatabase, utcnow
from services.press import topics
from services.press.models import Alert, PressMessage, RecomputeRun, ResponseTopic, Topic, TopicModel
from services.settings import Settings
from services.text.pii import redact

if TYPE_CHECKING:
    from sqlalchemy import Table

CENTROID_WORDS = 200
"""Words kept per centroid (highest weights): enough to compare, small to store."""
SAMPLE = 40
"""Latest messages per touched topic read to refresh its shared keywords and representatives."""
BATCH_LIMIT = 5000
"""New messages one incremental run takes (the next run takes the rest)."""
DENSE_LIMIT = 5000
"""Messages clustered with exact average linkage (a dense n×n matrix: 5,000² floats = 200 MB)."""
STATS_CHUNK = 1000
ASSIGN_CHUNK = 1000
"""New messages assigned with one pairwise similarity matrix (1,000² floats = 8 MB)."""

Vector = dict[str, float]


@dataclass
class UpdateReport:
    assigned: int = 0
    new_topics: int = 0
    touched: list[int] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------- vectors


def topic_model(session: Session) -> TopicModel:
    model = session.scalar(select(TopicModel).order_by(TopicModel.id).limit(1).with_for_update())
    if model is None:
        model = TopicModel(documents=0, document_frequency={})
        session.add(model)
        session.flush()
    return model


def vector(keywords: Iterable[str], frequency: dict[str, int], documents: int) -> Vector:
    """The TF-IDF vector of one message, as ``topics.build_vectors`` weighs it."""
    counts = Counter(keywords)
    weights = {
        word: (1.0 + math.log(count)) * (math.log((1 + documents) / (1 + frequency.get(word, 0))) + 1.0)
        for word, count in counts.items()
    }
    norm = math.sqrt(sum(value * value for value in weights.values()))
    return {word: value / norm for word, value in weights.items()} if norm else {}


def dot(a: Vector, b: Vector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(value * b.get(word, 0.0) for word, value in a.items())


def _trim(centroid: Vector) -> Vector:
    if len(centroid) <= CENTROID_WORDS:
        return centroid
    kept = sorted(centroid.items(), key=lambda item: -item[1])[:CENTROID_WORDS]
    return dict(kept)


# --------------------------------------------------------------------------- incremental


def update_topics(session: Session, settings: Settings, now: datetime | None = None,
                  limit: int = BATCH_LIMIT, evaluate_alerts: bool = True) -> UpdateReport:
    """Assign the messages without a topic (see the module docstring); the caller commits."""
    from services.press import alerts

    report = UpdateReport()
    rows = session.execute(
        select(PressMessage.id, PressMessage.keywords).where(PressMessage.topic_id.is_(None))
        .order_by(PressMessage.received_at, PressMessage.id).limit(limit)
    ).all()
    if not rows:
        return report
    model = topic_model(session)
    frequency = dict(model.document_frequency or {})
    documents = model.documents
    batch_words: set[str] = set()
    for _id, words in rows:
        distinct = set(words or ())
        batch_words |= distinct
        for word in distinct:
            frequency[word] = frequency.get(word, 0) + 1
        documents += 1
    model.document_frequency = frequency
    model.documents = documents
    model.built_at = utcnow()

    # Candidates: topics one of whose shared keywords the batch uses.
    candidate_ids = [topic_id for topic_id, keywords in session.execute(
        select(Topic.id, Topic.keywords).where(Topic.size > 0)) if batch_words.intersection(keywords or ())]
    centroids: dict[int, Vector] = {}
    sizes: dict[int, int] = {}
    for start in range(0, len(candidate_ids), STATS_CHUNK):
        chunk = candidate_ids[start:start + STATS_CHUNK]
        for topic_id, centroid, size in session.execute(
                select(Topic.id, Topic.centroid, Topic.size).where(Topic.id.in_(chunk))):
            centroids[topic_id] = dict(centroid or {})
            sizes[topic_id] = size
    weights = [vector(words or (), frequency, documents) for _id, words in rows]
    keys, means = _assign(weights, centroids, sizes)

    created: dict[int, Topic] = {}  # negative keys until flushed
    for key in sorted({key for key in keys if key < 0}, reverse=True):
        created[key] = Topic(label="", keywords=[], centroid={}, size=1)
        session.add(created[key])
    session.flush()
    real = {key: topic.id for key, topic in created.items()}
    assignment = {message_id: real.get(key, key) for (message_id, _words), key in zip(rows, keys, strict=True)}
    touched = sorted(set(assignment.values()))
    topic_table = cast("Table", Topic.__table__)
    message_table = cast("Table", PressMessage.__table__)
    # Plain executemany statements: an ORM bulk UPDATE would look for matching objects in the session
    # after each statement, which costs more than the statement itself.
    session.execute(update(message_table).where(message_table.c.id == bindparam("message_id"))
                    .values(topic_id=bindparam("new_topic")),
                    [{"message_id": message_id, "new_topic": topic_id} for message_id, topic_id in assignment.items()])
    session.execute(update(topic_table).where(topic_table.c.id == bindparam("topic_id"))
                    .values(centroid=bindparam("new_centroid")),
                    [{"topic_id": real.get(key, key), "new_centroid": _trim(mean)} for key, mean in means.items()])
    _expire(session, touched)
    refresh_topic_stats(session, touched)
    report.assigned = len(assignment)
    report.new_topics = len(created)
    report.touched = touched
    if evaluate_alerts:
        report.alerts = [alert.id for alert in alerts.evaluate(session, settings, touched, now=now)]
    return report


def _assign(weights: Sequence[Vector], centroids: dict[int, Vector], sizes: dict[int, int]
            ) -> tuple[list[int], dict[int, Vector]]:
    """The topic of each message in turn (a candidate's id, or ``-n`` for the n-th topic the batch starts)
    and the final centroid of every topic the batch touched, :data:`ASSIGN_CHUNK` messages at a time (a
    chunk's pairwise similarities are a dense chunk x chunk matrix); the topics a chunk touched or started
    are candidates of the next ones with their updated centroids, as if the batch were one run."""
    keys: list[int] = []
    touched: set[int] = set()
    for start in range(0, len(weights), ASSIGN_CHUNK):
        found, means, joined = _assign_chunk(weights[start:start + ASSIGN_CHUNK], centroids, sizes,
                                             created=-min([0, *keys]))
        keys.extend(found)
        for key, mean in means.items():
            centroids[key] = mean
            sizes[key] = sizes.get(key, 0) + joined[key]
            touched.add(key)
    return keys, {key: centroids[key] for key in touched}


def _assign_chunk(weights: Sequence[Vector], centroids: dict[int, Vector], sizes: dict[int, int], created: int
                  ) -> tuple[list[int], dict[int, Vector], dict[int, int]]:
    """The topic of each message in turn (a candidate's id, or ``-n`` for the n-th topic the batch starts)
    and the final centroid of every topic the batch touched.

    The same decisions as comparing each message with every centroid kept as a running mean, without
    the running means: a topic's centroid after ``k`` of the batch's messages ``u`` joined it is
    ``(size * c + sum(u)) / (size + k)``, so a message's similarity to it is
    ``(size * (v . c) + sum(v . u)) / (size + k)``. ``v . c`` for every candidate is one sparse product,
    ``v . u`` for every pair of the batch another; a message then costs only the topics it shares a word
    with and the topics the batch has touched. Ties go to the lowest key, as before.
    """
    count = len(weights)
    candidates = list(centroids)
    vocabulary: dict[str, int] = {}
    for weight in weights:
        for word in weight:
            vocabulary.setdefault(word, len(vocabulary))
    for topic_id in candidates:
        for word in centroids[topic_id]:
            vocabulary.setdefault(word, len(vocabulary))
    batch = _sparse_rows(weights, vocabulary)
    known = _sparse_rows([centroids[topic_id] for topic_id in candidates], vocabulary)
    to_known = sparse.csr_matrix(batch @ known.T)
    to_known.sort_indices()
    pairs = (batch @ batch.T).toarray() if count else np.zeros((0, 0))
    candidate_keys = np.asarray(candidates, dtype=np.int64)
    candidate_sizes = np.asarray([sizes[topic_id] for topic_id in candidates], dtype=np.float64)
    # The topics the batch touched, in the order it touched them: their candidate column (len(candidates) for a new
    # topic), key, size before the batch, messages the batch gave them, and per batch row the summed
    # similarity to those messages (``sums[:, t]``).
    column = np.full(count, len(candidates), dtype=np.int64)
    key_of = np.zeros(count, dtype=np.int64)
    size_before = np.zeros(count, dtype=np.float64)
    joined = np.zeros(count, dtype=np.float64)
    sums = np.zeros((count, count), dtype=np.float64)
    is_touched = np.zeros(len(candidates), dtype=bool)
    scratch = np.zeros(len(candidates) + 1, dtype=np.float64)  # the last one stands for a new topic's 0
    touched = 0
    keys: list[int] = []
    members: dict[int, list[int]] = defaultdict(list)
    for row in range(count):
        begin, end = to_known.indptr[row], to_known.indptr[row + 1]
        columns = to_known.indices[begin:end]
        values = to_known.data[begin:end]
        untouched = ~is_touched[columns]
        best_key, best_value, best_slot, best_column = 0, 0.0, -1, -1
        if untouched.any():
            free_columns = columns[untouched]
            free_values = values[untouched]
            top = free_values.max()
            tied = free_columns[free_values == top]
            chosen = int(tied[np.argmin(candidate_keys[tied])])
            best_key, best_value, best_column = int(candidate_keys[chosen]), float(top), chosen
        if touched:
            scratch[columns] = values
            base = scratch[column[:touched]]
            scratch[columns] = 0.0
            similarity = (size_before[:touched] * base + sums[row, :touched]) / (size_before[:touched]
                                                                                 + joined[:touched])
            top = float(similarity.max())
            if top > best_value or (top == best_value and best_column >= 0):
                tied = np.flatnonzero(similarity == top)
                slot = int(tied[np.argmin(key_of[tied])])
                if top > best_value or int(key_of[slot]) < best_key:
                    best_key, best_value, best_slot, best_column = int(key_of[slot]), top, slot, len(candidates)
        if best_value > 0.0 and best_value >= topics.SIMILARITY_THRESHOLD:
            if best_slot < 0:
                best_slot = touched
                touched += 1
                column[best_slot] = best_column
                key_of[best_slot] = best_key
                size_before[best_slot] = candidate_sizes[best_column]
                is_touched[best_column] = True
        else:
            created += 1
            best_slot, best_key = touched, -created
            touched += 1
            key_of[best_slot] = best_key
        joined[best_slot] += 1
        sums[:, best_slot] += pairs[:, row]
        keys.append(best_key)
        members[best_key].append(row)
    means: dict[int, Vector] = {}
    words = list(vocabulary)
    for slot in range(touched):
        key = int(key_of[slot])
        total = np.asarray(batch[members[key]].sum(axis=0)).ravel()
        if column[slot] < len(candidates):
            total += size_before[slot] * known[int(column[slot])].toarray().ravel()
        total /= size_before[slot] + joined[slot]
        means[key] = {words[j]: float(total[j]) for j in np.flatnonzero(total)}
    return keys, means, {key: len(rows) for key, rows in members.items()}


def _sparse_rows(vectors: Sequence[Vector], vocabulary: dict[str, int]) -> sparse.csr_matrix:
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for weights in vectors:
        indices.extend(vocabulary[word] for word in weights)
        data.extend(weights.values())
        indptr.append(len(indices))
    return sparse.csr_matrix((np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64),
                              np.asarray(indptr, dtype=np.int64)), shape=(len(vectors), len(vocabulary)))


def _expire(session: Session, topic_ids: Iterable[int]) -> None:
    """Topics changed by plain UPDATE statements are read again when next used from this session."""
    wanted = set(topic_ids)
    for item in list(session.identity_map.values()):
        if isinstance(item, Topic) and item.id in wanted:
            session.expire(item)


# --------------------------------------------------------------------------- statistics


def refresh_topic_stats(session: Session, topic_ids: Sequence[int]) -> None:
    """Size, askers, likes, first/last, departments, categories, emergency, shared keywords,
    label and representatives of ``topic_ids``, from aggregates and a sample of latest messages."""
    for start in range(0, len(topic_ids), STATS_CHUNK):
        _refresh_chunk(session, list(topic_ids[start:start + STATS_CHUNK]))


def _refresh_chunk(session: Session, ids: list[int]) -> None:
    if not ids:
        return
    message = PressMessage
    aggregates = {
        row[0]: row[1:] for row in session.execute(
            select(message.topic_id, func.count(message.id), func.count(func.distinct(message.asker_key)),
                   func.count(message.asker_key), func.coalesce(func.sum(message.likes), 0),
                   func.min(message.received_at), func.max(message.received_at), func.count(message.emergency_terms))
            .where(message.topic_id.in_(ids)).group_by(message.topic_id))
    }
    departments = _distinct_values(session, ids, message.department)
    categories = _distinct_values(session, ids, message.category)
    rank = func.row_number().over(partition_by=message.topic_id,
                                  order_by=(message.received_at.desc(), message.id.desc())).label("rank")
    inner = select(message.topic_id, message.id, message.title, message.keywords, rank).where(
        message.topic_id.in_(ids)).subquery()
    samples: dict[int, list[tuple[int, str, list[str]]]] = defaultdict(list)
    for row in session.execute(select(inner).where(inner.c.rank <= SAMPLE)):
        samples[int(row[0])].append((int(row[1]), str(row[2]), list(row[3] or ())))
    centroids = dict(session.execute(select(Topic.id, Topic.centroid).where(Topic.id.in_(ids))).all())
    emptied: list[dict[str, Any]] = []
    described: list[dict[str, Any]] = []
    now = utcnow()
    for topic_id in ids:
        if topic_id not in aggregates:
            emptied.append({"topic_id": topic_id})
            continue
        size, distinct_askers, with_asker, likes, first, last, emergency = aggregates[topic_id]
        centroid: Vector = centroids.get(topic_id) or {}
        keywords, label, representatives = describe(samples[topic_id], centroid)
        described.append({
            "topic_id": topic_id, "new_size": size, "new_askers": distinct_askers + (size - with_asker),
            "new_likes": int(likes or 0), "new_first": first, "new_last": last, "new_emergency": bool(emergency),
            "new_departments": departments.get(topic_id, []), "new_categories": categories.get(topic_id, []),
            "new_keywords": keywords, "new_label": label[:200], "new_representatives": representatives,
            "new_updated": now,
        })
    # Plain executemany statements (an ORM bulk UPDATE per topic would search the session's objects
    # after each one); the topics this session holds are expired so that they are read again.
    table = cast("Table", Topic.__table__)
    where = table.c.id == bindparam("topic_id")
    if emptied:
        session.execute(update(table).where(where).values(size=0, askers=0, likes=0), emptied)
    if described:
        session.execute(update(table).where(where).values(
            size=bindparam("new_size"), askers=bindparam("new_askers"), likes=bindparam("new_likes"),
            first_at=bindparam("new_first"), last_at=bindparam("new_last"), emergency=bindparam("new_emergency"),
            departments=bindparam("new_departments"), categories=bindparam("new_categories"),
            keywords=bindparam("new_keywords"), label=bindparam("new_label"),
            representative_ids=bindparam("new_representatives"), updated_at=bindparam("new_updated"),
        ), described)
    _expire(session, ids)


def _distinct_values(session: Session, ids: list[int], column: Any) -> dict[int, list[str]]:
    values: dict[int, list[str]] = defaultdict(list)
    for row in session.execute(
            select(PressMessage.topic_id, column).where(PressMessage.topic_id.in_(ids), column.is_not(None))
            .group_by(PressMessage.topic_id, column).order_by(PressMessage.topic_id, column)):
        values[int(row[0])].append(str(row[1]))
    return values


def describe(sample: Sequence[tuple[int, str, list[str]]], centroid: Vector) -> tuple[list[str], str, list[int]]:
    """Shared keywords (in at least half of the sample's messages, all of them for two; ranked by
    centroid weight), the label (top three, else the most central title) and the ids of the
    representative messages (closest to the centroid, distinct titles), all redacted."""
    size = len(sample)
    presence: Counter[str] = Counter()
    for _id, _title, words in sample:
        presence.update(set(words))
    needed = 1 if size == 1 else (size if size <= 2 else math.ceil(size / 2))
    shared = [word for word, count in presence.items() if count >= needed]
    shared.sort(key=lambda word: (-centroid.get(word, 0.0), word))
    keywords = [redact(word).text for word in shared[:topics.SHARED_KEYWORDS]]

    def closeness(item: tuple[int, str, list[str]]) -> float:
        return sum(centroid.get(word, 0.0) for word in set(item[2]))

    representatives: list[int] = []
    titles: list[str] = []
    for message_id, title, _words in sorted(sample, key=lambda item: (-closeness(item), item[0])):
        shown = title.strip()  # stored redacted at intake; redacted again below, once chosen
        if shown and shown not in titles:
            titles.append(shown)
            representatives.append(message_id)
        if len(representatives) == topics.REPRESENTATIVES:
            break
    titles = [redact(title).text for title in titles]
    return keywords, topics.topic_label(keywords, titles, size), representatives


# --------------------------------------------------------------------------- full recompute


RecomputeProgress = Callable[[str, int, int], None]


def scalable_cluster(vectors: sparse.csr_matrix, threshold: float = topics.SIMILARITY_THRESHOLD,
                     dense_limit: int = DENSE_LIMIT, seed: int = 7,
                     progress: RecomputeProgress | None = None) -> list[int]:
    """A cluster number per row: exact average linkage up to ``dense_limit`` rows, else sample,
    assign to centroids, and cluster the leftovers in chunks (module docstring)."""
    count = vectors.shape[0]
    if count <= dense_limit:
        return topics.cluster(vectors, threshold)
    rows = list(range(count))
    random.Random(seed).shuffle(rows)
    labels = np.full(count, -1, dtype=np.int64)
    centroids: list[np.ndarray] = []

    def add_clusters(chunk: list[int]) -> None:
        found = topics.cluster(vectors[chunk], threshold)
        groups: dict[int, list[int]] = defaultdict(list)
        for row, label in zip(chunk, found, strict=True):
            groups[label].append(row)
        for members in groups.values():
            labels[members] = len(centroids)
            centroids.append(np.asarray(vectors[members].mean(axis=0)).ravel())

    def assign(chunk: list[int]) -> list[int]:
        if not centroids:
            return chunk
        matrix = sparse.csr_matrix(np.vstack(centroids))
        similarity = (vectors[chunk] @ matrix.T).toarray()
        best = similarity.argmax(axis=1)
        best_value = similarity[np.arange(len(chunk)), best]
        left = []
        for position, row in enumerate(chunk):
            if best_value[position] >= threshold:
                labels[row] = int(best[position])
            else:
                left.append(row)
        return left

    add_clusters(sorted(rows[:dense_limit]))
    rest = rows[dense_limit:]
    leftovers = []
    step = 20000
    for start in range(0, len(rest), step):
        leftovers.extend(assign(rest[start:start + step]))
        if progress is not None:
            progress("clustering", dense_limit + start + min(step, len(rest) - start), count)
    for start in range(0, len(leftovers), dense_limit):
        chunk = assign(leftovers[start:start + dense_limit])
        if chunk:
            add_clusters(chunk)
    return [int(label) for label in labels]


def _cluster_means(vectors: sparse.csr_matrix, groups: Sequence[list[int]]) -> sparse.csr_matrix:
    """Row ``g`` is the mean of ``vectors``' rows ``groups[g]`` (one sparse product for every group)."""
    rows = np.concatenate([np.asarray(members, dtype=np.int64) for members in groups]) if groups else \
        np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(groups)), [len(members) for members in groups])
    share = np.repeat([1.0 / len(members) for members in groups], [len(members) for members in groups])
    membership = sparse.csr_matrix((share, (owner, rows)), shape=(len(groups), vectors.shape[0]))
    means = sparse.csr_matrix(membership @ vectors)
    means.sort_indices()
    return means


def _stable_ids(clusters: dict[int, list[int]], old_topic: dict[int, int | None]) -> dict[int, int]:
    """New cluster -> old topic id it keeps: the old topic holding at least half of the cluster,
    biggest overlaps first, each old id at most once."""
    pairs = []
    for label, members in clusters.items():
        overlap = Counter(old_topic[m] for m in members if old_topic.get(m) is not None)
        for topic_id, shared in overlap.items():
            if topic_id is not None and shared * 2 >= len(members):
                pairs.append((shared, label, topic_id))
    pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
    kept: dict[int, int] = {}
    taken: set[int] = set()
    for _shared, label, topic_id in pairs:
        if label not in kept and topic_id not in taken:
            kept[label] = topic_id
            taken.add(topic_id)
    return kept


def recompute(database: ServiceDatabase, progress: RecomputeProgress | None = None,
              dense_limit: int = DENSE_LIMIT) -> int:
    """Rebuild every topic and the TopicModel from the stored keywords; returns the RecomputeRun id.

    Progress goes to ``progress(stage, done, total)`` and to the run's row (for the console);
    a failure marks the run ``failed`` with its error and re-raises.
    """
    with database.transaction() as session:
        run = RecomputeRun(state="running", stage="loading", done=0, total=0, started_at=utcnow())
        session.add(run)
        session.flush()
        run_id = run.id

    writer: list[Session] = []

    def report(stage: str, done: int, total: int) -> None:
        # Once the rebuild writes, its own transaction records the progress: on SQLite a second
        # writer would wait for the first one, which is this very run.
        values = {"stage": stage, "done": done, "total": total}
        if writer:
            writer[0].execute(update(RecomputeRun).where(RecomputeRun.id == run_id).values(**values))
        else:
            with database.transaction() as session:
                session.execute(update(RecomputeRun).where(RecomputeRun.id == run_id).values(**values))
        if progress is not None:
            progress(stage, done, total)

    try:
        _recompute(database, report, dense_limit, writer)
    except BaseException as error:
        with database.transaction() as session:
            session.execute(update(RecomputeRun).where(RecomputeRun.id == run_id).values(
                state="failed", error=f"{type(error).__name__}: {error}"[:2000], finished_at=utcnow()))
        raise
    with database.transaction() as session:
        session.execute(update(RecomputeRun).where(RecomputeRun.id == run_id).values(
            state="finished", stage="done", finished_at=utcnow()))
    return run_id


def _recompute(database: ServiceDatabase, report: RecomputeProgress, dense_limit: int,
               writer: list[Session]) -> None:
    # Read and cluster without holding a write lock (clustering is the long part); messages that
    # arrive meanwhile keep the topic the incremental update gives them.
    with database.transaction() as session:
        rows = session.execute(
            select(PressMessage.id, PressMessage.keywords, PressMessage.topic_id).order_by(PressMessage.id)).all()
    total = len(rows)
    report("vectors", 0, total)
    ids = [row[0] for row in rows]
    keywords = [list(row[1] or ()) for row in rows]
    frequency: Counter[str] = Counter()
    for words in keywords:
        frequency.update(set(words))
    labels: list[int] = []
    if rows:
        vectors, vocabulary = topics.build_vectors(keywords)
        report("clustering", 0, total)
        labels = scalable_cluster(vectors, dense_limit=dense_limit, progress=report)
    with database.transaction() as session:
        writer.append(session)
        _lock(session)
        model = topic_model(session)
        model.documents = total
        model.document_frequency = dict(frequency)
        model.built_at = utcnow()
        if not rows:
            session.execute(update(Topic).values(size=0))
            return
        old_topic: dict[int, int | None] = {
            message_id: topic_id for message_id, topic_id in session.execute(
                select(PressMessage.id, PressMessage.topic_id).where(PressMessage.id <= ids[-1]))}
        clusters: dict[int, list[int]] = defaultdict(list)
        for row, label in enumerate(labels):
            clusters[label].append(row)
        kept = _stable_ids({label: [ids[r] for r in members] for label, members in clusters.items()}, old_topic)
        report("topics", 0, len(clusters))
        topic_of_label: dict[int, int] = {}
        existing = {topic.id: topic for topic in session.scalars(select(Topic))}
        means = _cluster_means(vectors, list(clusters.values()))
        placed: dict[int, Topic] = {}
        for done, (label, members) in enumerate(clusters.items(), start=1):
            begin, end = means.indptr[done - 1], means.indptr[done]
            centroid = _trim({vocabulary[j]: float(value) for j, value in
                              zip(means.indices[begin:end], means.data[begin:end], strict=True) if value})
            duplicates = (topics._near_duplicates(vectors[members])
                          if 2 <= len(members) <= dense_limit else 0)
            topic = existing.get(kept[label]) if label in kept else None
            if topic is None:
                topic = Topic(label="", keywords=[], size=len(members))
                session.add(topic)
            topic.centroid = centroid
            topic.near_duplicates = duplicates
            topic.size = len(members)
            placed[label] = topic
            if done % 500 == 0:
                report("topics", done, len(clusters))
        session.flush()  # one flush: the new topics are inserted together
        topic_of_label = {label: topic.id for label, topic in placed.items()}
        changes: dict[int, list[int]] = defaultdict(list)
        for row, label in enumerate(labels):
            if old_topic[ids[row]] != topic_of_label[label]:
                changes[topic_of_label[label]].append(ids[row])
        for topic_id, message_ids in changes.items():
            for start in range(0, len(message_ids), 5000):
                session.execute(update(PressMessage).where(PressMessage.id.in_(message_ids[start:start + 5000]))
                                .values(topic_id=topic_id))
        current = set(topic_of_label.values())
        # Topics given to messages that arrived during the clustering stay, with their statistics.
        current |= {topic_id for topic_id in session.scalars(select(PressMessage.topic_id).where(
            PressMessage.id > ids[-1], PressMessage.topic_id.is_not(None))) if topic_id is not None}
        retired = [topic_id for topic_id in existing if topic_id not in current]
        if retired:
            linked = set(session.scalars(select(Alert.topic_id).where(Alert.topic_id.in_(retired)))) | set(
                session.scalars(select(ResponseTopic.topic_id).where(ResponseTopic.topic_id.in_(retired))))
            session.execute(delete(Topic).where(Topic.id.in_([t for t in retired if t not in linked])))
            if linked:
                session.execute(update(Topic).where(Topic.id.in_(linked)).values(
                    size=0, askers=0, likes=0, centroid={}, representative_ids=[]))
        report("statistics", 0, len(current))
        ordered = sorted(current)
        for start in range(0, len(ordered), STATS_CHUNK):
            refresh_topic_stats(session, ordered[start:start + STATS_CHUNK])
            report("statistics", min(start + STATS_CHUNK, len(ordered)), len(ordered))


def _lock(session: Session) -> None:
    """One topic writer at a time on PostgreSQL (a transaction-scoped advisory lock); SQLite
    serialises writers itself."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(PRESS_LOCK)))


def try_lock(session: Session) -> bool:
    """Like :func:`_lock` without waiting: False when another run holds it."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(PRESS_LOCK))))


PRESS_LOCK = 7_240_318
"""The advisory lock key of topic writers (incremental runs and recomputes)."""


def recompute_status(session: Session) -> dict[str, object] | None:
    """The latest recompute run for the console: state, stage, done, total, error, times."""
    run = session.scalar(select(RecomputeRun).order_by(RecomputeRun.started_at.desc(), RecomputeRun.id.desc())
                         .limit(1))
    if run is None:
        return None
    return {
        "id": run.id, "state": run.state, "stage": run.stage, "done": run.done, "total": run.total,
        "error": run.error, "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
