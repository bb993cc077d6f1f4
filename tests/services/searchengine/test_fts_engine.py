"""What only the embedded engine has to prove: the SQLite file itself."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.searchengine.fts import FtsSearchEngine
from services.searchengine.port import SearchQuery, SearchUnavailable


def doc(doc_id: str, title: str) -> dict[str, str]:
    return {"id": doc_id, "doc_type": "answer", "title": title, "body": "答复内容"}


def test_a_file_that_cannot_be_opened_makes_the_engine_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    engine = FtsSearchEngine(blocker / "index.sqlite3")
    health = engine.health()
    assert not health.ok
    assert "not-a-directory" in health.detail
    with pytest.raises(SearchUnavailable):
        engine.ensure_alias("gongkai")


def test_a_file_that_is_not_a_database_makes_the_engine_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    path.write_bytes(b"this is not SQLite" * 100)
    engine = FtsSearchEngine(path)
    assert not engine.health().ok
    with pytest.raises(SearchUnavailable):
        engine.search("gongkai", SearchQuery())


def test_a_locked_file_makes_writes_unavailable_not_wrong(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    engine = FtsSearchEngine(path, busy_timeout=0.1)
    engine.ensure_alias("gongkai")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(SearchUnavailable, match="locked"):
            engine.index_document("gongkai", "a", doc("a", "咨询答复"), version=1)
        assert engine.search("gongkai", SearchQuery()).total == 0  # WAL: readers carry on
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert engine.index_document("gongkai", "a", doc("a", "咨询答复"), version=1)


def test_the_file_uses_write_ahead_logging(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    FtsSearchEngine(path).ensure_alias("gongkai")
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_threads_can_share_one_engine(tmp_path: Path) -> None:
    engine = FtsSearchEngine(tmp_path / "index.sqlite3")
    engine.ensure_alias("gongkai")
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n in range(15):
                engine.index_document("gongkai", f"{worker}-{n}", doc(f"{worker}-{n}", f"第{n}号咨询答复"), version=1)
                engine.search("gongkai", SearchQuery(text="咨询"))
        except BaseException as error:  # reported below: a thread cannot fail the test itself
            errors.append(error)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert engine.count("gongkai") == 90
    assert engine.search("gongkai", SearchQuery(text="咨询答复")).total == 90


@pytest.mark.parametrize(
    "operation",
    [
        lambda engine: engine.search("gongkai", SearchQuery(text="政策", facets=("doc_type",), highlight=True)),
        lambda engine: engine.suggest("gongkai", "政策"),
        lambda engine: engine.related("gongkai", "a"),
    ],
)
def test_every_query_on_a_broken_file_raises_search_unavailable(
    tmp_path: Path, operation: Callable[[FtsSearchEngine], Any]
) -> None:
    path = tmp_path / "index.sqlite3"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(SearchUnavailable):
        operation(FtsSearchEngine(path))


def test_an_index_made_by_the_previous_release_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    engine = FtsSearchEngine(path)
    engine.ensure_alias("gongkai")
    engine.index_document("gongkai", "a", doc("a", "住房公积金提取答复"), version=1)
    engine.index_document("gongkai", "b", doc("b", "住房补贴答复"), version=1)
    engine.index_document("gongkai", "c", doc("c", "公积金提取咨询"), version=1)
    engine.delete_document("gongkai", "b", version=2)
    engine.close()
    with sqlite3.connect(path) as connection:  # the file as the previous release left it
        connection.execute('DROP TABLE "ix1_suggest"')
        connection.execute('DROP INDEX "ix1_by_seq"')
        connection.execute('DROP INDEX "ix1_facets"')
    reopened = FtsSearchEngine(path)
    assert [suggestion.doc_id for suggestion in reopened.suggest("gongkai", "住房")] == ["a"]
    assert [hit.id for hit in reopened.related("gongkai", "a")] == ["c"]
    assert reopened.search("gongkai", SearchQuery(text="提取", facets=("doc_type",))).facets == {
        "doc_type": {"answer": 2}
    }
    assert reopened.index_document("gongkai", "d", doc("d", "住房公积金贷款答复"), version=1)
    assert [suggestion.doc_id for suggestion in reopened.suggest("gongkai", "住房公积金")] == ["a", "d"]


def test_a_dropped_index_leaves_nothing_behind_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    engine = FtsSearchEngine(path)
    engine.ensure_alias("gongkai")
    spare = engine.create_index("gongkai")
    for n in range(3):
        engine.index_document(spare, f"old-{n}", doc(f"old-{n}", "住房公积金提取答复"), version=1)
    engine.drop_index(spare)
    with sqlite3.connect(path) as connection:
        leftovers = connection.execute("SELECT name FROM sqlite_master WHERE name LIKE 'ix2%'").fetchall()
    assert leftovers == []
    again = engine.create_index("gongkai")  # may get the same registry id, hence table names
    engine.index_document(again, "new", doc("new", "住房公积金贷款答复"), version=1)
    engine.swap_alias("gongkai", again)
    assert [suggestion.doc_id for suggestion in engine.suggest("gongkai", "住房")] == ["new"]
    assert engine.related("gongkai", "new") == []  # no word counts left over from the dropped index
