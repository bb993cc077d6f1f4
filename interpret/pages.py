"""Public pages of the interpret service: policies (政策文件) and interpretations (政策解读).

Everything here is read from the shared search index (ARCHITECTURE.md principle 3), never
from the service's tables, and every page is cacheable: an ETag (a hash of the rendered
page) answered with 304 on If-None-Match, and ``Cache-Control: public, max-age=60``; anonymous GETs are
answered from the shared cache of hot public reads for a few seconds (``services.web.shared_page``).

What the index holds is ``interpret.workflow.policy_document`` / ``interpretation_document``.
Only rich-text bodies are rendered as HTML, and only after ``sanitise_html`` once more here
(defence in depth: the index is derived data that other paths, such as a rebuild, also write).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from interpret.workflow import FORMS, HIGHER_LEVELS, LEVELS, VALIDITIES
from services.auth import public
from services.public_read import CHINA, filtered_documents, page_number, public_document
from services.text.richtext import sanitise_html
from services.web import beijing_date, cacheable, content_alias, shared_page

bp = Blueprint("interpret_pages", __name__, url_prefix="/interpret", template_folder="templates")

PER_PAGE = 20
FIRST_YEAR = 1949
MAX_FILTER_LENGTH = 100
INTERPRETATION_LEVELS = ("上级", "本级")
EXPIRED = frozenset({"失效", "废止"})
REVISED = "已修订"
MAX_SIBLING_POLICIES = 5
MAX_RELATED = 10
_BLOCK_TAG = re.compile(r"<(?:p|br|div|table|ul|ol|h[2-4]|blockquote)\b", re.IGNORECASE)


# -- helpers ---------------------------------------------------------------------------------


def _text_arg(name: str) -> str:
    return (request.args.get(name) or "").strip()[:MAX_FILTER_LENGTH]


def _choice_arg(name: str, choices: tuple[str, ...]) -> str:
    value = (request.args.get(name) or "").strip()
    return value if value in choices else ""


def _this_year() -> int:
    return datetime.now(CHINA).year


def _year_arg() -> int | None:
    raw = (request.args.get("year") or "").strip()
    if raw.isdigit() and FIRST_YEAR <= int(raw) <= _this_year() + 1:
        return int(raw)
    return None


def _int_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _safe_external_url(value: Any) -> str | None:
    """An http(s) address we may link to (never ``javascript:`` and the like)."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    if parts.scheme in ("http", "https") and parts.netloc:
        return value.strip()
    return None


def _safe_media_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return _safe_external_url(value)


def _rich_text(html: str) -> tuple[str, bool]:
    """The sanitised body (the one thing templates render with ``|safe``) and whether it is rich
    text (else plain text whose line breaks count)."""
    clean = sanitise_html(html or "")
    return clean, bool(_BLOCK_TAG.search(clean))


bp.add_app_template_filter(beijing_date, "china_date")


@bp.app_template_filter("public_href")
def public_href(document: Mapping[str, Any]) -> str:
    """The page of a listed document, built from its id (the index's ``url`` is not trusted as a link)."""
    kind, _, number = str(document.get("id") or "").partition("-")
    if number.isdigit() and kind == "policy":
        return url_for("interpret_pages.policy", policy_id=int(number))
    if number.isdigit() and kind == "interpretation":
        return url_for("interpret_pages.interpretation", interpretation_id=int(number))
    return "#"


def _links(items: Any, kind: str) -> list[dict[str, Any]]:
    """Links to published documents from a ``related`` list, built from their ids (never trusted URLs)."""
    prefix = "/interpret/policies/" if kind == "policy" else "/interpret/interpretations/"
    links = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        url = item.get("url")
        if isinstance(url, str) and not url.startswith(prefix):
            continue  # a link of the other kind
        item_id = _int_id(item.get("id"))
        if item_id is None:
            continue
        link: dict[str, Any] = {key: item[key] for key in ("title", "form", "document_number") if item.get(key)}
        link["id"] = item_id
        link["url"] = (url_for("interpret_pages.policy", policy_id=item_id) if kind == "policy"
                       else url_for("interpret_pages.interpretation", interpretation_id=item_id))
        links.append(link)
    return links


def _attachments(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Hook: the index does not carry ``attachments`` yet (nor does any view serve them); when it does,
    each needs an ``id`` and a ``filename`` and is linked as ``/interpret/attachments/<id>/<filename>``."""
    listed = []
    for item in document.get("attachments") or []:
        if not isinstance(item, Mapping):
            continue
        attachment_id, filename = _int_id(item.get("id")), item.get("filename")
        if attachment_id is None or not isinstance(filename, str) or not filename or "/" in filename:
            continue
        listed.append({
            "filename": filename,
            "url": f"/interpret/attachments/{attachment_id}/{quote(filename)}",
            "content_type": item.get("content_type"),
            "size": item.get("size") if isinstance(item.get("size"), int) else None,
        })
    return listed


# -- filters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyFilters:
    level: str = ""
    issuer: str = ""
    department: str = ""
    topic: str = ""
    year: int | None = None
    validity: str = ""

    @classmethod
    def from_request(cls) -> PolicyFilters:
        return cls(
            level=_choice_arg("level", LEVELS),
            issuer=_text_arg("issuer"),
            department=_text_arg("department"),
            topic=_text_arg("topic"),
            year=_year_arg(),
            validity=_choice_arg("validity", VALIDITIES),
        )

    def index_fields(self) -> dict[str, str]:
        """Names as the index has them (主题分类 is ``category``)."""
        return {"level": self.level, "issuer": self.issuer, "department": self.department,
                "category": self.topic, "validity": self.validity}

    def query(self) -> dict[str, str]:
        """The filters in effect, as query parameters (for pagination links)."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return {name: str(value) for name, value in values.items() if value}


# -- pages -----------------------------------------------------------------------------------


@bp.get("/")
@public
def index() -> Response:
    return redirect(url_for("interpret_pages.policies"))


@bp.get("/policies")
@public
@shared_page
def policies() -> Response:
    chosen = PolicyFilters.from_request()
    listing = filtered_documents(
        current_app, "policy", page_number(request.args.get("page")), PER_PAGE,
        fields=chosen.index_fields(), year=chosen.year,
    )
    return cacheable(render_template(
        "interpret/policies.html", listing=listing, filters=chosen, query=chosen.query(),
        levels=LEVELS, validities=VALIDITIES, years=range(_this_year(), FIRST_YEAR - 1, -1),
    ))


@bp.get("/policies/<int:policy_id>")
@public
@shared_page
def policy(policy_id: int) -> Response:
    document = public_document(current_app, f"policy-{policy_id}")
    body, rich = _rich_text(document.get("body_html") or "")
    replaced_by = document.get("replaced_by")
    replacement = _links([replaced_by], "policy") if isinstance(replaced_by, Mapping) else []
    return cacheable(render_template(
        "interpret/policy.html",
        policy=document,
        body=body,
        rich=rich,
        expired=document.get("validity") in EXPIRED,
        revised=document.get("validity") == REVISED,
        replacement=replacement[0] if replacement else None,
        higher=document.get("level") in HIGHER_LEVELS,
        original_url=_safe_external_url(document.get("original_url")),
        attachments=_attachments(document),
        interpretations=_links(document.get("related"), "interpretation"),
    ))


@bp.get("/interpretations")
@public
@shared_page
def interpretations() -> Response:
    level = _choice_arg("level", INTERPRETATION_LEVELS)
    form = _choice_arg("form", FORMS)
    listing = filtered_documents(
        current_app, "interpretation", page_number(request.args.get("page")), PER_PAGE,
        fields={"level": level, "form": form},
    )
    query = {name: value for name, value in (("level", level), ("form", form)) if value}
    return cacheable(render_template(
        "interpret/interpretations.html", listing=listing, level=level, form=form, query=query,
        levels=INTERPRETATION_LEVELS, forms=FORMS,
    ))


@bp.get("/interpretations/<int:interpretation_id>")
@public
@shared_page
def interpretation(interpretation_id: int) -> Response:
    document = public_document(current_app, f"interpretation-{interpretation_id}")
    body, rich = _rich_text(document.get("body_html") or "")
    sources = _links(document.get("related"), "policy")
    related = _links(document.get("related_interpretations"), "interpretation")
    related += _links(document.get("related"), "interpretation")  # should the index ever list both kinds there
    related += _siblings(sources, interpretation_id)
    return cacheable(render_template(
        "interpret/interpretation.html",
        item=document,
        body=body,
        rich=rich,
        key_points=[point for point in document.get("key_points") or [] if isinstance(point, str) and point],
        media_url=_safe_media_url(document.get("media_url")),
        sources=sources,
        related=_unique(related, interpretation_id)[:MAX_RELATED],
    ))


def _siblings(sources: list[dict[str, Any]], interpretation_id: int) -> list[dict[str, Any]]:
    """Other published interpretations of the same policies (read from those policies' index documents)."""
    engine, alias = content_alias(current_app)
    found: list[dict[str, Any]] = []
    for source in sources[:MAX_SIBLING_POLICIES]:
        policy_document = engine.get_document(alias, f"policy-{source['id']}")
        if policy_document and not policy_document.get("deleted"):
            found += [link for link in _links(policy_document.get("related"), "interpretation")
                      if link["id"] != interpretation_id]
    return found


def _unique(links: list[dict[str, Any]], exclude: int) -> list[dict[str, Any]]:
    seen = {exclude}
    unique = []
    for link in links:
        if link["id"] not in seen:
            seen.add(link["id"])
            unique.append(link)
    return unique
