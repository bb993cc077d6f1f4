"""The highlighter both adapters share (the conformance suite checks they use it alike)."""

from __future__ import annotations

from services.searchengine.analysis import plan_text
from services.searchengine.highlight import BODY_FRAGMENT_CHARS, highlight, highlight_document


def test_the_text_is_escaped_before_anything_is_marked() -> None:
    assert highlight('<mark>公积金</mark> & "引号"', ["公积金", "mark"]) == (
        "&lt;<mark>mark</mark>&gt;<mark>公积金</mark>&lt;/<mark>mark</mark>&gt; &amp; &quot;引号&quot;"
    )


def test_terms_match_whatever_their_width_or_case() -> None:
    assert highlight("ＧＯＶ网站与Gov平台", ["gov"]) == "<mark>ＧＯＶ</mark>网站与<mark>Gov</mark>平台"


def test_overlapping_and_adjacent_matches_merge_into_one_mark() -> None:
    assert highlight("住房公积金提取", ["住房公积", "公积金", "提取"]) == "<mark>住房公积金提取</mark>"
    assert highlight("住房公积金", ["公积"]) == "住房<mark>公积</mark>金"


def test_a_body_becomes_a_window_around_its_first_match() -> None:
    body = "甲" * 200 + "，关键内容在这里" + "乙" * 200
    fragment = highlight(body, ["关键"], window=BODY_FRAGMENT_CHARS)
    assert fragment.startswith("…<mark>关键</mark>内容在这里")  # after the comma just before it
    assert fragment.endswith("…")
    assert len(fragment.replace("<mark>", "").replace("</mark>", "")) == BODY_FRAGMENT_CHARS + 2
    assert highlight("短正文", ["关键"], window=BODY_FRAGMENT_CHARS) == "短正文"
    near_the_end = highlight("丙" * 300 + "关键", ["关键"], window=BODY_FRAGMENT_CHARS)
    assert near_the_end.startswith("…") and near_the_end.endswith("<mark>关键</mark>")


def test_white_space_is_collapsed_and_missing_fields_are_empty() -> None:
    fragments = highlight_document({"title": "住房\n\n  公积金", "body": None}, ["公积金"])
    assert fragments == {"title": "住房 <mark>公积金</mark>", "summary": "", "body": ""}


def test_the_plan_marks_phrases_words_and_synonyms_but_not_stop_words() -> None:
    plan = plan_text("如何提取住房公积金", synonyms=(("住房公积金", "公积金"), ("无关", "不相干")))
    assert set(plan.marks) == {"如何提取住房公积金", "提取", "住房公积金", "公积金"}
    assert plan.words == (("提取", ()), ("住房公积金", ("公积金",)))
    assert plan_text("的").marks == ("的",)  # only a stop word: still marked
