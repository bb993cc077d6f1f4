"""The production search engine: Elasticsearch 8 through elasticsearch-py 8.

Also talks to OpenSearch-family servers (osmem-server in the tests): see
``PlainJsonHttpNode`` for the two protocol details that needs.

Deletes are tombstones: a deleted document is replaced by ``{"tombstone": true}`` written
with the delete's version (``version_type=external_gte``), because Elasticsearch forgets
the version of a real delete after ``index.gc_deletes`` (60 s) and a late, older write
would then bring the document back. Search, count and get filter tombstones out.

Ranking, highlights, synonyms and suggestions follow ``analysis`` and ``highlight`` so
that both adapters agree: the recency and validity factors are a ``function_score`` around
the text query; highlights are made in Python from the returned ``_source`` (escape first,
then mark); suggestions are a ``completion`` field with a ``doc_type`` context, whose inputs
and weights ``analysis.suggestion_entries`` computes.

Run ``python -m services.searchengine.elastic`` to print the index settings
(``deploy/elasticsearch/index-settings.json`` is that output; a test compares them).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from elastic_transport import ApiResponseMeta, HttpHeaders, TransportError, Urllib3HttpNode
from elastic_transport._node import NodeApiResponse
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError

from services.searchengine.analysis import (
    EXPIRED_FACTOR,
    EXPIRED_VALIDITIES,
    FACET_SIZE,
    MLT_MAX_QUERY_TERMS,
    MLT_MIN_DOC_FREQ,
    MLT_MIN_SHOULD_MATCH_PERCENT,
    MLT_MIN_WORD_LENGTH,
    RECENCY_FLOOR,
    RECENCY_HALF_LIFE_DAYS,
    SUGGEST_KEY_CHARS,
    SUGGEST_WORD_STARTS,
    TextPlan,
    check_related_args,
    check_suggest_args,
    explain,
    now_ms,
    ordered_facet,
    plan_text,
    published_bounds,
    suggestion_entries,
    suggestion_key,
)
from services.searchengine.highlight import highlight_document
from services.searchengine.port import (
    DOC_TYPES,
    KEYWORD_FIELDS,
    TITLE_WEIGHT,
    EngineHealth,
    IndexNotFound,
    SearchEngineError,
    SearchHit,
    SearchQuery,
    SearchResult,
    SearchUnavailable,
    Suggestion,
    hit_from_document,
    index_number,
    indices_to_prune,
    sort_by_number,
    validate_alias,
    validate_document,
    validate_version,
    versioned_index_name,
)
from services.text.segment import segment_for_index

#: Fields the adapter computes; kept out of what get/search return.
COMPUTED_FIELDS: tuple[str, ...] = ("title_seg", "body_seg", "suggest")

_COMPAT_MEDIA_TYPE = re.compile(r"application/vnd\.elasticsearch\+([\w-]+)(\s*;\s*compatible-with=\d+)?")
_PRODUCT_HEADER = "X-Elastic-Product"
_UNAVAILABLE_STATUSES = frozenset({401, 403, 429, 502, 503, 504})
_HEALTH_TIMEOUT = 3.0
_MAX_CAUSE_LENGTH = 300
_VERSIONED_INDEX = re.compile(r"[a-z0-9_]+-v\d+-\d{14}")
_CREATE_ATTEMPTS = 5
_INDEX_NOT_FOUND = "index_not_found_exception"
#: Fields a suggestion needs from a document.
_SUGGESTION_SOURCE = ("id", "doc_type", "title", "url")


def index_settings() -> dict[str, Any]:
    """Settings and mappings of every versioned index (production is Elasticsearch 8;
    osmem-server accepts the same body, see the tests)."""

    def text_cjk() -> dict[str, Any]:
        return {"type": "text", "analyzer": "gongkai_cjk"}

    def text_segmented() -> dict[str, Any]:
        return {"type": "text", "analyzer": "gongkai_whitespace"}

    def keyword() -> dict[str, Any]:
        return {"type": "keyword"}

    return {
        "settings": {
            "number_of_shards": 1,
            "analysis": {
                "analyzer": {
                    # Recall: overlapping CJK bigrams match any 2+ character substring.
                    # (Not named "cjk": that would shadow Elasticsearch's built-in analyzer.)
                    "gongkai_cjk": {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": ["cjk_width", "lowercase", "cjk_bigram"],
                    },
                    # Precision: text the application segmented with jieba.
                    "gongkai_whitespace": {
                        "type": "custom",
                        "tokenizer": "whitespace",
                        "filter": ["lowercase"],
                    },
                    # Suggestions: the whole input, prefix-matched (inputs come normalised).
                    "gongkai_suggest": {
                        "type": "custom",
                        "tokenizer": "keyword",
                        "filter": ["cjk_width", "lowercase"],
                    },
                },
            },
        },
        "mappings": {
            # Unknown document keys are kept in _source but not indexed.
            "dynamic": False,
            "properties": {
                "id": keyword(),
                "doc_type": keyword(),
                "title": text_cjk(),
                "title_seg": text_segmented(),
                "summary": text_cjk(),
                "body": text_cjk(),
                "body_seg": text_segmented(),
                "url": {"type": "keyword", "index": False},
                "published_at": {"type": "date"},
                **{name: keyword() for name in KEYWORD_FIELDS},
                # Title starts and word starts (analysis.suggestion_entries), weighted by
                # band and day; the doc_type context filters suggestions by type.
                "suggest": {
                    "type": "completion",
                    "analyzer": "gongkai_suggest",
                    "max_input_length": SUGGEST_KEY_CHARS,
                    "contexts": [{"name": "doc_type", "type": "category", "path": "doc_type"}],
                },
                "tombstone": {"type": "boolean"},
                "deleted_at": {"type": "date"},
            },
        },
    }


class PlainJsonHttpNode(Urllib3HttpNode):
    """An ``elastic_transport`` node that speaks plain ``application/json``.

    elasticsearch-py 8 sends ``application/vnd.elasticsearch+json; compatible-with=8``,
    which OpenSearch-family servers reject; Elasticsearch 8 accepts plain JSON too.

    elasticsearch-py 8 also refuses every response without ``X-Elastic-Product:
    Elasticsearch`` (its "product check"), which OpenSearch does not send. This node adds
    the header when it is missing; ``ElasticsearchEngine`` checks what the server really
    is (Elasticsearch 8 or OpenSearch) on first contact instead.
    """

    def perform_request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        request_timeout: DefaultType | float | None = DEFAULT,
    ) -> NodeApiResponse:
        response = super().perform_request(
            method, target, body=body, headers=_plain_json(headers), request_timeout=request_timeout
        )
        _mark_product(response.meta)
        return response


def _plain_json(headers: HttpHeaders | None) -> HttpHeaders | None:
    if headers is None:
        return None
    plain = headers.copy()
    for name in ("accept", "content-type"):
        value = plain.get(name)
        if value:
            plain[name] = _COMPAT_MEDIA_TYPE.sub(r"application/\1", value)
    return plain


def _mark_product(meta: ApiResponseMeta) -> None:
    if _PRODUCT_HEADER not in meta.headers:
        meta.headers[_PRODUCT_HEADER] = "Elasticsearch"


def _error_reason(error: ApiError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        details = body["error"]
        return f"{details.get('type')}: {details.get('reason')}"
    return str(error.message)


def _indexed_source(doc_id: str, document: dict[str, Any], version: int) -> dict[str, Any]:
    """The checked document with the fields the adapter computes (segmented text, suggestions)."""
    checked = validate_document(doc_id, document)
    validate_version(version)
    source = {
        **checked,
        "title_seg": segment_for_index(checked.get("title") or ""),
        "body_seg": segment_for_index(checked.get("body") or ""),
    }
    suggestions = _completion_inputs(checked)
    if suggestions:
        source["suggest"] = suggestions
    return source


def _completion_inputs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``suggest`` field's value: the entries of ``analysis.suggestion_entries``, grouped by weight."""
    inputs: dict[int, list[str]] = {}
    for key, weight in suggestion_entries(document.get("title") or "", document.get("published_at")):
        inputs.setdefault(weight, []).append(key)
    return [{"input": keys, "weight": weight} for weight, keys in inputs.items()]


def _any_of(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}


def _words_in_title_or_body(words: list[str]) -> dict[str, Any]:
    return {
        "multi_match": {
            "query": " ".join(words),
            "type": "cross_fields",
            "operator": "and",
            "fields": [f"title_seg^{TITLE_WEIGHT}", "body_seg"],
        }
    }


def _text_clause(text: str | TextPlan) -> dict[str, Any] | None:
    """The query for ``text`` (see the matching rules in ``port``; a ``TextPlan`` brings synonyms)."""
    plan = plan_text(text) if isinstance(text, str) else text
    alternatives: list[dict[str, Any]] = []
    if plan.phrases:
        phrases = [_any_of([_phrase_in_title_or_body(option) for option in options]) for options in plan.phrases]
        alternatives.append({"bool": {"must": phrases}})
    if plan.words:
        if not any(synonyms for _, synonyms in plan.words):
            alternatives.append(_words_in_title_or_body([word for word, _ in plan.words]))
        else:
            alternatives.append(
                {
                    "bool": {
                        "must": [
                            _any_of([_words_in_title_or_body([word]), *(_phrase_in_title_or_body(s) for s in synonyms)])
                            for word, synonyms in plan.words
                        ]
                    }
                }
            )
    if not alternatives:
        return None
    return {"bool": {"should": alternatives, "minimum_should_match": 1}}


def _ranked(text: dict[str, Any], now: int) -> dict[str, Any]:
    """``text`` scored × recency × validity (see ``analysis``)."""
    origin = datetime.fromtimestamp(now / 1000, UTC).isoformat(timespec="milliseconds")
    with_recency = {
        "function_score": {
            "query": text,
            "functions": [
                {"weight": RECENCY_FLOOR},
                {
                    # A decay function gives 1 to a document without the field: undated
                    # documents get the floor alone.
                    "filter": {"exists": {"field": "published_at"}},
                    "exp": {"published_at": {"origin": origin, "scale": f"{RECENCY_HALF_LIFE_DAYS}d", "decay": 0.5}},
                    "weight": 1 - RECENCY_FLOOR,
                },
            ],
            "score_mode": "sum",
            "boost_mode": "multiply",
        }
    }
    return {
        "function_score": {
            "query": with_recency,
            "functions": [{"filter": {"terms": {"validity": list(EXPIRED_VALIDITIES)}}, "weight": EXPIRED_FACTOR}],
            "score_mode": "multiply",
            "boost_mode": "multiply",
        }
    }


def _phrase_in_title_or_body(phrase: str) -> dict[str, Any]:
    # A bool/should sums title and body scores, as FTS5's bm25() does over its columns.
    return {
        "bool": {
            "should": [
                {"match_phrase": {"title": {"query": phrase, "boost": TITLE_WEIGHT}}},
                {"match_phrase": {"body": {"query": phrase}}},
            ],
            "minimum_should_match": 1,
        }
    }


def _filters(doc_types: tuple[str, ...], keyword_filters: dict[str, str]) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = []
    if doc_types:
        clauses.append({"terms": {"doc_type": list(doc_types)}})
    clauses.extend({"term": {name: value}} for name, value in sorted(keyword_filters.items()))
    return clauses


def _query_filters(query: SearchQuery) -> list[dict[str, Any]]:
    clauses = _filters(query.doc_types, query.filters)
    since, until = published_bounds(query.date_from, query.date_to)
    bounds = {}
    if since is not None:
        bounds["gte"] = since.isoformat()
    if until is not None:
        bounds["lt"] = until.isoformat()
    if bounds:
        clauses.append({"range": {"published_at": bounds}})
    return clauses


def _live_documents(filters: list[dict[str, Any]], must: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "bool": {
            "must": [must or {"match_all": {}}],
            "filter": filters,
            "must_not": [{"term": {"tombstone": True}}],
        }
    }


_DATE_SORT: tuple[dict[str, Any], ...] = ({"published_at": {"order": "desc", "missing": "_last"}}, {"id": "asc"})


class ElasticsearchEngine:
    """``SearchEngine`` on Elasticsearch 8 (or OpenSearch) via elasticsearch-py 8."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        ca_file: str | None = None,
        timeout: float = 10,
    ) -> None:
        self.url = url
        self._api_key = api_key
        self._ca_file = ca_file
        self._timeout = timeout
        self._lock = threading.Lock()
        self._client: Elasticsearch | None = None
        self._client_pid: int | None = None
        self._server_checked = False

    # -- client -------------------------------------------------------------------------

    def _es(self) -> Elasticsearch:
        """The client, created on first use and again after a fork (its connection pool
        must not be shared between processes); the server is checked on first contact."""
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                self._client = self._new_client()
                self._client_pid = os.getpid()
                self._server_checked = False
            client = self._client
            if not self._server_checked:
                self._check_server(client)
                self._server_checked = True
        return client

    def _new_client(self) -> Elasticsearch:
        options: dict[str, Any] = {
            "node_class": PlainJsonHttpNode,
            "request_timeout": self._timeout,
            "max_retries": 1,
            "retry_on_timeout": False,
        }
        if self._api_key:
            options["api_key"] = self._api_key
        if self._ca_file:
            options["ca_certs"] = self._ca_file
        try:
            return Elasticsearch(self.url, **options)
        except ValueError as error:
            raise SearchEngineError(f"invalid search url {self.url!r}: {error}") from error

    def _check_server(self, client: Elasticsearch) -> None:
        """Stand-in for elasticsearch-py's product check, which ``PlainJsonHttpNode``
        satisfies for every server: accept Elasticsearch 8+ and OpenSearch only."""
        with self._translate_errors("checking the server"):
            meta, info = client.transport.perform_request(
                "GET",
                "/",
                headers={"accept": "application/json"},
                request_timeout=min(self._timeout, _HEALTH_TIMEOUT),
                max_retries=0,
            )
        if meta.status in _UNAVAILABLE_STATUSES:
            raise SearchUnavailable(f"搜索引擎不可用 / search engine at {self.url} answered {meta.status}")
        version = info.get("version", {}) if isinstance(info, dict) else {}
        is_opensearch = version.get("distribution") == "opensearch"
        is_elasticsearch = meta.headers.get(_PRODUCT_HEADER) == "Elasticsearch" and not is_opensearch
        leading_digits = re.match(r"\d+", str(version.get("number", "")))
        major = int(leading_digits.group()) if leading_digits else 0
        if not (is_opensearch or (is_elasticsearch and major >= 8)):
            raise SearchEngineError(
                f"the server at {self.url} is not Elasticsearch 8+ or OpenSearch (status {meta.status})"
            )

    @contextmanager
    def _translate_errors(self, action: str) -> Iterator[None]:
        """Engine errors become ``SearchUnavailable`` (retry later) or ``SearchEngineError``."""
        try:
            yield
        except ApiError as error:
            reason = _error_reason(error)
            if error.status_code in _UNAVAILABLE_STATUSES:
                raise SearchUnavailable(
                    f"搜索引擎不可用 / search engine unavailable while {action}: {error.status_code} {reason}"
                ) from error
            refusal = IndexNotFound if reason.startswith(_INDEX_NOT_FOUND) else SearchEngineError
            raise refusal(f"search engine refused {action}: {error.status_code} {reason}") from error
        except TransportError as error:
            cause = f"{type(error).__name__}: {error.message}"[:_MAX_CAUSE_LENGTH]
            raise SearchUnavailable(
                f"搜索引擎不可用 / cannot reach the search engine at {self.url} while {action}: {cause}"
            ) from error

    # -- the port: indices and aliases ------------------------------------------------------

    def health(self) -> EngineHealth:
        try:
            client = self._es().options(request_timeout=min(self._timeout, _HEALTH_TIMEOUT), max_retries=0)
            with self._translate_errors("checking health"):
                health = client.cluster.health()
        except (SearchUnavailable, SearchEngineError) as error:
            return EngineHealth(False, str(error))
        status = health.get("status")
        detail = f"cluster {health.get('cluster_name')} at {self.url}: {status}"
        return EngineHealth(status in ("green", "yellow"), detail)

    def ensure_alias(self, alias: str) -> str:
        """Several processes may find the alias missing at once (all of them, when the cluster lost
        its data) and each create an index: the alias must end on one of them, the same for all, before
        any of them writes. Each adds its index only while the alias has none, then the alias keeps its
        oldest index and the others are taken off it and dropped (still empty: their creators have
        not returned yet)."""
        current = self.current_index(alias)
        if current is not None:
            return current
        index = self.create_index(alias)
        if not self._alias_indices(alias):
            with self._translate_errors(f"pointing {alias} at {index}"):
                self._es().indices.update_aliases(actions=[{"add": {"index": index, "alias": alias}}])
        holders = sort_by_number(alias, self._alias_indices(alias)) or [index]
        kept = holders[0]
        if kept != index:
            if index in holders:
                with self._translate_errors(f"taking {alias} off {index}"):
                    self._es().indices.update_aliases(actions=[{"remove": {"index": index, "alias": alias}}])
            self.drop_index(index)
        return kept

    def create_index(self, alias: str) -> str:
        validate_alias(alias)
        for _ in range(_CREATE_ATTEMPTS):
            existing = self.list_indices(alias)
            number = max((index_number(alias, name) or 0 for name in existing), default=0) + 1
            name = versioned_index_name(alias, number)
            try:
                with self._translate_errors(f"creating index {name}"):
                    self._es().indices.create(index=name, **index_settings())
            except SearchEngineError as error:
                if "resource_already_exists_exception" in str(error):
                    continue  # another process took this number; take the next
                raise
            return name
        raise SearchEngineError(f"could not create a new index for {alias}: names kept colliding")

    def swap_alias(self, alias: str, new_index: str) -> str | None:
        validate_alias(alias)
        if index_number(alias, new_index) is None:
            raise SearchEngineError(f"{new_index} is not a versioned index of {alias}")
        old = self.current_index(alias)
        if old == new_index:
            return old
        actions: list[dict[str, Any]] = []
        if old is not None:
            actions.append({"remove": {"index": old, "alias": alias}})
        actions.append({"add": {"index": new_index, "alias": alias}})
        with self._translate_errors(f"pointing {alias} at {new_index}"):
            self._es().indices.update_aliases(actions=actions)
        return old

    def current_index(self, alias: str) -> str | None:
        indices = self._alias_indices(alias)
        if len(indices) > 1:
            raise SearchEngineError(f"alias {alias} points at several indices: {sorted(indices)}")
        return indices[0] if indices else None

    def _alias_indices(self, alias: str) -> list[str]:
        validate_alias(alias)
        try:
            with self._translate_errors(f"reading alias {alias}"):
                found = self._es().indices.get_alias(name=alias)
        except SearchEngineError as error:
            if isinstance(error.__cause__, NotFoundError):
                return []
            raise
        return list(found.body)

    def list_indices(self, alias: str) -> list[str]:
        validate_alias(alias)
        with self._translate_errors(f"listing the indices of {alias}"):
            found = self._es().indices.get_alias(index=f"{alias}-v*", allow_no_indices=True, ignore_unavailable=True)
        return sort_by_number(alias, list(found.body))

    def prune(self, alias: str, keep: int = 1) -> list[str]:
        doomed = indices_to_prune(alias, self.list_indices(alias), self.current_index(alias), keep)
        for index in doomed:
            self.drop_index(index)
        return doomed

    def drop_index(self, index: str) -> None:
        try:
            with self._translate_errors(f"reading the aliases of {index}"):
                found = self._es().indices.get_alias(index=index)
        except SearchEngineError as error:
            if isinstance(error.__cause__, NotFoundError):
                return
            raise
        aliases = sorted(found.body.get(index, {}).get("aliases", {}))
        if aliases:
            raise SearchEngineError(f"{index} is behind alias {', '.join(aliases)}; swap the alias first")
        with self._translate_errors(f"deleting index {index}"):
            self._es().options(ignore_status=404).indices.delete(index=index)

    # -- the port: documents ----------------------------------------------------------------

    def index_document(self, target: str, doc_id: str, document: dict[str, Any], version: int) -> bool:
        source = _indexed_source(doc_id, document, version)
        return self._versioned_write(target, doc_id, source, version, "external")

    def index_documents(self, target: str, documents: Sequence[tuple[str, dict[str, Any], int]]) -> list[bool]:
        """One ``_bulk`` request with external versions; a document refused as stale (409) is
        False, any other refusal raises (after the rest of the batch was written: the writes are
        idempotent, so the caller may send the batch again)."""
        sources = [(doc_id, _indexed_source(doc_id, document, version), version)
                   for doc_id, document, version in documents]
        if not sources:
            return []
        operations: list[dict[str, Any]] = []
        for doc_id, source, version in sources:
            operations.append({"index": {"_index": target, "_id": doc_id, "version": version,
                                         "version_type": "external"}})
            operations.append(source)
        with self._translate_errors(f"writing {len(sources)} documents to {target}"):
            reply = self._es().bulk(operations=operations, require_alias=not _VERSIONED_INDEX.fullmatch(target))
        results: list[bool] = []
        for (doc_id, _, _), item in zip(sources, reply.get("items", []), strict=True):
            outcome = next(iter(item.values()))
            status = int(outcome.get("status", 500))
            if status == 409:
                results.append(False)
                continue
            if status >= 300:
                reason = json.dumps(outcome.get("error"), ensure_ascii=False)[:_MAX_CAUSE_LENGTH]
                if status in _UNAVAILABLE_STATUSES:
                    raise SearchUnavailable(f"搜索引擎不可用 / search engine unavailable while writing {doc_id} to "
                                            f"{target}: {status} {reason}")
                refusal = IndexNotFound if (outcome.get("error") or {}).get("type") == _INDEX_NOT_FOUND \
                    else SearchEngineError
                raise refusal(f"search engine refused writing document {doc_id} to {target}: {status} {reason}")
            results.append(True)
        return results

    def delete_document(self, target: str, doc_id: str, version: int) -> bool:
        validate_version(version)
        tombstone = {"id": doc_id, "tombstone": True, "deleted_at": datetime.now(UTC).isoformat()}
        # external_gte: a delete carrying the same version as the document still wins.
        return self._versioned_write(target, doc_id, tombstone, version, "external_gte")

    def _versioned_write(
        self, target: str, doc_id: str, source: dict[str, Any], version: int, version_type: str
    ) -> bool:
        try:
            with self._translate_errors(f"writing document {doc_id} to {target}"):
                self._es().index(
                    index=target,
                    id=doc_id,
                    document=source,
                    version=version,
                    version_type=version_type,  # type: ignore[arg-type]
                    # Without it a write to a missing alias would create an index with
                    # guessed mappings.
                    require_alias=not _VERSIONED_INDEX.fullmatch(target),
                )
        except SearchEngineError as error:
            if isinstance(error.__cause__, ConflictError):
                return False  # a newer version (or tombstone) is stored
            raise
        return True

    def get_document(self, target: str, doc_id: str) -> dict[str, Any] | None:
        try:
            with self._translate_errors(f"reading document {doc_id} from {target}"):
                found = self._es().get(index=target, id=doc_id, source_excludes=list(COMPUTED_FIELDS))
        except SearchEngineError as error:
            if _is_missing_document(error):
                return None
            raise
        source = found["_source"]
        if source.get("tombstone"):
            return None
        return {**source, "_version": found["_version"]}

    def count(self, target: str, doc_type: str | None = None) -> int:
        if doc_type is not None and doc_type not in DOC_TYPES:
            raise ValueError(f"doc_type must be one of {DOC_TYPES}")
        query = _live_documents(_filters((doc_type,) if doc_type else (), {}))
        with self._translate_errors(f"counting {target}"):
            return int(self._es().count(index=target, query=query)["count"])

    def refresh(self, target: str) -> None:
        with self._translate_errors(f"refreshing {target}"):
            self._es().indices.refresh(index=target)

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._client_pid == os.getpid():
                self._client.close()
            self._client = None

    # -- the port: search -------------------------------------------------------------------

    def search(self, alias: str, query: SearchQuery) -> SearchResult:
        plan = plan_text(query.text, query.synonyms) if query.has_text else None
        text = _text_clause(plan) if plan is not None else None
        scored = not query.sorts_by_date and text is not None
        now = now_ms()
        sort: list[str | dict[str, Any]] = ["_score", *_DATE_SORT] if scored else list(_DATE_SORT)
        must = _ranked(text, now) if scored and text is not None else text
        aggregations = {name: {"terms": {"field": name, "size": FACET_SIZE}} for name in query.facets}
        with self._translate_errors(f"searching {alias}"):
            response = self._es().search(
                index=alias,
                query=_live_documents(_query_filters(query), must),
                sort=sort,
                from_=query.offset,
                size=query.per_page,
                track_total_hits=True,
                track_scores=scored,
                source_excludes=list(COMPUTED_FIELDS),
                aggs=aggregations or None,
            )
        hits = []
        marks = plan.marks if plan is not None else ()
        for found in response["hits"]["hits"]:
            document = found["_source"]
            score = found.get("_score") if scored else None
            hit = hit_from_document(document, score)
            if query.highlight:
                hit = replace(hit, highlights=highlight_document(document, marks))
            if query.explain:
                hit = replace(hit, explanation=explain(document, score, now))
            hits.append(hit)
        buckets = response.get("aggregations") or {}
        facets = {
            name: ordered_facet({str(b["key"]): int(b["doc_count"]) for b in buckets.get(name, {}).get("buckets", [])})
            for name in query.facets
        }
        return SearchResult(total=int(response["hits"]["total"]["value"]), hits=hits, facets=facets)

    # -- the port: suggestions and related documents ------------------------------------------

    def suggest(self, alias: str, prefix: str, limit: int = 8, doc_types: tuple[str, ...] = ()) -> list[Suggestion]:
        check_suggest_args(limit, doc_types)
        key = suggestion_key(prefix)
        if not key:
            return []
        completion = {
            "field": "suggest",
            # One document may match at several of its entries; ask for enough to fill ``limit``.
            "size": limit * (SUGGEST_WORD_STARTS + 1),
            "contexts": {"doc_type": list(doc_types or DOC_TYPES)},
        }
        with self._translate_errors(f"suggesting from {alias}"):
            response = self._es().search(
                index=alias,
                size=0,
                suggest={"titles": {"prefix": key, "completion": completion}},
                source_includes=list(_SUGGESTION_SOURCE),
            )
        options = [option for entry in response.get("suggest", {}).get("titles", []) for option in entry["options"]]
        best: dict[str, tuple[float, dict[str, Any]]] = {}
        for option in options:
            weight = float(option.get("_score") or 0.0)
            if option["_id"] not in best or weight > best[option["_id"]][0]:
                best[option["_id"]] = (weight, option.get("_source") or {})
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
        return [
            Suggestion(source.get("title") or "", doc_id, source.get("doc_type") or "", source.get("url") or "")
            for doc_id, (_, source) in ranked
        ]

    def related(self, alias: str, doc_id: str, limit: int = 5, doc_types: tuple[str, ...] = ()) -> list[SearchHit]:
        check_related_args(limit, doc_types)
        if self.get_document(alias, doc_id) is None:
            return []
        like = {
            "more_like_this": {
                "fields": ["title_seg", "body_seg"],
                # No _index: the searched index (an alias would also match the document itself).
                "like": [{"_id": doc_id}],
                "min_term_freq": 1,
                "min_doc_freq": MLT_MIN_DOC_FREQ,
                "max_query_terms": MLT_MAX_QUERY_TERMS,
                "min_word_length": MLT_MIN_WORD_LENGTH,
                "minimum_should_match": f"{MLT_MIN_SHOULD_MATCH_PERCENT}%",
            }
        }
        query = _live_documents(_filters(doc_types, {}), like)
        query["bool"]["must_not"].append({"ids": {"values": [doc_id]}})
        with self._translate_errors(f"finding documents like {doc_id} in {alias}"):
            response = self._es().search(
                index=alias,
                query=query,
                sort=["_score", *_DATE_SORT],
                size=limit,
                track_scores=True,
                source_excludes=list(COMPUTED_FIELDS),
            )
        return [hit_from_document(hit["_source"], hit.get("_score")) for hit in response["hits"]["hits"]]


def _is_missing_document(error: SearchEngineError) -> bool:
    cause = error.__cause__
    # A 404 for a missing document carries found=false; a missing index is an error.
    return isinstance(cause, NotFoundError) and isinstance(cause.body, dict) and cause.body.get("found") is False


if __name__ == "__main__":
    print(json.dumps(index_settings(), ensure_ascii=False, indent=2))
