"""Outgoing e-mail over SMTP (stdlib ``smtplib``), configured by the ``SMTP_*`` settings."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from services.settings import Settings

SMTP_TIMEOUT_SECONDS = 10


class MailUnavailable(Exception):
    """The SMTP server could not be reached or asked to try later; retrying may succeed."""


class MailDisabled(Exception):
    """``SMTP_HOST`` is not set, so no e-mail can be sent."""


def build_message(settings: Settings, to: list[str], subject: str, body_text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
    message.set_content(body_text, charset="utf-8")
    return message


def send_mail(settings: Settings, to: list[str], subject: str, body_text: str) -> None:
    """Send one UTF-8 plain-text message to every address in ``to``.

    Raises :class:`MailDisabled` when ``SMTP_HOST`` is unset, :class:`MailUnavailable` when the
    server cannot be reached, drops the connection or answers with a temporary (4xx) error; a
    permanent refusal (bad login, every recipient rejected) raises the ``smtplib`` error as is.
    """
    if not settings.smtp_host:
        raise MailDisabled("SMTP_HOST is not set")
    if not to:
        return
    message = build_message(settings, to, subject, body_text)
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
