"""Test-wide settings."""

from __future__ import annotations


def pytest_collection_modifyitems(session, config, items) -> None:
    """Run the browser tests last: they are the slowest, and Playwright's event loop
    must never be open while another test starts its own."""
    items.sort(key=lambda item: "tests/browser/" in str(item.path).replace("\\", "/"))
