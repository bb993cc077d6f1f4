"""Settings for the whole suite, read from the environment in one typed place.

Every setting has a single-machine default that needs no server; production sets
``DATABASE_URL``, ``REDIS_URL`` and ``SEARCH_URL`` (see ``.env.example``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

SERVICES: tuple[str, ...] = ("identity", "interpret", "consult", "search", "press")
"""Services that own data; each has its own database (SQLite file or PostgreSQL schema)."""

MIN_AUDIT_RETENTION_DAYS = 180
MAX_INTERPRETATION_LATE_WORKING_DAYS = 60

WEB_APPS: tuple[str, ...] = ("portal", *SERVICES)
"""Flask apps: the portal shell plus one per service."""


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    environment: str = "development"
    database_url: str | None = None
    database_schema_prefix: str = ""
    redis_url: str | None = None
    search_url: str | None = None
    search_api_key: str | None = None
    search_ca_file: str | None = None
    search_alias: str = "gongkai_content"
    secret_key: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = 2
    worker_concurrency: int = 2
    behind_tls: bool = False
    log_level: str = "INFO"
    log_json: bool = True
    outbox_relay_interval: float = 1.0
    celery_visibility_timeout: int = 3600
    """Seconds after which the Redis broker hands a task taken by a worker that never acknowledged it (the worker
    was killed, or lost its connection) to another worker. Longer than any task runs or waits for its countdown
    (retries back off up to 10 minutes); shorter delays the recovery after a worker dies."""
    default_locale: str = "zh_CN"
    service_urls: Mapping[str, str] = field(default_factory=dict)
    trust_proxy: bool = False
    idle_timeout_minutes: float = 30.0
    api_token_minutes: int = 30
    lockout_threshold: int = 5
    lockout_window_minutes: int = 15
    lockout_minutes: int = 15
    password_min_length: int = 12
    audit_retention_days: int = 180
    login_rate_limit: str = "10 per minute;100 per hour"
    search_rate_limit: str = "120 per minute"
    classify_rate_limit: str = "60 per minute"
    """Per client address, for the public ``POST /api/consult/classify``."""
    router_confidence_threshold: float = 0.6
    """A consultation whose predicted category is at least this confident is assigned automatically."""
    router_departments_file: Path | None = None
    """The category -> department table (CSV); unset: ``consult/data/category_departments.csv``."""
    attachment_max_bytes: int = 20 * 1024 * 1024
    """The largest policy attachment (PDF, Word, image) accepted, in bytes."""
    interpretation_late_working_days: int = 0
    """An own-level policy's interpretation is late when published more than this many working days after it."""
    interpretation_reminder_lookback_days: int = 365
    """The weekly coverage reminder lists policies still missing an interpretation published within this many days."""
    smtp_host: str | None = None
    """The SMTP server for notification e-mail; unset means e-mail is disabled (tasks skip and log a warning)."""
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "gongkai@localhost"
    public_base_url: str = "http://127.0.0.1:8000"
    """Where staff reach the suite; links in e-mails start with it (no trailing slash)."""
    consult_intake_department: str = "ORG"
    """Where consultations the router is unsure about wait for a dispatcher (a department code)."""
    consult_accept_working_days: int = 1
    """Working days to accept (受理) a consultation, unless its category says otherwise."""
    consult_reply_working_days: int = 5
    """Working days from acceptance to the reply, unless its category says otherwise."""
    consult_reopen_days: int = 15
    """Calendar days after a reply during which a dissatisfied asker may reopen the case (once)."""
    consult_submit_rate_limit: str = "10 per minute;200 per day"
    """Per client address, for public submissions (and the other asker actions)."""
    query_log_retention_days: int = 365
    public_cache_seconds: float = 2.0
    """Anonymous GETs of the marked public pages are answered from a shared cache this long (0: off; off
    by default under GONGKAI_ENV=test). Bounds how far a page may lag behind a publication."""
    search_cache_seconds: float = 1.0
    """The same for public search answers. Publication → searchable must stay within 2 s at p95; the index
    write takes ~0.2 s at p95 under load (bench.freshness), so 1 s of caching leaves room."""
    """Search query log rows older than this are deleted daily (they hold no identity; hot topics read 30 days)."""
    consult_track_rate_limit: str = "60 per minute"
    """Per client address, for looking up a consultation with its query code (guessing codes stays slow)."""
    consult_alarm_days: int = 60
    """A consultation unanswered this many calendar days after receipt raises an alarm."""
    consult_sensitive_words_file: Path | None = None
    """Words that flag a submission for review (one per line); unset: ``consult/data/sensitive_words.txt``."""
    press_response_hours: int = 48
    """The response clock a growth alert starts (回应关切 within 48 hours)."""
    press_emergency_response_hours: int = 5
    """The response clock an emergency alert starts (authoritative information within 5 hours)."""
    press_emergency_terms: tuple[str, ...] = ("爆炸", "火灾", "坍塌", "死亡", "中毒", "疫情", "泄漏", "踩踏", "溃坝",
                                              "群体性")
    """Terms that make a message an emergency (stored at ingest; the default emergency rule's terms)."""
    press_update_delay_seconds: float = 2.0
    """New messages are grouped into topics by one Celery run at most this long after they arrive."""
    press_webhook_timeout_seconds: float = 5.0
    """How long an alert webhook may take to answer before the delivery is retried."""
    press_search_window_hours: int = 24
    """The search query log window a topic's search interest counts (and the previous one, for growth)."""

    @property
    def rate_limit_storage(self) -> str:
        return self.redis_url or "memory://"

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def broker_url(self) -> str:
        return self.redis_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    def service_database_url(self, service: str) -> str:
        """The SQLAlchemy URL a service's data lives at.

        PostgreSQL: the shared database, one schema per service (set per connection).
        Single machine: one SQLite file per service under the data directory.
        """
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'db' / f'{service}.sqlite3'}"

    def uses_postgres(self) -> bool:
        return self.database_url is not None and self.database_url.startswith("postgresql")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A duration that may be 0 (off)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 3600:
        raise ConfigError(name, f"must be between 0 and 3600 seconds, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(name, f"must be positive, got {value}")
    return value


def _optional(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    return raw or None


def _check_url(name: str, url: str, schemes: set[str]) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError(name, f"malformed URL ({error})") from None
    if parts.scheme not in schemes:
        expected = " or ".join(sorted(schemes))
        raise ConfigError(name, f"URL must start with {expected}://, got {url!r}")
    if not parts.hostname and not parts.path.startswith("/") and "host=" not in parts.query:
        raise ConfigError(name, f"URL has no host: {url!r}")
    if port == 0:
        raise ConfigError(name, f"URL has port 0: {url!r}")
    return url


def _database_url(env: Mapping[str, str]) -> str | None:
    url = _optional(env, "DATABASE_URL")
    if url is None:
        return None
    if url.startswith("postgres://") or url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return _check_url("DATABASE_URL", url, {"postgresql+psycopg", "sqlite"})


def _schema_prefix(env: Mapping[str, str]) -> str:
    prefix = env.get("DATABASE_SCHEMA_PREFIX", "").strip()
    if prefix and not all(c.islower() or c.isdigit() or c == "_" for c in prefix):
        raise ConfigError("DATABASE_SCHEMA_PREFIX", "use lower-case letters, digits and underscores only")
    return prefix


def _secret_key(env: Mapping[str, str], data_dir: Path, production: bool) -> str:
    configured = _optional(env, "SECRET_KEY")
    if configured:
        if len(configured) < 32:
            raise ConfigError("SECRET_KEY", "must be at least 32 characters")
        return configured
    if production:
        raise ConfigError("SECRET_KEY", "is required when GONGKAI_ENV=production")
    # Single machine: a random key kept beside the data so sessions survive restarts.
    key_file = data_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("GONGKAI_DATA_DIR") or "var").expanduser().resolve()
    environment = env.get("GONGKAI_ENV", "development").strip() or "development"
    if environment not in {"development", "production", "test"}:
        raise ConfigError("GONGKAI_ENV", f"expected development, production or test, got {environment!r}")

    redis_url = _optional(env, "REDIS_URL")
    if redis_url:
        _check_url("REDIS_URL", redis_url, {"redis", "rediss"})
    search_url = _optional(env, "SEARCH_URL")
    if search_url:
        from services.searchengine.factory import validate_search_url

        try:
            search_url = validate_search_url(search_url)
        except ValueError as error:
            raise ConfigError("SEARCH_URL", str(error)) from None
    search_ca_file = _optional(env, "SEARCH_CA_FILE")
    if search_ca_file and not Path(search_ca_file).is_file():
        raise ConfigError("SEARCH_CA_FILE", f"no such file: {search_ca_file}")

    service_urls = {}
    for service in SERVICES:
        name = f"SERVICE_URL_{service.upper()}"
        url = _optional(env, name)
        if url:
            service_urls[service] = _check_url(name, url, {"http", "https"}).rstrip("/")

    log_level = env.get("LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("LOG_LEVEL", f"expected DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    audit_retention_days = _int(env, "AUDIT_RETENTION_DAYS", MIN_AUDIT_RETENTION_DAYS, minimum=1)
    if audit_retention_days < MIN_AUDIT_RETENTION_DAYS:
        raise ConfigError("AUDIT_RETENTION_DAYS", f"must be at least {MIN_AUDIT_RETENTION_DAYS} days")

    late_working_days = _int(env, "INTERPRETATION_LATE_WORKING_DAYS", 0, minimum=0)
    if late_working_days > MAX_INTERPRETATION_LATE_WORKING_DAYS:
        raise ConfigError("INTERPRETATION_LATE_WORKING_DAYS",
                          f"must be at most {MAX_INTERPRETATION_LATE_WORKING_DAYS}, got {late_working_days}")

    smtp_port = _int(env, "SMTP_PORT", 25, minimum=1)
    if smtp_port > 65535:
        raise ConfigError("SMTP_PORT", f"must be at most 65535, got {smtp_port}")
    public_base_url = _check_url("PUBLIC_BASE_URL", _optional(env, "PUBLIC_BASE_URL") or "http://127.0.0.1:8000",
                                 {"http", "https"}).rstrip("/")

    router_confidence_threshold = _float(env, "ROUTER_CONFIDENCE_THRESHOLD", 0.6)
    if not 0.0 <= router_confidence_threshold <= 1.0:
        raise ConfigError("ROUTER_CONFIDENCE_THRESHOLD", f"must be between 0 and 1, got {router_confidence_threshold}")
    departments_file = _optional(env, "ROUTER_DEPARTMENTS_FILE")
    router_departments_file = Path(departments_file).expanduser().resolve() if departments_file else None
    if router_departments_file is not None and not router_departments_file.is_file():
        raise ConfigError("ROUTER_DEPARTMENTS_FILE", f"no such file: {departments_file}")

    sensitive_file = _optional(env, "CONSULT_SENSITIVE_WORDS_FILE")
    consult_sensitive_words_file = Path(sensitive_file).expanduser().resolve() if sensitive_file else None
    if consult_sensitive_words_file is not None and not consult_sensitive_words_file.is_file():
        raise ConfigError("CONSULT_SENSITIVE_WORDS_FILE", f"no such file: {sensitive_file}")
    consult_accept_working_days = _int(env, "CONSULT_ACCEPT_WORKING_DAYS", 1, minimum=1)
    consult_reply_working_days = _int(env, "CONSULT_REPLY_WORKING_DAYS", 5, minimum=1)
    for name, value in (("CONSULT_ACCEPT_WORKING_DAYS", consult_accept_working_days),
                        ("CONSULT_REPLY_WORKING_DAYS", consult_reply_working_days)):
        if value > 60:
            raise ConfigError(name, f"must be at most 60 working days, got {value}")

    return Settings(
        data_dir=data_dir,
        environment=environment,
        database_url=_database_url(env),
        database_schema_prefix=_schema_prefix(env),
        redis_url=redis_url,
        search_url=search_url,
        search_api_key=_optional(env, "SEARCH_API_KEY"),
        search_ca_file=search_ca_file,
        search_alias=env.get("SEARCH_ALIAS", "gongkai_content").strip() or "gongkai_content",
        secret_key=_secret_key(env, data_dir, environment == "production"),
        host=env.get("GONGKAI_HOST", "127.0.0.1"),
        port=_int(env, "GONGKAI_PORT", 8000, minimum=1),
        web_workers=_int(env, "WEB_CONCURRENCY", 2, minimum=1),
        worker_concurrency=_int(env, "WORKER_CONCURRENCY", 2, minimum=1),
        behind_tls=_bool(env, "BEHIND_TLS", False),
        log_level=log_level,
        log_json=_bool(env, "LOG_JSON", True),
        outbox_relay_interval=_float(env, "OUTBOX_RELAY_INTERVAL", 1.0),
        celery_visibility_timeout=_visibility_timeout(env),
        default_locale=env.get("DEFAULT_LOCALE", "zh_CN"),
        service_urls=service_urls,
        trust_proxy=_bool(env, "TRUST_PROXY", False),
        idle_timeout_minutes=_float(env, "IDLE_TIMEOUT_MINUTES", 30.0),
        api_token_minutes=_int(env, "API_TOKEN_MINUTES", 30, minimum=1),
        lockout_threshold=_int(env, "LOCKOUT_THRESHOLD", 5, minimum=1),
        lockout_window_minutes=_int(env, "LOCKOUT_WINDOW_MINUTES", 15, minimum=1),
        lockout_minutes=_int(env, "LOCKOUT_MINUTES", 15, minimum=1),
        password_min_length=_int(env, "PASSWORD_MIN_LENGTH", 12, minimum=8),
        audit_retention_days=audit_retention_days,
        login_rate_limit=env.get("LOGIN_RATE_LIMIT", "10 per minute;100 per hour"),
        search_rate_limit=env.get("SEARCH_RATE_LIMIT", "120 per minute"),
        classify_rate_limit=env.get("CLASSIFY_RATE_LIMIT", "60 per minute"),
        router_confidence_threshold=router_confidence_threshold,
        router_departments_file=router_departments_file,
        attachment_max_bytes=_int(env, "ATTACHMENT_MAX_BYTES", 20 * 1024 * 1024, minimum=1),
        interpretation_late_working_days=late_working_days,
        interpretation_reminder_lookback_days=_int(env, "INTERPRETATION_REMINDER_LOOKBACK_DAYS", 365, minimum=1),
        smtp_host=_optional(env, "SMTP_HOST"),
        smtp_port=smtp_port,
        smtp_username=_optional(env, "SMTP_USERNAME"),
        smtp_password=_optional(env, "SMTP_PASSWORD"),
        smtp_starttls=_bool(env, "SMTP_STARTTLS", False),
        mail_from=_optional(env, "MAIL_FROM") or "gongkai@localhost",
        public_base_url=public_base_url,
        consult_intake_department=(_optional(env, "CONSULT_INTAKE_DEPARTMENT") or "ORG").upper(),
        consult_accept_working_days=consult_accept_working_days,
        consult_reply_working_days=consult_reply_working_days,
        consult_reopen_days=_int(env, "CONSULT_REOPEN_DAYS", 15, minimum=1),
        consult_submit_rate_limit=env.get("CONSULT_SUBMIT_RATE_LIMIT", "10 per minute;200 per day"),
        consult_track_rate_limit=env.get("CONSULT_TRACK_RATE_LIMIT", "60 per minute"),
        query_log_retention_days=_int(env, "QUERY_LOG_RETENTION_DAYS", 365, minimum=30),
        public_cache_seconds=_seconds(env, "PUBLIC_CACHE_SECONDS",
                                      0.0 if environment == "test" else Settings.public_cache_seconds),
        search_cache_seconds=_seconds(env, "SEARCH_CACHE_SECONDS",
                                      0.0 if environment == "test" else Settings.search_cache_seconds),
        consult_alarm_days=_int(env, "CONSULT_ALARM_DAYS", 60, minimum=1),
        consult_sensitive_words_file=consult_sensitive_words_file,
        press_response_hours=_int(env, "PRESS_RESPONSE_HOURS", 48, minimum=1),
        press_emergency_response_hours=_int(env, "PRESS_EMERGENCY_RESPONSE_HOURS", 5, minimum=1),
        press_emergency_terms=_terms(env, "PRESS_EMERGENCY_TERMS", Settings.press_emergency_terms),
        press_update_delay_seconds=_float(env, "PRESS_UPDATE_DELAY_SECONDS", 2.0),
        press_webhook_timeout_seconds=_float(env, "PRESS_WEBHOOK_TIMEOUT_SECONDS", 5.0),
        press_search_window_hours=_int(env, "PRESS_SEARCH_WINDOW_HOURS", 24, minimum=1),
    )


def _visibility_timeout(env: Mapping[str, str]) -> int:
    seconds = _int(env, "CELERY_VISIBILITY_TIMEOUT", Settings.celery_visibility_timeout, minimum=1)
    if seconds > 86400:
        raise ConfigError("CELERY_VISIBILITY_TIMEOUT", f"must be at most 86400 seconds (a day), got {seconds}")
    return seconds


def _terms(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list (ASCII or full-width commas); unset or blank: ``default``."""
    raw = env.get(name, "").replace("，", ",").replace("、", ",")
    terms = tuple(term.strip() for term in raw.split(",") if term.strip())
    return terms or default
