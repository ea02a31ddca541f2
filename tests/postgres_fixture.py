"""Session fixture `postgres_dsn`: a real PostgreSQL server on a loopback port (skips if absent).

Import it into a conftest (`from tests.postgres_fixture import postgres_dsn`). The server is
shared process-wide, so a module importing the fixture too does not start a second one.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator

import pytest

from pipeline.devtools.pgtemp import TempPostgres, find_pg_bin

_SERVER: TempPostgres | None = None


def _server() -> TempPostgres:
    global _SERVER
    if _SERVER is None:
        server = TempPostgres()
        server.start()
        atexit.register(server.stop)
        _SERVER = server
    return _SERVER


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of the session's PostgreSQL (`apt-get install -y postgresql` provides the binaries)."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries not installed (apt-get install -y postgresql)")
    yield _server().dsn


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """A fresh database on the session server for one test; its DSN."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_dsn.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
