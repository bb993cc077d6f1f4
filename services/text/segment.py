"""Chinese word segmentation (jieba) and the bigram form used for recall.

Two views of the same text feed the search index (ARCHITECTURE.md, principle 5):

* words: jieba in search mode with our user dictionaries (government terms, THUOCL
  legal and finance lexicons), lowercased, punctuation dropped; stop words removed in
  the index and query forms. This is the precise view.
* CJK bigrams: overlapping pairs of Han/Kana/Hangul characters, other runs of letters and
  digits as whole words, the same tokens Elasticsearch's ``standard`` tokenizer plus
  ``cjk_bigram`` produce. This is the recall view: any 2+ character substring matches.

Nothing is loaded at import time: the dictionaries load on the first call, or in the
background after ``preload_in_background()``. Building jieba's prefix dictionary with our
~14,000 user words takes 1.5-2 s on a small server (jieba's own 9 MB cache, then
``add_word`` for each lexicon word), so the finished dictionary is cached on disk
(``dictionary_cache_dir()``, keyed by a hash of jieba's version and our word lists) in a form
that loads in about 0.3 s. A missing, stale or unreadable cache is simply rebuilt.
"""

from __future__ import annotations

import array
import contextlib
import functools
import hashlib
import logging
import marshal
import math
import os
import re
import sys
import tempfile
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
#: How jieba splits a text into the blocks it cuts one by one (``jieba.re_han_default``: runs of
#: Han characters, ASCII letters, digits and ``+#&._%-``; the other runs are split on whitespace
#: and cut into single characters). Splitting with the same expression keeps the tokens identical.
_BLOCKS = jieba.re_han_default
#: Blocks whose tokens ``Segmenter.segment`` keeps (a block is a clause: tens of characters).
BLOCK_CACHE_SIZE = 200_000


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


#: Bump when the cache layout changes.
_CACHE_FORMAT = 1
_CACHE_ITEM_TYPE = "q"  # int64 frequencies


def dictionary_cache_dir() -> Path:
    """Where the built dictionary is cached: ``GONGKAI_CACHE_DIR``, else the user's cache
    directory (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``gongkai``, else the temp dir."""
    configured = os.environ.get("GONGKAI_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if base and os.path.isabs(base):
        return Path(base) / "gongkai"
    return Path(tempfile.gettempdir()) / "gongkai"


def _dump_frequencies(path: Path, frequencies: dict[str, int], total: int) -> None:
    """Write the prefix dictionary as one newline-joined string of words plus an int64
    array of their frequencies (marshal: plain data, never code); atomically."""
    counts = array.array(_CACHE_ITEM_TYPE, frequencies.values())
    payload = (_CACHE_FORMAT, "\n".join(frequencies), counts.tobytes(), sys.byteorder, total)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _private_directory(path.parent):
        raise OSError(f"{path.parent} is not private to this user")
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            marshal.dump(payload, stream)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _private_directory(directory: Path) -> bool:
    """True when ``directory`` exists, belongs to this user and nobody else may write to it
    (so that nobody else can have planted a cache file there)."""
    try:
        status = directory.stat()
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or status.st_uid == os.getuid()
    return owner_ok and not status.st_mode & 0o022


def _load_frequencies(path: Path) -> tuple[dict[str, int], int] | None:
    """The cached prefix dictionary, or None when missing or not what we wrote."""
    if not _private_directory(path.parent):
        return None
    try:
        with path.open("rb") as stream:
            # Plain data (str, bytes, ints), in a directory only this user can write to.
            payload = marshal.load(stream)  # noqa: S302
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not (isinstance(payload, tuple) and len(payload) == 5 and payload[0] == _CACHE_FORMAT):
        return None
    _, words, raw_counts, byteorder, total = payload
    if not (isinstance(words, str) and isinstance(raw_counts, bytes) and isinstance(total, int)):
        return None
    counts = array.array(_CACHE_ITEM_TYPE)
    try:
        counts.frombytes(raw_counts)
    except ValueError:
        return None
    if byteorder != sys.byteorder:
        counts.byteswap()
    keys = words.split("\n")
    if len(keys) != len(counts) or total <= 0:
        return None
    return dict(zip(keys, counts, strict=True)), total


class Segmenter:
    """jieba with our dictionaries, on its own ``jieba.Tokenizer`` (never the global one)."""

    def __init__(
        self,
        data_dir: Path = DATA_DIR,
        user_dictionaries: Iterable[UserDictionary] = USER_DICTIONARIES,
        stopwords_file: str = STOPWORDS_FILE,
        cache_dir: Path | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._user_dictionaries = tuple(user_dictionaries)
        self._stopwords_file = stopwords_file
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._tokenizer: jieba.Tokenizer | None = None
        self._stopwords: frozenset[str] = frozenset()
        #: block of normalised text -> its search-mode word tokens (see ``segment``)
        self._blocks: dict[str, tuple[str, ...]] = {}
        #: how often ``segment`` found a block in its cache, or cut it (benchmarks report the ratio)
        self.block_hits = 0
        self.block_misses = 0

    @property
    def stopwords(self) -> frozenset[str]:
        self._load()
        return self._stopwords

    def segment(self, text: str) -> list[str]:
        """Search-mode tokens (a long word and the dictionary words inside it), in order.

        jieba cuts each block of the text (a run between punctuation: see ``_BLOCKS``) on its
        own, so the tokens of a text are the tokens of its blocks in turn; a block's are
        memoised (``BLOCK_CACHE_SIZE``): official text repeats its clauses (greetings, closing
        formulas, the names of policies and offices), and a rebuild segments each one once."""
        tokenizer = self._load()
        cache = self._blocks
        tokens: list[str] = []
        for block in _BLOCKS.split(normalize(text)):
            if not block:
                continue
            cut = cache.get(block)
            if cut is None:
                cut = tuple(token for token in tokenizer.cut_for_search(block, HMM=USE_HMM) if is_word_token(token))
                if len(cache) >= BLOCK_CACHE_SIZE:
                    cache.clear()  # cheaper than an LRU's bookkeeping on every block; refills at once
                cache[block] = cut
                self.block_misses += 1
            else:
                self.block_hits += 1
            tokens.extend(cut)
        return tokens

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

    def cut(self, text: str) -> list[str]:
        """Precise-mode tokens in order, punctuation and stop words included (for callers that
        look at a word's neighbours)."""
        return list(self._load().cut(normalize(text), HMM=USE_HMM))

    def rarity(self, word: str) -> float:
        """How rare ``word`` is in jieba's general dictionary: ln(total / frequency), the
        highest for words it does not know (a corpus-independent stand-in for idf)."""
        tokenizer = self._load()
        frequency = tokenizer.FREQ.get(word) or 1
        return math.log(tokenizer.total / frequency)

    def word_starts(self, text: str) -> list[int]:
        """Offsets in ``normalize(text)`` where a jieba word (precise mode) that holds a letter
        or digit and is not a stop word begins; suggestions match a prefix there too."""
        tokenizer = self._load()
        stopwords = self._stopwords
        return [
            start
            for word, start, _ in tokenizer.tokenize(normalize(text), mode="default", HMM=USE_HMM)
            if is_word_token(word) and word not in stopwords
        ]

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
        cache = self._cache_path()
        cached = _load_frequencies(cache) if cache is not None else None
        if cached is not None:
            tokenizer.FREQ, tokenizer.total = cached
            tokenizer.initialized = True
            return tokenizer
        tokenizer.initialize()
        for dictionary in self._user_dictionaries:
            for word, frequency in _read_lexicon(self._data_dir / dictionary.file_name):
                tokenizer.add_word(word, frequency if dictionary.use_frequencies else None)
        if cache is not None:
            try:
                _dump_frequencies(cache, tokenizer.FREQ, tokenizer.total)
            except OSError as error:  # a read-only home: slower starts, nothing worse
                logging.getLogger(__name__).info("cannot cache the segmentation dictionary at %s: %s", cache, error)
        return tokenizer

    def _cache_path(self) -> Path | None:
        """The cache file for exactly these dictionaries; None when a word list is unreadable."""
        digest = hashlib.sha256(f"{_CACHE_FORMAT} jieba {jieba.__version__}".encode())
        try:
            for dictionary in self._user_dictionaries:
                digest.update(f"\0{dictionary.file_name} {dictionary.use_frequencies}\0".encode())
                digest.update((self._data_dir / dictionary.file_name).read_bytes())
        except OSError:
            return None
        directory = self._cache_dir or dictionary_cache_dir()
        return directory / f"jieba-{digest.hexdigest()[:32]}.cache"

    def _read_stopwords(self) -> frozenset[str]:
        path = self._data_dir / self._stopwords_file
        return frozenset(normalize(word) for word, _ in _read_lexicon(path))


@functools.lru_cache(maxsize=1)
def get_segmenter() -> Segmenter:
    """The process-wide segmenter (its dictionaries load on first use)."""
    return Segmenter()


def _preload() -> None:
    get_segmenter().segment("预加载")


def preload_in_background() -> threading.Thread:
    """Load the dictionaries in a daemon thread now, so that the first request does not
    wait for them (call it when a web or worker process starts)."""
    thread = threading.Thread(target=_preload, name="jieba-preload", daemon=True)
    thread.start()
    return thread


def segment(text: str) -> list[str]:
    return get_segmenter().segment(text)


def segment_for_index(text: str) -> str:
    return get_segmenter().segment_for_index(text)


def segment_query(text: str) -> list[str]:
    return get_segmenter().segment_query(text)


def word_starts(text: str) -> list[int]:
    return get_segmenter().word_starts(text)
