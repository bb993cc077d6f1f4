"""Chinese text tools shared by the services: segmentation (more to come: PII detection
and redaction)."""

from services.text.segment import (
    Segmenter,
    cjk_bigrams,
    get_segmenter,
    preload_in_background,
    segment,
    segment_for_index,
    segment_query,
    split_phrases,
    word_starts,
)

__all__ = [
    "Segmenter",
    "cjk_bigrams",
    "get_segmenter",
    "preload_in_background",
    "segment",
    "segment_for_index",
    "segment_query",
    "split_phrases",
    "word_starts",
]
