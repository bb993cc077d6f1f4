"""Outgoing e-mail over SMTP (stdlib ``smtplib``), configured by the ``SMTP_*`` settings.

A task that e-mails about an event sends through :func:`mail_delivery`: SMTP has no idempotency key,
so a worker killed after the server took the message but before the task recorded it would send it
again on redelivery. The guard: the attempt is committed before the send ("sending"), the
processed-event record with the send ("sent"), and every attempt of one delivery carries the same
Message-ID, so a copy sent again after an attempt of unknown outcome is recognisable (and dropped by
servers and clients that deduplicate by Message-ID). A kill before the server accepted the DATA
sends the message exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlalchemy.orm import Session

from services.db import ServiceDatabase
from services.outbox import ProcessedEventMixin, first_delivery, record_attempt
from services.settings import Settings

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 10


class MailUnavailable(Exception):
    """The SMTP server could not be reached or asked to try later; retrying may succeed."""


class MailDisabled(Exception):
    """``SMTP_HOST`` is not set, so no e-mail can be sent."""


def delivery_message_id(settings: Settings, key: str) -> str:
    """The Message-ID of one delivery (``key``: the consumer and its event), the same at every attempt."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<gongkai.{digest}@{settings.mail_from.rpartition('@')[2] or 'localhost'}>"


def build_message(
    settings: Settings, to: list[str], subject: str, body_text: str, message_id: str | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id or make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
    message.set_content(body_text, charset="utf-8")
    return message


def send_mail(
    settings: Settings, to: list[str], subject: str, body_text: str, *, message_id: str | None = None,
) -> None:
    """Send one UTF-8 plain-text message to every address in ``to`` (with ``message_id``, or a new one).

    Raises :class:`MailDisabled` when ``SMTP_HOST`` is unset, :class:`MailUnavailable` when the
    server cannot be reached, drops the connection or answers with a temporary (4xx) error; a
    permanent refusal (bad login, every recipient rejected) raises the ``smtplib`` error as is.
    """
    if not settings.smtp_host:
        raise MailDisabled("SMTP_HOST is not set")
    if not to:
        return
    message = build_message(settings, to, subject, body_text, message_id)
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(message)
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError) as error:
        raise MailUnavailable(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {error}") from error
    except smtplib.SMTPResponseException as error:
        if 400 <= error.smtp_code < 500:
            raise MailUnavailable(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {error}") from error
        raise
    except smtplib.SMTPException:
        raise
    except OSError as error:  # refused, unreachable, timed out, TLS failure
        raise MailUnavailable(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {error}") from error


@dataclass
class MailDelivery:
    """One event's e-mail, inside the consumer's ``first_delivery`` transaction."""

    settings: Settings
    session: Session
    key: str
    earlier_attempt: bool
    """An earlier attempt started and never recorded its end: its message may have reached the server."""

    @property
    def message_id(self) -> str:
        return delivery_message_id(self.settings, self.key)

    def send(self, to: list[str], subject: str, body_text: str) -> None:
        if self.earlier_attempt:
            log.warning("e-mail %s: an earlier attempt ended without recording a send (an error, or a worker "
                        "stopped mid-send); sending with the same Message-ID %s", self.key, self.message_id)
        send_mail(self.settings, to, subject, body_text, message_id=self.message_id)


@contextmanager
def mail_delivery(
    settings: Settings,
    database: ServiceDatabase,
    model: type[ProcessedEventMixin],
    consumer: str,
    event_id: str,
) -> Iterator[MailDelivery | None]:
    """``first_delivery`` for a consumer that e-mails: None when the event was processed already.

    The attempt is committed first (its own transaction), then the consumer's work, the send and the
    processed-event record run in one transaction, which also keeps a second delivery of the same
    event waiting until the first has finished (PostgreSQL: the record's key; SQLite: the write lock).
    """
    earlier = record_attempt(database, model, consumer, event_id)
    with first_delivery(database, model, consumer, event_id) as session:
        if session is None:
            yield None
            return
        yield MailDelivery(settings, session, f"{consumer}:{event_id}", earlier)
