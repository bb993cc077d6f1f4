"""The consultation router: training and its cross-validated report, versioned model files, reload
without restart, the public classify API and the ``gongkai train-router`` command."""

from __future__ import annotations

import csv
import json
import os
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from click.testing import CliRunner

from consult.routing import (
    CHARS,
    CURRENT_FILE,
    WORDS_AND_CHARS,
    Router,
    RouterReport,
    _document,
    department_for,
    format_report,
    install_router,
    load_current_router,
    load_departments,
    model_dir,
    read_labelled_csv,
    tokens_of,
    train_router,
)
from services.settings import load_settings

from support.env import base_env

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
RAW = SHARED_DATA / "messages_labeled_raw.csv"
SEGMENTED = SHARED_DATA / "messages_labeled_segmented.csv"
LABELS = {"城乡建设", "劳动和社会保障", "教育文体", "商贸旅游", "环境保护", "卫生计生", "交通运输"}
MACRO_F1_FLOOR = 0.7
"""Measured 0.80-0.82 on this 600-row sample with 3 folds (0.89 on all 1813 rows with 5 folds)."""

# CI always has shared/ beside the clone: there a missing file fails the tests instead of skipping them.
pytestmark = pytest.mark.skipif(
    not RAW.is_file() and not os.environ.get("CI"), reason=f"labelled data not found at {SHARED_DATA}"
)


def stratified_sample(rows: list[Any], per_class: int, seed: int = 0) -> list[Any]:
    by_label: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(seed)
    sample = []
    for label in sorted(by_label):
        items = by_label[label]
        sample.extend(rng.sample(items, min(per_class, len(items))))
    return sample


@pytest.fixture(scope="module")
def trained() -> tuple[Router, RouterReport]:
    rows, _columns = read_labelled_csv(RAW)
    sample = stratified_sample(rows, per_class=86)  # 7 classes, ~600 rows (交通运输 has 101)
    assert 590 <= len(sample) <= 610
    return train_router(sample, folds=3, seed=0)


def test_the_report_is_cross_validated_and_good_enough(trained: tuple[Router, RouterReport]) -> None:
    router, report = trained
    assert report.folds == 3 and report.rows >= 590
    assert set(report.labels) == LABELS == set(router.labels)
    assert set(report.candidates) == {"svm", "logreg"}
    assert report.model == max(report.candidates, key=lambda name: report.candidates[name])
    assert report.macro_f1 >= MACRO_F1_FLOOR, report.macro_f1
    assert report.accuracy >= MACRO_F1_FLOOR
    assert len(report.per_class) == 7 and all(0 <= c.f1 <= 1 for c in report.per_class)
    assert sum(map(sum, report.confusion)) == report.rows
    assert report.threshold == 0.6
    assert 0 < report.auto_share <= 1
    assert report.auto_accuracy is not None and report.auto_accuracy >= report.accuracy


def test_classify_returns_a_known_label(trained: tuple[Router, RouterReport]) -> None:
    router, _report = trained
    category, confidence = router.classify("小区旁边的工厂每天夜里排放废气，气味刺鼻，河里还有污水，请环保部门查处")
    assert category in LABELS
    assert 0 < confidence <= 1
    assert router.classify("孩子上小学的学位和学区划分问题，学校收取补课费")[0] == "教育文体"


def test_install_is_versioned_and_reloaded_without_restart(
    trained: tuple[Router, RouterReport], tmp_path: Path
) -> None:
    router, _report = trained
    assert load_current_router(tmp_path) is None
    first = install_router(router, tmp_path)
    assert first.name.startswith("v1-") and first.suffix == ".joblib" and first.is_file()
    current = json.loads((model_dir(tmp_path) / CURRENT_FILE).read_text(encoding="utf-8"))
    assert current["file"] == first.name and current["version"] == 1
    assert set(current["labels"]) == LABELS and current["training_rows"] == router.metadata["training_rows"]
    assert current["metrics"]["macro_f1"] >= MACRO_F1_FLOOR and current["trained_at"]
    loaded = load_current_router(tmp_path)
    assert loaded is not None and load_current_router(tmp_path) is loaded  # cached
    assert loaded.classify("公交线路调整，公交车太少，出行不便")[0] in LABELS

    second = install_router(router, tmp_path)
    assert second.name.startswith("v2-") and first.is_file()  # the older version stays
    current_path = model_dir(tmp_path) / CURRENT_FILE
    os.utime(current_path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    reloaded = load_current_router(tmp_path)
    assert reloaded is not None and reloaded is not loaded and reloaded.metadata["version"] == 2
    assert not list(model_dir(tmp_path).glob("*.tmp"))


def test_every_category_has_a_department() -> None:
    table = load_departments()
    taxonomy = Path(__file__).resolve().parents[2] / "services" / "demo" / "data" / "taxonomy.csv"
    with taxonomy.open(encoding="utf-8-sig") as handle:
        first_level = {row["一级分类"] for row in csv.DictReader(handle)}
    assert len(first_level) == 15
    assert first_level | LABELS <= set(table)
    assert len({department.code for department in table.values()}) == len(table)
    department = department_for("城乡建设")
    assert department is not None and department.code == "CJ"
    assert department_for("不存在的类别") is None


def test_the_departments_file_is_a_setting(tmp_path: Path) -> None:
    table = tmp_path / "departments.csv"
    table.write_text("category,department_code,department_name\n城乡建设,ZJJ,住建局\n", encoding="utf-8")
    settings = load_settings(base_env(tmp_path, ROUTER_DEPARTMENTS_FILE=str(table)))
    assert settings.router_departments_file == table.resolve()
    department = department_for("城乡建设", settings.router_departments_file)
    assert department is not None and department.code == "ZJJ"
    assert settings.router_confidence_threshold == 0.6


# -- the API ------------------------------------------------------------------------


def test_classify_api(trained: tuple[Router, RouterReport], tmp_path: Path) -> None:
    from consult import create_app

    app = create_app(load_settings(base_env(tmp_path, CLASSIFY_RATE_LIMIT="6 per minute")))
    client = app.test_client()
    text = "A3区某小区物业乱收停车费，业主多次投诉无果，请住建部门处理"

    before = client.post("/api/consult/classify", json={"text": text})
    assert before.status_code == 503
    assert "尚未安装分类模型" in before.get_json()["message"]

    install_router(trained[0], tmp_path)
    answer = client.post("/api/consult/classify", json={"text": text})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["category"] in LABELS and 0 < body["confidence"] <= 1
    assert body["department"] == department_for(body["category"])._asdict()  # type: ignore[union-attr]
    assert body["auto_assign"] == (body["confidence"] >= 0.6)

    for bad in ({"text": ""}, {"text": "   "}, {"text": "长" * 5001}, {}):
        refused = client.post("/api/consult/classify", json=bad)
        assert refused.status_code == 422, bad
        assert "text" in json.dumps(refused.get_json())
    assert client.post("/api/consult/classify", json={"text": text}).status_code == 429  # the 7th in a minute


# -- the command --------------------------------------------------------------------


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        __import__("services.cli", fromlist=["main"]).main, ["train-router", *args], env=base_env(tmp_path),
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(("content", "problem"), [
    ("", "empty file"),
    ("label,body\n城乡建设,路灯不亮\n", "needs a 'label' column"),
    ("label,text\n", "no data rows"),
    (b"\xff\xfe\x00l\x00a", "not UTF-8"),
])
def test_a_bad_csv_is_one_readable_line(tmp_path: Path, content: str | bytes, problem: str) -> None:
    path = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    code, output = _run(tmp_path, str(path))
    assert code == 1
    assert len(output.strip().splitlines()) == 1 and problem in output and "Traceback" not in output
    assert not model_dir(tmp_path).exists()


def test_a_missing_csv_is_one_readable_line(tmp_path: Path) -> None:
    code, output = _run(tmp_path, str(tmp_path / "nope.csv"))
    assert code != 0 and "nope.csv" in output and "Traceback" not in output


def test_train_router_command_reads_segmented_files_and_installs(tmp_path: Path) -> None:
    rows, columns = read_labelled_csv(SEGMENTED)
    assert columns.tokens == "tokens" and columns.label == "label"
    sample = stratified_sample(rows, per_class=20)
    path = tmp_path / "sample.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tokens", "label"])
        writer.writerows([" ".join(tokens), label] for tokens, label in sample)
    code, output = _run(tmp_path, str(path), "--folds", "2")
    assert code == 0, output
    assert "tokens <- 'tokens'" in output and "macro-F1" in output and "confusion matrix" in output
    installed = json.loads((model_dir(tmp_path) / CURRENT_FILE).read_text(encoding="utf-8"))["file"]
    assert f"installed router model {installed}" in output
    code, output = _run(tmp_path, str(path), "--folds", "2", "--no-install")
    assert code == 0 and "not installed" in output
    assert json.loads((model_dir(tmp_path) / CURRENT_FILE).read_text(encoding="utf-8"))["file"] == installed


# -- the compiled classifier ------------------------------------------------------------


def _sample_texts(count: int = 120) -> list[str]:
    rows, _columns = read_labelled_csv(RAW)
    return [str(text) for text, _label in rows[-count:]]


def _assert_same_as_the_pipeline(router: Router, texts: list[str]) -> None:
    documents = [_document(text, router.features) for text in texts]
    expected = router.pipeline.predict_proba(documents)
    got = router.predict_proba(documents)
    assert router.__dict__["_compiled"] is not None  # the fast path, not the pipeline again
    assert got.shape == expected.shape
    # scikit-learn computes the TF-IDF values in float32, the compiled form in float64: ~1e-8 apart after
    # the calibrated SVM, up to ~1e-6 after logreg's softmax (its weights are larger)
    assert np.allclose(got, expected, rtol=0, atol=1e-5), float(np.abs(got - expected).max())
    answers = router.classify_many(texts)
    assert [category for category, _ in answers] == [str(router.pipeline.classes_[i]) for i in expected.argmax(1)]
    assert np.allclose([confidence for _, confidence in answers], expected.max(axis=1), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("features", "candidate"), [(CHARS, "svm"), (CHARS, "logreg"), (WORDS_AND_CHARS, "svm")])
def test_the_compiled_classifier_gives_the_pipelines_probabilities(features: str, candidate: str) -> None:
    rows, _columns = read_labelled_csv(RAW)
    router, report = train_router(stratified_sample(rows, per_class=40), folds=2, candidates=(candidate,),
                                  features=features, n_jobs=1)
    assert router.features == features == report.features == router.metadata["features"]
    _assert_same_as_the_pipeline(router, _sample_texts())
    # odd inputs: no letters at all, one character, full-width and Latin text, newlines, a lone surrogate
    _assert_same_as_the_pipeline(router, ["！！！", "路", "ＡＢＣ公交车 Bus 12路\n\n\t晚点", "\ud800路灯不亮"])


def test_the_default_model_needs_no_segmentation(trained: tuple[Router, RouterReport]) -> None:
    router, report = trained
    assert router.features == CHARS == report.features
    assert "features: chars" in format_report(report)
    _assert_same_as_the_pipeline(router, _sample_texts())


def test_a_model_file_from_before_feature_sets_still_segments(
    trained: tuple[Router, RouterReport], tmp_path: Path
) -> None:
    rows, _columns = read_labelled_csv(RAW)
    legacy, _report = train_router(stratified_sample(rows, per_class=30), folds=2, candidates=("svm",),
                                   features=WORDS_AND_CHARS, n_jobs=1)
    state = legacy.__getstate__()
    del state["features"]  # as joblib wrote a Router before it had one
    old = object.__new__(Router)
    old.__dict__.update(state)
    path = tmp_path / "old.joblib"
    joblib.dump(old, path)
    loaded = joblib.load(path)
    assert loaded.features == WORDS_AND_CHARS
    text = "公交线路调整，公交车太少，出行不便"
    expected = loaded.pipeline.predict_proba([" ".join(tokens_of(text))])[0]
    category, confidence = loaded.classify(text)
    assert category == loaded.pipeline.classes_[expected.argmax()]
    assert confidence == pytest.approx(expected.max(), abs=1e-5)


def test_the_compiled_form_is_not_written_to_model_files(
    trained: tuple[Router, RouterReport], tmp_path: Path
) -> None:
    router, _report = trained
    router.classify("路灯不亮")
    assert "_compiled" in router.__dict__
    path = install_router(router, tmp_path)
    loaded = joblib.load(path)
    assert "_compiled" not in loaded.__dict__ and loaded.features == CHARS
    assert loaded.classify("路灯不亮") == pytest.approx(router.classify("路灯不亮"))


def test_a_model_it_cannot_compile_goes_through_the_pipeline() -> None:
    rows, _columns = read_labelled_csv(RAW)
    two = [row for row in stratified_sample(rows, per_class=30) if row[1] in {"教育文体", "环境保护"}]
    router, _report = train_router(two, folds=2, candidates=("svm",), n_jobs=1)  # binary: not compiled
    category, confidence = router.classify("学校收取补课费")
    assert router.__dict__["_compiled"] is None
    expected = router.pipeline.predict_proba([_document("学校收取补课费", CHARS)])[0]
    assert category == router.pipeline.classes_[expected.argmax()]
    assert confidence == pytest.approx(float(expected.max()))


def test_the_compiled_classifier_is_several_times_faster(trained: tuple[Router, RouterReport]) -> None:
    """The same documents through scikit-learn's predict_proba and the compiled form, one at a time:
    about 20x here; a ratio within one run, so that a busy machine does not fail it."""
    router, _report = trained
    texts = _sample_texts(60)
    documents = [_document(text, router.features) for text in texts]
    router.predict_proba(documents[:1])

    def seconds(predict: Any) -> float:
        started = time.perf_counter()
        for document in documents:
            predict([document])
        return time.perf_counter() - started

    pipeline = min(seconds(router.pipeline.predict_proba) for _ in range(2))
    compiled = min(seconds(router.predict_proba) for _ in range(2))
    assert pipeline / compiled >= 3, (pipeline, compiled)
