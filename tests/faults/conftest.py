"""Fault tests: the suite runs as real processes (tests/support/running_suite.py) and a test breaks one part.

Every test here prints one ``[fault] ...`` line with its counts (accepted, stored, delivered, indexed,
duplicates, lost) and asserts that nothing was lost or duplicated.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.faults)
