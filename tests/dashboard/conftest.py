"""Fixtures of the dashboard tests: a fake manager and TestClients on a loopback address."""

from __future__ import annotations

import warnings

import pytest

from dashboard_fakes import BASE, FakeManager, FakeStore

with warnings.catch_warnings():
    # Starlette 1.x asks for the httpx2 package and warns when it falls back to httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from dashboard.app import create_app


@pytest.fixture
def store(tmp_path):
    return FakeStore(tmp_path)


@pytest.fixture
def manager(store):
    return FakeManager(store)


@pytest.fixture
def make_client(manager):
    """A TestClient of an app built with the given create_app options."""
    clients = []

    def make(**options) -> TestClient:
        options.setdefault("follow_poll_s", 0.02)
        client = TestClient(create_app(manager, **options), base_url=BASE, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()
