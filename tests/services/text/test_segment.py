from services.text.segment import (
    Segmenter,
    cjk_bigrams,
    get_segmenter,
    segment,
    segment_for_index,
    segment_query,
    split_phrases,
)


def test_the_user_dictionary_keeps_government_terms_whole() -> None:
    assert "住房公积金" in segment_query("如何提取住房公积金")
    assert "政策解读" in segment_query("关于住房公积金的政策解读")
    assert {"依申请公开", "不予受理"} <= set(segment_query("依申请公开不予受理的情形"))


def test_search_mode_also_yields_the_words_inside_a_term() -> None:
    tokens = segment("住房公积金政策解读")
    assert {"住房公积金", "住房", "公积金", "政策解读", "政策", "解读"} <= set(tokens)


def test_stop_words_are_removed_in_the_index_form_only() -> None:
    text = "关于住房公积金的政策解读"
    assert "的" in segment(text)
    indexed = segment_for_index(text).split(" ")
    assert "的" not in indexed
    assert "关于" not in indexed
    assert "住房公积金" in indexed
    assert "的" not in segment_query(text)


def test_punctuation_and_width_are_normalised() -> None:
    tokens = segment("ＧＯＶ，政务公开！  2017年")
    assert {"gov", "2017"} <= set(tokens)
    assert all(token.strip() and token not in {"，", "！", ","} for token in tokens)


def test_query_words_are_unique() -> None:
    assert segment_query("公积金 公积金") == ["公积金"]


def test_cjk_bigrams_match_elasticsearch_cjk_bigram() -> None:
    assert cjk_bigrams("住房公积金") == ["住房", "房公", "公积", "积金"]
    assert cjk_bigrams("Ａ3区 2016年，国") == ["a3", "区", "2016", "年", "国"]


def test_split_phrases_cuts_at_spaces_and_punctuation() -> None:
    assert split_phrases("住房，公积金  《解读》") == ["住房", "公积金", "解读"]
    assert split_phrases("，。 ") == []


def test_the_segmenter_is_shared_and_loads_lazily() -> None:
    assert get_segmenter() is get_segmenter()
    fresh = Segmenter()
    assert fresh.segment_query("政务公开") == ["政务公开"]
