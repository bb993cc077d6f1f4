"""Published content for tests, made through the interpret service's own rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from interpret.models import Policy
from interpret.workflow import PolicyFields, import_published_policy
from services.db import utcnow


def published_policy(session: Session, title: str, **fields: Any) -> Policy:
    values: dict[str, Any] = {"issuer": "国务院", "level": "国家", "body": "为做好有关工作，现通知如下。",
                              "department": "KJT"}
    values.update(fields)
    return import_published_policy(session, PolicyFields(title=title, **values), utcnow())
