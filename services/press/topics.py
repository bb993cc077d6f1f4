"""Hot topics (热点话题): group public messages into topics and rank them by hotness.

Pure functions over a list of :class:`Message` records, so that the command, the Celery
tasks and the console can share them. Nothing here touches a database.

Pipeline
--------
1. **Keywords** (:func:`keywords_of`): jieba through the project segmenter
   (``services/text/segment.py``: government, legal and finance user dictionaries keep
   office and policy terms whole) in precise mode, each distinct word once per part, over
   the title (counted twice: it says what the message is about) and the details. Estate,
   street and place names jieba does not know (丽 发 新城, 梅 溪湖 街道) are put back
   together by :func:`place_names` (a place suffix with the short pieces before it). Stop
   words (the segmenter's list, ``services/text/data/stopwords.txt``), single characters and
   numbers are dropped.
2. **TF-IDF** (:func:`build_vectors`): scikit-learn with the IDF trained on the messages
   themselves (smoothed idf, sublinear tf, L2-normalised rows; words in fewer than
   :data:`MIN_DOCUMENT_FREQUENCY` messages are ignored, since they cannot link two messages).
3. **Clusters** (:func:`cluster`): agglomerative clustering with *average* linkage on the
   cosine distance ``1 - cos(a, b)`` of the TF-IDF vectors, cut at
   ``1 - SIMILARITY_THRESHOLD``: two groups merge only when the average similarity of all
   their pairs of messages is at least :data:`SIMILARITY_THRESHOLD`. Near-duplicates
   (cosine >= :data:`DUPLICATE_THRESHOLD`) are counted per topic. Average linkage does not
   chain unrelated messages through one go-between the way single linkage does.
4. **Why grouped**: each topic keeps its *shared keywords*, the words present in at least
   half of its messages (all of them for two), ranked by their summed TF-IDF weight in
   the topic. The label is the top three shared keywords (the most central title for a topic of
   one or two messages, or without shared keywords).
   Representative questions are the titles of the messages closest to the topic centroid.
   Labels and representative questions go through ``services.text.pii.redact``.

Hotness index (window ``W`` days, ``now`` = the latest message time unless given)
--------------------------------------------------------------------------------
With ``n`` the topic's messages, ``a`` its distinct askers, ``L`` its likes, ``c`` its
messages in the current window ``(now - W, now]``, ``p`` those in the previous window
``(now - 2W, now - W]``, ``age`` the days since its latest message and ``s`` its search
interest (public searches of the last ``PRESS_SEARCH_WINDOW_HOURS`` whose query shares a word
with the topic's shared keywords, ``services.press.search_interest``; 0 where not known, as in
the CSV command)::

    hotness = ln(1 + n) + ln(1 + a) + 0.5 * ln(1 + L)
              + ln((1 + c) / (1 + p))          # growth, +1 smoothed, negative when falling
              + 2 * 0.5 ** (age / W)           # recency, halves every window
              + 0.5 * ln(1 + s)                # search interest

Logarithms keep one huge topic or one heavily liked message from dominating; a topic
that grows ranks above a flat one of the same size, askers and likes.

Why searches weigh 0.5 (:data:`SEARCH_WEIGHT`), like likes: a search costs less than a message
(nothing written, no account) and the log cannot tell one person searching ten times from ten
people, so a search is a weaker sign than a message or an asker; yet it is the public's interest
before anybody writes in. At half weight 100 searches add about 2.3, what ten messages add
through ``ln(1 + n)``: searches lift a topic people are looking up, they never outrank a topic
people write about in numbers.

Burst score
-----------
The current window's count ``c`` against the topic's own baseline: its ``b`` messages in
the ``k`` whole windows of history before the current window (from the corpus' first
message). The expected count is the +1-smoothed Poisson rate ``λ = (b + 1) / (k + 1)``
(a pseudo-window holding one message, so that a topic with no history has λ = 1 / (k + 1)
rather than 0), and the score is the Poisson z-score ``(c - λ) / sqrt(λ)``. Above about 3
is a burst; a single new message in an empty history gives a modest score when the
history is short.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.cluster import AgglomerativeClustering
from sklearn.feature_extraction.text import TfidfVectorizer

from services.text.pii import redact

SIMILARITY_THRESHOLD = 0.2
"""Average cosine similarity of TF-IDF vectors two groups need to merge into one topic. On the
4,326 messages of ``messages_with_likes.csv``: at 0.3 the 丽发新城 mixing-plant complaints split
in two (搅拌站 / 搅拌厂 wording); at 0.2 they form one topic of 56 while the 伊景园滨河苑
parking complaints stay one topic of 57 and unrelated estates stay apart."""
DUPLICATE_THRESHOLD = 0.8
"""Cosine similarity at or above which two messages count as near-duplicates."""
MIN_DOCUMENT_FREQUENCY = 2
TITLE_WEIGHT = 2
SHARED_KEYWORDS = 5
REPRESENTATIVES = 3
KEYWORD_LABEL_MIN_SIZE = 3
TITLE_LABEL_LENGTH = 40
DEFAULT_WINDOW_DAYS = 7.0
LIKES_WEIGHT = 0.5
RECENCY_WEIGHT = 2.0
SEARCH_WEIGHT = 0.5
"""Weight of ``ln(1 + searches)`` in the hotness index (why: see the module docstring)."""


@dataclass(frozen=True)
class Message:
    id: str
    title: str
    text: str
    asker: str
    time: datetime
    likes: int = 0


@dataclass
class Topic:
    label: str
    keywords: list[str]
    """The shared keywords: why these messages were grouped."""
    representative_questions: list[str]
    member_ids: list[str]
    size: int
    askers: int
    likes: int
    first: datetime
    last: datetime
    current: int
    """Messages in the current window."""
    previous: int
    """Messages in the window before."""
    near_duplicates: int
    hotness: float = 0.0
    burst: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    """Messages per day (ISO date), for trend charts."""


Progress = Callable[[Iterable[Message]], Iterable[Message]]


def _identity(items: Iterable[Message]) -> Iterable[Message]:
    return items


def message_keywords(messages: Sequence[Message], progress: Progress = _identity) -> list[list[str]]:
    """The keywords of each message (title counted :data:`TITLE_WEIGHT` times), in order."""
    return [keywords_of(message.title, message.text) for message in progress(messages)]


def keywords_of(title: str, text: str) -> list[str]:
    """The keywords of one message (title words :data:`TITLE_WEIGHT` times, then the details'),
    each distinct word once per part, place names included (stored at ingest)."""
    return _part_keywords(title) * TITLE_WEIGHT + _part_keywords(text)


def _part_keywords(text: str) -> list[str]:
    from services.text.segment import get_segmenter, is_word_token

    segmenter = get_segmenter()
    tokens = segmenter.cut(text)
    stopwords = segmenter.stopwords
    words = _words(token for token in tokens if is_word_token(token) and token not in stopwords)
    return list(dict.fromkeys([*words, *place_names(tokens, stopwords)]))


PLACE_SUFFIXES: frozenset[str] = frozenset({
    "苑", "园", "城", "新城", "小区", "花园", "家园", "公寓", "广场", "大厦", "社区", "村", "镇", "乡", "街道",
    "路", "街", "大道", "巷", "湾", "府", "庭", "山庄", "花苑", "公馆", "新村",
})
"""Words that end the name of an estate, a street or a place (丽发 + 新城, 凉塘 + 路)."""
ADMINISTRATIVE_ENDINGS = ("省", "市", "县", "区", "州", "旗")
"""A word ending so (长沙市, A7县, 四区) comes before a place name, it is not part of it."""
MAX_PLACE_NAME = 7
NOT_IN_PLACE_NAMES = frozenset("这那此该本各每个条几")
"""Demonstratives and measure words (这条路) that jieba leaves single but are no part of a name."""


def place_names(tokens: Sequence[str], stopwords: frozenset[str] = frozenset()) -> list[str]:
    """Estate, street and place names jieba does not know, put back together (丽 发 新城 → 丽发新城,
    伊 景园 滨河 苑 → 伊景园滨河苑, 梅 溪湖 街道 → 梅溪湖街道).

    A name is a suffix word (:data:`PLACE_SUFFIXES`) with the short words before it (one or two
    characters each, Chinese characters only, not a stop word, not ending with an administrative unit
    such as 市 or 区), at most :data:`MAX_PLACE_NAME` characters in all, and at least one of those
    words a single character: the sign that jieba cut an unknown name into pieces. Known words
    before a suffix (车位 路) are left alone."""
    names: list[str] = []
    used_until = -1
    for index, token in enumerate(tokens):
        if token not in PLACE_SUFFIXES:
            continue
        start, length = index, len(token)
        while start - 1 > used_until:
            previous = tokens[start - 1]
            if (len(previous) > 2 or not all("\u4e00" <= ch <= "\u9fff" for ch in previous)
                    or previous in stopwords or previous in NOT_IN_PLACE_NAMES
                    or previous.endswith(ADMINISTRATIVE_ENDINGS)
                    or length + len(previous) > MAX_PLACE_NAME):
                break
            start -= 1
            length += len(previous)
        if start < index and any(len(piece) == 1 for piece in tokens[start:index]):
            names.append("".join(tokens[start:index + 1]))
            used_until = index
    return names


def emergency_terms_in(text: str, terms: Iterable[str]) -> list[str]:
    """The configured emergency terms ``text`` mentions, in the order configured."""
    return [term for term in terms if term and term in text]


def _words(tokens: Iterable[str]) -> list[str]:
    """Keywords worth comparing: two characters or more, and never a number (a number of five
    digits or more could be part of a phone or ID number)."""
    return [token for token in tokens if len(token) >= 2 and sum(ch.isdigit() for ch in token) < 5
            and not token.isdigit()]


def build_vectors(keywords: Sequence[Sequence[str]]) -> tuple[sparse.csr_matrix, list[str]]:
    """L2-normalised TF-IDF rows (IDF trained on these messages) and the vocabulary."""
    min_df = MIN_DOCUMENT_FREQUENCY if len(keywords) >= 2 * MIN_DOCUMENT_FREQUENCY else 1
    vectorizer = TfidfVectorizer(
        analyzer=_as_is, min_df=min_df, sublinear_tf=True, smooth_idf=True, norm="l2", lowercase=False
    )
    try:
        matrix = vectorizer.fit_transform(keywords)
    except ValueError:  # no word left at all
        return sparse.csr_matrix((len(keywords), 0)), []
    return sparse.csr_matrix(matrix), [str(word) for word in vectorizer.get_feature_names_out()]


def _as_is(tokens: Sequence[str]) -> Sequence[str]:
    return tokens


def cluster(vectors: sparse.csr_matrix, threshold: float = SIMILARITY_THRESHOLD) -> list[int]:
    """A topic number per row: average-linkage agglomerative clustering on cosine distance,
    cut where the average similarity would drop below ``threshold``."""
    count = vectors.shape[0]
    if count == 0:
        return []
    if count == 1:
        return [0]
    similarity = (vectors @ vectors.T).toarray().astype(np.float64)
    distance = np.clip(1.0 - similarity, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    model = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=1.0 - threshold
    )
    labels = model.fit_predict(distance)
    return [int(label) for label in labels]


def hotness(
    size: int, askers: int, likes: int, current: int, previous: int, age_days: float, window_days: float,
    searches: int = 0,
) -> float:
    """The hotness index (formula in the module docstring); ``searches`` is the topic's search interest."""
    growth = math.log((1 + current) / (1 + previous))
    recency = math.pow(0.5, max(age_days, 0.0) / window_days)
    return (
        math.log1p(size) + math.log1p(askers) + LIKES_WEIGHT * math.log1p(max(likes, 0)) + growth
        + RECENCY_WEIGHT * recency + SEARCH_WEIGHT * math.log1p(max(searches, 0))
    )


def burst_score(current: int, baseline: int, baseline_windows: int) -> float:
    """Poisson z-score of ``current`` against ``baseline`` messages over ``baseline_windows``
    earlier windows, with +1 smoothing: λ = (baseline + 1) / (baseline_windows + 1)."""
    rate = (baseline + 1) / (max(baseline_windows, 0) + 1)
    return (current - rate) / math.sqrt(rate)


def find_topics(
    messages: Sequence[Message],
    window_days: float = DEFAULT_WINDOW_DAYS,
    now: datetime | None = None,
    threshold: float = SIMILARITY_THRESHOLD,
    progress: Progress = _identity,
) -> list[Topic]:
    """All topics of ``messages``, hottest first."""
    if not messages:
        return []
    if window_days <= 0:
        raise ValueError("the window must be longer than zero days")
    keywords = message_keywords(messages, progress)
    vectors, vocabulary = build_vectors(keywords)
    labels = cluster(vectors, threshold)
    now = now or max(message.time for message in messages)
    start = min(message.time for message in messages)
    window = timedelta(days=window_days)
    baseline_windows = max(int((now - window - start) / window), 0)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(label, []).append(index)
    topics = [
        _topic(messages, vectors, vocabulary, rows, now, window, window_days, baseline_windows)
        for rows in members.values()
    ]
    topics.sort(key=lambda topic: (-topic.hotness, -topic.size, topic.member_ids[0]))
    return topics


def _topic(
    messages: Sequence[Message],
    vectors: sparse.csr_matrix,
    vocabulary: list[str],
    rows: list[int],
    now: datetime,
    window: timedelta,
    window_days: float,
    baseline_windows: int,
) -> Topic:
    chosen = [messages[row] for row in rows]
    chosen_vectors = vectors[rows]
    keywords = _shared_keywords(chosen_vectors, vocabulary)
    centroid = np.asarray(chosen_vectors.mean(axis=0)).ravel()
    closeness = chosen_vectors @ centroid if chosen_vectors.shape[1] else np.zeros(len(rows))
    order = sorted(range(len(rows)), key=lambda i: (-float(closeness[i]), chosen[i].time))
    representatives: list[str] = []
    for i in order:
        title = _safe(chosen[i].title.strip())
        if title and title not in representatives:
            representatives.append(title)
        if len(representatives) == REPRESENTATIVES:
            break
    label = topic_label(keywords, representatives, len(chosen))
    current = sum(1 for m in chosen if now - window < m.time <= now)
    previous = sum(1 for m in chosen if now - 2 * window < m.time <= now - window)
    baseline = sum(1 for m in chosen if m.time <= now - window)
    last = max(m.time for m in chosen)
    size = len(chosen)
    askers = len({m.asker for m in chosen if m.asker} or {m.id for m in chosen})
    likes = sum(max(m.likes, 0) for m in chosen)
    age_days = (now - last).total_seconds() / 86400
    by_day = Counter(m.time.date().isoformat() for m in chosen)
    return Topic(
        label=label,
        keywords=[_safe(word) for word in keywords],
        representative_questions=representatives,
        member_ids=[m.id for m in sorted(chosen, key=lambda m: (m.time, m.id))],
        size=size,
        askers=askers,
        likes=likes,
        first=min(m.time for m in chosen),
        last=last,
        current=current,
        previous=previous,
        near_duplicates=_near_duplicates(chosen_vectors),
        hotness=hotness(size, askers, likes, current, previous, age_days, window_days),
        burst=burst_score(current, baseline, baseline_windows),
        counts=dict(sorted(by_day.items())),
    )


def topic_label(keywords: Sequence[str], titles: Sequence[str], size: int) -> str:
    """The top three shared keywords; for a topic of fewer than :data:`KEYWORD_LABEL_MIN_SIZE`
    messages (its "shared" keywords are just one message's words) or without keywords, its most
    central title, shortened to :data:`TITLE_LABEL_LENGTH` characters. Redacted either way."""
    if keywords and size >= KEYWORD_LABEL_MIN_SIZE:
        # A word inside a longer shared keyword (新城 in 丽发新城) says nothing more.
        top = list(keywords[:SHARED_KEYWORDS])
        shown = [word for word in top if not any(word != other and word in other for other in top)]
        return _safe("·".join(shown[:3]))
    title = _safe(titles[0]) if titles else (_safe("·".join(keywords[:3])) if keywords else "")
    return title if len(title) <= TITLE_LABEL_LENGTH else title[:TITLE_LABEL_LENGTH - 1] + "…"


def _shared_keywords(vectors: sparse.csr_matrix, vocabulary: list[str]) -> list[str]:
    if not vocabulary:
        return []
    size = vectors.shape[0]
    presence = np.asarray((vectors > 0).sum(axis=0)).ravel()
    weight = np.asarray(vectors.sum(axis=0)).ravel()
    needed = size if size <= 2 else math.ceil(size / 2)
    candidates = np.flatnonzero(presence >= needed)
    if size == 1:
        candidates = np.flatnonzero(presence > 0)
    ranked = sorted(candidates, key=lambda j: (-float(weight[j]), vocabulary[j]))
    return [vocabulary[j] for j in ranked[:SHARED_KEYWORDS]]


def _near_duplicates(vectors: sparse.csr_matrix) -> int:
    """Messages of the topic that have a near-duplicate in it (cosine >= DUPLICATE_THRESHOLD)."""
    if vectors.shape[0] < 2 or vectors.shape[1] == 0:
        return 0
    similarity = (vectors @ vectors.T).toarray()
    np.fill_diagonal(similarity, 0.0)
    return int((similarity >= DUPLICATE_THRESHOLD).any(axis=1).sum())


def _safe(text: str) -> str:
    """Text fit to show: phone, ID, e-mail and bank card numbers replaced by markers."""
    return redact(text).text


# --------------------------------------------------------------------------- CSV input

ID_COLUMN = "留言编号"
ASKER_COLUMN = "留言用户"
TITLE_COLUMN = "留言主题"
TIME_COLUMN = "留言时间"
TEXT_COLUMN = "留言详情"
LIKES_COLUMN = "点赞数"
REQUIRED_COLUMNS: tuple[str, ...] = (ID_COLUMN, TITLE_COLUMN, TIME_COLUMN, TEXT_COLUMN)
"""留言用户 (distinct askers) and 点赞数 (likes) are optional."""

_TIME_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d")


class MessageFileError(Exception):
    """The file cannot be read as messages (one readable line)."""


def parse_time(text: str) -> datetime:
    """``2019/2/28 11:25:05``, ``2019-08-01 09:00:00``, ``2019/2/28 11:25`` or a date alone
    (naive, in the source's local time)."""
    cleaned = " ".join(text.split()).replace("-", "/")
    for layout in _TIME_FORMATS:
        try:
            return datetime.strptime(cleaned, layout)
        except ValueError:
            continue
    raise ValueError(f"not a date and time: {text.strip()!r}")


def read_messages_csv(path: Path) -> tuple[list[Message], int]:
    """The messages of a file shaped like ``messages_with_likes.csv`` and the number of rows
    skipped (no title and no text, or an unreadable time)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise MessageFileError(f"{path}: {error.strerror or error}") from None
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            content = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise MessageFileError(f"{path}: neither UTF-8 nor GB18030 text")
    reader = csv.DictReader(io.StringIO(content, newline=""))
    try:
        header = [(column or "").strip() for column in reader.fieldnames or []]
    except csv.Error as error:
        raise MessageFileError(f"{path}: not a CSV file ({error})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise MessageFileError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(needs {', '.join(REQUIRED_COLUMNS)}; found {', '.join(header) or 'none'})"
        )
    reader.fieldnames = header
    messages: list[Message] = []
    skipped = 0
    try:
        for row in reader:
            title = " ".join((row.get(TITLE_COLUMN) or "").split())
            text = " ".join((row.get(TEXT_COLUMN) or "").split())
            try:
                moment = parse_time(row.get(TIME_COLUMN) or "")
            except ValueError:
                skipped += 1
                continue
            if not title and not text:
                skipped += 1
                continue
            likes_text = (row.get(LIKES_COLUMN) or "").strip()
            messages.append(Message(
                id=(row.get(ID_COLUMN) or "").strip() or f"line{reader.line_num}",
                title=title,
                text=text,
                asker=(row.get(ASKER_COLUMN) or "").strip(),
                time=moment,
                likes=int(likes_text) if likes_text.isdigit() else 0,
            ))
    except csv.Error as error:
        raise MessageFileError(f"{path}: line {reader.line_num}: not a CSV row ({error})") from None
    return messages, skipped


OUTPUT_COLUMNS: tuple[str, ...] = (
    "rank", "label", "hotness", "burst", "size", "askers", "likes", "first", "last", "current_window",
    "previous_window", "near_duplicates", "keywords", "representative_questions", "member_ids",
)


def topic_rows(topics: Sequence[Topic]) -> Iterator[dict[str, str]]:
    """One CSV row per topic, in :data:`OUTPUT_COLUMNS` (lists joined with ``|``)."""
    for rank, topic in enumerate(topics, start=1):
        yield {
            "rank": str(rank),
            "label": topic.label,
            "hotness": f"{topic.hotness:.3f}",
            "burst": f"{topic.burst:.3f}",
            "size": str(topic.size),
            "askers": str(topic.askers),
            "likes": str(topic.likes),
            "first": topic.first.isoformat(sep=" "),
            "last": topic.last.isoformat(sep=" "),
            "current_window": str(topic.current),
            "previous_window": str(topic.previous),
            "near_duplicates": str(topic.near_duplicates),
            "keywords": "|".join(topic.keywords),
            "representative_questions": "|".join(topic.representative_questions),
            "member_ids": "|".join(topic.member_ids),
        }
