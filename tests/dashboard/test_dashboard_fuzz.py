"""The API fuzzed against its own OpenAPI document (schemathesis): a real dashboard process,
every operation, valid and invalid requests; no answer may be a server error, and every
answer must match the document (status, content type, schema)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the test extra brings schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.specs.openapi import checks  # noqa: E402
from servers import dashboard, drop_prefix  # noqa: E402

from chancy import Chancy, Job, Queue  # noqa: E402
from chancy.plugins import default_plugins  # noqa: E402
from chancy.plugins.cron import Cron  # noqa: E402
from chancy.plugins.metrics import Metrics  # noqa: E402

TOKEN = "fuzz-token-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def served(dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prefix = f"f{secrets.token_hex(4)}_"
    app = Chancy(dsn, prefix=prefix, plugins=[*default_plugins(), Metrics(), Cron()])
    with app:
        app.sync_migrate()
        app.sync_declare(Queue("mail"))
        for n in range(5):
            app.sync_push(Job(func="dashjobs.add", queue="mail", kwargs={"a": n, "b": 1}))
    folder = tmp_path_factory.mktemp("fuzz")
    token_file = folder / "token"
    token_file.write_text(TOKEN)
    try:
        with dashboard(dsn, prefix, token_file, log=folder / "dashboard.log") as url:
            yield url
    finally:
        drop_prefix(dsn, prefix)


def operations(url: str) -> list:  # type: ignore[type-arg]
    loaded = schemathesis.openapi.from_url(url + "/api/v1/openapi.json")
    return [result.ok() for result in loaded.get_all_operations()]


def excluded(method: str, path: str) -> list:  # type: ignore[type-arg]
    # A queue's tags are regular expressions, which a JSON Schema cannot describe: a string
    # the document allows may still be refused (400, saying why).
    if (method.upper(), path) == ("PUT", "/queues/{name}"):
        return [checks.positive_data_acceptance]
    return []


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_api_matches_its_openapi_document(served: str, mode: str) -> None:
    """Each operation, `max_examples` requests (valid ones, or ones the document rules out:
    those must be answered 4xx): schemathesis' checks (no 5xx, documented status codes and
    content types, answers matching their schemas, invalid data rejected)."""
    found = operations(served)
    assert len(found) >= 20
    generation = schemathesis.GenerationMode(mode)
    failures = []
    for operation in found:

        @given(case=operation.as_strategy(generation_mode=generation))
        @settings(
            max_examples=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(
                base_url=served + "/api/v1",
                headers={"Authorization": f"Bearer {TOKEN}"},
                excluded_checks=excluded(case.operation.method, case.operation.path),
            )

        try:
            run()
        except Unsatisfiable:  # nothing invalid to send (an operation without parameters)
            assert mode == "negative", operation.path
        except Exception as exc:  # gather them all: one report names every failing operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_the_fuzzed_server_still_answers(served: str, tmp_path: Path) -> None:
    import urllib.request

    with urllib.request.urlopen(served + "/api/v1/health", timeout=10) as answer:
        assert answer.status == 200
