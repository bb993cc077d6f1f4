"""Roles, what each may do, and the one function every API, page and command asks.

A role is held in a department and covers that department and every department
below it. Which departments those are is resolved when the identity is issued, so
any service can check a permission from the signed identity alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    REVIEWER = "reviewer"
    DISPATCHER = "dispatcher"
    DISCLOSURE_OFFICE = "disclosure_office"
    PRESS_OFFICER = "press_officer"
    AUDITOR = "auditor"


ROLE_LABELS: dict[Role, str] = {
    Role.ADMIN: "系统管理员",
    Role.EDITOR: "部门编辑",
    Role.REVIEWER: "部门审核人",
    Role.DISPATCHER: "咨询分办员",
    Role.DISCLOSURE_OFFICE: "政务公开办",
    Role.PRESS_OFFICER: "新闻宣传",
    Role.AUDITOR: "审计员（只读）",
}


class Permission(StrEnum):
    MANAGE_IDENTITY = "identity.manage"
    VIEW_AUDIT = "audit.view"
    EXPORT_AUDIT = "audit.export"
    VIEW_STAFF = "staff.view"
    DRAFT = "content.draft"
    REVIEW = "content.review"
    PUBLISH = "content.publish"
    DISPATCH = "consultation.dispatch"
    PRESS = "press.manage"
    READ_RECORDS = "records.read"


GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.MANAGE_IDENTITY: frozenset({Role.ADMIN}),
    Permission.VIEW_AUDIT: frozenset({Role.AUDITOR}),
    Permission.EXPORT_AUDIT: frozenset({Role.AUDITOR}),
    Permission.VIEW_STAFF: frozenset({Role.ADMIN, Role.REVIEWER, Role.DISPATCHER, Role.DISCLOSURE_OFFICE}),
    Permission.DRAFT: frozenset({Role.EDITOR}),
    Permission.REVIEW: frozenset({Role.REVIEWER}),
    Permission.PUBLISH: frozenset({Role.DISCLOSURE_OFFICE}),
    Permission.DISPATCH: frozenset({Role.DISPATCHER}),
    Permission.PRESS: frozenset({Role.PRESS_OFFICER}),
    Permission.READ_RECORDS: frozenset(
        {Role.EDITOR, Role.REVIEWER, Role.DISPATCHER, Role.DISCLOSURE_OFFICE, Role.PRESS_OFFICER, Role.AUDITOR}
    ),
}
"""Permission -> the roles that carry it. The authorization matrix test reads this table."""


@dataclass(frozen=True)
class Grant:
    role: Role
    department: str
    """The department the role was given in."""
    scope: tuple[str, ...]
    """Codes of that department and every department below it."""


class NotPermitted(Exception):
    """The actor lacks the permission for this department (answered 403)."""


def require(grants: Iterable[Grant], permission: Permission, department: str | None = None) -> None:
    """Raise NotPermitted unless the grants carry the permission; what business rules call."""
    if not is_allowed(grants, permission, department):
        raise NotPermitted(f"{permission.value} in {department or 'any department'}")


def is_allowed(grants: Iterable[Grant], permission: Permission, department: str | None = None) -> bool:
    """Whether these grants carry ``permission`` (in ``department``, when the action concerns one)."""
    roles = GRANTS[permission]
    return any(grant.role in roles and (department is None or department in grant.scope) for grant in grants)


def departments_with(grants: Iterable[Grant], permission: Permission) -> set[str]:
    """Every department in which the grants carry ``permission`` (for filtering lists)."""
    roles = GRANTS[permission]
    return {code for grant in grants if grant.role in roles for code in grant.scope}
