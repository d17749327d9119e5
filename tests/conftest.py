"""Fixtures: event stores (in memory, SQLite file, PostgreSQL database made for the run),
the views' database on either, and a real gRPC server on a loopback port with clients for
it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from domain.application import TrunkplaneApp
from infra.app.control import ControlPlane, start
from infra.config.settings import KafkaSettings, Settings
from infra.messaging.topics import init_topics
from infra.security.tls import CERT_FILE
from infra.security.tokens import TOKENS_FILE, TokenStore
from projections.db import Database, PostgresDatabase, SqliteDatabase
from tests.brokers import Broker
from trunkplane.v1 import route_pb2_grpc, trunk_pb2_grpc

SHARED = Path(__file__).resolve().parents[2] / "shared"
# Every agent a test starts, in this process or as a child, sends SIP only to loopback and
# listens on a port of its own.
os.environ["TRUNKPLANE_SIP_DESTINATIONS"] = "127.0.0.0/8,::1/128"
os.environ["TRUNKPLANE_SIP_LISTEN"] = "127.0.0.1:0"
# No web console on 8080 in every `serve` a test starts; the console's own tests pick a port.
os.environ["TRUNKPLANE_WEB_LISTEN"] = "off"
os.environ["TRUNKPLANE_PBX_LISTEN"] = "127.0.0.1:0"
CIPHER_KEY = "x8IuD0sEXGOXjG8ygnTpGaYgk9ip3kmMOW71V7tKmXQ="
WIRE_KEY = "1uM3n3yb2hJb3HZl5t0i1bPV9fXr8N1kq0vQ8yqzv0Y="


def _admin_url() -> str:
    return os.environ.get("TRUNKPLANE_TEST_DATABASE_URL",
                          "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of its own (`prefix` and a random name), dropped afterwards;
    the test is skipped where no server answers (`make test` starts one, and fails)."""
    admin = _admin_url()
    try:
        connection = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if os.environ.get("TRUNKPLANE_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"no PostgreSQL at {admin} ({error}); `make test` starts one")
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test run, dropped afterwards."""
    with scratch_database("trunkplane_test_") as url:
        yield url


def settings_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    database_url = ""
    if backend == "postgres":
        database_url = request.getfixturevalue("fresh_postgres_url")
    return Settings(data_dir=tmp_path / "var", database_url=database_url,
                    cipher_key=CIPHER_KEY, listen="127.0.0.1:0", log_level="WARNING")


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """The run's database, emptied of the previous test's events. A process an earlier
    test left running (a failed teardown) would still lead there by its advisory locks and
    starve this test's views; then this test gets a database of its own."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        leftover = connection.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = current_database() "
            "AND l.pid <> pg_backend_pid()").fetchone()
        if leftover and leftover[0]:
            own = f"trunkplane_test_{uuid.uuid4().hex[:12]}"
            connection.execute(f'CREATE DATABASE "{own}"')
            try:
                yield postgres_url.rsplit("/", 1)[0] + f"/{own}"
            finally:
                connection.execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)')
            return
        tables = [row[0] for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            connection.execute(f'DROP TABLE "{table}" CASCADE')
    yield postgres_url


class _DefaultCredentials(grpc.UnaryUnaryClientInterceptor,
                          grpc.UnaryStreamClientInterceptor):
    """Adds the test principal's token to calls that carry no `authorization` of their own."""

    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or [])
        if not any(key == "authorization" for key, _ in metadata):
            metadata.append(("authorization", f"Bearer {self.token}"))
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class Api:
    """A running server (TLS, tokens) and stubs connected to it as the admin `tester`;
    `as_(principal, role)` gives the metadata to call as someone else."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens = TokenStore(settings.data_dir / TOKENS_FILE)
        self._issued: dict[tuple[str, str], str] = {}
        self._connect(start(settings))

    def as_(self, principal: str, role: str = "admin") -> tuple[tuple[str, str], ...]:
        if (principal, role) not in self._issued:
            self._issued[principal, role] = self.tokens.create(principal, role)[1]
        return (("authorization", f"Bearer {self._issued[principal, role]}"),)

    def _connect(self, plane: ControlPlane) -> None:
        self.plane = plane
        target = f"127.0.0.1:{plane.port}"
        if self.settings.tls:
            certificate = (self.settings.data_dir / CERT_FILE).read_bytes()
            channel = grpc.secure_channel(
                target, grpc.ssl_channel_credentials(root_certificates=certificate))
        else:
            channel = grpc.insecure_channel(target)
        self.raw_channel = channel
        token = self.as_("tester")[0][1].removeprefix("Bearer ")
        self.channel = grpc.intercept_channel(channel, _DefaultCredentials(token))
        self.trunks = trunk_pb2_grpc.TrunkServiceStub(self.channel)
        self.routes = route_pb2_grpc.RouteServiceStub(self.channel)

    def restart(self) -> None:
        """Stops the server (closing the store) and starts a new one on the same store."""
        port = self.plane.port
        self.close()
        self._connect(start(self.settings.with_listen(f"127.0.0.1:{port}")))

    def close(self) -> None:
        self.raw_channel.close()
        self.plane.stop(grace=1)


@pytest.fixture
def app() -> Iterator[TrunkplaneApp]:
    """The application on an in-memory event store."""
    application = TrunkplaneApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield application
    application.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A views database, once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        database: Database = SqliteDatabase(tmp_path / "views.sqlite")
    else:
        database = PostgresDatabase(request.getfixturevalue("fresh_postgres_url"))
    yield database
    database.close()


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    client = Api(settings_for(request.param, tmp_path, request))
    yield client
    client.close()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One Kafka-protocol broker for the run (tansu keeps everything in memory)."""
    with Broker(tmp_path_factory.mktemp("tansu") / "tansu.log") as running:
        yield running


@pytest.fixture
def kafka(broker: Broker) -> KafkaSettings:
    """Topics of this test's own (a fresh prefix), created as `trunkplane kafka init` does."""
    settings = KafkaSettings(
        bootstrap=broker.bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.", partitions=4,
        replication=1, wire_key=f"w1:{WIRE_KEY}")
    init_topics(settings)
    return settings
