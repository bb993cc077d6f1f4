"""The single-machine broker: kombu's file-system transport, with every message written atomically.

kombu's own ``filesystem`` transport creates a message file under its final name and then writes it; a
worker listing the folder in between moves the still-empty file away, fails to decode it and stops
("Unrecoverable error: JSONDecodeError"), and the message is lost. Here a message is written under a
name no queue reads (``.<random>.partial``) and renamed to its final name once complete (``os.replace``
is atomic on one file system), so a reader sees a whole message or none.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
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
