"""The brokers' kombu transports, each with a fix for a way it lost messages or workers.

Single machine: kombu's own ``filesystem`` transport creates a message file under its final name and then
writes it; a worker listing the folder in between moves the still-empty file away, fails to decode it and
stops ("Unrecoverable error: JSONDecodeError"), and the message is lost. Here a message is written under a
name no queue reads (``.<random>.partial``) and renamed to its final name once complete (``os.replace``
is atomic on one file system), so a reader sees a whole message or none.

Redis: when the broker goes away while a worker holds unacknowledged tasks, Celery drops the lost
connection (its transport forgets the client) and then closes it, and closing the channel tries to put
those tasks back through a new Redis client built from the forgotten one: an ``AttributeError``, which
Celery takes for an unrecoverable error, and the worker exits instead of reconnecting (found by
tests/faults: Redis restarted under load). Here a channel whose connection is gone raises a connection
error instead, which kombu and Celery handle; the tasks stay in Redis's unacknowledged set and come back
after ``CELERY_VISIBILITY_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

import redis.exceptions
from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

ALIAS = "filesystem"


class Channel(filesystem.Channel):  # type: ignore[misc]
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        folder = self.data_folder_out
        final = os.path.join(folder, f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg")
        partial = os.path.join(folder, f".{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(dumps(payload).encode())  # type: ignore[no-untyped-call]
            os.replace(partial, final)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from error


class Transport(filesystem.Transport):  # type: ignore[misc]
    Channel = Channel


def use_atomic_filesystem_transport() -> None:
    """Make ``filesystem://`` broker URLs use :class:`Transport` (idempotent)."""
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"


class RedisChannel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the connection to the broker is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]


class RedisTransport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = RedisChannel


def use_redis_transport() -> None:
    """Make ``redis://`` and ``rediss://`` broker URLs use :class:`RedisTransport` (idempotent)."""
    for alias in ("redis", "rediss"):
        TRANSPORT_ALIASES[alias] = f"{__name__}:RedisTransport"
