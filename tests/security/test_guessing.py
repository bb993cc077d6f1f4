"""Guessing tracking numbers and query codes.

Tracking numbers are predictable (``ZX<day>-<serial>``); the query code is what protects a case. A wrong
code for a real number and any code for a number that does not exist must answer alike (the same status
and the same body), through the API and the 咨询查询 page, so that guessing learns nothing, not even
which numbers exist. Repeated guesses from one address are stopped with 429 and a Chinese message, while
the asker, from another address, still gets in with the right code.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest


@pytest.fixture
def case(site: Any) -> dict[str, str]:
    receipt = site.api(None, "POST", "/api/consult/consultations", json={
        "title": "查询码安全测试", "question": f"请问如何办理？{uuid.uuid4().hex[:6]}", "name": "王五",
        "phone": f"139{uuid.uuid4().int % 10**8:08d}", "consent_to_publish": False})
    assert receipt.status_code == 201, receipt.get_data(as_text=True)
    body: dict[str, str] = receipt.get_json()
    return body


def _missing_like(number: str) -> str:
    """A number of the same shape that no case has."""
    day, serial = number.rsplit("-", 1)
    return f"{day}-{(int(serial) + 5000) % 10000:04d}"


def _normalised(page: str, number: str) -> str:
    """A tracking page without what may differ by design: the number typed, echoed back into the form, and
    the CSRF token (signed with the time of each answer)."""
    return re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', page.replace(number, "<number>"))


def _wrong_code(code: str) -> str:
    return "".join("A" if character != "A" else "B" for character in code)


def test_a_wrong_code_and_a_missing_number_answer_alike(site: Any, case: dict[str, str]) -> None:
    number, code = case["tracking_number"], case["query_code"]
    missing = _missing_like(number)
    address = site.address()
    checks = 0
    # The API: the same status and the same JSON body.
    for guess in (_wrong_code(code), "00000000", code.lower() + "X", "' OR 1=1--"):
        real = site.api(None, "GET", f"/api/consult/consultations/{number}", query_string={"code": guess},
                        address=address)
        absent = site.api(None, "GET", f"/api/consult/consultations/{missing}", query_string={"code": guess},
                          address=address)
        nonsense = site.api(None, "GET", "/api/consult/consultations/NOT-A-NUMBER", query_string={"code": guess},
                            address=address)
        assert real.status_code == absent.status_code == nonsense.status_code == 422
        assert real.get_json() == absent.get_json() == nonsense.get_json()
        assert real.get_json()["errors"] == {"query": {"code": ["受理编号或查询码不正确"]}}
        for action, body in (("rating", {"rating": "satisfied"}), ("reopen", {}), ("information", {"text": "补充"})):
            on_real = site.api(None, "POST", f"/api/consult/consultations/{number}/{action}",
                               json={"code": guess, **body}, address=site.address())
            on_absent = site.api(None, "POST", f"/api/consult/consultations/{missing}/{action}",
                                 json={"code": guess, **body}, address=site.address())
            assert on_real.status_code == on_absent.status_code == 422, action
            assert on_real.get_json() == on_absent.get_json(), action
            checks += 1
        checks += 3
    # The page: the same status and the same page but for the number echoed back into the form.
    browser = site.browser()
    token = browser.csrf("/consult/track")
    for guess in (_wrong_code(code), "00000000"):
        pages = []
        for tried in (number, missing):
            answer = browser.open("/consult/track", "POST", data={"csrf_token": token, "tracking_number": tried,
                                                                  "code": guess})
            assert answer.status_code == 422
            assert "受理编号或查询码不正确" in answer.get_data(as_text=True)
            pages.append(_normalised(answer.get_data(as_text=True), tried))
            checks += 1
        assert pages[0] == pages[1], "the tracking page tells a real number from a missing one"
        for action in ("rate", "reopen", "info"):
            forms = [browser.open(f"/consult/track/{action}", "POST", data={
                "csrf_token": token, "tracking_number": tried, "code": guess, "rating": "satisfied", "info": "补充"})
                for tried in (number, missing)]
            assert forms[0].status_code == forms[1].status_code == 422
            assert (_normalised(forms[0].get_data(as_text=True), number)
                    == _normalised(forms[1].get_data(as_text=True), missing))
            checks += 1
    # The right code opens it (so the comparisons above were not two refusals of everything).
    opened = site.api(None, "GET", f"/api/consult/consultations/{number}", query_string={"code": code})
    assert opened.status_code == 200 and opened.get_json()["tracking_number"] == number
    print(f"\n[attack] guessing (oracle): {checks} wrong-code / missing-number pairs compared")


def test_repeated_guesses_are_stopped_per_address(site: Any, case: dict[str, str]) -> None:
    number, code = case["tracking_number"], case["query_code"]
    settings = site.suite["consult"].extensions["gongkai.settings"]
    attacker = site.address()
    answers = []
    for attempt in range(200):
        answer = site.api(None, "GET", f"/api/consult/consultations/{_missing_like(number)[:-4]}{attempt:04d}",
                          query_string={"code": f"GUESS{attempt:03d}"}, address=attacker)
        answers.append(answer.status_code)
        if answer.status_code == 429:
            break
    assert answers[-1] == 429, f"200 guesses from one address were never stopped ({settings.consult_track_rate_limit})"
    assert set(answers[:-1]) == {422}
    stopped = site.api(None, "GET", f"/api/consult/consultations/{number}", query_string={"code": code},
                       address=attacker)
    assert stopped.status_code == 429, "the right code must not get through a limited address either"
    assert stopped.mimetype == "application/json" and "请求过于频繁" in stopped.get_json()["message"]
    # The asker, from another address, still gets in.
    asker = site.api(None, "GET", f"/api/consult/consultations/{number}", query_string={"code": code},
                     address=site.address())
    assert asker.status_code == 200 and asker.get_json()["tracking_number"] == number

    # The page: guessing through the form is stopped too, with a page in Chinese.
    browser = site.browser()  # one address, one session: a script guessing through the form
    token = browser.csrf("/consult/track")
    pages = []
    for attempt in range(60):
        answer = browser.open("/consult/track", "POST", data={
            "csrf_token": token, "tracking_number": number, "code": f"GUESS{attempt:03d}"})
        pages.append(answer.status_code)
        if answer.status_code == 429:
            break
    assert pages[-1] == 429 and set(pages[:-1]) == {422}, pages
    assert answer.mimetype == "text/html" and "请求过于频繁" in answer.get_data(as_text=True)
    assert answer.headers.get("Content-Security-Policy")
    other = site.browser()
    opened = other.open("/consult/track", "POST", data={"csrf_token": other.csrf("/consult/track"),
                                                        "tracking_number": number, "code": code})
    assert opened.status_code == 200 and number in opened.get_data(as_text=True)
    # And through the asker's actions (rating) in the API.
    rated = []
    for attempt in range(60):
        answer = site.api(None, "POST", f"/api/consult/consultations/{number}/rating",
                          json={"code": f"GUESS{attempt:03d}", "rating": "satisfied"}, address=attacker)
        rated.append(answer.status_code)
        if answer.status_code == 429:
            break
    assert rated[-1] == 429, rated
    print(f"\n[attack] guessing (rate limit): API stopped after {len(answers) - 1} guesses, the page after "
          f"{len(pages) - 1}, the rating API after {len(rated) - 1}; the asker elsewhere still gets in")
    assert re.fullmatch(r"[A-Z2-9]{8}", code)
