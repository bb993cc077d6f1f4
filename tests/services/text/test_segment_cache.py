"""The built segmentation dictionary is cached on disk so that a process segments its first
text quickly; a cache must never change how text is cut."""

from __future__ import annotations

import importlib
from pathlib import Path

import jieba
import pytest

from services.text.segment import Segmenter, preload_in_background, word_starts

SAMPLE = "关于调整住房公积金提取政策的通知：依申请公开不予受理的情形，行政复议和行政诉讼，专项附加扣除与增值税留抵退税"


def test_a_cached_dictionary_cuts_text_exactly_as_a_fresh_one(tmp_path: Path) -> None:
    fresh = Segmenter(cache_dir=tmp_path)
    expected = (fresh.segment(SAMPLE), fresh.segment_query(SAMPLE), fresh.segment_for_index(SAMPLE))
    (cache,) = tmp_path.glob("jieba-*.cache")
    cached = Segmenter(cache_dir=tmp_path)
    assert (cached.segment(SAMPLE), cached.segment_query(SAMPLE), cached.segment_for_index(SAMPLE)) == expected
    assert cached._load().FREQ == fresh._load().FREQ
    assert cache.stat().st_mode & 0o077 == 0  # only this user may read it


def test_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    expected = Segmenter(cache_dir=tmp_path).segment_query(SAMPLE)
    (cache,) = tmp_path.glob("jieba-*.cache")
    cache.write_bytes(b"\x00not a dictionary")
    assert Segmenter(cache_dir=tmp_path).segment_query(SAMPLE) == expected
    assert len(cache.read_bytes()) > 1_000_000  # written again


def test_a_cache_others_can_write_to_is_not_trusted(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    expected = Segmenter(cache_dir=shared).segment_query(SAMPLE)
    shared.chmod(0o777)
    planted = next(shared.glob("jieba-*.cache"))
    planted.write_bytes(b"planted")
    assert Segmenter(cache_dir=shared).segment_query(SAMPLE) == expected
    assert planted.read_bytes() == b"planted"  # neither read nor replaced


def test_a_cached_dictionary_is_loaded_not_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rebuilding costs 1-2 s (jieba's own dictionary, then ~14,000 ``add_word`` calls);
    loading the cache about 0.3 s (bench/search_engine.py measures both)."""
    expected = Segmenter(cache_dir=tmp_path).segment_query(SAMPLE)

    def rebuild(*_: object, **__: object) -> None:
        raise AssertionError("the dictionary was rebuilt")

    monkeypatch.setattr(jieba.Tokenizer, "initialize", rebuild)
    monkeypatch.setattr(jieba.Tokenizer, "add_word", rebuild)
    assert Segmenter(cache_dir=tmp_path).segment_query(SAMPLE) == expected


def test_word_starts_are_where_suggestions_may_begin_inside_a_title() -> None:
    title = "关于调整住房公积金提取政策的通知"
    assert [title[start:] for start in word_starts(title)] == [
        "调整住房公积金提取政策的通知",
        "住房公积金提取政策的通知",
        "提取政策的通知",
        "政策的通知",
        "通知",
    ]


def test_the_dictionaries_can_load_in_the_background(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fresh = Segmenter(cache_dir=tmp_path)
    # (``services.text.segment`` as a dotted name would find the function ``segment``)
    monkeypatch.setattr(importlib.import_module("services.text.segment"), "get_segmenter", lambda: fresh)
    thread = preload_in_background()
    assert thread.daemon
    thread.join(timeout=60)
    assert fresh._tokenizer is not None  # loaded before anyone segmented anything
