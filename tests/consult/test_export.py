"""Export of a period's consultations to Excel: the detail sheet (Beijing dates, working days, on
time or not), the 汇总 sheet per department, the department filter, no contact detail in any cell,
and the ``gongkai consult export`` command with its readable refusals.

Seed (Beijing times; the export is made "on" 2019-05-10; KJTA by import, KJTB by the public form):

* KJTA ``ontime``: received 2019-04-25, accepted the same day, due 05-06 (the May Day holiday
  05-01..05-04 and the make-up working days 04-28 and 05-05 counted), replied 05-06: on time,
  6 working days (04-26, 04-28, 04-29, 04-30, 05-05, 05-06).
* KJTA ``late`` (titled like a spreadsheet formula): received 04-01, due 04-10 (Qingming
  04-05), replied 04-30: late.
* KJTA ``boundary``: received 04-30 23:30 in Beijing (15:30 UTC): in April, not in May.
* KJTA ``may``: received 05-02.
* KJTB: submitted through the form on 04-29 by 张三丰 with phone and e-mail, a phone number in the
  title, never accepted: overdue on 05-10.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from openpyxl import load_workbook

from consult import workflow
from consult.export import (
    HEADERS,
    MAX_PERIOD_DAYS,
    SUMMARY_HEADERS,
    check_period,
    export_period,
    parse_day,
)
from consult.importing import import_messages, parse_messages
from services.db import ServiceDatabase, get_database
from services.workflow import ContentProblem

from support.env import base_env

BEIJING = timezone(timedelta(hours=8))
TODAY = date(2019, 5, 10)
NAME, PHONE, EMAIL, TITLE_PHONE = "张三丰", "13900001111", "zsf.export@example.com", "13700002222"
FORMULA_TITLE = "=HYPERLINK(\"http://example.invalid\",\"点此\") 关于公式的咨询"
HEADER = ["留言编号", "留言用户", "留言主题", "留言时间", "留言详情", "答复意见", "答复时间"]
ROWS = [
    ["1", "U1", "公交站台设置的咨询", "2019/4/25 9:32:09", "希望增设公交站台，方便出行。", "已转公交公司研究。",
     "2019/5/6 10:00:00"],
    ["2", "U2", FORMULA_TITLE, "2019/4/1 9:00:00", "请问这个公式是什么意思？", "已答复。", "2019/4/30 16:00:00"],
    ["3", "U3", "路灯维修的咨询", "2019/4/30 23:30:00", "路灯坏了很久没有修。", "已修复。", "2019/5/8 9:00:00"],
    ["4", "U4", "五月的咨询", "2019/5/2 9:00:00", "五一假期期间的咨询。", "已答复。", "2019/5/6 9:00:00"],
]


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buffer.getvalue()


@pytest.fixture
def consult_db(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> ServiceDatabase:
    database = get_database("consult", suite["consult"])
    monkeypatch.setattr(database, "publisher", None)
    settings = suite["consult"].extensions["gongkai.settings"]
    import_messages(database.transaction, replace(settings, consult_intake_department="KJTA"),
                    parse_messages(csv_text(ROWS)))
    with database.transaction() as session:
        workflow.submit_consultation(
            session, replace(settings, consult_intake_department="KJTB"),
            workflow.Submission(title=f"请回电 {TITLE_PHONE} 咨询社保", question="请问社保卡如何补办？需要什么材料？",
                                name=NAME, phone=PHONE, email=EMAIL, consent_to_publish=False),
            now=datetime(2019, 4, 29, 10, tzinfo=BEIJING),
        )
    return database


def export(database: ServiceDatabase, start: date, end: date, departments: set[str] | None = None) -> Any:
    with database.transaction() as session:
        content = export_period(session, workflow.consult_calendar(session), start, end, departments, today=TODAY)
    return load_workbook(io.BytesIO(content))


def values(sheet: Any) -> list[list[Any]]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_the_detail_sheet_has_one_row_per_consultation_with_its_dates(consult_db: ServiceDatabase) -> None:
    book = export(consult_db, date(2019, 4, 1), date(2019, 4, 30))
    assert book.sheetnames == ["咨询明细", "汇总"]
    sheet = book["咨询明细"]
    rows = values(sheet)
    assert tuple(rows[0]) == HEADERS == (
        "受理编号", "标题", "类别", "部门", "状态", "收到日期", "受理日期", "答复期限", "答复日期", "用时（工作日）",
        "是否按期", "评价",
    )
    assert [row[0] for row in rows[1:]] == ["ZX20190401-0001", "ZX20190425-0001", "ZX20190429-0001",
                                            "ZX20190430-0001"]
    assert rows[2] == ["ZX20190425-0001", "公交站台设置的咨询", None, "KJTA", "已公开", datetime(2019, 4, 25),
                       datetime(2019, 4, 25), datetime(2019, 5, 6), datetime(2019, 5, 6), 6, "是", None]
    late, submitted, boundary = rows[1], rows[3], rows[4]
    assert (late[1], late[7], late[8], late[10]) == (FORMULA_TITLE, datetime(2019, 4, 10), datetime(2019, 4, 30),
                                                     "否")
    assert sheet["B2"].data_type == "s"  # text, not a formula
    assert submitted[3:6] == ["KJTB", "已提交", datetime(2019, 4, 29)]
    assert submitted[6:10] == [None, None, None, None] and submitted[10] == "逾期未答复"
    assert (boundary[5], boundary[7], boundary[10]) == (datetime(2019, 4, 30), datetime(2019, 5, 10), "是")
    # Real date cells, a frozen header row, readable widths.
    assert sheet["F2"].is_date and sheet["F2"].number_format == "yyyy-mm-dd"
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["B"].width >= 40
    assert sheet["A1"].font.b


def test_the_summary_counts_per_department(consult_db: ServiceDatabase) -> None:
    rows = values(export(consult_db, date(2019, 4, 1), date(2019, 4, 30))["汇总"])
    assert tuple(rows[0]) == SUMMARY_HEADERS == ("部门", "收到", "已答复", "按期答复", "按期答复率", "逾期未答复")
    assert rows[1] == ["KJTA", 3, 3, 2, pytest.approx(2 / 3), 0]
    assert rows[2] == ["KJTB", 1, 0, 0, None, 1]
    assert rows[3] == ["合计", 4, 3, 2, pytest.approx(2 / 3), 1]
    assert "2019-04-01 至 2019-04-30" in str(rows[5][0])


def test_no_contact_detail_reaches_any_cell(consult_db: ServiceDatabase) -> None:
    book = export(consult_db, date(2019, 4, 1), date(2019, 4, 30))
    cells = [str(value) for name in book.sheetnames for row in values(book[name]) for value in row]
    assert not [cell for cell in cells if NAME in cell or PHONE in cell or EMAIL in cell or TITLE_PHONE in cell]
    assert "请回电 ［已隐去：电话号码］ 咨询社保" in cells  # the title as the public board would show it


def test_the_period_is_by_beijing_date_and_the_departments_filter(consult_db: ServiceDatabase) -> None:
    may = values(export(consult_db, date(2019, 5, 1), date(2019, 5, 31))["咨询明细"])
    assert [row[0] for row in may[1:]] == ["ZX20190502-0001"]  # 04-30 23:30 in Beijing stays in April
    only_b = export(consult_db, date(2019, 4, 1), date(2019, 4, 30), {"KJTB"})
    assert [row[3] for row in values(only_b["咨询明细"])[1:]] == ["KJTB"]
    assert [row[0] for row in values(only_b["汇总"])[1:3]] == ["KJTB", "合计"]
    nothing = export(consult_db, date(2019, 4, 1), date(2019, 4, 30), set())
    assert values(nothing["咨询明细"]) == [list(HEADERS)]
    assert values(nothing["汇总"])[1] == ["合计", 0, 0, 0, None, 0]


def test_the_period_is_checked() -> None:
    assert parse_day(" 2019-04-01 ", "from") == date(2019, 4, 1)
    for bad in ("2019/04/01", "2019-02-30", "", None):
        with pytest.raises(ContentProblem) as caught:
            parse_day(bad, "from")
        assert list(caught.value.errors) == ["from"]
    check_period(date(2020, 1, 1), date(2020, 12, 31))  # 366 days of a leap year
    check_period(date(2019, 4, 1), date(2019, 4, 1))
    with pytest.raises(ContentProblem, match="早于"):
        check_period(date(2019, 4, 2), date(2019, 4, 1))
    with pytest.raises(ContentProblem, match=str(MAX_PERIOD_DAYS)):
        check_period(date(2019, 1, 1), date(2020, 1, 2))


# -- the command -----------------------------------------------------------------------------------


def invoke(tmp_path: Path, *args: str) -> Any:
    from services.cli import main

    return CliRunner().invoke(main, list(args), env=base_env(tmp_path / "var"))


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "2019-4-1", "--to", "2019-04-30"], "--from: 日期格式应为 YYYY-MM-DD"),
    (["--from", "2019-04-30", "--to", "2019-04-01"], "--to: 结束日期早于开始日期"),
    (["--from", "2019-01-01", "--to", "2020-06-30"], "--to: 导出期间不能超过 366 天"),
])
def test_the_command_refuses_a_bad_period_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out.xlsx"
    result = invoke(tmp_path, "consult", "export", *args, "--out", str(out))
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_the_command_writes_the_workbook(tmp_path: Path) -> None:
    source = tmp_path / "messages.csv"
    source.write_text(csv_text(ROWS), encoding="utf-8")
    assert invoke(tmp_path, "consult", "import", str(source)).exit_code == 0
    out = tmp_path / "april.xlsx"
    result = invoke(tmp_path, "consult", "export", "--from", "2019-04-01", "--to", "2019-04-30", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    book = load_workbook(out)
    assert [row[0] for row in values(book["咨询明细"])[1:]] == ["ZX20190401-0001", "ZX20190425-0001",
                                                              "ZX20190430-0001"]
    assert values(book["汇总"])[1][:2] == ["ORG", 3]  # CONSULT_INTAKE_DEPARTMENT's default
    wrong = invoke(tmp_path, "consult", "export", "--from", "2019-04-01", "--to", "2019-04-30",
                   "--out", str(tmp_path / "april.csv"))
    assert wrong.exit_code != 0 and "should end in .xlsx" in wrong.output
