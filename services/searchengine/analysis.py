"""What both adapters compute the same way, in Python, so that they cannot drift: the
reading of a query (phrases, words, synonyms), the ranking factors and their explanation,
date bounds, facet ordering and the entries of the suggestion index.

Ranking (relevance order, text queries only)
    final = text_score × recency × validity
    * text_score: the engine's BM25 (title weighted ``TITLE_WEIGHT`` times the body);
    * recency = RECENCY_FLOOR + (1 − RECENCY_FLOOR) × 0.5 ^ (|now − published_at| / RECENCY_HALF_LIFE_DAYS):
      1 for today, 0.75 at two years, never below RECENCY_FLOOR (undated documents get the
      floor). Elasticsearch's ``exp`` decay function has this shape, so both engines compute it;
    * validity = EXPIRED_FACTOR for policies whose 有效性 is one of EXPIRED_VALIDITIES, else 1.

    Gentle on purpose: a title match published two years ago still ranks above a body-only
    mention published today (the conformance suite checks it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from services.searchengine.port import DOC_TYPES, parse_published_at
from services.text.segment import get_segmenter, normalize, segment_query, split_phrases, word_starts

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")

RECENCY_FLOOR = 0.5
RECENCY_HALF_LIFE_DAYS = 730
EXPIRED_VALIDITIES: tuple[str, ...] = ("失效", "废止")
EXPIRED_FACTOR = 0.5
_MS_PER_DAY = 86_400_000
#: ln(0.5) per millisecond of age: Elasticsearch's exp decay with scale = half-life, decay = 0.5.
RECENCY_LAMBDA_PER_MS = math.log(0.5) / (RECENCY_HALF_LIFE_DAYS * _MS_PER_DAY)

#: Values counted per facet field at most (the most frequent first).
FACET_SIZE = 200

#: Suggestion keys (and typed prefixes) are cut to this many characters.
SUGGEST_KEY_CHARS = 100
#: At most this many word starts inside a title are indexed besides the title itself.
SUGGEST_WORD_STARTS = 8
#: Weight of a title-start entry over any word-start entry; the day number is added to both.
SUGGEST_TITLE_BAND = 1_000_000
_SUGGEST_MAX_DAY = SUGGEST_TITLE_BAND - 1
#: Characters a completion input may not contain (Elasticsearch reserves them).
_SUGGEST_RESERVED = re.compile("[\x00\x1e\x1f]")
_EPOCH_DAY = date(1970, 1, 1)
MAX_SUGGESTIONS = 20

#: More-like-this: the most characteristic words of a document (tf × idf), words found in
#: fewer documents than MLT_MIN_DOC_FREQ or shorter than MLT_MIN_WORD_LENGTH characters left
#: out; a related document shares at least MLT_MIN_SHOULD_MATCH_PERCENT % of them (rounded
#: down, at least one), as Elasticsearch's ``minimum_should_match`` counts.
MLT_MAX_QUERY_TERMS = 25
MLT_MIN_DOC_FREQ = 2
MLT_MIN_WORD_LENGTH = 2
MLT_MIN_SHOULD_MATCH_PERCENT = 30
MAX_RELATED = 20


# -- the query's text -------------------------------------------------------------------


@dataclass(frozen=True)
class TextPlan:
    """How a query's text is matched (see the rules in ``port``), synonyms applied.

    ``phrases``: per phrase of the query, the phrase and then its synonyms; any of them
    matches (as a CJK bigram phrase). ``words``: per jieba word, the word (matched among the
    segmented words) and its synonyms (matched as CJK bigram phrases). ``marks``: the terms
    the highlighter wraps in <mark>."""

    phrases: tuple[tuple[str, ...], ...]
    words: tuple[tuple[str, tuple[str, ...]], ...]
    marks: tuple[str, ...]

    @property
    def has_synonyms(self) -> bool:
        return any(len(options) > 1 for options in self.phrases) or any(others for _, others in self.words)


def synonym_map(groups: Iterable[Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """term -> every member of every group holding it (normalised as queries are; the
    term itself included), for groups of two or more distinct terms."""
    members_of: dict[str, dict[str, None]] = {}
    for group in groups:
        members = list(dict.fromkeys(term for term in (_synonym_term(raw) for raw in group) if term))
        if len(members) < 2:
            continue
        for member in members:
            members_of.setdefault(member, {}).update(dict.fromkeys(members))
    return {term: tuple(members) for term, members in members_of.items()}


def _synonym_term(raw: str) -> str:
    """A synonym as one phrase: normalised, spaces and punctuation removed."""
    return "".join(split_phrases(raw)) if isinstance(raw, str) else ""


def plan_text(text: str, synonyms: Iterable[Iterable[str]] = ()) -> TextPlan:
    phrases = split_phrases(text)
    words = segment_query(text)
    expand = synonym_map(synonyms)
    phrase_options = tuple((phrase, *(m for m in expand.get(phrase, ()) if m != phrase)) for phrase in phrases)
    word_options = tuple((word, tuple(m for m in expand.get(word, ()) if m != word)) for word in words)
    candidates = [*phrases, *words]
    for options in phrase_options:
        candidates.extend(options)
    for _, others in word_options:
        candidates.extend(others)
    unique = list(dict.fromkeys(term for term in candidates if term))
    stopwords = get_segmenter().stopwords
    marks = [term for term in unique if term not in stopwords] or unique
    return TextPlan(phrase_options, word_options, tuple(marks))


# -- ranking ------------------------------------------------------------------------------


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def published_ms(value: Any) -> int | None:
    """published_at in epoch milliseconds (as Elasticsearch stores dates); None when undated."""
    published = parse_published_at(value)
    return None if published is None else math.floor(published.timestamp() * 1000)


def recency(published: int | None, now: int) -> float:
    """The recency factor of a document published at ``published`` (epoch ms) seen at ``now``."""
    if published is None:
        return RECENCY_FLOOR
    return RECENCY_FLOOR + (1 - RECENCY_FLOOR) * math.exp(RECENCY_LAMBDA_PER_MS * abs(now - published))


def validity_factor(validity: Any) -> float:
    return EXPIRED_FACTOR if validity in EXPIRED_VALIDITIES else 1.0


def explain(
    document: Mapping[str, Any], final: float | None, now: int, text_score: float | None = None
) -> dict[str, Any]:
    """The explanation of a hit's score: ``{"text_score", "recency", "validity", "final"}``.
    ``text_score`` defaults to ``final`` divided by the two factors; both scores are None
    when the results are sorted by date."""
    factor_recency = recency(published_ms(document.get("published_at")), now)
    factor_validity = validity_factor(document.get("validity"))
    if text_score is None and final is not None:
        text_score = final / (factor_recency * factor_validity)
    return {
        "text_score": text_score,
        "recency": factor_recency,
        "validity": factor_validity,
        "final": final,
    }


# -- filters and facets -------------------------------------------------------------------


def published_bounds(date_from: date | None, date_to: date | None) -> tuple[datetime | None, datetime | None]:
    """``[since, until)`` for days ``date_from``..``date_to`` (inclusive) in China's time."""
    since = datetime.combine(date_from, time(), CHINA) if date_from else None
    until = datetime.combine(date_to + timedelta(days=1), time(), CHINA) if date_to else None
    return since, until


def ordered_facet(counts: Mapping[str, int]) -> dict[str, int]:
    """Values with their counts, most frequent first (then by value), empty values dropped,
    at most FACET_SIZE."""
    ranked = sorted(((value, count) for value, count in counts.items() if value and count > 0), key=_facet_key)
    return dict(ranked[:FACET_SIZE])


def _facet_key(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


# -- suggestions and related documents ------------------------------------------------------


def _check_doc_types(doc_types: tuple[str, ...]) -> None:
    unknown = set(doc_types) - set(DOC_TYPES)
    if unknown:
        raise ValueError(f"unknown doc_types {sorted(unknown)}; expected some of {DOC_TYPES}")


def check_suggest_args(limit: int, doc_types: tuple[str, ...]) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SUGGESTIONS:
        raise ValueError(f"limit must be within 1..{MAX_SUGGESTIONS}")
    _check_doc_types(doc_types)


def check_related_args(limit: int, doc_types: tuple[str, ...]) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RELATED:
        raise ValueError(f"limit must be within 1..{MAX_RELATED}")
    _check_doc_types(doc_types)


def mlt_minimum_should_match(terms: int) -> int:
    return max(1, terms * MLT_MIN_SHOULD_MATCH_PERCENT // 100)


def suggestion_key(text: str) -> str:
    """The form titles and typed prefixes are compared in: normalised, one space between
    words, at most SUGGEST_KEY_CHARS characters."""
    return " ".join(_SUGGEST_RESERVED.sub("", normalize(text)).split())[:SUGGEST_KEY_CHARS]


def suggestion_day(published_at: Any) -> int:
    """The China-time day of publication as a day number (0 when undated)."""
    try:
        published = parse_published_at(published_at)
    except ValueError:
        return 0
    if published is None:
        return 0
    return max(0, min((published.astimezone(CHINA).date() - _EPOCH_DAY).days, _SUGGEST_MAX_DAY))


def suggestion_entries(title: str, published_at: Any) -> list[tuple[str, int]]:
    """(key, weight) pairs to index for a title: the title itself (weight band
    SUGGEST_TITLE_BAND) and the title from each of its first word starts (no band), each
    weighted further by its day of publication, so that title starts come first, then the
    newest."""
    key = suggestion_key(title)
    if not key:
        return []
    day = suggestion_day(published_at)
    entries = [(key, SUGGEST_TITLE_BAND + day)]
    collapsed = " ".join(_SUGGEST_RESERVED.sub("", normalize(title)).split())
    seen = {key}
    for start in word_starts(collapsed):
        if len(seen) > SUGGEST_WORD_STARTS:
            break
        suffix = collapsed[start:].lstrip()[:SUGGEST_KEY_CHARS]
        if start == 0 or len(suffix) < 2 or suffix in seen:
            continue
        seen.add(suffix)
        entries.append((suffix, day))
    return entries
