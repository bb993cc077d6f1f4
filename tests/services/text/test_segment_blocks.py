"""``Segmenter.segment`` cuts a text block by block and memoises each block's tokens: the tokens
must be exactly what jieba gives for the whole text, the first time and from the cache."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.text.segment import USE_HMM, Segmenter, get_segmenter, is_word_token, normalize

#: the module (``services.text`` exports a function of the same name)
segment_module = importlib.import_module("services.text.segment")
SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"

SAMPLES = [
    "",
    "   ",
    "关于调整住房公积金提取政策的通知",
    "您好！您反映的问题已收悉。经核实，该小区停车收费标准已按规定公示。感谢您的来信。",
    "ＡＢＣ１２３住房公积金，3.5%的利率；C++和C#的区别？abc-def_ghi 你好,世界!!\n\t2023年1月",
    "市住建局：关于2024年度“放管服”改革（第二批）事项的公告 No.12",
]


def whole_text_tokens(segmenter: Segmenter, text: str) -> list[str]:
    """What ``segment`` returned before the block cache: jieba on the whole text."""
    tokenizer = segmenter._load()
    return [token for token in tokenizer.cut_for_search(normalize(text), HMM=USE_HMM) if is_word_token(token)]


def real_texts(limit: int = 300) -> list[str]:
    texts: list[str] = []
    csv.field_size_limit(10**8)
    with (SHARED_DATA / "messages_with_replies.csv").open(encoding="utf-8") as rows:
        for row in csv.reader(rows):
            texts.extend(field for field in row if len(field) > 10)
            if len(texts) >= limit:
                break
    return texts[:limit]


def test_tokens_are_the_whole_texts_first_and_from_the_cache() -> None:
    segmenter = Segmenter()
    texts = SAMPLES + real_texts()
    expected = [whole_text_tokens(segmenter, text) for text in texts]

    first = [segmenter.segment(text) for text in texts]
    misses = segmenter.block_misses
    again = [segmenter.segment(text) for text in texts]

    assert first == expected
    assert again == expected
    assert misses > 0
    assert segmenter.block_misses == misses  # the second pass cut nothing again


def test_a_full_cache_starts_over_and_stays_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_module, "BLOCK_CACHE_SIZE", 3)
    segmenter = Segmenter()
    for text in SAMPLES * 2:
        assert segmenter.segment(text) == whole_text_tokens(segmenter, text)
        assert len(segmenter._blocks) <= 3


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("住房公积金提取政策的通知，。！ 　abcABC123.%-_+#&\n（）“”")),
               max_size=60))
def test_any_text_gives_the_same_tokens(text: str) -> None:
    segmenter = get_segmenter()
    assert segmenter.segment(text) == whole_text_tokens(segmenter, text)
