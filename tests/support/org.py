"""A small organisation for tests: a bureau with two divisions and one user per role in each."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.permissions import Permission
from services.settings import Settings

STAFF_PASSWORD = "Correct-Horse-42!"


def create_org(session: Session, settings: Settings) -> dict[str, Any]:
    """Departments KJT (bureau), KJTA and KJTB (divisions); ``admin1`` and ``<role>_<a|b>`` users.

    Every user has the password ``STAFF_PASSWORD`` and no pending password change.
    """
    from services.identity.accounts import assign_role, create_department, create_user
    from services.permissions import Role

    users: dict[str, Any] = {}
    bureau = create_department(session, "KJT", "科学技术厅", "bureau", None)
    divisions = {
        "A": create_department(session, "KJTA", "政策法规处", "division", bureau),
        "B": create_department(session, "KJTB", "高新技术处", "division", bureau),
    }
    admin = create_user(session, settings, username="admin1", display_name="管理员", password=STAFF_PASSWORD)
    assign_role(session, admin, Role.ADMIN, bureau)
    users["admin"] = admin
    for letter, division in divisions.items():
        for role in Role:
            if role is Role.ADMIN:
                continue
            name = f"{role.value}_{letter.lower()}"
            user = create_user(session, settings, username=name, display_name=name, password=STAFF_PASSWORD)
            assign_role(session, user, role, division)
            users[name] = user
    for user in users.values():
        user.must_change_password = False
    return {"bureau": "KJT", "divisions": {k: v.code for k, v in divisions.items()}, "users": users}


def add_cross_users(suite: dict[str, Flask]) -> None:
    """``cross_a``: editor in KJTA, dispatcher, reviewer and disclosure office in KJTB (``cross_b`` the other
    way round). Each may read both divisions and holds every permission somewhere, so only the workflow's
    own check of the record's department can refuse them what they hold in the other division only."""
    from services.db import get_database
    from services.identity.accounts import assign_role, create_user
    from services.identity.models import Department
    from services.permissions import Role

    identity = suite["identity"]
    with get_database("identity", identity).transaction() as session:
        departments = {d.code: d for d in session.scalars(select(Department))}
        for letter, own, other in (("a", "KJTA", "KJTB"), ("b", "KJTB", "KJTA")):
            user = create_user(session, identity.extensions["gongkai.settings"], username=f"cross_{letter}",
                               display_name=f"cross_{letter}", password=STAFF_PASSWORD)
            user.must_change_password = False
            assign_role(session, user, Role.EDITOR, departments[own])
            for role in (Role.DISPATCHER, Role.REVIEWER, Role.DISCLOSURE_OFFICE):
                assign_role(session, user, role, departments[other])


def cross_user(permission: Permission, department: str) -> str:
    """The cross user who can read ``department`` but holds ``permission`` only in the other division."""
    letter = department[-1].lower()
    other = "b" if letter == "a" else "a"
    return f"cross_{other}" if permission is Permission.DRAFT else f"cross_{letter}"
