"""The end-to-end tests run on every database backend."""

from __future__ import annotations

import pytest

from tests.databases import BACKENDS


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
