"""The interpret public pages as a visitor sees them, read from the shared index.

Content is made through ``interpret.workflow`` (as staff would) and indexed by running the
search consumer on the outbox events in-process, as the worker does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.test import Client, TestResponse

from interpret.models import Interpretation, OutboxEvent, Policy
from interpret.workflow import (
    InterpretationFields,
    PolicyFields,
    approve,
    create_interpretation,
    import_published_policy,
    link_policy,
    publish,
    submit,
    withdraw,
)
from search.tasks import index_document, remove_document
from services.auth import StaffIdentity
from services.db import get_database, utcnow
from services.events import subscribers
from services.permissions import Grant, Role
from services.suite import PathDispatcher

DEPARTMENT = "KJT"
EDITOR = StaffIdentity(
    9001, "editor_t", "编辑", (Grant(Role.EDITOR, DEPARTMENT, (DEPARTMENT,)),), "s-editor", "session"
)
RELEASER = StaffIdentity(
    9002, "reviewer_t", "审核发布",
    (Grant(Role.REVIEWER, DEPARTMENT, (DEPARTMENT,)), Grant(Role.DISCLOSURE_OFFICE, DEPARTMENT, (DEPARTMENT,))),
    "s-reviewer", "session",
)
SEARCH_TASKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "search.index_document": index_document,
    "search.remove_document": remove_document,
}


# -- content through the workflow, indexed in-process -------------------------------------------


@dataclass
class Content:
    suite: dict[str, Flask]

    def _session(self) -> Any:
        return get_database("interpret", self.suite["interpret"]).transaction()

    def policy(self, title: str, published_at: datetime | None = None, **fields: Any) -> int:
        values: dict[str, Any] = {"issuer": "国务院", "level": "国家", "body": "为做好有关工作，现通知如下。",
                                  "department": DEPARTMENT}
        values.update(fields)
        with self._session() as session:
            policy = import_published_policy(session, PolicyFields(title=title, **values), published_at or utcnow())
            policy_id = policy.id
        self.index()
        return policy_id

    def interpretation(
        self, title: str, policy_ids: list[int], published_at: datetime | None = None, **fields: Any
    ) -> int:
        values: dict[str, Any] = {"form": "文字解读", "interpreter_kind": "第一解读人", "department": DEPARTMENT,
                                  "body": "<p>本解读说明文件出台的背景。</p>"}
        values.update(fields)
        with self._session() as session:
            item = create_interpretation(session, EDITOR, InterpretationFields(title=title, **values))
            for policy_id in policy_ids:
                policy = session.get(Policy, policy_id)
                assert policy is not None
                link_policy(session, EDITOR, item, policy)
            submit(session, EDITOR, item)
            approve(session, RELEASER, item)
            publish(session, RELEASER, item, as_of=published_at)
            item_id = item.id
        self.index()
        return item_id

    def withdraw_interpretation(self, interpretation_id: int) -> None:
        with self._session() as session:
            item = session.get(Interpretation, interpretation_id)
            assert item is not None
            withdraw(session, RELEASER, item)
        self.index()

    def index(self) -> None:
        """Run the search consumers on every outbox event not handled yet, as the worker would."""
        with self._session() as session:
            events = session.scalars(
                select(OutboxEvent).where(OutboxEvent.sent_at.is_(None)).order_by(OutboxEvent.created_at)
            ).all()
            messages = [event.as_message() for event in events]
            for event in events:
                event.sent_at = utcnow()
        with self.suite["search"].app_context():
            for message in messages:
                for task in subscribers(message["topic"]):
                    if task in SEARCH_TASKS:
                        assert SEARCH_TASKS[task](message) in ("indexed", "removed")


@pytest.fixture
def content(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Content:
    # Events are handed to the search consumer here, not sent to a broker after commit.
    monkeypatch.setattr(get_database("interpret", suite["interpret"]), "publisher", None)
    return Content(suite)


@pytest.fixture
def client(suite: dict[str, Flask]) -> Client:
    return Client(PathDispatcher(suite))


# -- reading pages ------------------------------------------------------------------------------


class _Cells(HTMLParser):
    """Label → text of a ``<th scope="row">label</th><td>text</td>`` table."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.current, self.label = table_id, False, None, ""
        self.cells: dict[str, str] = {}
        self.buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag in ("th", "td"):
            self.current, self.buffer = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif self.inside and tag == self.current:
            text = "".join(self.buffer).strip()
            if tag == "th":
                self.label = text
            else:
                self.cells[self.label] = text
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current:
            self.buffer.append(data)


def cells(html: str, table_id: str) -> dict[str, str]:
    parser = _Cells(table_id)
    parser.feed(html)
    return parser.cells


def html_of(client: Client, path: str, **query: Any) -> str:
    answer = client.get(path, query_string=query)
    assert answer.status_code == 200, (path, answer.status_code)
    return answer.get_data(as_text=True)


def section(html: str, section_id: str) -> str:
    found = re.search(rf'<(section|ul|div) [^>]*id="{section_id}".*?</\1>', html, re.S)
    return found.group(0) if found else ""


def listed_titles(html: str, list_id: str) -> list[str]:
    return re.findall(r'<span class="doc-title"><a href="[^"]+">([^<]+)</a>', section(html, list_id))


def links(html: str) -> dict[str, str]:
    """Link text → href."""
    return {text.strip(): href for href, text in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', html)}


def beijing(text: str) -> datetime:
    """A China-time wall clock as the UTC instant the workflow stores."""
    return (datetime.fromisoformat(text + "+08:00")).astimezone(UTC)


# -- the policy page ----------------------------------------------------------------------------


def test_policy_page_shows_the_disclosure_catalogue_table_and_its_interpretations(
    content: Content, client: Client
) -> None:
    policy_id = content.policy(
        "安徽省科学技术厅关于加强科技成果转化工作的通知", published_at=beijing("2026-01-06T09:30:00"),
        issuer="安徽省科学技术厅", level="本级", document_number="皖科政[2026]3号", category_group="通知",
        topic="科技成果", source="安徽省科学技术厅办公室", written_on=date(2026, 1, 5),
        body="<p>各市科技局：</p><p>为加强科技成果转化工作，现通知如下。</p>",
    )
    interpretation_id = content.interpretation("《关于加强科技成果转化工作的通知》政策解读", [policy_id])

    html = html_of(client, f"/interpret/policies/{policy_id}")
    table = cells(html, "policy-metadata")
    assert list(table) == ["索引号", "组配分类", "发布机构", "主题分类", "名称", "文号", "信息来源", "成文日期",
                           "发布日期", "有效性"]
    assert re.fullmatch(r"KJT/\d{6}-\d{5}", table["索引号"])
    assert table == {
        "索引号": table["索引号"], "组配分类": "通知", "发布机构": "安徽省科学技术厅", "主题分类": "科技成果",
        "名称": "安徽省科学技术厅关于加强科技成果转化工作的通知", "文号": "皖科政〔2026〕3号",
        "信息来源": "安徽省科学技术厅办公室", "成文日期": "2026-01-05", "发布日期": "2026-01-06", "有效性": "有效",
    }
    assert "政府信息公开目录信息" in html
    # The sanitised rich-text body is rendered as HTML; no validity banner for a valid policy.
    assert "<p>为加强科技成果转化工作，现通知如下。</p>" in html
    assert 'id="validity-banner"' not in html
    # 相关解读: its interpretation, linked by id.
    related = section(html, "related-interpretations")
    assert links(related) == {
        "《关于加强科技成果转化工作的通知》政策解读": f"/interpret/interpretations/{interpretation_id}"
    }
    # The issuer and the topic lead to the filtered list.
    assert links(html)["安徽省科学技术厅"].startswith("/interpret/policies?issuer=")


def test_a_policy_without_interpretations_says_so(content: Content, client: Client) -> None:
    policy_id = content.policy("国务院关于印发某某规划的通知")
    html = html_of(client, f"/interpret/policies/{policy_id}")
    assert "暂无相关解读" in section(html, "related-interpretations")


@pytest.mark.parametrize("validity", ["失效", "废止"])
def test_an_expired_or_repealed_policy_carries_a_clear_notice(
    content: Content, client: Client, validity: str
) -> None:
    policy_id = content.policy("国务院办公厅关于某项旧制度的通知", validity=validity)
    html = html_of(client, f"/interpret/policies/{policy_id}")
    banner = section(html, "validity-banner")
    assert f"本文件已{validity}" in banner and "不再作为执行依据" in banner
    assert cells(html, "policy-metadata")["有效性"] == validity


def test_a_revised_policy_links_to_the_policy_replacing_it(content: Content, client: Client) -> None:
    new_id = content.policy("国务院关于某项制度的通知（2026年修订）")
    old_id = content.policy("国务院关于某项制度的通知", validity="已修订", replaced_by_id=new_id)
    html = html_of(client, f"/interpret/policies/{old_id}")
    banner = section(html, "validity-banner")
    assert "本文件已修订" in banner
    assert links(banner) == {"国务院关于某项制度的通知（2026年修订）": f"/interpret/policies/{new_id}"}
    assert 'id="validity-banner"' not in html_of(client, f"/interpret/policies/{new_id}")


def test_a_higher_level_policy_links_to_its_original_and_never_to_a_script_address(
    content: Content, client: Client
) -> None:
    national = content.policy("国务院关于某事项的意见", level="国家",
                              original_url="https://www.gov.cn/zhengce/content/2026-01/06/content_1.htm")
    html = html_of(client, f"/interpret/policies/{national}")
    assert links(html)["查看原文"] == "https://www.gov.cn/zhengce/content/2026-01/06/content_1.htm"
    assert "（上级政策）" in html

    own = content.policy("本厅关于某事项的通知", level="本级", issuer="安徽省科学技术厅",
                         original_url="https://example.gov.cn/a.htm")
    assert "查看原文" not in html_of(client, f"/interpret/policies/{own}")

    scripted = content.policy("省政府关于某事项的通知", level="省", original_url="javascript:alert(1)")
    html = html_of(client, f"/interpret/policies/{scripted}")
    assert "查看原文" not in html and "javascript:" not in html


def test_unknown_or_withdrawn_pages_are_not_found(content: Content, client: Client) -> None:
    assert client.get("/interpret/policies/999999").status_code == 404
    assert client.get("/interpret/interpretations/999999").status_code == 404
    policy_id = content.policy("国务院关于某事项的通知")
    interpretation_id = content.interpretation("某事项政策解读", [policy_id])
    content.withdraw_interpretation(interpretation_id)
    assert client.get(f"/interpret/interpretations/{interpretation_id}").status_code == 404
    assert "暂无相关解读" in section(html_of(client, f"/interpret/policies/{policy_id}"), "related-interpretations")


# -- the policy list and its filters ------------------------------------------------------------


@pytest.fixture
def catalogue(content: Content) -> dict[str, int]:
    """Policies differing in each filtered field, published in 2024, 2025 and 2026 (China time)."""
    made = {
        "国家2024": content.policy("国务院关于甲事项的通知", beijing("2024-06-01T10:00:00"), level="国家",
                                  issuer="国务院", topic="综合政务"),
        # 2024-12-31 17:00 UTC is already 2025 in China.
        "省2025": content.policy("安徽省人民政府关于乙事项的通知", datetime(2024, 12, 31, 17, 0, tzinfo=UTC),
                                level="省", issuer="安徽省人民政府", topic="科技"),
        "本级2025": content.policy("本厅关于丙事项的通知", beijing("2025-08-08T08:00:00"), level="本级",
                                  issuer="安徽省科学技术厅", topic="科技", validity="失效"),
        "本级2026": content.policy("本厅关于丁事项的通知", beijing("2026-01-02T08:00:00"), level="本级",
                                  issuer="安徽省科学技术厅", topic="科技"),
        "其他部门2026": content.policy("财政厅关于戊事项的通知", beijing("2026-01-03T08:00:00"), level="本级",
                                    issuer="安徽省财政厅", topic="财政", department="CZT"),
    }
    return made


TITLES = {
    "国家2024": "国务院关于甲事项的通知",
    "省2025": "安徽省人民政府关于乙事项的通知",
    "本级2025": "本厅关于丙事项的通知",
    "本级2026": "本厅关于丁事项的通知",
    "其他部门2026": "财政厅关于戊事项的通知",
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["其他部门2026", "本级2026", "本级2025", "省2025", "国家2024"]),
        ({"level": "本级"}, ["其他部门2026", "本级2026", "本级2025"]),
        ({"level": "国家"}, ["国家2024"]),
        ({"department": "CZT"}, ["其他部门2026"]),
        ({"topic": "科技"}, ["本级2026", "本级2025", "省2025"]),
        ({"validity": "失效"}, ["本级2025"]),
        ({"issuer": "安徽省科学技术厅"}, ["本级2026", "本级2025"]),
        ({"issuer": "安徽省"}, []),  # the whole name, as on the policy page
        ({"year": "2025"}, ["本级2025", "省2025"]),
        ({"year": "2024"}, ["国家2024"]),
        ({"year": "2023"}, []),
        ({"year": "2026", "level": "本级", "department": "KJT"}, ["本级2026"]),
        ({"year": "2025", "issuer": "安徽省科学技术厅"}, ["本级2025"]),
        ({"level": "bogus", "year": "abc", "validity": "<script>"}, ["其他部门2026", "本级2026", "本级2025", "省2025",
                                                                     "国家2024"]),
    ],
)
def test_policy_filters(
    catalogue: dict[str, int], client: Client, query: dict[str, str], expected: list[str]
) -> None:
    html = html_of(client, "/interpret/policies", **query)
    assert listed_titles(html, "policy-list") == [TITLES[name] for name in expected]
    assert f"共 {len(expected)} 件" in html
    if not expected:
        assert "没有符合条件的政策文件" in html


def test_the_filter_form_is_labelled_and_keeps_the_chosen_values(catalogue: dict[str, int], client: Client) -> None:
    html = html_of(client, "/interpret/policies", level="本级", issuer="安徽省科学技术厅", department="KJT",
                   topic="科技", year="2026", validity="有效")
    form = re.search(r'<form class="filter-form".*?</form>', html, re.S)
    assert form is not None
    form_html = form.group(0)
    assert 'method="get"' in form_html and 'action="/interpret/policies"' in form_html
    for name, label in (("level", "层级"), ("issuer", "发布机构"), ("department", "部门"), ("topic", "主题分类"),
                        ("year", "发布年份"), ("validity", "有效性")):
        assert f'<label for="filter-{name}">{label}</label>' in form_html
        assert re.search(rf'<(input|select) id="filter-{name}" name="{name}"', form_html)
    assert '<option value="本级" selected>' in form_html
    assert '<option value="2026" selected>' in form_html
    assert '<option value="有效" selected>' in form_html
    assert 'value="安徽省科学技术厅"' in form_html and 'value="科技"' in form_html
    assert '<button type="submit">筛选</button>' in form_html
    assert listed_titles(html, "policy-list") == [TITLES["本级2026"]]


def test_pagination_keeps_the_filters(
    catalogue: dict[str, int], client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("interpret.pages.PER_PAGE", 2)
    for query, pages in (
        ({"topic": "科技"}, [["本级2026", "本级2025"], ["省2025"]]),
        ({"issuer": "安徽省科学技术厅", "topic": "科技", "validity": "有效"}, [["本级2026"]]),
        ({"year": "2025"}, [["本级2025", "省2025"]]),
        ({}, [["其他部门2026", "本级2026"], ["本级2025", "省2025"], ["国家2024"]]),
    ):
        html = html_of(client, "/interpret/policies", **query)
        for number, expected in enumerate(pages, start=1):
            assert listed_titles(html, "policy-list") == [TITLES[name] for name in expected], (query, number)
            assert f"第 {number} 页，共 {len(pages)} 页" in html or len(pages) == 1
            following = re.search(r'<a href="([^"]+)" rel="next">', html)
            if number == len(pages):
                assert following is None
                break
            assert following is not None
            target = urlsplit(following.group(1).replace("&amp;", "&"))
            arguments = {name: values[0] for name, values in parse_qs(target.query).items()}
            assert arguments == {**query, "page": str(number + 1)}
            html = html_of(client, target.path, **arguments)
            back = re.search(r'<a href="([^"]+)" rel="prev">', html)
            assert back is not None and all(f"{name}=" in back.group(1) for name in query)


def test_a_year_of_many_policies_is_found_exactly(content: Content, client: Client,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("interpret.pages.PER_PAGE", 4)
    for year, count in ((2023, 3), (2024, 6), (2025, 2)):
        for number in range(count):
            content.policy(f"{year}年第{number + 1}号通知", beijing(f"{year}-03-{number + 1:02d}T09:00:00"))
    html = html_of(client, "/interpret/policies", year="2024")
    assert "共 6 件" in html
    assert listed_titles(html, "policy-list") == [f"2024年第{n}号通知" for n in (6, 5, 4, 3)]
    html = html_of(client, "/interpret/policies", year="2024", page="2")
    assert listed_titles(html, "policy-list") == ["2024年第2号通知", "2024年第1号通知"]


# -- interpretations: tabs, forms, the page -----------------------------------------------------


@pytest.fixture
def interpretations(content: Content) -> dict[str, int]:
    national = content.policy("国务院关于促进科技创新的意见", level="国家", document_number="国发〔2026〕1号")
    own = content.policy("本厅关于科技创新券的通知", level="本级", issuer="安徽省科学技术厅",
                         document_number="皖科政〔2026〕9号")
    return {
        "national": national,
        "own": own,
        "higher_text": content.interpretation("一图读懂国务院科技创新意见", [national], form="图解",
                                              body="", text_alternative="意见提出三方面举措：一是……二是……"),
        "own_text": content.interpretation(
            "《关于科技创新券的通知》政策解读", [own], interpreter_kind="第一解读人", interpreter_name="张某某",
            key_points=["创新券面向中小企业", "最高补助50万元"],
            body="<p>创新券是政府向企业发放的<strong>购买科技服务</strong>的凭证。</p>",
            published_at=beijing("2026-01-10T10:00:00"),
        ),
        "own_video": content.interpretation("视频解读：科技创新券怎么用", [own], form="视频", body="",
                                            interpreter_kind="处室", interpreter_name="政策法规处",
                                            transcript="主持人：各位好。处长：创新券可在线申领。",
                                            media_url="https://video.example.gov.cn/v/1.mp4"),
    }


def tab_links(html: str) -> dict[str, tuple[str, bool]]:
    nav = re.search(r'<nav class="tabs".*?</nav>', html, re.S)
    assert nav is not None
    return {text: (unquote(href.replace("&amp;", "&")), bool(current))
            for href, current, text in re.findall(r'<a href="([^"]+)"( aria-current="page")?>([^<]+)</a>',
                                                  nav.group(0))}


def test_interpretation_tabs_separate_higher_and_own_level(
    interpretations: dict[str, int], client: Client
) -> None:
    html = html_of(client, "/interpret/interpretations")
    assert tab_links(html) == {
        "全部": ("/interpret/interpretations", True),
        "上级政策解读": ("/interpret/interpretations?level=上级", False),
        "本级政策解读": ("/interpret/interpretations?level=本级", False),
    }
    assert len(listed_titles(html, "interpretation-list")) == 3

    html = html_of(client, "/interpret/interpretations", level="上级")
    assert tab_links(html)["上级政策解读"][1] is True
    assert [current for _, current in tab_links(html).values()] == [False, True, False]
    assert listed_titles(html, "interpretation-list") == ["一图读懂国务院科技创新意见"]

    html = html_of(client, "/interpret/interpretations", level="本级")
    assert tab_links(html)["本级政策解读"][1] is True
    assert listed_titles(html, "interpretation-list") == [
        "视频解读：科技创新券怎么用", "《关于科技创新券的通知》政策解读"
    ]


def test_interpretation_form_filter_keeps_the_tab(interpretations: dict[str, int], client: Client) -> None:
    html = html_of(client, "/interpret/interpretations", level="本级", form="视频")
    assert listed_titles(html, "interpretation-list") == ["视频解读：科技创新券怎么用"]
    assert '<input type="hidden" name="level" value="本级">' in html
    assert '<label for="filter-form">解读形式</label>' in html
    assert '<option value="视频" selected>' in html
    for form in ("文字解读", "图解", "视频", "音频", "专家解读", "媒体解读", "问答式解读", "新闻发布会"):
        assert f'<option value="{form}"' in html
    assert tab_links(html)["上级政策解读"] == ("/interpret/interpretations?level=上级&form=视频", False)
    html = html_of(client, "/interpret/interpretations", level="上级", form="视频")
    assert listed_titles(html, "interpretation-list") == [] and "没有符合条件的政策解读" in html
    html = html_of(client, "/interpret/interpretations", form="图解")
    assert listed_titles(html, "interpretation-list") == ["一图读懂国务院科技创新意见"]


def test_interpretation_page_shows_its_content_policies_and_related_interpretations(
    interpretations: dict[str, int], client: Client
) -> None:
    html = html_of(client, f"/interpret/interpretations/{interpretations['own_text']}")
    assert "<h1>《关于科技创新券的通知》政策解读</h1>" in html
    assert cells(html, "interpretation-metadata") == {
        "解读形式": "文字解读", "解读人": "第一解读人：张某某", "发布日期": "2026-01-10", "类别": "本级政策解读",
    }
    points = section(html, "key-points")
    assert "<li>创新券面向中小企业</li>" in points and "<li>最高补助50万元</li>" in points
    assert "<strong>购买科技服务</strong>" in html
    assert links(section(html, "source-policies")) == {
        "本厅关于科技创新券的通知": f"/interpret/policies/{interpretations['own']}"
    }
    assert "皖科政〔2026〕9号" in section(html, "source-policies")
    # Other interpretations of the same policy are its related interpretations.
    assert links(section(html, "related-interpretations")) == {
        "视频解读：科技创新券怎么用": f"/interpret/interpretations/{interpretations['own_video']}"
    }
    assert 'id="text-alternative"' not in html and 'id="transcript"' not in html


def test_an_infographic_shows_its_text_alternative_and_a_video_its_transcript(
    interpretations: dict[str, int], client: Client
) -> None:
    html = html_of(client, f"/interpret/interpretations/{interpretations['higher_text']}")
    text = section(html, "text-alternative")
    assert "图解文字说明" in text and "意见提出三方面举措：一是……二是……" in text
    assert 'id="interpretation-body"' not in html  # the text alternative is not repeated as a body
    assert cells(html, "interpretation-metadata")["类别"] == "上级政策解读"
    assert links(section(html, "source-policies")) == {
        "国务院关于促进科技创新的意见": f"/interpret/policies/{interpretations['national']}"
    }

    html = html_of(client, f"/interpret/interpretations/{interpretations['own_video']}")
    transcript = section(html, "transcript")
    assert "文字实录" in transcript and "主持人：各位好。处长：创新券可在线申领。" in transcript
    assert links(html)["观看视频"] == "https://video.example.gov.cn/v/1.mp4"
    assert cells(html, "interpretation-metadata")["解读人"] == "处室：政策法规处"


def test_the_policy_page_lists_every_published_interpretation(
    interpretations: dict[str, int], client: Client
) -> None:
    html = html_of(client, f"/interpret/policies/{interpretations['own']}")
    assert links(section(html, "related-interpretations")) == {
        "《关于科技创新券的通知》政策解读": f"/interpret/interpretations/{interpretations['own_text']}",
        "视频解读：科技创新券怎么用": f"/interpret/interpretations/{interpretations['own_video']}",
    }


# -- caching and escaping -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/interpret/policies", "/interpret/policies/{id}", "/interpret/interpretations",
                                  "/interpret/interpretations/{interpretation}", "/interpret/policies?level=国家"])
def test_public_pages_are_cacheable_with_an_etag(content: Content, client: Client, path: str) -> None:
    policy_id = content.policy("国务院关于某事项的通知")
    interpretation_id = content.interpretation("某事项政策解读", [policy_id])
    url = path.format(id=policy_id, interpretation=interpretation_id)
    first = client.get(url)
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "public, max-age=60"
    assert "Cookie" in first.headers["Vary"]
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag
    assert client.get(url).headers["ETag"] == etag  # the same page, the same tag
    assert client.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_the_etag_changes_when_the_page_does(content: Content, client: Client) -> None:
    policy_id = content.policy("国务院关于某事项的通知")
    before: TestResponse = client.get(f"/interpret/policies/{policy_id}")
    content.interpretation("某事项政策解读", [policy_id])
    after = client.get(f"/interpret/policies/{policy_id}", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert "某事项政策解读" in after.get_data(as_text=True)
    english = client.get(f"/interpret/policies/{policy_id}?lang=en")
    assert english.headers["ETag"] != after.headers["ETag"]


def test_titles_and_plain_text_fields_are_escaped(content: Content, client: Client) -> None:
    script = "<script>alert(1)</script>"
    policy_id = content.policy(f"{script}关于某事项的通知", issuer=f"{script}国务院", source="<b>来源</b>")
    interpretation_id = content.interpretation(
        f"{script}某事项政策解读", [policy_id], form="视频", body="",
        transcript='<img src=x onerror="alert(2)">实录', key_points=[f"{script}要点"], interpreter_name=script,
    )
    pages = [
        html_of(client, "/interpret/policies"),
        html_of(client, f"/interpret/policies/{policy_id}"),
        html_of(client, "/interpret/interpretations"),
        html_of(client, f"/interpret/interpretations/{interpretation_id}"),
    ]
    for html in pages:
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<img src=x" not in html and "<b>来源</b>" not in html
    assert "&lt;img src=x onerror=" in pages[3]
    assert cells(pages[1], "policy-metadata")["名称"] == f"{script}关于某事项的通知"


@pytest.fixture
def indexed_document(suite: dict[str, Flask]) -> Callable[[dict[str, Any]], None]:
    """Write a document straight into the index (as a rebuild or another writer might)."""
    from services.web import content_alias

    def write(document: dict[str, Any]) -> None:
        engine, alias = content_alias(suite["interpret"])
        engine.index_document(alias, document["id"], document, 1)

    return write


def test_bodies_are_sanitised_again_and_index_urls_are_not_trusted_as_links(
    indexed_document: Callable[[dict[str, Any]], None], client: Client
) -> None:
    indexed_document({
        "id": "policy-424242", "doc_type": "policy", "title": "索引中的文件", "url": "javascript:alert(1)",
        "body_html": '<p onclick="alert(1)">正文</p><script>alert(2)</script>',
        "published_at": "2026-01-01T00:00:00+00:00",
        "level": "本级", "validity": "已修订",
        "replaced_by": {"id": "1", "title": "新文件"},
        "related": [{"id": 7, "title": "解读", "url": "javascript:alert(4)"},
                    {"id": 8, "title": "解读二", "url": "/interpret/interpretations/8"}],
        "attachments": [{"id": 3, "filename": "附件1 实施细则.pdf", "size": 2048}, {"id": "x", "filename": "bad.pdf"}],
    })
    html = html_of(client, "/interpret/policies/424242")
    assert "javascript:" not in html and "<script>alert" not in html and "onclick" not in html
    assert "<p>正文</p>" in html
    assert links(section(html, "validity-banner")) == {"新文件": "/interpret/policies/1"}
    assert links(section(html, "related-interpretations")) == {"解读二": "/interpret/interpretations/8"}
    attachments = re.findall(r'<a href="([^"]+)" download>([^<]+)</a>', html)
    assert attachments == [("/interpret/attachments/3/%E9%99%84%E4%BB%B61%20%E5%AE%9E%E6%96%BD%E7%BB%86%E5%88%99.pdf",
                            "附件1 实施细则.pdf")]
    assert listed_titles(html_of(client, "/interpret/policies"), "policy-list") == ["索引中的文件"]
    assert '<a href="/interpret/policies/424242">索引中的文件</a>' in html_of(client, "/interpret/policies")


def test_an_issuer_filter_beyond_what_is_examined_says_the_list_may_be_incomplete(
    catalogue: dict[str, int], client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The port cannot filter on the issuer: it is compared on the newest SCAN_LIMIT matches only.
    monkeypatch.setattr("services.public_read.SCAN_LIMIT", 3)
    html = html_of(client, "/interpret/policies", issuer="国务院")
    assert listed_titles(html, "policy-list") == []
    assert "筛选结果只包含较新的文件" in html
    html = html_of(client, "/interpret/policies", issuer="安徽省科学技术厅")
    assert listed_titles(html, "policy-list") == [TITLES["本级2026"], TITLES["本级2025"]]
    assert "筛选结果只包含较新的文件" in html
    html = html_of(client, "/interpret/policies", level="本级")
    assert "筛选结果只包含较新的文件" not in html
