"""The ``gongkai`` command.

Every subcommand exits non-zero with one readable line on failure, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from services.settings import ConfigError, Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


class Failure(Exception):
    """A command failed in a way the user can act on; the message is the one line shown."""


def readable_errors(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from services.db import DatabaseUnavailable
        from services.searchengine.port import SearchEngineError, SearchUnavailable

        try:
            return command(*args, **kwargs)
        except ConfigError as error:
            raise click.ClickException(f"configuration error: {error}") from None
        except (Failure, DatabaseUnavailable, SearchUnavailable, SearchEngineError) as error:
            raise click.ClickException(str(error)) from None
        except Exception as error:
            from sqlalchemy.exc import SQLAlchemyError

            if os.environ.get("LOG_LEVEL", "").upper() == "DEBUG":
                raise
            first_line = (str(getattr(error, "orig", None) or error).strip().splitlines() or [""])[0]
            if isinstance(error, SQLAlchemyError):
                raise click.ClickException(f"database error: {first_line}") from None
            raise click.ClickException(
                f"unexpected error: {type(error).__name__}: {first_line} (LOG_LEVEL=DEBUG shows the traceback)"
            ) from None

    return wrapper  # type: ignore[return-value]


def _search_engine(settings: Settings) -> Any:
    from services.searchengine.factory import make_search_engine

    return make_search_engine(settings.search_url, settings.data_dir, settings.search_api_key, settings.search_ca_file)


def _settings_checked() -> Settings:
    from services.db import check_database_url

    settings = load_settings()
    check_database_url(settings)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Gongkai (公开): policy interpretation, consultation, search and press office suite."""


@main.command()
@readable_errors
def migrate() -> None:
    """Bring every service's database to its newest schema."""
    from services.migrations import migrate_all
    settings = _settings_checked()
    migrated = migrate_all(settings)
    click.echo(f"migrated: {', '.join(migrated)}")
    engine = _search_engine(settings)
    click.echo(f"search index: {settings.search_alias} -> {engine.ensure_alias(settings.search_alias)}")


@main.command("seed-demo")
@readable_errors
def seed_demo_command() -> None:
    """Load the demo policies and answers (skips services that already hold data)."""
    from services.demo.seed import seed_demo
    from services.migrations import migrate_all
    from services.suite import create_worker_app

    settings = _settings_checked()
    migrate_all(settings)
    report = seed_demo(create_worker_app(settings), progress=sys.stderr.isatty())
    click.echo(f"seeded: {report.policies} policies, {report.answers} answers, "
               f"{report.press_messages} messages for the press office")
    if report.skipped:
        click.echo(f"already seeded, left as they were: {', '.join(report.skipped)}")


@main.command("create-admin")
@click.option("--username", required=True, help="the new system administrator's user name")
@click.option("--password", required=True, help="initial password; it must be changed at first sign-in")
@click.option("--email", default=None, help="e-mail address")
@click.option("--department-code", default="ORG", show_default=True, help="top department's code, if none exists")
@click.option("--department-name", default="本机关", show_default=True, help="top department's name, if none exists")
@readable_errors
def create_admin(username: str, password: str, email: str | None, department_code: str, department_name: str) -> None:
    """Create a system administrator (there is no default account)."""
    from sqlalchemy import select

    from services.audit import AuditRecord, AuditResult, append_entry, audit_key
    from services.db import open_service_database
    from services.identity.accounts import AccountError, assign_role, create_department, create_user
    from services.identity.models import Department
    from services.migrations import migrate_all
    from services.permissions import Role

    settings = _settings_checked()
    migrate_all(settings)
    database = open_service_database(settings, "identity")
    try:
        with database.transaction() as session:
            top = session.scalar(select(Department).where(Department.parent_id.is_(None)).order_by(Department.id))
            if top is None:
                top = create_department(session, department_code, department_name, "bureau", None)
            user = create_user(session, settings, username=username, display_name=username, password=password,
                               email=email)
            assign_role(session, user, Role.ADMIN, top)
            append_entry(session, audit_key(settings.secret_key), AuditRecord(
                service="identity", action="user.create_admin", result=AuditResult.SUCCESS, username=username,
                department=top.code, object_type="user", object_id=str(user.id), source_address="cli",
            ))
    except AccountError as error:
        raise Failure(f"{error.field}: {error}") from None
    finally:
        database.dispose()
    click.echo(f"created system administrator {username} in {top.code}; the password must be changed at first sign-in")


@main.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@readable_errors
def audit_verify() -> None:
    """Check the hash chain of the audit log; name the first entry edited, inserted or deleted."""
    from services.audit import audit_key, verify_chain
    from services.db import open_service_database

    settings = _settings_checked()
    database = open_service_database(settings, "identity")
    try:
        with database.transaction() as session:
            report = verify_chain(session, audit_key(settings.secret_key))
    finally:
        database.dispose()
    if not report.ok:
        raise Failure(f"audit log broken: {report.reason} ({report.checked} entries before it are intact)")
    click.echo(f"audit log intact: {report.checked} entries verified")


@main.group("interpret")
def interpret_group() -> None:
    """Policies and interpretations (政策解读)."""


IMPORT_ERRORS_SHOWN = 100


def _import_department(code: str | None) -> str:
    """The department an import goes to: the one named, which must exist, or the top department."""
    from sqlalchemy import select

    from services.db import get_database
    from services.identity.models import Department

    with get_database("identity").transaction() as session:
        if code is None:
            top = session.scalar(select(Department.code).where(Department.parent_id.is_(None)).order_by(Department.id))
            if top is None:
                raise Failure("no department yet: run `gongkai create-admin` first, or pass --department CODE")
            return top
        if session.scalar(select(Department.id).where(Department.code == code, Department.active)) is None:
            known = session.scalars(select(Department.code).where(Department.active).order_by(Department.code)).all()
            raise Failure(f"--department {code}: no such active department (known: {', '.join(known) or 'none'})")
    return code


def _print_import_errors(report: Any) -> None:
    rows = [(str(error.row), error.field, error.message) for error in report.errors]
    row_width = max(len("row"), *(len(row) for row, _f, _m in rows))
    field_width = max(len("field"), *(len(field) for _r, field, _m in rows))
    click.echo(f"{'row':>{row_width}}  {'field':<{field_width}}  problem")
    for row, field, message in rows[:IMPORT_ERRORS_SHOWN]:
        click.echo(f"{row:>{row_width}}  {field:<{field_width}}  {message}")
    if len(rows) > IMPORT_ERRORS_SHOWN:
        click.echo(f"... and {len(rows) - IMPORT_ERRORS_SHOWN} more problems (--report FILE writes them all)")


@interpret_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "file_format", type=click.Choice(["csv", "json"]), default=None,
              help="csv or json (default: the file's extension)")
@click.option("--department", metavar="CODE", default=None,
              help="department the policies belong to (default: the top department)")
@click.option("--published/--draft", default=False, show_default=True,
              help="import as already published on each row's published_at, or as drafts to be reviewed")
@click.option("--dry-run", is_flag=True, help="check every row and report; write nothing")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              default=None, help="also write the per-row report (problems, or what became of each row) as CSV")
@readable_errors
def interpret_import(
    file: Path, file_format: str | None, department: str | None, published: bool, dry_run: bool,
    report_path: Path | None,
) -> None:
    """Import policies from a CSV or JSON FILE: every row, or none if any row is bad.

    Runs as the system, not as a staff member: no permission is checked and the policies' author is
    "system" (staff import through POST /api/interpret/manage/imports, which checks theirs).

    CSV (UTF-8) uses the columns title, issuer, level, body, document_number, category_group, topic,
    source, written_on, published_at, validity, original_url -- or the gov.cn dataset's Policy, Year,
    Policy_Content, URL, Scope, Source, whose 文号 is read from the text. JSON is a list of objects
    with the same names. A row already there (same issuer and 文号, same original address, or same
    issuer, title and date) is skipped, so running a file twice imports it once.

    When a row is bad, nothing is imported: a table names each row (the CSV header is row 1) and
    field, and the command exits 1.
    """
    from tqdm import tqdm

    from interpret.importing import ImportFileError, format_of, import_policies, parse_rows, write_report_csv
    from services.db import get_database
    from services.migrations import migrate_all
    from services.suite import create_worker_app

    settings = _settings_checked()
    try:
        rows = parse_rows(file, format_of(file.name, file_format))
    except ImportFileError as error:
        raise Failure(f"{file}: {error}") from None
    migrate_all(settings)
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="导入 importing", unit="row", disable=not sys.stderr.isatty())
        bar.update(done - bar.n)

    with create_worker_app(settings).app_context():
        code = _import_department(department)
        try:
            with get_database("interpret").transaction() as session:
                report = import_policies(session, None, code, rows, published=published, progress=progress,
                                         dry_run=dry_run)
        finally:
            if bar is not None:
                bar.close()
    if report_path is not None:
        with report_path.open("w", encoding="utf-8-sig", newline="") as target:
            write_report_csv(report, target)
    if not report.ok:
        _print_import_errors(report)
        raise Failure(f"{file}: {report.summary()}")
    click.echo(f"{report.summary()} ({'published' if published else 'drafts'} in {code})")


def _celery_for_worker(settings: Settings) -> Any:
    from services.celery_app import make_celery
    from services.suite import create_worker_app

    return make_celery(settings, create_worker_app(settings))


@main.command()
@click.option("--concurrency", type=int, default=None, help="worker processes (default WORKER_CONCURRENCY)")
@readable_errors
def worker(concurrency: int | None) -> None:
    """Run a Celery worker for every service's tasks (the index queue first)."""
    from services.celery_app import WORKER_QUEUES

    settings = _settings_checked()
    celery = _celery_for_worker(settings)
    celery.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--queues={','.join(WORKER_QUEUES)}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


@main.command()
@readable_errors
def beat() -> None:
    """Run Celery beat (the outbox relay and other schedules). Run exactly one."""
    settings = _settings_checked()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery = _celery_for_worker(settings)
    schedule = settings.data_dir / "celerybeat-schedule"
    celery.start(["beat", f"--loglevel={settings.log_level}", f"--schedule={schedule}"])


def _wait_ready(url: str, timeout: float, children: list[subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 (our own http:// address)
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def _stop_children(children: list[subprocess.Popen[bytes]], grace: float = 15.0) -> None:
    for child in children:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@main.command()
@click.option("--seed/--no-seed", default=True, help="load the demo data on the first run")
@click.option("--ready-timeout", type=float, default=120.0, help="seconds to wait for /readyz")
@readable_errors
def up(seed: bool, ready_timeout: float) -> None:
    """Run the whole suite on this machine: web, worker and beat, until Ctrl-C."""
    from services.migrations import migrate_all

    settings = _settings_checked()
    migrate_all(settings)
    engine = _search_engine(settings)
    engine.ensure_alias(settings.search_alias)

    env = dict(os.environ)
    env["GONGKAI_SERVICE"] = "suite"
    env["GONGKAI_DATA_DIR"] = str(settings.data_dir)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(_fresh_dir(settings.data_dir / "metrics"))
    python = sys.executable
    address = f"{settings.host}:{settings.port}"
    commands = {
        "web": [
            python, "-m", "gunicorn", "services.wsgi:app",
            "--bind", address,
            "--workers", str(settings.web_workers),
            "--worker-class", "gthread", "--threads", "8",
            "--graceful-timeout", "10",
        ],
        "worker": [python, "-m", "services.cli", "worker"],
        "beat": [python, "-m", "services.cli", "beat"],
    }
    children: list[subprocess.Popen[bytes]] = []

    def shutdown(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        for command in commands.values():
            children.append(subprocess.Popen(command, env=env, start_new_session=True))
        if seed:
            from services.demo.seed import seed_demo
            from services.suite import create_worker_app

            report = seed_demo(create_worker_app(settings), progress=sys.stderr.isatty())
            if report.policies or report.answers or report.press_messages:
                click.echo(f"seeded demo data: {report.policies} policies, {report.answers} answers, "
                           f"{report.press_messages} messages for the press office")
        base = f"http://{address}"
        if not _wait_ready(f"{base}/readyz", ready_timeout, children):
            failed = [name for name, child in zip(commands, children, strict=True) if child.poll() is not None]
            reason = f"{', '.join(failed)} exited" if failed else f"not ready after {ready_timeout:.0f}s"
            raise Failure(f"the suite did not start: {reason} (see the log above; {base}/readyz tells more)")
        click.echo(
            "\nGongkai is running / 公开 已启动:\n"
            f"  portal 门户        {base}/\n"
            f"  policies 政策文件  {base}/interpret/policies\n"
            f"  answers 咨询回复   {base}/consult/answers\n"
            f"  search 搜索        {base}/search/\n"
            f"  staff 工作人员     {base}/staff/\n"
            f"  readiness          {base}/readyz\n"
            f"  API docs           {base}/api/interpret/docs (and /api/consult, /api/search, ...)\n"
            "Press Ctrl-C to stop.\n"
        )
        while True:
            for name, child in zip(commands, children, strict=True):
                if child.poll() is not None:
                    raise Failure(f"{name} exited with status {child.returncode}; stopping the suite")
            time.sleep(1)
    except KeyboardInterrupt:
        click.echo("stopping ...")
    finally:
        _stop_children(children)
    click.echo("stopped.")


@main.command("train-router")
@click.argument("csv_files", metavar="CSV...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2),
              help="stratified cross-validation folds of the evaluation")
@click.option("--no-install", is_flag=True, help="evaluate and train only; leave the active model as it is")
@readable_errors
def train_router_command(csv_files: tuple[Path, ...], folds: int, no_install: bool) -> None:
    """Train the consultation router from labelled CSV files and install it as the new version.

    Each CSV has a header with a `label` column (also 一级分类, 类别) and either `text` (also 留言详情,
    内容; a `title`/留言主题 column is put before it) or `tokens` (space-separated, already segmented).
    """
    from consult.routing import RoutingError, format_report, install_router, read_labelled_csv, train_router

    settings = _settings_checked()
    rows: list[Any] = []
    try:
        for path in csv_files:
            file_rows, columns = read_labelled_csv(path)
            click.echo(f"{path}: {len(file_rows)} rows ({columns.describe()})")
            rows.extend(file_rows)
        router, report = train_router(rows, folds=folds, threshold=settings.router_confidence_threshold)
    except RoutingError as error:
        raise Failure(str(error)) from None
    click.echo(format_report(report))
    if no_install:
        click.echo("not installed (--no-install)")
        return
    path = install_router(router, settings.data_dir)
    click.echo(f"installed router model {path.name} (version {router.metadata['version']}) in {path.parent}")


@main.group("consult")
def consult_group() -> None:
    """Consultations (咨询/留言): import of historical messages, export to Excel."""


def _consult_department(code: str | None) -> str | None:
    """A --department option, checked: None, or the code of an active department."""
    if code is None:
        return None
    from services.suite import create_worker_app

    with create_worker_app(_settings_checked()).app_context():
        return _import_department(code.strip().upper())


@consult_group.command("import")
@click.argument("csv_file", metavar="CSV", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--department", metavar="CODE", default=None,
              help="department for rows the router cannot place (default: CONSULT_INTAKE_DEPARTMENT)")
@click.option("--publish/--no-publish", default=True, show_default=True,
              help="publish each answer (redacted) on the public board on its reply date, or keep it replied only")
@readable_errors
def consult_import(csv_file: Path, department: str | None, publish: bool) -> None:
    """Import historical messages with their replies from CSV, with their real dates.

    The CSV (UTF-8 or GB18030) has the columns 留言主题, 留言时间, 留言详情, 答复意见, 答复时间 (and
    optionally 留言编号; 留言用户 is never stored). Times are Beijing time, like 2019/4/25 9:32:09.
    With a router model installed each row's category is predicted and confident rows go to the
    category's department. A row already imported (same title and times) is skipped, so the file
    can be imported again; rows with a bad date or an empty text are listed and skipped. Rows are
    committed 500 at a time: after an interruption, run the command again.
    """
    from consult.importing import (
        ImportFileError,
        describe_rejections,
        import_messages,
        installed_router,
        read_messages,
    )
    from consult.routing import RoutingError
    from services.db import open_service_database
    from services.migrations import migrate_all

    settings = _settings_checked()
    try:
        source = read_messages(csv_file)
    except ImportFileError as error:
        raise Failure(str(error)) from None
    try:
        router = installed_router(settings)
    except RoutingError as error:
        raise Failure(f"router model: {error}") from None
    migrate_all(settings)
    code = _consult_department(department)
    database = open_service_database(settings, "consult")
    try:
        report = import_messages(database.transaction, settings, source, department=code, publish=publish,
                                 router=router, progress=sys.stderr.isatty())
    finally:
        database.dispose()
    for line in describe_rejections(report.rejected):
        click.echo(f"rejected {line}")
    routed = f"; {report.routed} placed by the router" if report.routed else ""
    state = "published" if publish else "replied, not published"
    click.echo(f"{csv_file}: {report.summary()} ({state}{routed})")


@consult_group.command("export")
@click.option("--from", "start_text", metavar="YYYY-MM-DD", required=True, help="first day received (Beijing)")
@click.option("--to", "end_text", metavar="YYYY-MM-DD", required=True, help="last day received (included)")
@click.option("--department", metavar="CODE", default=None, help="only this department (default: all)")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="the .xlsx file to write")
@readable_errors
def consult_export(start_text: str, end_text: str, department: str | None, out_path: Path) -> None:
    """Export the consultations received in a period (at most 366 days) to an Excel file.

    One row per consultation (tracking number, title, category, department, state, dates, working
    days taken, on time or not, rating) and a 汇总 sheet per department. No name, phone or e-mail.
    """
    from consult.export import check_period, export_period, parse_day
    from consult.workflow import consult_calendar
    from services.db import open_service_database
    from services.workflow import ContentProblem

    try:
        start, end = parse_day(start_text, "from"), parse_day(end_text, "to")
        check_period(start, end)
    except ContentProblem as error:
        field, messages = next(iter(error.errors.items()))
        raise Failure(f"--{field}: {' '.join(messages)}") from None
    if out_path.suffix.lower() != ".xlsx":
        raise Failure(f"--out {out_path}: the file name should end in .xlsx")
    settings = _settings_checked()
    database = open_service_database(settings, "consult")
    try:
        with database.transaction() as session:
            content = export_period(session, consult_calendar(session), start, end,
                                    {department.strip().upper()} if department else None)
    finally:
        database.dispose()
    try:
        out_path.write_bytes(content)
    except OSError as error:
        raise Failure(f"--out {out_path}: {error.strerror or error}") from None
    click.echo(f"wrote {out_path} ({len(content):,} bytes) for {start.isoformat()} to {end.isoformat()}")



@main.group("press")
def press_group() -> None:
    """The press office (回应关切): hot topics from public messages."""


@press_group.command("hot-topics")
@click.option("--from-csv", "csv_file", metavar="CSV", required=True, type=click.Path(path_type=Path),
              help="messages shaped like messages_with_likes.csv (留言编号, 留言用户, 留言主题, 留言时间, "
                   "留言详情, 点赞数)")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1), help="topics to print")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="write every topic to this CSV file")
@click.option("--window-days", default=7.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="the current window for growth and bursts, ending at the latest message")
@readable_errors
def press_hot_topics(csv_file: Path, top: int, out_path: Path | None, window_days: float) -> None:
    """Group the messages of CSV into topics and print the hottest (labels and questions redacted)."""
    import csv

    from tqdm import tqdm

    from services.press.topics import OUTPUT_COLUMNS, MessageFileError, find_topics, read_messages_csv, topic_rows

    started = time.monotonic()
    if not csv_file.is_file():
        raise Failure(f"--from-csv {csv_file}: no such file")
    try:
        messages, skipped = read_messages_csv(csv_file)
    except MessageFileError as error:
        raise Failure(str(error)) from None
    if not messages:
        raise Failure(f"--from-csv {csv_file}: no messages in the file")

    def progress(items: Any) -> Any:
        return tqdm(items, desc="分词 segmenting", unit="msg", disable=not sys.stderr.isatty())

    topics = find_topics(messages, window_days=window_days, progress=progress)
    if out_path is not None:
        try:
            with out_path.open("w", encoding="utf-8-sig", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=OUTPUT_COLUMNS)
                writer.writeheader()
                writer.writerows(topic_rows(topics))
        except OSError as error:
            raise Failure(f"--out {out_path}: {error.strerror or error}") from None
    for rank, topic in enumerate(topics[:top], start=1):
        span = f"{topic.first:%Y-%m-%d} – {topic.last:%Y-%m-%d}"
        shown = ", ".join(topic.member_ids[:5]) + (f" … ({topic.size} in all)" if topic.size > 5 else "")
        click.echo(f"{rank:>2}. {topic.label}  hotness {topic.hotness:.2f}  burst {topic.burst:+.2f}  "
                   f"size {topic.size}  {span}")
        click.echo(f"    why: {' '.join(topic.keywords)}")
        if topic.representative_questions:
            click.echo(f"    e.g. {topic.representative_questions[0]}")
        click.echo(f"    messages: {shown}")
    note = f", {skipped} rows skipped" if skipped else ""
    written = f"; all topics written to {out_path}" if out_path is not None else ""
    click.echo(f"{len(messages)} messages in {len(topics)} topics{note} ({time.monotonic() - started:.1f} s){written}")


@press_group.command("briefing")
@click.option("--week", "week_text", metavar="YYYY-MM-DD", default="",
              help="the Monday of the week (Beijing dates); default: the last full week")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the .docx file to write")
@readable_errors
def press_briefing(week_text: str, out_path: Path) -> None:
    """Write the weekly briefing (舆情周报, Word) of a week: top topics, sample questions (redacted),
    overdue consultations and the policies that draw questions but have no interpretation."""
    from services.audit import AuditRecord, AuditResult, record_via_outbox
    from services.db import open_service_database
    from services.press.briefing import BriefingError, Week, build_weekly_briefing
    from services.press.models import OutboxEvent

    try:
        week = Week.parse(week_text)
    except BriefingError as error:
        raise Failure(f"--week: {error}") from None
    if out_path.suffix.lower() != ".docx":
        raise Failure(f"--out {out_path}: the file name should end in .docx")
    settings = _settings_checked()
    database = open_service_database(settings, "press")
    try:
        with database.transaction() as session:
            content = build_weekly_briefing(session, week)
            record_via_outbox(session, OutboxEvent, AuditRecord.by(
                None, "press", "briefing.export", AuditResult.SUCCESS, username="system", object_type="briefing",
                object_id=week.monday.isoformat(), detail={"week": week.monday.isoformat(), "via": "cli"},
            ))
            try:
                out_path.write_bytes(content)
            except OSError as error:
                raise Failure(f"--out {out_path}: {error.strerror or error}") from None
    finally:
        database.dispose()
    click.echo(f"wrote {out_path} ({len(content):,} bytes) for {week.monday.isoformat()} to {week.sunday.isoformat()}")


def _press_app(settings: Settings) -> Any:
    from services.suite import create_worker_app

    return create_worker_app(settings)


@press_group.command("import")
@click.argument("csv_file", metavar="CSV", type=click.Path(path_type=Path))
@readable_errors
def press_import(csv_file: Path) -> None:
    """Import historical messages (shaped like messages_with_likes.csv) into the press office, redacted;
    a message already imported (same 留言编号) is skipped. Run `gongkai press recompute` afterwards."""
    from tqdm import tqdm

    from services.db import get_database
    from services.press.ingest import import_csv
    from services.press.topics import MessageFileError

    if not csv_file.is_file():
        raise Failure(f"{csv_file}: no such file")
    settings = _settings_checked()
    app = _press_app(settings)
    with app.app_context(), tqdm(desc="导入 importing", unit="msg", disable=not sys.stderr.isatty()) as bar:
        try:
            report = import_csv(get_database("press").transaction, settings, csv_file, progress=bar.update)
        except MessageFileError as error:
            raise Failure(str(error)) from None
    click.echo(f"imported {report.imported} messages ({report.already} already there, {report.skipped} rows skipped)")


@press_group.command("recompute")
@readable_errors
def press_recompute() -> None:
    """Rebuild every topic from the stored keywords (topic ids kept where a topic stays mostly the same)."""
    from tqdm import tqdm

    from services.db import get_database
    from services.press.engine import recompute

    settings = _settings_checked()
    app = _press_app(settings)
    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="item", disable=not sys.stderr.isatty())
        bar.total = total
        bar.n = done
        bar.refresh()

    started = time.monotonic()
    with app.app_context():
        run_id = recompute(get_database("press"), progress=progress)
    for bar in bars.values():
        bar.close()
    click.echo(f"recompute run {run_id} finished ({time.monotonic() - started:.1f} s)")


@main.group("search")
def search_group() -> None:
    """The shared search index (站内搜索): rebuild and reconciliation."""


@search_group.command("reindex")
@click.option("--keep", default=2, show_default=True, type=click.IntRange(min=1),
              help="index versions to keep after the swap, the new one included (older ones allow a rollback)")
@readable_errors
def search_reindex(keep: int) -> None:
    """Rebuild the content index from the services and switch to it without downtime.

    A new index version is filled from what each service publishes while the current one keeps
    answering queries and receiving new publications (which reach the new index too); then the
    alias moves to the new index in one step and old versions beyond --keep are deleted. If the
    rebuild fails or is interrupted, the alias is left as it was. GET /api/search/reindex/status
    shows the progress.
    """
    from tqdm import tqdm

    from search.reindex import ReindexInProgress, reindex, worker_apps
    from services.migrations import migrate_all
    from services.suite import create_worker_app

    settings = _settings_checked()
    migrate_all(settings)
    bars: dict[str, Any] = {}

    def progress(doc_type: str, done: int, total: int) -> None:
        bar = bars.get(doc_type)
        if bar is None:
            if not total:
                return  # nothing of this type to index
            bar = bars[doc_type] = tqdm(total=total, desc=doc_type, unit="doc", disable=not sys.stderr.isatty())
        bar.total = max(bar.total or 0, total)
        bar.update(done - bar.n)

    app = create_worker_app(settings)
    try:
        with app.app_context():
            report = reindex(worker_apps(app), keep=keep, progress=progress)
    except ReindexInProgress as error:
        raise Failure(str(error)) from None
    finally:
        for bar in bars.values():
            bar.close()
    counts = ", ".join(f"{count} {doc_type}" for doc_type, count in report.counts.items())
    click.echo(f"rebuilt {report.alias}: {report.previous or '(none)'} -> {report.index} ({counts}) "
               f"in {report.seconds:.1f} s")
    if report.pruned:
        click.echo(f"pruned: {', '.join(report.pruned)}")
    if report.prune_error:
        click.echo(f"warning: old indices not pruned ({report.prune_error}); the next rebuild prunes them", err=True)


@search_group.command("reconcile")
@click.option("--dry-run", is_flag=True, help="report the drift only; repair nothing")
@readable_errors
def search_reconcile(dry_run: bool) -> None:
    """Compare the index with what the services publish, per type, and repair the drift.

    Missing documents are indexed, stale ones rewritten, those no longer published deleted. The
    beat schedule runs this every hour; the table shows what was found and repaired, and the run is
    recorded for the admin page "索引核对" (/search/admin/reconcile).
    """
    from search.reconcile import COMMAND, reconcile_recorded
    from search.reindex import worker_apps
    from services.migrations import migrate_all
    from services.suite import create_worker_app

    settings = _settings_checked()
    migrate_all(settings)
    app = create_worker_app(settings)
    with app.app_context():
        _, report = reconcile_recorded(worker_apps(app), trigger=COMMAND, repair=not dry_run)
    assert report is not None  # a new run always reports
    for line in report.lines():
        click.echo(line)
    if not report.drift:
        click.echo(f"no drift in {report.alias} ({report.seconds:.1f} s)")
    elif dry_run:
        click.echo(f"drift found in {report.alias}: {report.drift} documents (dry run: nothing repaired)")
    else:
        repaired = sum(item.repaired for item in report.types.values())
        click.echo(f"drift repaired in {report.alias}: {repaired} of {report.drift} documents ({report.seconds:.1f} s)")
    if report.unrepaired:
        click.echo(f"warning: {report.unrepaired} documents could not be repaired (the index holds a newer "
                   "version or deletion); `gongkai search reindex` rebuilds the index afresh", err=True)


@main.command("backup")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the archive to write (.tar.gz; replaced if it exists)")
@readable_errors
def backup_command(out_path: Path) -> None:
    """Write every service's database, the data files and the settings into ONE archive.

    The databases are read consistently while the suite runs: one snapshot of every PostgreSQL
    schema, or each SQLite file through the SQLite backup API. The data files are the policy
    attachments, the installed router models and the list of signed-out sessions (not the search
    index: `gongkai restore` rebuilds it). The archive holds personal data and the settings in
    effect WITH SECRET_KEY (the audit chain and the stored hashes need it): it is written with mode
    0600; keep it as safe as the database itself.
    """
    from services.backup import BackupError, backup

    settings = _settings_checked()
    try:
        report = backup(settings, out_path, progress=sys.stderr.isatty())
    except BackupError as error:
        raise Failure(str(error)) from None
    click.echo(f"wrote {report.path} ({report.size:,} bytes, {report.backend}): {report.rows:,} rows in "
               f"{report.tables} tables, {report.files} files, settings ({report.seconds:.1f} s)")


@main.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="replace the data the target already holds")
@readable_errors
def restore_command(archive: Path, force: bool) -> None:
    """Restore a `gongkai backup` ARCHIVE onto the databases and data directory of the current settings.

    The archive is checked first (every member against its checksum): nothing is written if it is
    damaged. The target must be empty (no rows in any service's database, no data files) unless
    --force is given, which deletes what it holds. The databases are loaded, migrated to this
    version's schema, the data files put back, and the search index rebuilt. If loading fails, the
    target is left empty. Stop the suite (web, worker, beat) of the target first.

    The backup's settings are written to $GONGKAI_DATA_DIR/restored-settings.env (mode 0600) and the
    settings that differ from the current environment are named. Without SECRET_KEY in the
    environment (one machine), the backup's key replaces $GONGKAI_DATA_DIR/secret_key.
    """
    from services.backup import BackupError, restore

    settings = _settings_checked()
    try:
        report = restore(settings, archive, force=force, progress=sys.stderr.isatty())
    except BackupError as error:
        raise Failure(str(error)) from None
    click.echo(f"restored the backup of {report.created_at} (Gongkai {report.gongkai_version}, {report.backend}): "
               f"{report.rows:,} rows, {report.files} files ({report.seconds:.1f} s)")
    click.echo(f"the backup's settings: {report.settings_file}")
    if report.differing:
        click.echo(f"settings that differ from the current environment: {', '.join(report.differing)}")
    if report.secret_key_note:
        click.echo(report.secret_key_note)
    if report.requeued:
        click.echo(f"{report.requeued} events of the hour before the backup will be delivered again "
                   "(their consumers apply each once)")
    if report.index_error:
        raise Failure(f"the data is restored but the search index was not rebuilt ({report.index_error}): "
                      "run `gongkai search reindex`")
    counts = ", ".join(f"{count} {doc_type}" for doc_type, count in report.index_counts.items())
    click.echo(f"search index rebuilt: {counts}")


if __name__ == "__main__":
    main()
