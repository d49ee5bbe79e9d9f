"""Property-based fuzzing of every REST operation from the OpenAPI schema: never a 5xx, errors always JSON.

Runs against a live server over a private copy of the seed index (the fuzzer PUTs and DELETEs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from service.api.app import create_app
from service.engine import Engine
from tests.live_server import LiveServer, private_index

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def fuzz_url(tmp_path_factory: pytest.TempPathFactory, seed_index: Path) -> Iterator[str]:
    s = private_index(seed_index, tmp_path_factory.mktemp("fuzz") / "copy")
    s = s.model_copy(update={"max_body_bytes": 1_000_000})
    engine = Engine(s)
    engine.load()
    with LiveServer(create_app(s, engine)) as url:
        yield url


def error_shape(ctx, response, case) -> None:
    """Every error is {"error": {"code": str, "message": str}} and nothing else."""
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str), body


def test_no_server_errors(fuzz_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 22  # 10, GET /v1/models, POST /v1/chat/completions, GET /v1/collections, and 9 again under /v1/collections/{collection}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            case.call_and_validate(checks=[not_a_server_error, error_shape], timeout=120)

        check()
