"""Bulk import of policies from CSV or JSON, for ``gongkai interpret import`` and the import API.

Formats
-------
* **CSV**, UTF-8 with or without a byte-order mark, with either

  - our own column names: ``title, issuer, level, body, document_number, category_group, topic, source,
    written_on, published_at, validity, original_url`` (``title``, ``issuer`` and ``level`` are required
    columns, the others optional; an unknown column is refused so that a misspelt one loses nothing), or
  - the columns of the gov.cn dataset (``Policy, Year, Policy_Content, URL, Scope, Source``; ``Country`` is
    ignored): the title is ``Policy``; the 文号 is read from the start of ``Policy_Content`` right after the
    title, and both are cut off the body; the body is plain text (escaped); the publication date is the one
    in the gov.cn address when its year is ``Year``, else 1 January of ``Year`` (as the demo seed does);
    ``Scope`` National → 国家, Provincial → 省; ``Source`` GOV_CHN → issuer 国务院, source 中国政府网.
* **JSON**: a list of objects with our names (or ``{"rows": [...]}``); values are strings or null.

Rows are numbered as a spreadsheet shows them (the CSV header is row 1, so the first policy is row 2) and,
in JSON, by their position in the list from 1.

``body`` in our own format is rich text, checked by the same rules as the editor's (no scripts); a body
without any tag is plain text, escaped as needed (``研发 & 税收`` is kept, not refused).
``written_on`` is a date (``2017-03-01``, ``2017/3/1`` or ``2017年3月1日``); ``published_at`` a date or an ISO
date-time (Beijing time unless it says otherwise). ``published_at`` is required, and used, only when
importing as published; it cannot lie in the future, nor before ``written_on``.

All or nothing
--------------
:func:`import_policies` checks every row before it writes anything: the workflow's own rules (title, level,
validity, 文号 format and uniqueness, body markup), required values, lengths, dates and addresses. Any bad
row, and nothing is written; the report names each row, field and problem. Otherwise every row is created
in the caller's transaction, so an unexpected failure half-way rolls back with everything else.

Which rows are already there (idempotent re-runs)
-------------------------------------------------
A row *is* a policy already in the database, or an earlier row of the same file, when any of these holds:

1. the same issuer and 文号;
2. the same original address (``original_url``);
3. the same issuer, title and date — the 成文日期, else the publication date (for a row: ``published_at``
   when importing as published; for a stored policy: its first publication) — unless both carry an
   original address and the addresses differ (two decisions of one title, e.g. 国务院令第506号 and 第606号).

Such a row is **skipped** and reported as such, never imported twice. It is an **error** instead when the
two disagree on what the document is: a different title (compared ignoring spaces and full/half-width
forms) or, both having one, a different 文号. Titles are compared exactly in the database lookup.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from sqlalchemy import String, select, text
from sqlalchemy.orm import Session

from interpret.models import OutboxEvent, Policy
from interpret.workflow import (
    ContentProblem,
    PolicyFields,
    _check_policy_fields,
    create_policy,
    extract_document_number,
    import_published_policy,
    normalise_document_number,
    validate_document_number,
)
from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import StaffIdentity
from services.db import utcnow
from services.permissions import Permission, require
from services.text.richtext import sanitise_html

BEIJING = timezone(timedelta(hours=8))

FIELDS: tuple[str, ...] = (
    "title", "issuer", "level", "body", "document_number", "category_group", "topic", "source",
    "written_on", "published_at", "validity", "original_url",
)
"""Our own column names (CSV header, JSON keys)."""
REQUIRED_COLUMNS: tuple[str, ...] = ("title", "issuer", "level")
GOVCN_COLUMNS: tuple[str, ...] = ("Policy", "Year", "Policy_Content", "URL", "Scope", "Source")
GOVCN_IGNORED: frozenset[str] = frozenset({"Country"})
GOVCN_LEVELS = {"national": "国家", "provincial": "省"}
GOVCN_SOURCES = {"GOV_CHN": ("国务院", "中国政府网")}
"""gov.cn ``Source`` → (issuer, 信息来源)."""

FORMATS = ("csv", "json")
DEFAULT_MAX_ROWS = 5000
"""What one API request may import (``INTERPRET_IMPORT_MAX_ROWS``); the CLI has no limit."""

PUBLISHED_HOUR = 9
"""A publication given as a bare date is taken as 09:00 Beijing time (as the demo seed does)."""

_URL_DATE = re.compile(r"/(\d{4})-(\d{2})/(\d{2})/")
_CHINESE_DATE = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$")
_NUMERIC_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_BRACKETS = {"[": "〔", "［": "〔", "(": "〔", "（": "〔", "]": "〕", "］": "〕", ")": "〕", "）": "〕"}

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while rows are written."""


class ImportFileError(Exception):
    """The file as a whole cannot be read (encoding, syntax, columns); the message is one readable line."""


@dataclass(frozen=True)
class RowInput:
    """One row of an import, in our own field names, as read (strings, or None when empty)."""

    row: int
    values: Mapping[str, Any]
    problems: tuple[tuple[str, str], ...] = ()
    """(field, message) found while reading the row (a bad gov.cn year, an extra CSV cell, ...)."""


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str


@dataclass(frozen=True)
class RowOutcome:
    """What happened to a good row: ``imported``, ``skipped`` or, in a dry run, ``would_import``."""

    row: int
    outcome: str
    title: str
    document_number: str | None = None
    message: str = ""
    policy_id: int | None = None
    index_number: str | None = None


@dataclass
class ImportReport:
    total: int
    published: bool
    dry_run: bool
    outcomes: list[RowOutcome] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def count(self, outcome: str) -> int:
        return sum(1 for item in self.outcomes if item.outcome == outcome)

    @property
    def imported(self) -> int:
        return self.count("imported")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def bad_rows(self) -> int:
        return len({error.row for error in self.errors})

    def summary(self) -> str:
        """The one line the CLI and the API say."""
        if not self.ok:
            return (f"{self.bad_rows} of {self.total} rows have errors; nothing was imported "
                    f"/ {self.bad_rows} 行有错误，未导入任何文件")
        if self.dry_run:
            return f"dry run: would import {self.count('would_import')}, skip {self.skipped} (nothing written)"
        return f"imported {self.imported}, skipped {self.skipped}"

    def errors_by_row(self) -> dict[str, dict[str, list[str]]]:
        """``{"<row>": {"<field>": ["message", ...]}}``: the API's 422 ``errors.rows``."""
        rows: dict[str, dict[str, list[str]]] = {}
        for error in self.errors:
            rows.setdefault(str(error.row), {}).setdefault(error.field, []).append(error.message)
        return rows

    def report_rows(self) -> list[dict[str, Any]]:
        """One line per problem, or per row when there is none (the CLI's ``--report`` CSV)."""
        if not self.ok:
            return [{"row": e.row, "outcome": "error", "field": e.field, "message": e.message,
                     "title": "", "document_number": "", "policy_id": "", "index_number": ""} for e in self.errors]
        return [{"row": o.row, "outcome": o.outcome, "field": "", "message": o.message, "title": o.title,
                 "document_number": o.document_number or "", "policy_id": o.policy_id or "",
                 "index_number": o.index_number or ""} for o in self.outcomes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total, "imported": self.imported, "skipped": self.skipped,
            "would_import": self.count("would_import"), "published": self.published, "dry_run": self.dry_run,
            "summary": self.summary(),
            "rows": [
                {"row": o.row, "outcome": o.outcome, "title": o.title, "document_number": o.document_number,
                 "message": o.message, "policy_id": o.policy_id, "index_number": o.index_number}
                for o in self.outcomes
            ],
            "errors": [{"row": e.row, "field": e.field, "message": e.message} for e in self.errors],
        }


REPORT_COLUMNS = ("row", "outcome", "field", "message", "title", "document_number", "policy_id", "index_number")


def write_report_csv(report: ImportReport, target: IO[str]) -> None:
    writer = csv.DictWriter(target, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    writer.writerows(report.report_rows())


def max_rows_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``INTERPRET_IMPORT_MAX_ROWS`` (default 5,000); ConfigError names it when malformed."""
    from services.settings import ConfigError

    raw = (os.environ if environ is None else environ).get("INTERPRET_IMPORT_MAX_ROWS", "").strip()
    if not raw:
        return DEFAULT_MAX_ROWS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError("INTERPRET_IMPORT_MAX_ROWS", f"expected a whole number of at least 1, got {raw!r}")
    return int(raw)


def format_of(name: str | None, given: str | None = None) -> str:
    """The format asked for, else the one the file name's extension says."""
    if given:
        if given.lower() not in FORMATS:
            raise ImportFileError(f"unknown format {given!r}: use csv or json")
        return given.lower()
    suffix = Path(name or "").suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    raise ImportFileError(f"cannot tell the format of {name or 'the file'!r}: give csv or json")


# -- reading ------------------------------------------------------------------------------------


def parse_rows(source: str | os.PathLike[str] | IO[bytes] | bytes, file_format: str) -> list[RowInput]:
    """The rows of a CSV or JSON file (a path, an open binary file or its bytes)."""
    if isinstance(source, bytes):
        raw = source
    elif isinstance(source, (str, os.PathLike)):
        try:
            raw = Path(source).read_bytes()
        except OSError as error:
            raise ImportFileError(f"cannot read {os.fspath(source)}: {error.strerror or error}") from None
    else:
        raw = source.read()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportFileError(
            f"the file is not UTF-8 (byte {error.start}); save it as UTF-8 (e.g. from GBK) "
            "/ 文件须为 UTF-8 编码"
        ) from None
    if file_format == "csv":
        return _csv_rows(content)
    if file_format == "json":
        return _json_rows(content)
    raise ImportFileError(f"unknown format {file_format!r}: use csv or json")


def _csv_rows(content: str) -> list[RowInput]:
    reader = csv.DictReader(io.StringIO(content, newline=""), restkey="\0extra")
    try:
        header = [name.strip() for name in (reader.fieldnames or [])]
    except csv.Error as error:
        raise ImportFileError(f"malformed CSV: {error}") from None
    if not header:
        raise ImportFileError("the file is empty: no header row / 文件为空")
    reader.fieldnames = header
    columns = set(header)
    if set(GOVCN_COLUMNS) <= columns:
        unknown = columns - set(GOVCN_COLUMNS) - GOVCN_IGNORED
        if unknown:
            raise ImportFileError(f"unknown columns for the gov.cn format: {', '.join(sorted(unknown))}")
        convert: Callable[[int, dict[str, Any]], RowInput] = _govcn_row
    else:
        unknown = columns - set(FIELDS)
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown columns {', '.join(sorted(unknown))}")
            if missing:
                parts.append(f"missing columns {', '.join(missing)}")
            raise ImportFileError(
                f"{'; '.join(parts)}: use {', '.join(FIELDS)} "
                f"(or the gov.cn dataset's {', '.join(GOVCN_COLUMNS)})"
            )
        convert = _own_row
    rows = []
    try:
        for number, record in enumerate(reader, start=2):
            rows.append(convert(number, record))
    except csv.Error as error:
        raise ImportFileError(f"malformed CSV near row {reader.line_num}: {error}") from None
    return rows


def _extra_cells(record: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    extra = record.pop("\0extra", None)
    if extra and any((cell or "").strip() for cell in extra):
        return (("row", f"this row has {len(extra)} more cells than the header / 本行的列数多于表头"),)
    return ()


def _own_row(number: int, record: dict[str, Any]) -> RowInput:
    problems = _extra_cells(record)
    values = {name: _text(record.get(name)) for name in FIELDS if name in record}
    return RowInput(number, values, problems)


def _json_rows(content: str) -> list[RowInput]:
    try:
        data = json.loads(content)
    except json.JSONDecodeError as error:
        raise ImportFileError(f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    if isinstance(data, dict) and "rows" in data:
        data = data["rows"]
    if not isinstance(data, list):
        raise ImportFileError('JSON must be a list of objects (or {"rows": [...]}) / JSON 应为对象列表')
    return rows_from_objects(data)


def rows_from_objects(items: Sequence[Any]) -> list[RowInput]:
    """JSON objects with our names, numbered from 1; wrong keys and types are row problems."""
    rows = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            rows.append(RowInput(number, {}, (("row", "each row must be an object / 每行应为对象"),)))
            continue
        problems: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        for key, value in item.items():
            if key not in FIELDS:
                problems.append((str(key), f"unknown field; use {', '.join(FIELDS)} / 未知字段"))
            elif value is not None and not isinstance(value, str):
                problems.append((key, "must be a string or null / 应为文本"))
            else:
                values[key] = _text(value)
        rows.append(RowInput(number, values, tuple(problems)))
    return rows


def _text(value: Any) -> str | None:
    if value is None:
        return None
    cleaned = str(value).strip()
    return cleaned or None


def _canonical(char: str) -> str:
    folded = unicodedata.normalize("NFKC", char)
    return _BRACKETS.get(folded, folded)


def cut_prefix(text_: str, prefix: str) -> str | None:
    """``text_`` after ``prefix``, ignoring spaces and full/half-width forms; None unless it starts so."""
    wanted = [_canonical(char) for char in prefix if not char.isspace()]
    position = 0
    for char in wanted:
        while position < len(text_) and text_[position].isspace():
            position += 1
        if position >= len(text_) or _canonical(text_[position]) != char:
            return None
        position += 1
    return text_[position:]


def split_title_and_number(title: str, content: str) -> tuple[str | None, str]:
    """The 文号 an official document carries right after its title, and the body after both.

    ``extract_document_number`` finds the first 文号 in a text; it is only taken when it opens what follows
    the title (a 文号 cited further on, e.g. of the request a reply answers, is not this document's).
    """
    rest = cut_prefix(content, title)
    if rest is None:
        return None, content.strip()
    head = "".join(char for char in rest[:120] if not char.isspace())
    number = extract_document_number(head)
    if number is None or not normalise_document_number(head).startswith(number):
        return None, rest.strip()
    body = cut_prefix(rest, number)
    return number, (body if body is not None else rest).strip()


def plain_text_body(text_: str) -> str:
    """Plain text as the rich-text body stores it (escaped, and as the sanitiser writes it)."""
    return sanitise_html(html.escape(text_, quote=False)) if text_ else ""


def govcn_published_at(year: int, url: str) -> datetime:
    """The date in a gov.cn address when its year is the document's, else 1 January (09:00 Beijing)."""
    found = _URL_DATE.search(url)
    day = date(year, 1, 1)
    if found and int(found.group(1)) == year:
        with contextlib.suppress(ValueError):  # a malformed address: fall back to 1 January
            day = date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
    return datetime(day.year, day.month, day.day, PUBLISHED_HOUR, tzinfo=BEIJING)


def _govcn_row(number: int, record: dict[str, Any]) -> RowInput:
    problems = list(_extra_cells(record))
    title = _text(record.get("Policy")) or ""
    content = (record.get("Policy_Content") or "").strip()
    document_number, body = split_title_and_number(title, content) if title else (None, content)
    url = _text(record.get("URL"))
    issuer, source = GOVCN_SOURCES.get((record.get("Source") or "").strip(), (None, _text(record.get("Source"))))
    if issuer is None:
        problems.append(("Source", "the issuer is known only for GOV_CHN; use our own columns "
                                   "(issuer, level, ...) for other sources / 无法确定发布机构"))
    scope = (record.get("Scope") or "").strip().lower()
    year_text = (record.get("Year") or "").strip()
    published_at: str | None = None
    if year_text.isdigit() and 1949 <= int(year_text) <= utcnow().year:
        published_at = govcn_published_at(int(year_text), url or "").isoformat()
    else:
        problems.append(("Year", f"expected a year, got {year_text!r} / 年份有误"))
    values = {
        "title": title or None, "issuer": issuer, "level": GOVCN_LEVELS.get(scope, "其他"),
        "body": plain_text_body(body), "document_number": document_number, "category_group": "政策文件",
        "source": source, "published_at": published_at, "original_url": url,
    }
    return RowInput(number, values, tuple(problems))


# -- checking ------------------------------------------------------------------------------------


_LENGTHS = {
    name: column.type.length
    for name, column in Policy.__table__.columns.items()
    if isinstance(column.type, String) and column.type.length and name in FIELDS
}


def parse_day(value: str) -> date:
    for pattern in (_CHINESE_DATE, _NUMERIC_DATE):
        found = pattern.match(value)
        if found:
            return date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
    raise ValueError(f"not a date: {value!r}")


def parse_moment(value: str) -> datetime:
    """A publication time: a date (09:00 Beijing) or an ISO date-time (Beijing unless zoned)."""
    if _CHINESE_DATE.match(value) or _NUMERIC_DATE.match(value):
        day = parse_day(value)
        return datetime(day.year, day.month, day.day, PUBLISHED_HOUR, tzinfo=BEIJING)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=BEIJING)


def _day(moment: datetime) -> date:
    return moment.astimezone(BEIJING).date()


def _beijing_day(moment: datetime | None) -> date | None:
    return _day(moment) if moment is not None else None


def title_key(title: str) -> str:
    """A title as compared for identity: no spaces, full/half-width forms folded."""
    return "".join(_canonical(char) for char in title if not char.isspace())


@dataclass
class _Candidate:
    row: int
    fields: PolicyFields
    published_at: datetime | None
    key_day: date | None


@dataclass(frozen=True)
class _Known:
    """A policy already stored, or an earlier row of the file, as the identity rule sees it."""

    label: str
    issuer: str
    title: str
    document_number: str | None
    original_url: str | None
    key_day: date | None
    row: int | None = None


def _read_fields(row: RowInput, department: str, published: bool) -> tuple[_Candidate, dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}

    def bad(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    for name, message in row.problems:
        bad(name, message)
    values = row.values
    for name, limit in _LENGTHS.items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > limit:
            bad(name, f"at most {limit} characters, got {len(value)} / 超过 {limit} 字")
    if not values.get("issuer"):
        bad("issuer", "请填写发布机构 / issuer is required")
    written_on: date | None = None
    if values.get("written_on"):
        try:
            written_on = parse_day(values["written_on"])
        except ValueError:
            bad("written_on", "日期格式应为 YYYY-MM-DD / expected a date such as 2017-03-01")
    published_at: datetime | None = None
    if values.get("published_at"):
        try:
            published_at = parse_moment(values["published_at"])
        except ValueError:
            bad("published_at", "发布日期格式应为 YYYY-MM-DD 或 ISO 时间 / expected a date or an ISO date-time")
    now = utcnow()
    if published:
        if published_at is None and "published_at" not in errors:
            bad("published_at", "以已发布状态导入须填写发布日期 / required when importing as published")
        elif published_at is not None and published_at > now:
            bad("published_at", "发布日期不能晚于现在 / cannot lie in the future")
        elif published_at is not None and written_on is not None and written_on > _day(published_at):
            bad("written_on", "成文日期不能晚于发布日期 / cannot be after the publication date")
    if written_on is not None and written_on > now.astimezone(BEIJING).date():
        bad("written_on", "成文日期不能晚于今天 / cannot lie in the future")
    if values.get("validity") == "已修订":
        bad("validity", "导入时不能为“已修订”：导入后在编辑时指明修订后的文件 "
                        "/ import as 有效 or 失效, then name the replacing policy when editing")
    url = values.get("original_url")
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        bad("original_url", "原文地址应以 http:// 或 https:// 开头 / expected an http(s) address")
    if values.get("document_number"):
        try:
            validate_document_number(values["document_number"])
        except ContentProblem as problem:
            for name, messages in problem.errors.items():
                errors.setdefault(name, []).extend(messages)
    body = values.get("body") or ""
    if "<" not in body and sanitise_html(body) != body:
        body = plain_text_body(body)  # plain text with a bare & or the like: stored escaped, not refused
    fields = PolicyFields(
        title=values.get("title") or "", issuer=values.get("issuer") or "", level=values.get("level") or "",
        body=body, department=department,
        document_number=values.get("document_number"), category_group=values.get("category_group"),
        topic=values.get("topic"), source=values.get("source"), written_on=written_on,
        validity=values.get("validity") or "有效", original_url=url,
    )
    if fields.document_number and "document_number" not in errors:
        fields.document_number = normalise_document_number(fields.document_number)
    key_day = written_on or (_beijing_day(published_at) if published else None)
    return _Candidate(row.row, fields, published_at if published else None, key_day), errors


def _known_of(candidate: _Candidate) -> _Known:
    fields = candidate.fields
    return _Known(f"row {candidate.row} / 第 {candidate.row} 行", fields.issuer, fields.title,
                  fields.document_number, fields.original_url, candidate.key_day, row=candidate.row)


class _Index:
    """Who is who under the identity rule, for stored policies or the rows read so far."""

    def __init__(self) -> None:
        self.by_number: dict[tuple[str, str], _Known] = {}
        self.by_url: dict[str, _Known] = {}
        self.by_title: dict[tuple[str, str, date | None], list[_Known]] = {}

    def add(self, known: _Known) -> None:
        if known.document_number:
            self.by_number.setdefault((known.issuer, known.document_number), known)
        if known.original_url:
            self.by_url.setdefault(known.original_url, known)
        self.by_title.setdefault((known.issuer, title_key(known.title), known.key_day), []).append(known)

    def find(self, candidate: _Candidate) -> tuple[_Known, str] | None:
        """The known document this row is, and by which rule."""
        fields = candidate.fields
        if fields.document_number and (found := self.by_number.get((fields.issuer, fields.document_number))):
            return found, "document_number"
        if fields.original_url and (found := self.by_url.get(fields.original_url)):
            return found, "original_url"
        for known in self.by_title.get((fields.issuer, title_key(fields.title), candidate.key_day), []):
            if not (fields.original_url and known.original_url and fields.original_url != known.original_url):
                return known, "title"
        return None


def _conflict(candidate: _Candidate, known: _Known, rule: str) -> tuple[str, str] | None:
    """(field, message) when the row and the document it matches disagree on what the document is."""
    fields = candidate.fields
    if title_key(fields.title) != title_key(known.title):
        where = "文号" if rule == "document_number" else "原文地址"
        return rule, (f"{where}与{known.label}相同，但名称不同（《{known.title}》）"
                      f" / same {rule} as {known.label} with another title")
    if fields.document_number and known.document_number and fields.document_number != known.document_number:
        return "document_number", (f"与{known.label}是同一文件，但文号不同（{known.document_number}）"
                                   f" / same document as {known.label} with another 文号")
    return None


def _stored(session: Session, candidates: Iterable[_Candidate]) -> _Index:
    """Stored policies any row could be, found in a few queries per 500 rows."""
    index = _Index()
    items = list(candidates)
    columns = (Policy.id, Policy.issuer, Policy.title, Policy.document_number, Policy.original_url,
               Policy.written_on, Policy.first_published_at, Policy.state, Policy.department)
    seen: set[int] = set()
    for start in range(0, len(items), 500):
        chunk = items[start:start + 500]
        numbers = {c.fields.document_number for c in chunk if c.fields.document_number}
        urls = {c.fields.original_url for c in chunk if c.fields.original_url}
        titles = {c.fields.title for c in chunk if c.fields.title}
        for column, wanted in ((Policy.document_number, numbers), (Policy.original_url, urls),
                               (Policy.title, titles)):
            if not wanted:
                continue
            for found in session.execute(select(*columns).where(column.in_(sorted(wanted)))):
                if found.id in seen:
                    continue
                seen.add(found.id)
                index.add(_Known(
                    f"已有文件 policy {found.id}（{found.department}，{found.state}）", found.issuer, found.title,
                    found.document_number, found.original_url,
                    found.written_on or _beijing_day(found.first_published_at),
                ))
    return index


def import_policies(
    session: Session,
    actor: StaffIdentity | None,
    department: str,
    rows: Sequence[RowInput],
    *,
    published: bool,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Check every row, then create them all (drafts, or published with their dates), or nothing.

    ``actor`` None is the system (the CLI). A staff member needs ``content.draft`` in ``department``, and
    to import as published, which skips review, also ``content.publish`` there.
    """
    if actor is not None:
        require(actor.grants, Permission.DRAFT, department)
        if published:
            require(actor.grants, Permission.PUBLISH, department)
    report = ImportReport(total=len(rows), published=published, dry_run=dry_run)
    if not dry_run and session.get_bind().dialect.name == "postgresql":
        # Two imports at once would each find the other's rows missing: they take turns.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('interpret.policy_import'))"))

    read: list[tuple[_Candidate, dict[str, list[str]]]] = [_read_fields(row, department, published) for row in rows]
    stored = _stored(session, (candidate for candidate, _errors in read))
    earlier = _Index()
    to_write: list[_Candidate] = []
    for candidate, errors in read:
        skip_message = ""
        checkable = not ({"issuer", "title", "document_number"} & errors.keys()) and candidate.fields.title
        if checkable:
            for index in (stored, earlier):
                match = index.find(candidate)
                if match is None:
                    continue
                known, rule = match
                conflict = _conflict(candidate, known, rule)
                if conflict is not None:
                    errors.setdefault(conflict[0], []).append(conflict[1])
                else:
                    skip_message = f"已存在：{known.label} / already there"
                break
            earlier.add(_known_of(candidate))
        if not skip_message:
            try:
                _check_policy_fields(session, candidate.fields, None)
            except ContentProblem as problem:
                for name, messages in problem.errors.items():
                    # What was found above says it more precisely; a replacing policy cannot be imported.
                    if name not in errors and name != "replaced_by_id":
                        errors[name] = list(messages)
        if errors:
            report.errors.extend(
                RowError(candidate.row, name, message) for name, messages in errors.items() for message in messages
            )
        elif skip_message:
            report.outcomes.append(RowOutcome(candidate.row, "skipped", candidate.fields.title,
                                              candidate.fields.document_number, skip_message))
        else:
            to_write.append(candidate)
    if report.errors or dry_run:
        if not report.errors:
            report.outcomes.extend(RowOutcome(c.row, "would_import", c.fields.title, c.fields.document_number)
                                   for c in to_write)
            report.outcomes.sort(key=lambda outcome: outcome.row)
        return report

    for done, candidate in enumerate(to_write, start=1):
        if published:
            assert candidate.published_at is not None
            policy = import_published_policy(session, candidate.fields, candidate.published_at.astimezone(UTC))
        else:
            policy = create_policy(session, actor, candidate.fields)
        report.outcomes.append(RowOutcome(candidate.row, "imported", policy.title, policy.document_number,
                                          policy_id=policy.id, index_number=policy.index_number))
        if progress is not None:
            progress(done, len(to_write))
    report.outcomes.sort(key=lambda outcome: outcome.row)
    system = {} if actor is not None else {"username": "system"}
    record_via_outbox(session, OutboxEvent, AuditRecord.by(
        actor, "interpret", "policy.import", AuditResult.SUCCESS, object_type="policy_import",
        object_id=department, detail={"department": department, "published": published, "rows": report.total,
                                      "imported": report.imported, "skipped": report.skipped},
        **system,
    ))
    return report
