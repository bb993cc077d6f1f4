"""Bulk import of policies: the gov.cn demo file through the CLI, all-or-nothing on bad rows, the API."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import Client

from interpret.importing import RowInput, import_policies, parse_rows, rows_from_objects, split_title_and_number
from interpret.models import Policy
from services.db import get_database, open_service_database
from services.migrations import migrate_all
from services.settings import Settings, load_settings
from services.suite import PathDispatcher

from support.env import base_env, drop_schemas, subprocess_env, unique_prefix
from support.org import STAFF_PASSWORD

REPO = Path(__file__).resolve().parents[2]
GOVCN = REPO / "services" / "demo" / "data" / "policies_govcn.csv"
GOVCN_ROWS = 108
GOVCN_DOCUMENTS = 102
"""108 rows: 6 are repeated word for word (same title, 文号 and address). The remaining 102 include two
decisions with one title, 国务院令第506号 (2007) and 第606号 (2011), at different addresses and dates: two
documents, so 101 distinct titles but 102 policies."""

BAD_CSV = """title,issuer,level,document_number,published_at,body
关于推进科技成果转化的若干措施,科学技术厅,本级,皖科政〔2017〕12号,2017-03-01,<p>为加快科技成果转化，制定本措施。</p>
关于加强科研诚信建设的通知,科学技术厅,市级,皖科政〔2017〕13号,2017-03-02,<p>现就有关事项通知如下。</p>
关于开展科技特派员工作的通知,科学技术厅,本级,皖科政2017-14,2017-03-03,<p>现就有关事项通知如下。</p>
,科学技术厅,本级,皖科政〔2017〕15号,2017-03-04,<p>现就有关事项通知如下。</p>
关于做好高新技术企业认定工作的通知,科学技术厅,本级,皖科政〔2017〕16号,2017-03-05,<p>现就有关事项通知如下。</p>
"""
"""Rows 3 (bad level), 4 (malformed 文号) and 5 (empty title) are bad; rows 2 and 6 are good."""

BAD_ROWS = {"3": "level", "4": "document_number", "5": "title"}


def good_rows(count: int = 3, prefix: str = "关于导入测试的通知") -> list[dict[str, Any]]:
    return [{"title": f"{prefix}（{n}）", "issuer": "科学技术厅", "level": "本级",
             "document_number": f"皖科政〔2018〕{n}号", "body": "<p>现就有关事项通知如下。</p>",
             "written_on": f"2018-05-0{n}", "published_at": f"2018-05-1{n}", "topic": "科技"}
            for n in range(1, count + 1)]


# -- reading the gov.cn file ----------------------------------------------------------------------


def test_the_govcn_file_reads_with_the_document_number_cut_from_the_text() -> None:
    rows = parse_rows(GOVCN, "csv")
    assert len(rows) == GOVCN_ROWS
    first = rows[0]
    assert first.row == 2  # the header is row 1, as a spreadsheet shows it
    assert first.values["title"] == "国务院批转地质部关于切实保障野外地质工作条件的报告"
    assert first.values["document_number"] == "国发〔1980〕82号"
    assert first.values["body"].startswith("各省、市、自治区人民政府（革命委员会）")
    assert first.values["issuer"] == "国务院" and first.values["level"] == "国家"
    assert first.values["original_url"] == "http://www.gov.cn/zhengce/content/2018-04/17/content_5281662.htm"
    assert first.values["published_at"] == "1980-01-01T09:00:00+08:00"  # the address is of a later year
    by_row = {row.row: row.values for row in rows}
    # A reply cites the request it answers (国土资发〔2016〕93号): that is not its own number.
    assert by_row[4]["document_number"] == "国函〔2016〕178号"
    assert "国土资发〔2016〕93号" in by_row[4]["body"]
    # Spaces inside the number, or inside the title as the text writes it.
    assert by_row[14]["document_number"] == "国发〔2011〕12号"
    assert by_row[26]["document_number"] == "国发〔1981〕172号"
    assert by_row[26]["body"].startswith("各省、市、自治区人民政府")
    assert by_row[32]["document_number"] == "国办发〔2013〕93号"  # (煤矿瓦斯) in the title, （煤矿瓦斯） in the text
    # A decree carries no 文号 of the 〔年份〕 form, and an empty text none at all.
    assert by_row[57]["document_number"] is None and by_row[5]["document_number"] is None
    assert by_row[14]["published_at"] == "2011-05-18T09:00:00+08:00"  # the date in the address
    assert sum(1 for row in rows if row.values["document_number"]) == 96
    assert all(not row.problems for row in rows)


def test_only_a_number_opening_the_text_after_the_title_is_taken() -> None:
    text = "关于某事的批复 国函 〔2016〕 178 号 某部：你部《请示》（某发〔2015〕9号）收悉。"
    number, body = split_title_and_number("关于某事的批复", text)
    assert (number, body) == ("国函〔2016〕178号", "某部：你部《请示》（某发〔2015〕9号）收悉。")
    assert split_title_and_number("关于某事的批复", "某部：你部《请示》（某发〔2015〕9号）收悉。")[0] is None
    assert split_title_and_number("关于某事的批复", "另一个标题某发〔2015〕9号")[0] is None


# -- the CLI, on a database of its own -------------------------------------------------------------


@pytest.fixture
def cli_db(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    """A migrated schema prefix with a department KJT, and the environment of a `gongkai` child process."""
    from services.identity.accounts import create_department

    prefix = unique_prefix("i")
    overrides = {"DATABASE_URL": postgres_url, "DATABASE_SCHEMA_PREFIX": prefix}
    settings = load_settings(base_env(tmp_path, **overrides))
    migrate_all(settings)
    identity = open_service_database(settings, "identity")
    try:
        with identity.transaction() as session:
            create_department(session, "KJT", "科学技术厅", "bureau", None)
    finally:
        identity.dispose()
    yield settings, subprocess_env(tmp_path, **overrides)
    drop_schemas(postgres_url, prefix)


def gongkai(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def stored_policies(settings: Settings) -> list[Policy]:
    database = open_service_database(settings, "interpret")
    try:
        with database.transaction() as session:
            return list(session.scalars(select(Policy).order_by(Policy.id)))
    finally:
        database.dispose()


def test_the_govcn_file_imports_through_the_cli_once(cli_db: tuple[Settings, dict[str, str]], tmp_path: Path) -> None:
    settings, env = cli_db
    started = time.monotonic()
    first = gongkai(env, "interpret", "import", str(GOVCN), "--published", "--department", "KJT",
                    "--report", str(tmp_path / "report.csv"))
    took = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == (
        f"imported {GOVCN_DOCUMENTS}, skipped {GOVCN_ROWS - GOVCN_DOCUMENTS} (published in KJT)")
    print(f"\nCLI import of {GOVCN_ROWS} rows ({GOVCN_DOCUMENTS} policies) took {took:.1f}s")

    policies = stored_policies(settings)
    assert len(policies) == GOVCN_DOCUMENTS
    assert {policy.state for policy in policies} == {"published"}
    assert {policy.department for policy in policies} == {"KJT"}
    first_policy = policies[0]
    assert first_policy.title == "国务院批转地质部关于切实保障野外地质工作条件的报告"
    assert first_policy.document_number == "国发〔1980〕82号"
    assert first_policy.body.startswith("各省、市、自治区人民政府")
    assert first_policy.published_at is not None and first_policy.published_at.year == 1980
    assert first_policy.author_name == "system"
    assert sum(1 for policy in policies if policy.document_number) == 91  # 96 rows with one, 5 of them repeats
    decrees = [p for p in policies if p.title == "国务院关于修改《中华人民共和国对外合作开采陆上石油资源条例》的决定"]
    assert sorted(p.published_at.year for p in decrees if p.published_at) == [2007, 2011]

    with (tmp_path / "report.csv").open(encoding="utf-8-sig") as handle:
        report = list(csv.DictReader(handle))
    assert len(report) == GOVCN_ROWS
    repeated = [line for line in report if line["outcome"] == "skipped"]
    assert {line["row"] for line in repeated} == {"22", "98", "101", "102", "106", "107"}
    assert "第 21 行" in next(line["message"] for line in repeated if line["row"] == "22")

    again = gongkai(env, "interpret", "import", str(GOVCN), "--published", "--department", "KJT")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == f"imported 0, skipped {GOVCN_ROWS} (published in KJT)"
    assert len(stored_policies(settings)) == GOVCN_DOCUMENTS


def test_one_bad_row_and_the_cli_imports_nothing(cli_db: tuple[Settings, dict[str, str]], tmp_path: Path) -> None:
    settings, env = cli_db
    source = tmp_path / "policies.csv"
    source.write_text(BAD_CSV, encoding="utf-8-sig")  # with a byte-order mark, as Excel saves it
    report_file = tmp_path / "errors.csv"
    answer = gongkai(env, "interpret", "import", str(source), "--published", "--department", "KJT",
                     "--report", str(report_file))
    assert answer.returncode == 1
    lines = [line for line in answer.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, answer.stderr
    assert "3 of 5 rows have errors; nothing was imported" in lines[0]
    table = answer.stdout.splitlines()
    assert table[0].split() == ["row", "field", "problem"]
    for row, field in BAD_ROWS.items():
        assert any(line.split()[:2] == [row, field] for line in table[1:]), (row, field, answer.stdout)
    with report_file.open(encoding="utf-8-sig") as handle:
        reported = {(line["row"], line["field"]) for line in csv.DictReader(handle)}
    assert set(BAD_ROWS.items()) <= reported
    assert {row for row, _field in reported} == set(BAD_ROWS)
    assert stored_policies(settings) == []

    # A dry run of the good rows says what would happen, and writes nothing either.
    good = tmp_path / "good.json"
    good.write_text(json.dumps(good_rows(2), ensure_ascii=False), encoding="utf-8")
    dry = gongkai(env, "interpret", "import", str(good), "--dry-run", "--department", "KJT")
    assert dry.returncode == 0, dry.stderr
    assert "would import 2, skip 0" in dry.stdout
    assert stored_policies(settings) == []


def test_the_cli_says_in_one_line_what_is_wrong_with_the_file(
    cli_db: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    _settings, env = cli_db
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("title,issuer,level\n关于某事的通知,科学技术厅,本级\n".encode("gbk"))
    misspelt = tmp_path / "misspelt.csv"
    misspelt.write_text("title,issuer,level,documnet_number\n关于某事的通知,科学技术厅,本级,皖科政〔2017〕1号\n")
    cases = [
        (gbk, ["--department", "KJT"], "not UTF-8"),
        (misspelt, ["--department", "KJT"], "unknown columns documnet_number"),
        (misspelt, ["--department", "NOPE"], None),
    ]
    for path, options, expected in cases:
        answer = gongkai(env, "interpret", "import", str(path), *options)
        lines = [line for line in answer.stderr.splitlines() if line.strip()]
        assert answer.returncode == 1 and len(lines) == 1, answer.stderr
        assert expected is None or expected in lines[0], lines[0]
    help_text = gongkai(env, "interpret", "import", "--help").stdout
    assert "Runs as the system" in help_text and "--published / --draft" in help_text


# -- the workflow rules, in the caller's transaction ---------------------------------------------------


def test_duplicates_in_the_file_and_in_the_database(suite: dict[str, Flask]) -> None:
    rows = good_rows(3)
    clash = dict(rows[0], title="另一个标题的通知")  # the 文号 of row 1 with another title
    repeat = dict(rows[1])
    with get_database("interpret", suite["interpret"]).transaction() as session:
        report = import_policies(session, None, "KJT", rows_from_objects([*rows, clash, repeat]), published=False)
        assert [(e.row, e.field) for e in report.errors] == [(4, "document_number")]
        assert "第 1 行" in report.errors[0].message
        assert session.scalar(select(func.count()).select_from(Policy)) == 0

        report = import_policies(session, None, "KJT", rows_from_objects([*rows, repeat]), published=False)
        assert report.ok and (report.imported, report.skipped) == (3, 1)
        assert [o.outcome for o in report.outcomes] == ["imported", "imported", "imported", "skipped"]

        # Against the database: the same rows are skipped; a 文号 taken by another title is an error.
        report = import_policies(session, None, "KJT", rows_from_objects([*rows, clash]), published=False)
        assert [(e.row, e.field) for e in report.errors] == [(4, "document_number")]
        assert "policy" in report.errors[0].message
        report = import_policies(session, None, "KJT", rows_from_objects(rows), published=False)
        assert (report.imported, report.skipped) == (0, 3)
        assert session.scalar(select(func.count()).select_from(Policy)) == 3


def test_every_row_is_checked_before_anything_is_written(suite: dict[str, Flask]) -> None:
    future = "2999-01-01"
    bad = [
        {"title": "关于某事的通知", "issuer": "科学技术厅", "level": "本级", "published_at": future},
        {"title": "关于某事的通知二", "issuer": "科学技术厅", "level": "本级"},  # published, no date
        {"title": "关于某事的通知三", "issuer": "", "level": "本级", "published_at": "2018-01-01",
         "original_url": "javascript:alert(1)", "body": "<script>alert(1)</script>"},
        {"title": "关于某事的通知四", "issuer": "科学技术厅", "level": "本级", "published_at": "2018-13-01",
         "validity": "作废", "topic": 7, "documnet_number": "x"},
        {"title": "关于某事的通知五", "issuer": "科学技术厅", "level": "本级", "published_at": "2018-01-01",
         "written_on": "2018-02-01"},
        {"title": "关于某事的通知六", "issuer": "科学技术厅", "level": "本级", "published_at": "2018-01-01",
         "validity": "已修订"},
    ]
    with get_database("interpret", suite["interpret"]).transaction() as session:
        report = import_policies(session, None, "KJT", [*rows_from_objects(bad)], published=True)
    found = {(e.row, e.field) for e in report.errors}
    assert found == {
        (1, "published_at"), (2, "published_at"), (3, "issuer"), (3, "original_url"), (3, "body"),
        (4, "published_at"), (4, "validity"), (4, "topic"), (4, "documnet_number"), (5, "written_on"),
        (6, "validity"),
    }
    assert report.bad_rows == 6 and not report.outcomes


def test_a_dry_run_writes_nothing_and_plain_text_is_kept(suite: dict[str, Flask]) -> None:
    rows = good_rows(2)
    rows[0]["body"] = "研发费用 & 税收优惠"
    with get_database("interpret", suite["interpret"]).transaction() as session:
        report = import_policies(session, None, "KJT", rows_from_objects(rows), published=True, dry_run=True)
        assert report.ok and report.count("would_import") == 2
        assert session.scalar(select(func.count()).select_from(Policy)) == 0
        done: list[tuple[int, int]] = []
        report = import_policies(session, None, "KJT", rows_from_objects(rows), published=True,
                                 progress=lambda n, total: done.append((n, total)))
        assert done == [(1, 2), (2, 2)]
        policy = session.get(Policy, report.outcomes[0].policy_id)
        assert policy is not None and policy.body == "研发费用 &amp; 税收优惠" and policy.state == "published"
        assert policy.written_on is not None and policy.written_on.isoformat() == "2018-05-01"


# -- the API ---------------------------------------------------------------------------------------


def token(client: Client, username: str) -> dict[str, str]:
    answer = client.post("/api/auth/token", json={"username": username, "password": STAFF_PASSWORD})
    assert answer.status_code == 200, answer.get_json()
    return {"Authorization": f"Bearer {answer.get_json()['token']}"}


class ApiClient(Client):
    """An API client from an address of its own (the sign-in rate limit counts per address)."""

    address = "10.0.0.9"

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("environ_base", {"REMOTE_ADDR": self.address})
        return super().open(*args, **kwargs)


@pytest.fixture
def api(suite: dict[str, Flask], org: dict[str, Any]) -> Client:
    client = ApiClient(PathDispatcher(suite), use_cookies=False)
    client.address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.9"
    return client


def policy_count(suite: dict[str, Flask]) -> int:
    with get_database("interpret", suite["interpret"]).transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Policy)) or 0)


IMPORTS = "/api/interpret/manage/imports"


def test_the_api_refuses_a_file_with_bad_rows_and_writes_nothing(suite: dict[str, Flask], api: Client) -> None:
    editor = token(api, "editor_a")
    answer = api.post(IMPORTS, headers=editor, data={
        "department": "KJTA", "file": (io.BytesIO(BAD_CSV.encode()), "policies.csv"),
    })
    assert answer.status_code == 422, answer.get_json()
    body = answer.get_json()
    assert "3 of 5 rows have errors" in body["message"]
    assert set(body["errors"]["rows"]) == set(BAD_ROWS)
    for row, field in BAD_ROWS.items():
        assert field in body["errors"]["rows"][row]
    assert policy_count(suite) == 0


def test_the_api_imports_once_and_checks_who_asks(suite: dict[str, Flask], api: Client) -> None:
    editor = token(api, "editor_a")
    rows = good_rows(3)
    first = api.post(IMPORTS, headers=editor, json={"department": "KJTA", "rows": rows})
    assert first.status_code == 200, first.get_json()
    report = first.get_json()
    assert (report["imported"], report["skipped"]) == (3, 0)
    assert all(row["index_number"].startswith("KJTA/") for row in report["rows"])
    again = api.post(IMPORTS, headers=editor, json={"department": "KJTA", "rows": rows})
    assert (again.get_json()["imported"], again.get_json()["skipped"]) == (0, 3)
    with get_database("interpret", suite["interpret"]).transaction() as session:
        policies = list(session.scalars(select(Policy)))
    assert [(p.state, p.author_name, p.department) for p in policies] == [("draft", "editor_a", "KJTA")] * 3

    more = good_rows(2, prefix="关于权限测试的通知")
    for who, department, published, status in [
        ("reviewer_a", "KJTA", False, 403),  # not an editor
        ("disclosure_office_a", "KJTA", True, 403),  # publishes, but does not draft
        ("editor_a", "KJTB", False, 403),  # an editor, of another division
        ("editor_a", "KJTA", True, 403),  # published skips review: needs content.publish too
    ]:
        answer = api.post(IMPORTS, headers=token(api, who),
                          json={"department": department, "rows": more, "published": published})
        assert answer.status_code == status, (who, department, answer.get_json())
    assert api.post(IMPORTS, json={"department": "KJTA", "rows": more}).status_code == 401
    assert policy_count(suite) == 3


def test_the_api_checks_the_govcn_file_and_caps_the_rows(
    suite: dict[str, Flask], api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = token(api, "editor_b")
    dry = api.post(IMPORTS, headers=editor, data={
        "department": "KJTB", "dry_run": "true", "file": (GOVCN.open("rb"), "policies_govcn.csv"),
    })
    assert dry.status_code == 200, dry.get_json()
    assert (dry.get_json()["would_import"], dry.get_json()["skipped"]) == (GOVCN_DOCUMENTS, 6)
    assert policy_count(suite) == 0

    monkeypatch.setitem(suite["interpret"].config, "INTERPRET_IMPORT_MAX_ROWS", 2)
    too_many = api.post(IMPORTS, headers=editor, json={"department": "KJTB", "rows": good_rows(3)})
    assert too_many.status_code == 413
    assert "at most 2 rows" in too_many.get_json()["message"]
    for request, location in [
        ({"json": {"department": "KJTB"}}, "json"),
        ({"json": {"department": "KJTB", "rows": [], "publish": True}}, "json"),
        ({"data": {"department": "KJTB"}}, "files"),
        ({"data": {"department": "KJTB", "file": (io.BytesIO(b"[1"), "x.json")}}, "files"),
        ({"data": {"department": "KJTB", "file": (io.BytesIO(b"a"), "x.txt")}}, "files"),
    ]:
        answer = api.post(IMPORTS, headers=editor, **request)
        assert answer.status_code == 422, (request, answer.get_json())
        assert location in answer.get_json()["errors"], answer.get_json()
    assert policy_count(suite) == 0


def test_the_import_is_documented(suite: dict[str, Flask]) -> None:
    spec = Client(suite["interpret"]).get("/api/interpret/openapi.json").get_json()
    operation = spec["paths"][IMPORTS]["post"]
    assert set(operation["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"200", "403", "413", "422"} <= set(operation["responses"])


def test_row_input_is_what_the_cli_and_the_api_share() -> None:
    rows = rows_from_objects([{"title": " 关于某事的通知 ", "body": ""}, "not an object"])
    assert rows[0] == RowInput(1, {"title": "关于某事的通知", "body": None})
    assert rows[1].problems
