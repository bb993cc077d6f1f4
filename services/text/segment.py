"""Chinese word segmentation (jieba) and the bigram form used for recall.

Two views of the same text feed the search index (ARCHITECTURE.md, principle 5):

* words: jieba in search mode with our user dictionaries (government terms, THUOCL
  legal and finance lexicons), lowercased, punctuation dropped; stop words removed in
  the index and query forms. This is the precise view.
* CJK bigrams: overlapping pairs of Han/Kana/Hangul characters, other runs of letters and
  digits as whole words, the same tokens Elasticsearch's ``standard`` tokenizer plus
  ``cjk_bigram`` produce. This is the recall view: any 2+ character substring matches.

Nothing is loaded at import time: the dictionaries load on the first call.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import jieba

DATA_DIR = Path(__file__).resolve().parent / "data"


class UserDictionary(NamedTuple):
    file_name: str
    #: THUOCL counts come from another corpus and reach millions; taken raw they would
    #: swamp jieba's own frequencies, so for those lists jieba suggests a frequency that
    #: just lets each word be cut whole. Our own list carries tuned frequencies.
    use_frequencies: bool


#: Loaded in this order: our government terms last, so they win.
USER_DICTIONARIES: tuple[UserDictionary, ...] = (
    UserDictionary("lexicon_law.txt", use_frequencies=False),
    UserDictionary("lexicon_finance.txt", use_frequencies=False),
    UserDictionary("gov_terms.txt", use_frequencies=True),
)
STOPWORDS_FILE = "stopwords.txt"

#: jieba's HMM guesses unknown words from context, so a query and a document could cut
#: the same characters differently ("向市|住|建局"). Off: unknown words fall back to single
#: characters, and the bigram view covers their recall.
USE_HMM = False

_CJK_CHARS = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\U00020000-\U0002fa1f"  # CJK Extensions B-F and compatibility supplement
)
_CJK_RUN_OR_WORD = re.compile(rf"(?P<cjk>[{_CJK_CHARS}]+)|(?P<word>[^\W_{_CJK_CHARS}]+)")
_PHRASE_SEPARATOR = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Fold full-width forms and compatibility characters (NFKC), then lowercase."""
    return unicodedata.normalize("NFKC", text).lower()


def is_word_token(token: str) -> bool:
    """True when the token holds at least one letter or digit (not only punctuation/space)."""
    return any(ch.isalnum() for ch in token)


def _unique(tokens: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(tokens))


def cjk_bigrams(text: str) -> list[str]:
    """Tokens as Elasticsearch's ``standard`` tokenizer + ``cjk_width`` + ``lowercase`` +
    ``cjk_bigram`` would emit them: overlapping bigrams inside each run of CJK characters
    (a lone CJK character stays a unigram), other letter/digit runs as whole words."""
    tokens: list[str] = []
    for match in _CJK_RUN_OR_WORD.finditer(normalize(text)):
        run = match.group("cjk")
        if run is None:
            tokens.append(match.group("word"))
        elif len(run) == 1:
            tokens.append(run)
        else:
            tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
    return tokens


def split_phrases(text: str) -> list[str]:
    """The parts of a query the user separated with spaces or punctuation, in order.

    Each part must occur as a substring (a phrase of bigrams), so "住房 公积金" finds
    "住房公积金" although "房公" is not in the query."""
    return [part for part in _PHRASE_SEPARATOR.split(normalize(text)) if part]


def _read_lexicon(path: Path) -> Iterator[tuple[str, int | None]]:
    """Yield (word, frequency) from ``word freq [tag]`` or ``word<TAB>freq`` lines."""
    with path.open(encoding="utf-8-sig") as lines:
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            frequency = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
            yield fields[0], frequency


class Segmenter:
    """jieba with our dictionaries, on its own ``jieba.Tokenizer`` (never the global one)."""

    def __init__(
        self,
        data_dir: Path = DATA_DIR,
        user_dictionaries: Iterable[UserDictionary] = USER_DICTIONARIES,
        stopwords_file: str = STOPWORDS_FILE,
    ) -> None:
        self._data_dir = data_dir
        self._user_dictionaries = tuple(user_dictionaries)
        self._stopwords_file = stopwords_file
        self._lock = threading.Lock()
        self._tokenizer: jieba.Tokenizer | None = None
        self._stopwords: frozenset[str] = frozenset()

    @property
    def stopwords(self) -> frozenset[str]:
        self._load()
        return self._stopwords

    def segment(self, text: str) -> list[str]:
        """Search-mode tokens (a long word and the dictionary words inside it), in order."""
        tokenizer = self._load()
        tokens = tokenizer.cut_for_search(normalize(text), HMM=USE_HMM)
        return [token for token in tokens if is_word_token(token)]

    def segment_for_index(self, text: str) -> str:
        """The index form: search-mode tokens without stop words, joined by spaces."""
        stopwords = self.stopwords
        return " ".join(token for token in self.segment(text) if token not in stopwords)

    def segment_query(self, text: str) -> list[str]:
        """The words of a query: precise mode (the index form contains these), without
        stop words or repeats."""
        tokenizer = self._load()
        stopwords = self._stopwords
        words = tokenizer.cut(normalize(text), HMM=USE_HMM)
        return _unique(word for word in words if is_word_token(word) and word not in stopwords)

    def _load(self) -> jieba.Tokenizer:
        if self._tokenizer is not None:
            return self._tokenizer
        with self._lock:
            if self._tokenizer is None:
                self._stopwords = self._read_stopwords()
                self._tokenizer = self._build_tokenizer()
        return self._tokenizer

    def _build_tokenizer(self) -> jieba.Tokenizer:
        logging.getLogger("jieba").setLevel(logging.WARNING)  # silence "Building prefix dict"
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
        for dictionary in self._user_dictionaries:
            for word, frequency in _read_lexicon(self._data_dir / dictionary.file_name):
                tokenizer.add_word(word, frequency if dictionary.use_frequencies else None)
        return tokenizer

    def _read_stopwords(self) -> frozenset[str]:
        path = self._data_dir / self._stopwords_file
        return frozenset(normalize(word) for word, _ in _read_lexicon(path))


@functools.lru_cache(maxsize=1)
def get_segmenter() -> Segmenter:
    """The process-wide segmenter (its dictionaries load on first use)."""
    return Segmenter()


def segment(text: str) -> list[str]:
    return get_segmenter().segment(text)


def segment_for_index(text: str) -> str:
    return get_segmenter().segment_for_index(text)


def segment_query(text: str) -> list[str]:
    return get_segmenter().segment_query(text)
