"""The Celery app, built from the Flask app factory.

Tasks are declared with ``@shared_task`` in each service's ``tasks.py``, take ids
and event messages (never ORM objects), run inside a Flask app context, are acked
late and redelivered if a worker dies, and retry with backoff.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import Celery, Task
from celery.schedules import crontab
from celery.signals import before_task_publish, task_postrun, task_prerun
from flask import Flask

from services.observability import current_request_id, new_request_id, set_request_id
from services.outbox import BrokerUnavailable
from services.settings import SERVICES, Settings

TASK_MODULES = (
    "services.tasks",
    "search.tasks",
    "services.identity.tasks",
    "consult.tasks",
    "interpret.tasks",
    "services.press.tasks",
    "services.press.policies",
    "services.press.search_interest",
)
"""Modules whose ``@shared_task`` functions the worker registers."""


INDEX_QUEUE = "index"
"""Index writes have a queue of their own, which every worker takes from first: publication → searchable
stays within seconds while the default queue holds a backlog (a burst of submissions' intake, audit
and press tasks)."""
DEFAULT_QUEUE = "celery"
WORKER_QUEUES = (INDEX_QUEUE, DEFAULT_QUEUE)
"""What ``gongkai worker`` consumes, in priority order."""
INDEX_TASKS = ("search.index_document", "search.remove_document")
FIRST_QUEUE_TASKS = (*INDEX_TASKS, "outbox.relay")
"""Also the outbox relay, which feeds the index writes: behind a backlog on the default queue its runs
expired unrun, and after a broker outage the events waiting in the outboxes waited for the backlog."""


def celery_config(settings: Settings) -> dict[str, Any]:
    from services.broker import use_atomic_filesystem_transport, use_redis_transport

    use_atomic_filesystem_transport()
    use_redis_transport()
    config: dict[str, Any] = {
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {name: {"queue": INDEX_QUEUE} for name in FIRST_QUEUE_TASKS},
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_retry_delay": 2,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        "worker_hijack_root_logger": False,
        "timezone": "Asia/Shanghai",
        "enable_utc": True,
        "imports": TASK_MODULES,
        "beat_schedule": beat_schedule(settings),
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
    }
    if settings.redis_url:
        config["broker_transport_options"] = {
            # A send fails at once when Redis is down (the outbox keeps the event for the
            # relay) instead of stalling the request that caused it.
            "max_retries": 0,
            # Queues are read in the order the worker lists them (the index queue first), not in turn.
            "queue_order_strategy": "priority",
            # A task a killed worker took (late acks: never acknowledged) goes back to the queue this long
            # after it was taken; every worker looks for such tasks every tenth of it (at most every minute).
            "visibility_timeout": settings.celery_visibility_timeout,
            "unacked_restore_interval": min(60, max(1, settings.celery_visibility_timeout // 10)),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        }
    else:
        queue_dir = settings.broker_dir / "queue"
        config["broker_transport_options"] = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(settings.broker_dir / "processed"),
            "control_folder": str(settings.broker_dir / "control"),
            "store_processed": False,
            "queue_order_strategy": "priority",
            # kombu waits this long whenever it has nothing to take, which with prefetch 1 and late acks
            # is after every task: the default 1 s capped a worker at about one task per second per process.
            "polling_interval": 0.05,
        }
    return config


def beat_schedule(settings: Settings) -> dict[str, Any]:
    interval = timedelta(seconds=settings.outbox_relay_interval)
    schedule: dict[str, Any] = {
        "prune-audit-log": {"task": "identity.prune_audit", "schedule": timedelta(days=1)},
        "prune-query-log": {"task": "search.prune_query_log", "schedule": crontab(minute=15, hour=3)},
        "publish-scheduled-content": {"task": "interpret.publish_due", "schedule": timedelta(seconds=30)},
        # Monday 09:00 in the app's time zone (Asia/Shanghai): interpretations missing or late, per department.
        "consult-deadline-sweep": {"task": "consult.sweep_deadlines", "schedule": crontab(minute=5)},
        # Hourly at :35: compare the index with what the services publish, repair the drift.
        "search-reconcile": {"task": "search.reconcile", "schedule": crontab(minute=35)},
        "interpret-coverage-reminders": {
            "task": "interpret.coverage_reminders", "schedule": crontab(minute=0, hour=9, day_of_week="mon"),
        },
    }
    # Press: a safety net for the debounced topic update (messages imported or missed by the flag).
    schedule["press-update-topics"] = {"task": "press.update_topics", "schedule": timedelta(seconds=60),
                                       "options": {"expires": 55}}
    # Press: the search query log's counts as a hot-topic input (a snapshot, replaced each run).
    schedule["press-pull-search-interest"] = {"task": "press.pull_search_interest",
                                              "schedule": timedelta(minutes=5), "options": {"expires": 290}}
    for service in SERVICES:
        schedule[f"relay-outbox-{service}"] = {
            "task": "outbox.relay",
            "schedule": interval,
            "args": (service,),
            # A relay run that waited longer than a few intervals is superseded by newer ones.
            "options": {"expires": max(5.0, settings.outbox_relay_interval * 5)},
        }
    return schedule


def make_celery(settings: Settings, flask_app: Flask | None = None) -> Celery:
    """A Celery app; with ``flask_app`` every task runs inside that app's context."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if flask_app is None:
                return self.run(*args, **kwargs)
            with flask_app.app_context():
                return self.run(*args, **kwargs)

    if not settings.redis_url:
        for folder in ("queue", "processed", "control"):
            (settings.broker_dir / folder).mkdir(parents=True, exist_ok=True)
    celery = Celery("gongkai", task_cls=FlaskTask)
    celery.config_from_object(celery_config(settings))
    if flask_app is not None:
        flask_app.extensions["celery"] = celery
    return celery


class CeleryPublisher:
    """Sends outbox events as tasks; a broker failure becomes BrokerUnavailable."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def __call__(self, task_name: str, message: dict[str, Any], request_id: str | None) -> None:
        try:
            self.celery.send_task(
                task_name,
                kwargs={"event": message},
                headers={"request_id": request_id} if request_id else None,
                retry=False,
            )
        except (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError) as error:
            raise BrokerUnavailable(f"{type(error).__name__}: {error}") from None


@before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and not headers.get("request_id"):
        request_id = current_request_id()
        if request_id:
            headers["request_id"] = request_id


@task_prerun.connect
def _adopt_request_id(task: Task | None = None, **_: Any) -> None:
    request_id = getattr(task.request, "request_id", None) if task is not None else None
    set_request_id(request_id or new_request_id())


@task_postrun.connect
def _drop_request_id(**_: Any) -> None:
    set_request_id(None)
