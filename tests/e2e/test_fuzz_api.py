"""Schemathesis against the live service: every operation of its OpenAPI schema, fuzzed.

A real ``gentune serve --no-worker`` runs on a fresh database without tokens, so every change
is reachable. Its ``/openapi.json`` is loaded as served, and each operation gets cases that fit
the schema (its examples mixed in) and cases that break it. No response may be a 5xx, and each
must be what the schema documents: status code, content type, headers and body; invalid input
must be refused. Then a state machine follows the schema's links from submitted studies (read
one, its trials and views, cancel it, read it again, cancel it again) in bounded sequences.
Every failure is a bug of the service or of its schema. The cases tried are printed at the end.

Hypothesis is driven here rather than through ``schemathesis.pytest.from_fixture``, whose
runner reads pytest's ``Node._nodeid``, gone in pytest 9.2.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from tests.support.databases import new_database_url
from tests.support.servers import Service, free_port, service_env, start, stop

pytestmark = [pytest.mark.slow, pytest.mark.one_database]

CASES_PER_MODE = 100
"""Cases per operation that fit its schema, and as many that do not."""
STATEFUL_SCENARIOS = 150
STATEFUL_MAX_STEPS = 8
SEED = 20261124


def created_study_is_readable(ctx: Any, response: schemathesis.Response, case: Case) -> None:
    """ensure_resource_availability, but for a new study's best trial: there is none until a
    trial completes, and GET /studies/{id}/best answers 404 until then (as documented)."""
    if not case.operation.path.endswith("/best"):
        ensure_resource_availability(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    ignored_auth,
]
"""Every check schemathesis has but positive_data_acceptance: a definition that fits the
schema may still be refused by its trainer (unknown params, metrics it does not report)."""
STATEFUL_CHECKS = [*CHECKS, created_study_is_readable, use_after_free]
QUIET = settings(
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failing request is printed
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

tally: Counter[str] = Counter()


@pytest.fixture(scope="module")
def live_service(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("fuzz")
    database_url, cleanup = new_database_url(home)
    env = service_env(database_url, home / "artifacts")
    for name in ("GENTUNE_API_TOKEN", "GENTUNE_API_TOKENS_FILE", "GENTUNE_PROTECT_READS"):
        env.pop(name, None)
    port = free_port()
    log_path = home / "api.log"
    process = start(["serve", "--port", str(port), "--no-worker"], env, log_path)
    service = Service(f"http://127.0.0.1:{port}", database_url, home / "artifacts", env, log_path)

    started = time.monotonic()
    try:
        service.wait_until_up()
        yield service
    finally:
        stop(process)
        cleanup()  # type: ignore[operator]
        summary = (
            f"schemathesis: {tally['cases']} cases on {tally['operations']} operations and "
            f"{tally['steps']} steps in {tally['scenarios']} stateful scenarios, "
            f"{tally['failing']} failing, in {time.monotonic() - started:.0f} s"
        )
        with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print(f"\n{summary}")


@pytest.fixture(scope="module")
def api_schema(live_service: Service) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_service.url}/openapi.json")


def test_every_operation_answers_as_documented(api_schema: schemathesis.BaseSchema) -> None:
    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        tally["operations"] += 1
        for mode in GenerationMode:
            if mode.is_negative and not _has_inputs(operation):
                continue  # nothing to break

            @settings(QUIET, max_examples=CASES_PER_MODE, derandomize=True)
            @given(case=operation.as_strategy(generation_mode=mode))
            def answers_as_documented(case: Case) -> None:
                tally["cases"] += 1
                case.call_and_validate(checks=CHECKS)

            try:
                answers_as_documented()
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                tally["failing"] += 1
                failures.append(f"{operation.label} ({mode.value} cases): {exc}")
    assert not failures, "\n\n".join(failures)


def _has_inputs(operation: schemathesis.APIOperation) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


def test_study_lifecycle_sequences(api_schema: schemathesis.BaseSchema) -> None:
    """Submit, read, list trials, draw views, cancel, read again, along the schema's links."""
    failures: list[str] = []

    class CountedWorkflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            tally["scenarios"] += 1

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            tally["steps"] += 1
            try:
                case.validate_response(
                    response,
                    checks=STATEFUL_CHECKS,
                    transport_kwargs=kwargs or None,
                    recorder=self.recorder,
                )
            except BaseExceptionGroup as exc:  # schemathesis' FailureGroup
                tally["failing"] += 1
                failures.append(f"{case.operation.label}: {exc}")
                raise

    # Each step's draws depend on what the service answered before, so Hypothesis may find a
    # scenario it has seen begin differently and stop the run as "flaky" (Schemathesis's own
    # runner carries on too): start another, with the next seed, until the scenarios are run.
    for round_number in range(STATEFUL_SCENARIOS):
        if tally["scenarios"] >= STATEFUL_SCENARIOS or failures:
            break
        machine = hypothesis.seed(SEED + round_number)(CountedWorkflow)
        try:
            machine.run(
                settings=settings(
                    QUIET,
                    max_examples=STATEFUL_SCENARIOS - tally["scenarios"],
                    stateful_step_count=STATEFUL_MAX_STEPS,
                )
            )
        except Flaky:
            continue
    assert not failures, "\n\n".join(failures)
