"""Routing: which category (and so which department) a consultation belongs to.

A linear text classifier trained on labelled messages. Two feature sets are known (``FEATURE_SETS``):

* ``chars`` (the default): TF-IDF character 2-3 grams of the text, NFKC-folded and lowercased, without
  punctuation or spaces. No segmentation: classification looks the n-grams up in sorted arrays and
  takes one sparse dot product (bench/router.py: about 20x the throughput of the ``words+chars`` pipeline, macro-F1
  within 0.005 of it on our labelled messages);
* ``words+chars`` (models trained before it, and the benchmark's baseline): jieba words (our segmenter
  with the government dictionaries, stop words removed) as TF-IDF word 1-2 grams, joined with TF-IDF
  character 2-3 grams of the same words.

Two linear models are compared by stratified k-fold macro-F1 and the better one is trained on every row:

* ``svm``: ``LinearSVC`` with sigmoid calibration (``CalibratedClassifierCV``) for probabilities;
* ``logreg``: ``LogisticRegression`` (saga, multinomial).

Training uses scikit-learn; classification does not go through its per-call input validation (about
4 ms a message): :class:`Router` compiles the fitted pipeline into plain look-up tables and the
models' coefficient arrays (:class:`_Compiled`, no copy of the coefficients) and computes the same
probabilities (tests/consult/test_routing.py compares them), falling back to the pipeline for any
model it does not know.

Model files are versioned under ``$GONGKAI_DATA_DIR/models/router/``: ``v{N}-{timestamp}.joblib``
and ``current.json``, which names the active file (replaced atomically). :func:`load_current_router`
reloads when ``current.json`` changes, so a running suite picks up a new version without a restart.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import threading
import time
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

MODEL_SUBDIR = Path("models") / "router"
CURRENT_FILE = "current.json"
DEFAULT_DEPARTMENTS_FILE = Path(__file__).resolve().parent / "data" / "category_departments.csv"
DEFAULT_CONFIDENCE_THRESHOLD = 0.6

Row = tuple[str | Sequence[str], str]
"""A training row: raw text (segmented here) or already-segmented tokens, and its label."""


class RoutingError(Exception):
    """Training data or a model file that cannot be used; the message is one readable line."""


# -- features ------------------------------------------------------------------------

CHARS = "chars"
WORDS_AND_CHARS = "words+chars"
FEATURE_SETS: dict[str, str] = {
    CHARS: "TF-IDF character 2-3 grams of the folded text without punctuation (no segmentation)",
    WORDS_AND_CHARS: "TF-IDF jieba word 1-2 grams + character 2-3 grams of the words",
}
DEFAULT_FEATURES = CHARS

_NOT_WORD = re.compile(r"[\W_]+")
_WHITE_SPACES = re.compile(r"\s\s+")


def tokens_of(text: str) -> list[str]:
    """The words of a message as the router sees them: jieba with our dictionaries, no stop words."""
    from services.text.segment import segment_for_index

    return segment_for_index(text).split()


def characters_of(text: str) -> str:
    """The ``chars`` model's input: the text folded as the segmenter folds it (NFKC, lowercase; see
    ``services.text.segment.normalize``) with every character that is not a letter or digit removed."""
    return "".join(_NOT_WORD.split(unicodedata.normalize("NFKC", text).lower()))


def _document(item: str | Sequence[str], features: str = WORDS_AND_CHARS) -> str:
    """The model's input: tokens joined by single spaces (``words+chars``), or the characters (``chars``)."""
    if features == CHARS:
        return characters_of(item if isinstance(item, str) else " ".join(item))
    if isinstance(item, str):
        return " ".join(tokens_of(item))
    return " ".join(token for token in item if token and not token.isspace())


def split_words(document: str) -> list[str]:
    return document.split()


def without_spaces(document: str) -> str:
    return document.replace(" ", "")


def _features(features: str = WORDS_AND_CHARS) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    chars = TfidfVectorizer(analyzer="char", preprocessor=without_spaces, lowercase=False, ngram_range=(2, 3),
                            sublinear_tf=True, min_df=2, max_features=100_000, dtype=_float32())
    if features == CHARS:
        return FeatureUnion([("chars", chars)])
    if features != WORDS_AND_CHARS:
        raise RoutingError(f"unknown feature set {features!r}; known: {', '.join(FEATURE_SETS)}")
    words = TfidfVectorizer(tokenizer=split_words, token_pattern=None, lowercase=False, ngram_range=(1, 2),
                            sublinear_tf=True, min_df=1, max_features=200_000, dtype=_float32())
    return FeatureUnion([("words", words), ("chars", chars)])


def _float32() -> Any:
    import numpy as np

    return np.float32


def _svm() -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    return CalibratedClassifierCV(LinearSVC(C=0.5), method="sigmoid", cv=3)


def _logreg() -> Any:
    from sklearn.linear_model import LogisticRegression

    # saga (multinomial): liblinear would need an explicit one-vs-rest for 3+ classes and was 3-4x slower
    # here for no better macro-F1.
    return LogisticRegression(C=10.0, solver="saga", tol=1e-3, max_iter=200)


CANDIDATES: dict[str, tuple[str, Callable[[], Any]]] = {
    "svm": ("LinearSVC + sigmoid calibration (CalibratedClassifierCV, 3 folds), C=0.5", _svm),
    "logreg": ("LogisticRegression (saga, multinomial), C=10", _logreg),
}


def make_pipeline(candidate: str, features: str = WORDS_AND_CHARS) -> Any:
    """An unfitted pipeline. Its defaults, like ``_document``'s and ``Router``'s, are the older feature set,
    so that code written before feature sets existed gets what it got; ``train_router`` uses ``chars``."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("features", _features(features)), ("model", CANDIDATES[candidate][1]())])


# -- the model -----------------------------------------------------------------------


@dataclass
class Router:
    """A trained router: the scikit-learn pipeline (on documents, see ``_document``), what it was trained
    on, and its feature set (files written before feature sets existed are ``words+chars``)."""

    pipeline: Any
    labels: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    features: str = WORDS_AND_CHARS

    def classify(self, text: str) -> tuple[str, float]:
        """The most likely category of a message and its probability (0..1)."""
        return self.classify_many((text,))[0]

    def classify_many(self, texts: Iterable[str]) -> list[tuple[str, float]]:
        """The category and probability of each message, in order."""
        probabilities = self.predict_proba([_document(text, self.features) for text in texts])
        classes = self.pipeline.classes_
        best = probabilities.argmax(axis=1)
        return [(str(classes[i]), float(probabilities[n, i])) for n, i in enumerate(best.tolist())]

    def predict_proba(self, documents: Sequence[str]) -> Any:
        """The pipeline's ``predict_proba`` of model inputs, by the compiled form when it has one."""
        if "_compiled" not in self.__dict__:  # once per loaded model; a race only compiles twice
            self.__dict__["_compiled"] = _Compiled.of(self.pipeline)
        compiled: _Compiled | None = self.__dict__["_compiled"]
        if compiled is None:
            return self.pipeline.predict_proba(list(documents))
        return compiled.predict_proba(documents)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_compiled", None)  # derived from the pipeline: rebuilt after loading
        return state


_CODE_BITS = 21
"""Bits of a Unicode code point: up to three characters make one int64 key (``_char_tables``)."""


def _char_tables(vocabulary: dict[str, int], ngrams: tuple[int, int]) -> tuple[tuple[int, Any, Any], ...]:
    """A character n-gram vocabulary as, for each n, sorted int64 keys (the code points of the n
    characters side by side) and their columns, so that a whole text is looked up by ``searchsorted``
    (a Python dictionary look-up per n-gram cost 4/5 of the time). Empty when n-grams are too long."""
    import numpy as np

    low, high = ngrams
    if high * _CODE_BITS > 63:
        return ()
    by_length: dict[int, list[tuple[int, int]]] = {n: [] for n in range(low, high + 1)}
    for term, column in vocabulary.items():
        key = 0
        for character in term:
            key = key << _CODE_BITS | ord(character)
        if len(term) not in by_length:
            return ()
        by_length[len(term)].append((key, column))
    tables = []
    for n, pairs in by_length.items():
        pairs.sort()
        tables.append((n, np.array([key for key, _ in pairs], dtype=np.int64),
                       np.array([column for _, column in pairs], dtype=np.intp)))
    return tuple(tables)


class _Vectoriser(NamedTuple):
    """A fitted ``TfidfVectorizer`` (sublinear tf, idf, l2 norm) as a vocabulary and an idf array."""

    analyzer: str  # "char" (characters, spaces removed) or "word" (space-separated tokens)
    ngrams: tuple[int, int]
    vocabulary: dict[str, int]
    idf: Any
    offset: int  # its first column in the FeatureUnion
    tables: tuple[tuple[int, Any, Any], ...] = ()  # see _char_tables

    def counts(self, document: str) -> tuple[Any, Any]:
        """The vocabulary columns of the document's n-grams and how often each occurs."""
        import numpy as np

        if not self.tables:
            counted = Counter(map(self.vocabulary.get, self.grams(document)))
            counted.pop(None, None)  # type: ignore[call-overload]  # grams outside the vocabulary
            return (np.fromiter(counted.keys(), dtype=np.intp, count=len(counted)),
                    np.fromiter(counted.values(), dtype=np.float64, count=len(counted)))
        text = _WHITE_SPACES.sub(" ", document.replace(" ", ""))  # as scikit-learn's char analyzer
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        found = []
        for n, keys, columns in self.tables:
            width = len(codes) - n + 1
            if width <= 0 or not len(keys):
                continue
            grams = codes[:width]
            for k in range(1, n):
                grams = (grams << _CODE_BITS) | codes[k : k + width]
            at = np.minimum(keys.searchsorted(grams), len(keys) - 1)
            found.append(columns[at[keys[at] == grams]])
        if not found:
            return np.zeros(0, dtype=np.intp), np.zeros(0)
        unique, repeats = np.unique(np.concatenate(found), return_counts=True)
        return unique, repeats.astype(np.float64)

    def grams(self, document: str) -> list[str]:
        low, high = self.ngrams
        if self.analyzer == "char":
            text = _WHITE_SPACES.sub(" ", document.replace(" ", ""))  # as scikit-learn's char analyzer
            items = list(text) if low == 1 else []
            for n in range(max(low, 2), high + 1):
                items += [text[i : i + n] for i in range(len(text) - n + 1)]
            return items
        tokens = document.split()
        items = list(tokens) if low == 1 else []
        for n in range(max(low, 2), high + 1):
            items += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        return items

    def columns(self, document: str) -> tuple[Any, Any]:
        """Columns (in the union) and l2-normalised TF-IDF values of one document, as ``transform``
        computes them."""
        import numpy as np

        columns, counts = self.counts(document)
        values = np.log(counts) + 1.0  # float64: scikit-learn's float32 differs by < 1e-7 (~1e-6 after softmax)
        values *= self.idf.take(columns)
        norm = float(np.sqrt(values @ values))
        if norm > 0:
            values /= norm
        return columns + self.offset if self.offset else columns, values


class _Compiled(NamedTuple):
    """A fitted pipeline's ``predict_proba`` without scikit-learn's per-call machinery.

    Supported: a FeatureUnion of TfidfVectorizers as this module builds them, then a multiclass
    ``CalibratedClassifierCV`` (sigmoid) over linear models or a multinomial ``LogisticRegression``.
    :meth:`of` answers None for anything else and the pipeline itself is used."""

    vectorisers: tuple[_Vectoriser, ...]
    kind: str  # "calibrated" or "softmax"
    linear: tuple[tuple[Any, Any], ...]  # (coef_ (classes x features), intercept_) per linear model
    sigmoid: tuple[tuple[Any, Any], ...]  # (a, b) per calibrated model, arrays over classes

    @classmethod
    def of(cls, pipeline: Any) -> _Compiled | None:
        try:
            return cls._compile(pipeline)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            return None

    @classmethod
    def _compile(cls, pipeline: Any) -> _Compiled | None:
        import numpy as np
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion

        features, model = pipeline.named_steps["features"], pipeline.named_steps["model"]
        classes = list(model.classes_)
        if not isinstance(features, FeatureUnion) or len(classes) < 3:
            return None
        vectorisers, offset = [], 0
        for _name, vectoriser in features.transformer_list:
            if not isinstance(vectoriser, TfidfVectorizer) or not cls._as_built_here(vectoriser):
                return None
            analyzer = "char" if vectoriser.analyzer == "char" else "word"
            vocabulary: dict[str, int] = vectoriser.vocabulary_  # shared with the pipeline, not copied
            ngrams = tuple(vectoriser.ngram_range)
            tables = _char_tables(vocabulary, ngrams) if analyzer == "char" else ()
            vectorisers.append(_Vectoriser(analyzer, ngrams, {} if tables else vocabulary,
                                           np.asarray(vectoriser.idf_, dtype=np.float64), offset, tables))
            offset += len(vocabulary)
        if isinstance(model, CalibratedClassifierCV):
            linear, sigmoid = [], []
            for calibrated in model.calibrated_classifiers_:
                estimator = calibrated.estimator
                if (calibrated.method != "sigmoid" or list(estimator.classes_) != classes
                        or estimator.coef_.shape != (len(classes), offset)):
                    return None
                linear.append((estimator.coef_, np.asarray(estimator.intercept_, dtype=np.float64)))
                sigmoid.append((np.array([c.a_ for c in calibrated.calibrators], dtype=np.float64),
                                np.array([c.b_ for c in calibrated.calibrators], dtype=np.float64)))
            return cls(tuple(vectorisers), "calibrated", tuple(linear), tuple(sigmoid))
        if isinstance(model, LogisticRegression) and model.coef_.shape == (len(classes), offset):
            return cls(tuple(vectorisers), "softmax",
                       ((model.coef_, np.asarray(model.intercept_, dtype=np.float64)),), ())
        return None

    @staticmethod
    def _as_built_here(vectoriser: Any) -> bool:
        if vectoriser.analyzer == "char":
            analysed = vectoriser.preprocessor is without_spaces and not vectoriser.lowercase
        else:
            analysed = vectoriser.analyzer == "word" and vectoriser.tokenizer is split_words
            analysed = analysed and not vectoriser.lowercase and vectoriser.preprocessor is None
        return bool(analysed and vectoriser.sublinear_tf and vectoriser.use_idf and vectoriser.norm == "l2"
                    and not vectoriser.binary and vectoriser.stop_words is None
                    and vectoriser.strip_accents is None and vectoriser.input == "content")

    def predict_proba(self, documents: Sequence[str]) -> Any:
        import numpy as np

        answers = np.empty((len(documents), len(self.linear[0][1])))
        for n, document in enumerate(documents):
            parts = [vectoriser.columns(document) for vectoriser in self.vectorisers]
            if len(parts) == 1:
                columns, x = parts[0]
            else:
                columns, x = np.concatenate([c for c, _ in parts]), np.concatenate([v for _, v in parts])
            decisions = [coef[:, columns] @ x + intercept for coef, intercept in self.linear]
            answers[n] = self._probabilities(decisions)
        return answers

    def _probabilities(self, decisions: list[Any]) -> Any:
        import numpy as np

        if self.kind == "softmax":
            shifted = np.exp(decisions[0] - decisions[0].max())
            return shifted / shifted.sum()
        total = np.zeros_like(decisions[0])
        for decision, (a, b) in zip(decisions, self.sigmoid, strict=True):
            proba = 1.0 / (1.0 + np.exp(a * decision + b))  # scikit-learn's expit(-(a * T + b))
            denominator = proba.sum()
            proba = proba / denominator if denominator != 0 else np.full_like(proba, 1 / len(proba))
            proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
            total += proba
        return total / len(decisions)


# -- training and the evaluation report ----------------------------------------------


@dataclass
class ClassReport:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class RouterReport:
    folds: int
    rows: int
    labels: list[str]
    model: str
    model_description: str
    candidates: dict[str, float]
    """Cross-validated macro-F1 of every candidate model."""
    macro_f1: float
    accuracy: float
    per_class: list[ClassReport]
    confusion: list[list[int]]
    """Rows: true label, columns: predicted label, both in the order of ``labels``."""
    threshold: float
    auto_share: float
    """Share of messages whose predicted category is at least ``threshold`` confident."""
    auto_accuracy: float | None
    """Accuracy among those (None when none is confident enough)."""
    seconds: float
    features: str = DEFAULT_FEATURES

    def metrics(self) -> dict[str, Any]:
        return {
            "folds": self.folds, "rows": self.rows, "features": self.features, "model": self.model,
            "candidates": self.candidates,
            "macro_f1": round(self.macro_f1, 4), "accuracy": round(self.accuracy, 4),
            "threshold": self.threshold, "auto_share": round(self.auto_share, 4),
            "auto_accuracy": None if self.auto_accuracy is None else round(self.auto_accuracy, 4),
            "per_class": {c.label: {"precision": round(c.precision, 4), "recall": round(c.recall, 4),
                                    "f1": round(c.f1, 4), "support": c.support} for c in self.per_class},
            "confusion": self.confusion,
        }


def prepare(rows: Iterable[Row], features: str = DEFAULT_FEATURES) -> tuple[list[str], list[str]]:
    """The model inputs of the texts (segmented for ``words+chars``); drop rows without words or label.
    Raises RoutingError when too little remains."""
    if features not in FEATURE_SETS:
        raise RoutingError(f"unknown feature set {features!r}; known: {', '.join(FEATURE_SETS)}")
    documents, labels = [], []
    for item, label in rows:
        label = (label or "").strip()
        document = _document(item, features)
        if label and document:
            documents.append(document)
            labels.append(label)
    if not documents:
        raise RoutingError("no usable rows (each needs a label and some text)")
    counts = Counter(labels)
    if len(counts) < 2:
        raise RoutingError(f"need at least two labels, got {sorted(counts)}")
    return documents, labels


def _check_folds(labels: list[str], folds: int) -> None:
    if folds < 2:
        raise RoutingError(f"--folds must be at least 2, got {folds}")
    rare = sorted(label for label, n in Counter(labels).items() if n < folds)
    if rare:
        raise RoutingError(f"every label needs at least {folds} rows for {folds}-fold evaluation; too few: "
                           + ", ".join(rare))


def confidence_summary(
    truth: Sequence[str], predicted: Sequence[str], confidence: Sequence[float], threshold: float
) -> tuple[float, float | None]:
    """Share of predictions at or above the threshold, and their accuracy."""
    chosen = [t == p for t, p, c in zip(truth, predicted, confidence, strict=True) if c >= threshold]
    share = len(chosen) / len(truth) if truth else 0.0
    return share, (sum(chosen) / len(chosen) if chosen else None)


def _cross_validate(
    candidate: str, features: Any, labels: list[str], folds: int, seed: int, n_jobs: int
) -> tuple[list[str], list[float]]:
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(CANDIDATES[candidate][1](), features, labels, cv=splitter,
                                      method="predict_proba", n_jobs=n_jobs)
    classes = sorted(set(labels))  # cross_val_predict orders columns as the estimator's sorted classes_
    best = probabilities.argmax(axis=1)
    return [classes[i] for i in best], [float(probabilities[n, i]) for n, i in enumerate(best)]


def train_router(
    rows: Iterable[Row],
    *,
    folds: int = 5,
    seed: int = 0,
    threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    candidates: Sequence[str] = tuple(CANDIDATES),
    n_jobs: int | None = None,
    features: str = DEFAULT_FEATURES,
) -> tuple[Router, RouterReport]:
    """Evaluate the candidate models by stratified k-fold cross-validation, train the best on every row.

    ``features`` names the feature set (``FEATURE_SETS``): ``words+chars`` is the older, slower one."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    started = time.monotonic()
    documents, labels = prepare(rows, features)
    _check_folds(labels, folds)
    if n_jobs is None:
        n_jobs = min(2, os.cpu_count() or 1)
    classes = sorted(set(labels))

    # The TF-IDF vocabulary and weights are fitted once on every text (unsupervised: no label is seen);
    # the classifiers are cross-validated on that matrix. Re-fitting the vectorisers per fold cost 3x the
    # time for figures within 0.005 of these.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import Pipeline

    union = _features(features)
    matrix = union.fit_transform(documents)
    scores: dict[str, float] = {}
    predictions: dict[str, tuple[list[str], list[float]]] = {}
    for candidate in candidates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            predicted, confidence = _cross_validate(candidate, matrix, labels, folds, seed, n_jobs)
        scores[candidate] = round(float(f1_score(labels, predicted, average="macro")), 4)
        predictions[candidate] = (predicted, confidence)
    best = max(candidates, key=lambda name: scores[name])
    predicted, confidence = predictions[best]

    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                                     zero_division=0)
    share, auto_accuracy = confidence_summary(labels, predicted, confidence, threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline = Pipeline([("features", union), ("model", CANDIDATES[best][1]().fit(matrix, labels))])
    report = RouterReport(
        folds=folds, rows=len(documents), labels=classes, model=best, model_description=CANDIDATES[best][0],
        candidates=scores, macro_f1=float(f1_score(labels, predicted, average="macro")),
        accuracy=float(accuracy_score(labels, predicted)),
        per_class=[ClassReport(label, float(p), float(r), float(f), int(s))
                   for label, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)],
        confusion=confusion_matrix(labels, predicted, labels=classes).tolist(),
        threshold=threshold, auto_share=share, auto_accuracy=auto_accuracy,
        seconds=round(time.monotonic() - started, 1), features=features,
    )
    router = Router(pipeline=pipeline, labels=classes, features=features, metadata={
        "model": best, "model_description": CANDIDATES[best][0], "labels": classes, "features": features,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"), "training_rows": len(documents),
        "label_counts": dict(sorted(Counter(labels).items())), "metrics": report.metrics(),
    })
    return router, report


def format_report(report: RouterReport) -> str:
    """The report as readable text tables."""
    lines = [
        f"router evaluation: {report.rows} messages, {len(report.labels)} categories, "
        f"stratified {report.folds}-fold cross-validation ({report.seconds:.1f} s), "
        f"features: {report.features} ({FEATURE_SETS.get(report.features, '?')})",
        "models (macro-F1): " + ", ".join(f"{name} {score:.3f}" for name, score in report.candidates.items())
        + f"  -> chosen: {report.model} ({report.model_description})",
        f"macro-F1 {report.macro_f1:.3f}   accuracy {report.accuracy:.3f}",
    ]
    auto = "n/a" if report.auto_accuracy is None else f"{report.auto_accuracy:.3f}"
    lines.append(f"confidence >= {report.threshold:g}: {report.auto_share:.1%} auto-assigned, accuracy of those {auto}")
    width = max(len("category"), *(_display_width(c.label) for c in report.per_class))
    lines += ["", f"{_pad('category', width)}  precision  recall     F1  support"]
    for c in report.per_class:
        lines.append(f"{_pad(c.label, width)}  {c.precision:9.3f}  {c.recall:6.3f}  {c.f1:5.3f}  {c.support:7d}")
    lines += ["", "confusion matrix (rows: true, columns: predicted, in the order above as c1, c2, ...)"]
    header = " " * (width + 5) + "".join(f"{'c' + str(i + 1):>6}" for i in range(len(report.labels)))
    lines.append(header)
    for i, (label, row) in enumerate(zip(report.labels, report.confusion, strict=True)):
        lines.append(f"{_pad(label, width)} c{i + 1:<3}" + "".join(f"{n:>6}" for n in row))
    return "\n".join(lines)


def _display_width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))


# -- reading labelled CSV files ----------------------------------------------------

LABEL_COLUMNS = ("label", "一级分类", "一级标签", "类别", "分类")
TOKEN_COLUMNS = ("tokens", "分词", "分词结果")
TEXT_COLUMNS = ("text", "留言详情", "内容", "content")
TITLE_COLUMNS = ("title", "留言主题", "标题")


class CsvColumns(NamedTuple):
    label: str
    text: str | None
    tokens: str | None
    title: str | None

    def describe(self) -> str:
        source = f"tokens <- {self.tokens!r} (space-separated)" if self.tokens else f"text <- {self.text!r}"
        if self.title and not self.tokens:
            source = f"text <- {self.title!r} + {self.text!r}"
        return f"label <- {self.label!r}, {source}"


def _pick(header: Sequence[str], names: Sequence[str]) -> str | None:
    lowered = {name.strip().lower(): name for name in header}
    return next((lowered[name.lower()] for name in names if name.lower() in lowered), None)


def read_labelled_csv(path: Path) -> tuple[list[Row], CsvColumns]:
    """Rows of a labelled CSV: a label column and either text or space-separated tokens.

    Accepted column names: label (also 一级分类, 类别 ...), text (also 留言详情, 内容), tokens (also 分词);
    a title column (title, 留言主题) is put before the text. Raises RoutingError with one readable line.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise RoutingError(f"{path}: empty file (expected a header with label and text or tokens)")
            label = _pick(header, LABEL_COLUMNS)
            tokens = _pick(header, TOKEN_COLUMNS)
            text = _pick(header, TEXT_COLUMNS)
            if label is None or (tokens is None and text is None):
                raise RoutingError(f"{path}: needs a 'label' column and a 'text' or 'tokens' column; "
                                   f"found {', '.join(h.strip() for h in header) or 'none'}")
            columns = CsvColumns(label, text, tokens, _pick(header, TITLE_COLUMNS))
            index = {name: n for n, name in enumerate(header)}
            rows: list[Row] = []
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue

                def cell(name: str | None, record: list[str] = record) -> str:
                    n = index.get(name) if name is not None else None
                    return record[n] if n is not None and n < len(record) else ""

                if tokens is not None:
                    rows.append((cell(tokens).split(), cell(label)))
                else:
                    body = cell(text)
                    title = cell(columns.title)
                    rows.append(((title + "\n" + body) if title else body, cell(label)))
    except UnicodeDecodeError:
        raise RoutingError(f"{path}: not UTF-8 text (save the CSV as UTF-8)") from None
    except csv.Error as error:
        raise RoutingError(f"{path}: malformed CSV: {error}") from None
    except OSError as error:
        raise RoutingError(f"{path}: cannot read: {error.strerror or error}") from None
    if not rows:
        raise RoutingError(f"{path}: no data rows")
    return rows, columns


# -- versioned model files -----------------------------------------------------------


def model_dir(data_dir: Path) -> Path:
    return data_dir / MODEL_SUBDIR


_VERSION = re.compile(r"^v(\d+)-")


def install_router(router: Router, data_dir: Path, *, activate: bool = True) -> Path:
    """Write the model as the next version; with ``activate``, point ``current.json`` at it (atomically)."""
    import joblib

    directory = model_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    versions = [int(m.group(1)) for p in directory.glob("v*.joblib") if (m := _VERSION.match(p.name))]
    version = max(versions, default=0) + 1
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"v{version}-{stamp}.joblib"
    router.metadata["version"] = version
    router.metadata["file"] = path.name
    _atomic_write(path, lambda handle: joblib.dump(router, handle, compress=1), binary=True)
    if activate:
        current = {"file": path.name, "version": version, **{k: v for k, v in router.metadata.items()
                                                            if k not in {"file", "version"}}}
        text = json.dumps(current, ensure_ascii=False, indent=2)
        _atomic_write(directory / CURRENT_FILE, lambda handle: handle.write(text.encode("utf-8")), binary=True)
    return path


def _atomic_write(path: Path, write: Callable[[Any], Any], *, binary: bool) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class _Loaded(NamedTuple):
    stamp: tuple[int, int, int]
    file: str
    router: Router


_cache: dict[Path, _Loaded] = {}
_cache_lock = threading.Lock()


def load_current_router(data_dir: Path) -> Router | None:
    """The active router, or None when none is installed. Cached; reloaded when ``current.json`` changes."""
    directory = model_dir(data_dir)
    current = directory / CURRENT_FILE
    try:
        status = current.stat()
    except FileNotFoundError:
        return None
    stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
    cached = _cache.get(directory)
    if cached is not None and cached.stamp == stamp:
        return cached.router
    with _cache_lock:
        cached = _cache.get(directory)
        if cached is not None and cached.stamp == stamp:
            return cached.router
        try:
            name = str(json.loads(current.read_text(encoding="utf-8"))["file"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RoutingError(f"{current}: unreadable ({error})") from None
        if cached is not None and cached.file == name:
            router = cached.router
        else:
            router = _load_file(directory / Path(name).name)
        _cache[directory] = _Loaded(stamp, name, router)
        return router


def _load_file(path: Path) -> Router:
    import joblib

    try:
        router = joblib.load(path)
    except FileNotFoundError:
        raise RoutingError(f"{path}: named by {CURRENT_FILE} but missing") from None
    if not isinstance(router, Router):
        raise RoutingError(f"{path}: not a router model")
    return router


def classify(text: str, data_dir: Path | None = None) -> tuple[str, float]:
    """The category of a message and its confidence, with the installed router (RoutingError if none)."""
    if data_dir is None:
        from services.settings import load_settings

        data_dir = load_settings().data_dir
    router = load_current_router(data_dir)
    if router is None:
        raise RoutingError("no router model installed: run `gongkai train-router /path/to/labelled.csv`")
    return router.classify(text)


# -- categories to departments -------------------------------------------------------


class Department(NamedTuple):
    code: str
    name: str


_departments: dict[Path, tuple[int, dict[str, Department]]] = {}


def load_departments(path: Path | None = None) -> dict[str, Department]:
    """The category -> department table (CSV: category, department_code, department_name); cached by mtime."""
    path = path or DEFAULT_DEPARTMENTS_FILE
    try:
        mtime = path.stat().st_mtime_ns
        cached = _departments.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        with path.open(encoding="utf-8-sig", newline="") as handle:
            table = {
                row["category"].strip(): Department(row["department_code"].strip(), row["department_name"].strip())
                for row in csv.DictReader(handle)
                if (row.get("category") or "").strip() and (row.get("department_code") or "").strip()
            }
    except (OSError, KeyError, csv.Error) as error:
        raise RoutingError(f"{path}: unreadable category -> department table ({error})") from None
    _departments[path] = (mtime, table)
    return table


def department_for(category: str, path: Path | None = None) -> Department | None:
    """The department a category is routed to, or None when the table does not name it."""
    return load_departments(path).get(category)
