"""Import of historical messages with their replies (留言 and 答复), with their real dates.

The source files are shaped like ``messages_with_replies.csv``: the columns 留言编号, 留言用户,
留言主题, 留言时间, 留言详情, 答复意见, 答复时间, times in Beijing time written ``2019/4/25 9:32:09``
or ``2019-04-08 08:37:20`` (a date alone is read as that day). Each good row becomes an answered
consultation through :func:`consult.workflow.record_answered_consultation` (redacted published texts,
the reply deadline the default rules would have given it), published on its reply date unless told
otherwise, so the public board and the statistics have their history.

* 留言用户 is the asker's account on the old system: it is never read into the database. Where a
  reply greets the asker by it (``网友“UU0081230”您好``), the texts carry the name marker instead.
* A row already imported (same title, received and replied at the same moments) is skipped, so a
  file can be imported again, or an interrupted import run again, without doubles.
* Work is committed one batch at a time (:data:`BATCH_SIZE` rows): a crash loses nothing committed.
* Tracking numbers are ``ZX<yyyymmdd>-<serial>`` by the day received, drawn from the same serials
  as new submissions, so they never collide with existing ones.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consult.models import Consultation, OutboxEvent, TrackingSerial
from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.settings import Settings
from services.text.pii import MARKERS, NAME

if TYPE_CHECKING:
    from consult.routing import Router
    from services.calendar import WorkingCalendar

BEIJING = timezone(timedelta(hours=8))
BATCH_SIZE = 500
TITLE_LIMIT = 300
"""The title column's size; a longer title is refused rather than cut."""

SOURCE_ID = "留言编号"
ACCOUNT = "留言用户"
TITLE = "留言主题"
RECEIVED = "留言时间"
QUESTION = "留言详情"
REPLY = "答复意见"
REPLIED = "答复时间"
REQUIRED_COLUMNS: tuple[str, ...] = (TITLE, RECEIVED, QUESTION, REPLY, REPLIED)
"""The columns a file must have; 留言编号 (named in reports) and 留言用户 (dropped) are optional."""

ACCOUNT_MARKER = MARKERS[NAME]
"""What replaces the asker's old account name where a text mentions it."""

_WHITESPACE = re.compile(r"\s+")
_MOMENT = re.compile(r"^(\d{4})[/\-.](\d{1,2})[/\-.](\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


class ImportFileError(Exception):
    """The file cannot be imported at all (unreadable, not a CSV, required columns missing)."""


def beijing_time(text: str) -> datetime:
    """A local Beijing time as the source writes it, as an aware UTC datetime.

    ``2019/4/25 9:32:09``, ``2019-04-08 08:37:20``, ``2019/4/25 9:32`` or a date alone
    (``2018/4/24``, read as 00:00 that day). Raises ValueError for anything else.
    """
    found = _MOMENT.match(text.strip())
    if found is None:
        raise ValueError(f"not a date and time: {text.strip()!r}")
    year, month, day, hour, minute, second = (int(part) if part else 0 for part in found.groups())
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=BEIJING)
    except ValueError as error:  # 2019/2/30, 25:00:00
        raise ValueError(f"not a date and time: {text.strip()!r} ({error})") from None
    return local.astimezone(UTC)


def has_time(text: str) -> bool:
    found = _MOMENT.match(text.strip())
    return bool(found and found.group(4))


def clean(text: str) -> str:
    """Collapse the source's runs of blanks, tabs and line breaks into single spaces."""
    return _WHITESPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class HistoricalMessage:
    """One good row of a source file."""

    line: int
    """The file line the row starts on (the header is line 1; a text may span several lines)."""
    source_id: str
    title: str
    question: str
    reply: str
    received_at: datetime
    replied_at: datetime

    @property
    def key(self) -> tuple[str, datetime, datetime]:
        """What makes a row the same message: its title and its two moments."""
        return self.title, self.received_at, self.replied_at

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.question}"


@dataclass(frozen=True)
class RejectedRow:
    line: int
    source_id: str
    reason: str

    def describe(self) -> str:
        source = f" ({SOURCE_ID} {self.source_id})" if self.source_id else ""
        return f"line {self.line}{source}: {self.reason}"


@dataclass
class SourceFile:
    messages: list[HistoricalMessage]
    rejected: list[RejectedRow]


def _decode(raw: bytes, name: str) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportFileError(f"{name}: neither UTF-8 nor GB18030 text")


def read_messages(path: Path) -> SourceFile:
    """The good rows of a file, sorted by the time received, and the bad ones with their reasons.

    Raises :class:`ImportFileError` (one readable line) when the file as a whole cannot be used.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ImportFileError(f"{path}: {error.strerror or error}") from None
    return parse_messages(_decode(raw, str(path)), str(path))


def parse_messages(content: str, name: str = "the file") -> SourceFile:
    """:func:`read_messages` for text already read."""
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = [column.strip().lstrip("\ufeff") for column in next(reader)]
    except StopIteration:
        raise ImportFileError(f"{name}: empty file, expected a header row") from None
    except csv.Error as error:
        raise ImportFileError(f"{name}: not a CSV file ({error})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise ImportFileError(
            f"{name}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(needs {', '.join(REQUIRED_COLUMNS)}; found {', '.join(header) or 'none'})"
        )
    position = {column: header.index(column) for column in header if column}
    messages: list[HistoricalMessage] = []
    rejected: list[RejectedRow] = []
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise ImportFileError(f"{name}: line {line}: not a CSV row ({error})") from None
        if not any(cell.strip() for cell in cells):
            continue
        row = {column: cells[index] if index < len(cells) else "" for column, index in position.items()}
        message = _message(line, row)
        if isinstance(message, RejectedRow):
            rejected.append(message)
        else:
            messages.append(message)
    messages.sort(key=lambda message: (message.received_at, message.line))
    return SourceFile(messages, rejected)


def _message(line: int, row: dict[str, str]) -> HistoricalMessage | RejectedRow:
    source_id = clean(row.get(SOURCE_ID, ""))
    account = row.get(ACCOUNT, "").strip()
    problems: list[str] = []
    title, question, reply = (_without_account(clean(row[column]), account) for column in (TITLE, QUESTION, REPLY))
    for column, value in ((TITLE, title), (QUESTION, question), (REPLY, reply)):
        if not value:
            problems.append(f"{column} is empty")
    if len(title) > TITLE_LIMIT:
        problems.append(f"{TITLE} is longer than {TITLE_LIMIT} characters")
    moments: dict[str, datetime] = {}
    for column in (RECEIVED, REPLIED):
        try:
            moments[column] = beijing_time(row[column])
        except ValueError:
            shown = clean(row[column])
            problems.append(f"{column} {shown!r} is not a date and time (like 2019/4/25 9:32:09)" if shown
                            else f"{column} is empty")
    if len(moments) == 2:
        received_at, replied_at = moments[RECEIVED], moments[REPLIED]
        if not has_time(row[REPLIED]) and _day(replied_at) == _day(received_at):
            replied_at = received_at  # a reply dated the day received: not before the message itself
        if replied_at < received_at:
            problems.append(f"{REPLIED} is before {RECEIVED}")
    if problems:
        return RejectedRow(line, source_id, "; ".join(problems))
    return HistoricalMessage(line, source_id, title, question, reply, received_at, replied_at)


def _day(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y%m%d")


def _without_account(text: str, account: str) -> str:
    if len(account) < 4:  # too short to be told from ordinary text
        return text
    return text.replace(account, ACCOUNT_MARKER)


# -- writing -----------------------------------------------------------------------------------


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    routed: int = 0
    """Rows the router placed in a department (the others went to the fallback department)."""
    published: bool = True
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"imported {self.imported}", f"skipped {self.duplicates} already imported",
                 f"rejected {len(self.rejected)}"]
        return f"{', '.join(parts)} of {self.rows} rows in {self.seconds:.1f}s"


Transaction = Callable[[], AbstractContextManager[Session]]


def import_messages(
    transaction: Transaction,
    settings: Settings,
    source: SourceFile,
    *,
    department: str | None = None,
    publish: bool = True,
    router: Router | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
) -> ImportReport:
    """Write the good rows of ``source`` as answered (and, with ``publish``, published) consultations.

    ``transaction`` opens one unit of work (``get_database("consult").transaction``); each batch of
    ``batch_size`` rows is committed in its own, with one audit entry. With a ``router`` each row's
    category is predicted and a confident one routes the row to its department (the category ->
    department table); otherwise, and for rows the router is unsure of, the row goes to
    ``department`` or else ``settings.consult_intake_department``.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    report = ImportReport(rows=len(source.messages) + len(source.rejected), rejected=list(source.rejected),
                          published=publish)
    fallback = (department or settings.consult_intake_department).strip().upper()
    calendar: WorkingCalendar | None = None
    with tqdm(total=len(source.messages), desc="导入咨询 importing", unit="row", disable=not progress) as bar:
        for batch in _batches(source.messages, batch_size):
            with transaction() as session:
                if calendar is None:
                    from consult.workflow import consult_calendar

                    calendar = consult_calendar(session)
                fresh = _not_yet_imported(session, batch)
                report.duplicates += len(batch) - len(fresh)
                placed = _placements(settings, router, fresh, fallback)
                numbers = _tracking_numbers(session, fresh)
                for message, number, (category, confidence, code, routed) in zip(fresh, numbers, placed, strict=True):
                    _write(session, settings, calendar, message, number, category, confidence, code, publish)
                    report.imported += 1
                    report.routed += routed
                if fresh:
                    record_via_outbox(session, OutboxEvent, AuditRecord.by(
                        None, "consult", "consultation.import", AuditResult.SUCCESS, username="system",
                        object_type="consultation_import", object_id=fallback,
                        detail={"rows": len(batch), "imported": len(fresh), "published": publish,
                                "first_line": batch[0].line, "last_line": batch[-1].line},
                    ))
            bar.update(len(batch))
    report.seconds = time.perf_counter() - started
    return report


def _batches(messages: Sequence[HistoricalMessage], size: int) -> Iterator[list[HistoricalMessage]]:
    for start in range(0, len(messages), max(1, size)):
        yield list(messages[start:start + max(1, size)])


def _not_yet_imported(session: Session, batch: list[HistoricalMessage]) -> list[HistoricalMessage]:
    """The rows of a batch not in the database yet (nor earlier in the batch)."""
    first = min(message.received_at for message in batch)
    last = max(message.received_at for message in batch)
    existing = {
        (title, _utc(received_at), _utc(replied_at) if replied_at else None)
        for title, received_at, replied_at in session.execute(
            select(Consultation.title, Consultation.received_at, Consultation.replied_at).where(
                Consultation.received_at >= first, Consultation.received_at <= last
            )
        )
    }
    fresh = []
    for message in batch:
        if message.key not in existing:
            existing.add(message.key)
            fresh.append(message)
    return fresh


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _placements(settings: Settings, router: Router | None, messages: list[HistoricalMessage],
                fallback: str) -> list[tuple[str | None, float | None, str, bool]]:
    """(category, confidence, department, placed by the router) for each row."""
    if router is None or not messages:
        return [(None, None, fallback, False) for _ in messages]
    from consult.routing import department_for

    placed: list[tuple[str | None, float | None, str, bool]] = []
    for category, confidence in router.classify_many(message.text for message in messages):
        target = department_for(category, settings.router_departments_file)
        confident = target is not None and confidence >= settings.router_confidence_threshold
        placed.append((category, round(confidence, 4), target.code if confident and target else fallback, confident))
    return placed


def _write(session: Session, settings: Settings, calendar: WorkingCalendar, message: HistoricalMessage,
           tracking_number: str, category: str | None, confidence: float | None, department: str,
           publish: bool) -> Consultation:
    from consult import workflow

    consultation = workflow.record_answered_consultation(
        session, tracking_number=tracking_number, title=message.title, question=message.question,
        reply=message.reply, received_at=message.received_at, replied_at=message.replied_at,
        department=department, category=category, settings=settings, calendar=calendar,
    )
    if category is not None:
        consultation.category_source = "router"
        consultation.category_confidence = confidence
    if publish:
        workflow.publish_answer(session, consultation, at=message.replied_at)
    return consultation


def _tracking_numbers(session: Session, messages: list[HistoricalMessage]) -> list[str]:
    """A free ``ZX<day>-<serial>`` for each message, by the day received, in the order given."""
    from consult.workflow import local_day

    wanted = Counter(local_day(message.received_at) for message in messages)
    free = {day: iter(reserve_tracking_numbers(session, day, count)) for day, count in wanted.items()}
    return [next(free[local_day(message.received_at)]) for message in messages]


def reserve_tracking_numbers(session: Session, day: date, count: int) -> list[str]:
    """``count`` tracking numbers of a day, drawn from the serials new submissions draw from.

    Works like :func:`consult.workflow._next_tracking_number` (the serial row is updated in place,
    so a concurrent submission waits for it and gets a later number), ``count`` at a time; numbers
    some consultation already has (given before the serial table knew of them) are stepped over.
    """
    key = day.strftime("%Y%m%d")
    taken = set(session.scalars(
        select(Consultation.tracking_number).where(  # a range, so that the unique index answers it
            Consultation.tracking_number >= f"ZX{key}-", Consultation.tracking_number < f"ZX{key}."
        )
    ))
    numbers: list[str] = []
    while len(numbers) < count:
        need = count - len(numbers)
        bumped = session.execute(
            update(TrackingSerial).where(TrackingSerial.day == key)
            .values(last_serial=TrackingSerial.last_serial + need)
            .execution_options(synchronize_session=False)
        )
        if bumped.rowcount == 0:  # type: ignore[attr-defined]
            session.add(TrackingSerial(day=key, last_serial=need))
            session.flush()
        last = session.scalar(select(TrackingSerial.last_serial).where(TrackingSerial.day == key)) or need
        candidates = (f"ZX{key}-{serial:04d}" for serial in range(last - need + 1, last + 1))
        numbers.extend(number for number in candidates if number not in taken)
    return numbers


def import_file(
    transaction: Transaction, settings: Settings, path: Path, *, department: str | None = None,
    publish: bool = True, router: Router | None = None, progress: bool = False,
) -> ImportReport:
    """:func:`read_messages` then :func:`import_messages` (ImportFileError when the file is unusable)."""
    return import_messages(transaction, settings, read_messages(path), department=department, publish=publish,
                           router=router, progress=progress)


def installed_router(settings: Settings) -> Router | None:
    """The router model the suite runs with, if one is installed."""
    from consult.routing import load_current_router

    return load_current_router(settings.data_dir)


def describe_rejections(rows: Iterable[RejectedRow], limit: int = 100) -> list[str]:
    """Lines for a terminal: each rejected row and why, at most ``limit`` of them."""
    rows = list(rows)
    lines = [row.describe() for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more rejected rows")
    return lines
