"""The sandbox fixtures live in tests/fixtures/sandbox.py; until tests/conftest.py registers
them with `pytest_plugins`, they are imported here."""

import sys

if "tests.fixtures.sandbox" not in sys.modules:
    from tests.fixtures.sandbox import sandbox, sandbox_server  # noqa: F401
