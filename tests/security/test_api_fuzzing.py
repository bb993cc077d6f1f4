"""Every service's OpenAPI document, fuzzed with schemathesis as the public and as a staff member of each role.

Each service's document is loaded from the in-process suite (the path dispatcher nginx mirrors) and every
operation in it is called with generated requests, valid ones (positive) and invalid ones (negative), as an
anonymous script and with the bearer token of each role of the test organisation. Every answer must pass:

* ``not_a_server_error``: no 5xx, whatever is sent (except one the operation documents by number: classify's
  503 while no router model is installed);
* ``status_code_conformance`` and ``content_type_conformance``: the status and media type are documented;
* ``response_schema_conformance``: the body matches the schema the document gives for that status;
* ``negative_data_rejection``: a request that breaks the documented schema is refused with a 4xx (no
  validation bypass).

Generated ids are mostly unknown ones (404), so about half the positive requests aim a path id at a record of
the seeded kind instead (a policy, a consultation, a press response... of division KJTA), reaching the code
behind the lookup. Then a stateful run follows the links the documents give (a created record's id into the
operations that take it), so that create → read → change → submit sequences run too.

The run is bounded (a few examples per operation, derandomized so CI repeats it) and each role runs in one
test, on the suite fixture that rolls every database back afterwards. Counts are printed per service, e.g.
``[fuzz] interpret as editor_a: 35 operations, 560 examples, 64 stateful steps (20 along a link) in 9
sequences, 2702 checks, 0 failures (200×54, 201×9, ...)``. A failure names the operation, the check and a
curl line that reproduces it. The last tests pin what the fuzzing found.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from services.registry import SPECS

ROLES = ("public", "admin1", "editor_a", "reviewer_a", "dispatcher_a", "disclosure_office_a", "press_officer_a",
         "auditor_a")
"""Who calls: nobody signed in, then a staff member of each role (the bureau admin and division A's others)."""

OPENAPI_PATHS = {service: f"/api/{service}/openapi.json" for service in SPECS}
"""Every service's document (identity's covers ``/api/auth`` and ``/api/identity``)."""

POSITIVE_EXAMPLES = 10
NEGATIVE_EXAMPLES = 6
"""Examples per operation and mode: small enough for CI (eight roles, about a hundred operations)."""
STATEFUL_SCENARIOS = 6
STATEFUL_STEPS = 8
"""Sequences along the inferred links per service, and the most calls in one."""



def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """``not_a_server_error``, except for a 5xx the operation documents by its own number: classify's 503
    while no router model is installed is the documented answer, not a crash."""
    if str(response.status_code) in case.operation.definition.raw.get("responses", {}):
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = (no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection)

SEEDED_IDS: dict[str, tuple[str, ...]] = {
    "policy_id": ("policy_published", "policy_draft", "policy_submitted"),
    "interpretation_id": ("interpretation_published", "interpretation_draft", "interpretation_submitted"),
    "attachment_id": ("staff_attachment", "public_attachment"),
    "consultation_id": ("consultation",),
    "extension_id": ("extension",),
    "answer_id": ("answer",),
    "tracking_number": ("tracking_number",),
    "response_id": ("press_response_draft", "press_response"),
    "rule_id": ("press_rule",),
    "topic_id": ("press_topic",),
}
"""Path parameters that name a record, and the seeded records (``Site.seed``) a positive request may aim at."""

DEPARTMENT_CODES = ("KJTA", "KJTB", "KJT")


@dataclass
class Tally:
    operations: int = 0
    examples: int = 0
    scenarios: int = 0
    steps: int = 0
    linked_steps: int = 0
    """Stateful steps whose input came from an earlier answer through a link."""
    checks: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    """The first example of each distinct (operation, failure title), with how to reproduce it."""


def _aimed_at_seeded(case: Any, seeded: dict[str, Any], choice: int) -> Any:
    """The case with its record ids replaced by seeded ones (``choice`` picks among the candidates)."""
    for name in list(case.path_parameters or {}):
        value = case.path_parameters[name]
        if name in SEEDED_IDS and isinstance(value, int | str):
            candidates = SEEDED_IDS[name]
            case.path_parameters[name] = seeded[candidates[choice % len(candidates)]]
        elif name == "code":
            case.path_parameters[name] = DEPARTMENT_CODES[choice % len(DEPARTMENT_CODES)]
        elif name == "doc_id":
            case.path_parameters[name] = f"policy-{seeded['policy_published']}"
    return case


def _strategy(operation: Any, mode: GenerationMode, seeded: dict[str, Any]) -> Any:
    generated = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.NEGATIVE or not operation.path_parameters:
        return generated
    # Half the positive requests go to records that exist, the rest to whatever was generated.
    return st.tuples(generated, st.none() | st.integers(0, 5)).map(
        lambda pair: pair[0] if pair[1] is None else _aimed_at_seeded(pair[0], seeded, pair[1]))


def _record(tally: Tally, operation: Any, case: Any, failure: BaseException, headers: dict[str, str]) -> None:
    failures = getattr(failure, "exceptions", None) or [failure]
    for single in failures:
        title = getattr(single, "title", type(single).__name__)
        key = (operation.label, str(title))
        if key not in tally.failures:
            message = getattr(single, "message", str(single))
            tally.failures[key] = f"{message}\n    {case.as_curl_command(headers=headers)}"


def _fuzz_operation(site: Any, operation: Any, mode: GenerationMode, examples: int, headers: dict[str, str],
                    seeded: dict[str, Any], tally: Tally) -> None:
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=_strategy(operation, mode, seeded))
    def run(case: Any) -> None:
        tally.examples += 1
        response = case.call(headers=headers, environ_base={"REMOTE_ADDR": site.address()})
        _validate(case, response, headers, tally)

    try:
        run()
    except Unsatisfiable:
        # An operation that takes nothing (no parameter, no body) has no invalid request to make.
        if mode is not GenerationMode.NEGATIVE:
            raise


def _validate(case: Any, response: Any, headers: dict[str, str], tally: Tally) -> None:
    tally.statuses[response.status_code] += 1
    negative = case.meta is not None and case.meta.generation.mode is GenerationMode.NEGATIVE
    tally.checks += len(CHECKS) if negative else len(CHECKS) - 1
    try:
        case.validate_response(response, checks=list(CHECKS), headers=headers)
    except (AssertionError, BaseExceptionGroup) as failure:  # a Failure or a group of them
        _record(tally, case.operation, case, failure, headers)


def _walk_links(site: Any, schema: Any, headers: dict[str, str], tally: Tally) -> None:
    """Sequences of calls along the documents' links (``services.schemas.links_from``: a created policy,
    interpretation, alert rule or consultation into the operations that take its id), each answer checked
    like the single calls. Only the documented links: the ones schemathesis can also infer from names made
    every transition endpoint a starting point with a random id (a 404), and no sequence got past it."""
    schema.config.phases.stateful.inference.algorithms = []
    workflow = schema.as_state_machine()
    if not workflow.root_rules:
        return  # no links: nothing creates what another operation takes

    class Walk(workflow):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            tally.scenarios += 1

        def step(self, input: Any) -> Any:
            if input.transition is not None and input.is_applied:
                tally.linked_steps += 1
            return super().step(input)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers, "environ_base": {"REMOTE_ADDR": site.address()}}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            tally.steps += 1
            _validate(case, response, headers, tally)

    Walk.run(settings=settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS,
                               derandomize=True, deadline=None, database=None, phases=[Phase.generate],
                               suppress_health_check=list(HealthCheck)))


def _fuzz_service(site: Any, service: str, role: str, seeded: dict[str, Any]) -> Tally:
    schema = schemathesis.openapi.from_wsgi(OPENAPI_PATHS[service], site.dispatcher)
    headers = {} if role == "public" else {"Authorization": f"Bearer {site.token(role)}"}
    tally = Tally()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"{service}: an operation its document does not describe: {result.err()}"
        operation = result.ok()
        tally.operations += 1
        _fuzz_operation(site, operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES, headers, seeded, tally)
        _fuzz_operation(site, operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, headers, seeded, tally)
    _walk_links(site, schema, headers, tally)
    return tally


@pytest.mark.parametrize("role", ROLES)
def test_every_api_holds_against_generated_requests(site: Any, role: str, capsys: pytest.CaptureFixture[str]) -> None:
    seeded = site.seed()
    started = time.monotonic()
    tallies = {service: _fuzz_service(site, service, role, seeded) for service in OPENAPI_PATHS}
    with capsys.disabled():
        for service, tally in tallies.items():
            statuses = ", ".join(f"{code}×{count}" for code, count in sorted(tally.statuses.items()))
            print(f"\n[fuzz] {service} as {role}: {tally.operations} operations, {tally.examples} examples, "
                  f"{tally.steps} stateful steps ({tally.linked_steps} along a link) in {tally.scenarios} sequences, "
                  f"{tally.checks} checks, "
                  f"{len(tally.failures)} failures ({statuses})", end="")
        print(f"\n[fuzz] {role}: {time.monotonic() - started:.0f} s")
    failures = {key: text for tally in tallies.values() for key, text in tally.failures.items()}
    grouped: dict[str, list[str]] = defaultdict(list)
    for (operation, title), text in failures.items():
        grouped[operation].append(f"  {title}: {text}")
    assert not failures, "\n".join(f"{operation}\n" + "\n".join(lines) for operation, lines in grouped.items())


# -- what the fuzzing found, pinned ---------------------------------------------------------------------


def test_a_page_past_the_index_window_is_refused(site: Any) -> None:
    """The public lists read from the index, which serves only its first 10,000 matches: page 365 of 28
    answered 500; now 422 naming ``page``."""
    for path in ("/api/interpret/policies", "/api/consult/answers"):
        answer = site.api(None, "GET", f"{path}?page=365&per_page=28")
        assert answer.status_code == 422, (path, answer.get_data(as_text=True))
        assert "page" in answer.get_json()["errors"]["query"]
        assert site.api(None, "GET", f"{path}?page=200&per_page=50").status_code == 200


def test_an_id_past_the_database_integer_is_no_record(site: Any) -> None:
    """PostgreSQL refused to compare 69096270031470728 with an INTEGER id (a 500): in a URL it now names no
    record (404), in a body it is refused (422), and the OpenAPI documents give the bound."""
    seeded = site.seed()
    huge = 2**31
    for path in (f"/api/interpret/manage/interpretations/{huge}", f"/api/consult/manage/consultations/{huge}",
                 f"/api/press/manage/responses/{huge}"):
        assert site.api("editor_a", "GET", path).status_code == 404, path
    link = site.api("editor_a", "POST", f"/api/interpret/manage/interpretations/{seeded['interpretation_draft']}"
                    "/policies", json={"policy_id": huge})
    assert link.status_code == 422 and "policy_id" in link.get_json()["errors"]["json"], link.get_data(as_text=True)
    document = site.api(None, "GET", "/api/interpret/openapi.json").get_json()
    parameter = document["paths"]["/api/interpret/manage/policies/{policy_id}"]["parameters"][0]
    assert parameter["schema"]["maximum"] == huge - 1


def test_a_month_without_a_year_is_refused(site: Any) -> None:
    """``month=0000-01`` matched the documented pattern and failed in the date lookup (a 500): now 422."""
    answer = site.api(None, "GET", "/api/consult/answers?month=0000-01")
    assert answer.status_code == 422 and "month" in answer.get_json()["errors"]["query"]


def test_empty_search_parameters_are_documented_as_not_given(site: Any) -> None:
    """The search API reads ``lang=`` (an empty form field) as not given; its document now says so
    (``allowEmptyValue``) instead of an enum that ``lang=`` broke."""
    assert site.api(None, "GET", "/api/search?q=通知&lang=&type=").status_code == 200
    document = site.api(None, "GET", "/api/search/openapi.json").get_json()
    parameters = {p["name"]: p for p in document["paths"]["/api/search"]["get"]["parameters"]}
    assert parameters["lang"]["allowEmptyValue"] is True
