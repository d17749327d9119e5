"""Rebuilding the config and history views from N events (default 1,000,000), in SQLite and
in PostgreSQL, against the bare `eventsourcing` read-and-decode of the same events in the
same run. Prints events/s and the ratio. The tamper evidence is no longer a view's work: it
is written with the events (infra/ledger), so the figures composed around it are printed
too: writing the events with their proof against the bare library's write of the same
batches, and `audit verify` (read, hash, decrypt, tree) against the bare read-and-decode.

    .venv/bin/python bench/rebuild.py [--events 1000000] [--postgres URL] [--sqlite-only]

PostgreSQL: a database is created for the run and dropped after (default server
postgresql://postgres@127.0.0.1:5432/postgres, or TRUNKPLANE_TEST_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from common import KEY, machine
from domain.application import TrunkplaneApp
from domain.model import CommandMeta
from domain.trunk import Trunk
from infra.config.settings import Settings
from infra.ledger import decoder, proof_env
from infra.ledger.proofs import Ledger
from infra.ledger.verify import verify
from infra.security.keys import secret_fingerprint
from projections.db import Database, PostgresDatabase, SqliteDatabase
from projections.runner import ProjectionRunner
from projections.views import PROJECTIONS, ViewStore

EVENTS_PER_TRUNK = 100
SAVE_BATCH = 100
READ_PAGE = 1000


def populate(app: TrunkplaneApp, events: int) -> float:
    """Writes the events in batches of SAVE_BATCH trunks; returns events/s."""
    meta = CommandMeta("bench", "load", "bench")
    trunks = max(1, events // EVENTS_PER_TRUNK)
    started, written = time.perf_counter(), 0
    for first in range(0, trunks, SAVE_BATCH):
        batch = []
        for n in range(first, min(first + SAVE_BATCH, trunks)):
            trunk = Trunk.create("default", {
                "name": f"t{n}", "type": "register", "host": "sip.example.com",
                "transport": "udp", "username": "1001", "password": f"Secret-{n:08d}",
                "auth_id": "", "max_registrations": 1, "from_user": "", "from_domain": "",
                "peer_addresses": [], "codecs": ["PCMU"], "dtmf_mode": "rfc2833",
                "nat": {"enabled": False, "external_ip": "", "local_networks": [],
                        "stun_server": ""},
                "call_limits": {"max_concurrent_calls": None, "max_inbound_calls": None,
                                "max_outbound_calls": None},
                "enabled": True, "description": ""}, meta)
            for change in range(EVENTS_PER_TRUNK - 1):
                trunk.trigger_event(Trunk.DescriptionChanged, description=f"change {change}",
                                    **meta.event_kwargs())
            batch.append(trunk)
        app.save(*batch)
        written += len(batch) * EVENTS_PER_TRUNK
        print(f"\r  writing events: {written:,}", end="", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    print(f"\r  wrote {written:,} events in {elapsed:.0f} s", file=sys.stderr)
    return written / elapsed


def verify_rate(app: TrunkplaneApp) -> float:
    """`trunkplane audit verify` without the service: the log against the proof."""
    started = time.perf_counter()
    report = verify(Ledger(app.recorder), app.recorder, decoder(app), [])  # type: ignore[arg-type]
    assert report.intact, report.findings[:3]
    return report.size / (time.perf_counter() - started)


def bare_read(app: TrunkplaneApp) -> float:
    """The library alone: page through the notification log and decode every event."""
    started, position, count = time.perf_counter(), 0, 0
    while True:
        page = app.recorder.select_notifications(position, READ_PAGE, inclusive_of_start=False)
        if not page:
            break
        for notification in page:
            app.mapper.to_domain_event(notification)
        count += len(page)
        position = page[-1].id
    return count / (time.perf_counter() - started)


def rebuild(app: TrunkplaneApp, store: ViewStore, name: str) -> float:
    """What `trunkplane projections rebuild NAME` does: a new generation from the first
    event, its indexes, and the swap."""
    runner = ProjectionRunner(app, store, batch=READ_PAGE)
    started = time.perf_counter()
    runner.rebuild(name)
    return app.head() / (time.perf_counter() - started)


def bare_write(settings: Settings, events: int) -> float:
    """The library's own recorder writing the same batches into a store of its own."""
    env = settings.store_env(KEY)
    if settings.database_url:
        return 0.0  # one database per run: the bare write is measured on SQLite only
    env["SQLITE_DBNAME"] = str(settings.data_dir / "bare.sqlite")
    app = TrunkplaneApp(env=env)
    try:
        return populate(app, events)
    finally:
        app.close()


def run(label: str, settings: Settings, views: Database, events: int, repeats: int) -> None:
    app = TrunkplaneApp(env=proof_env(settings.store_env(KEY)))
    try:
        print(f"{label}:", file=sys.stderr)
        proof_write = populate(app, events)
        bare_written = bare_write(settings, events)
        store = ViewStore(views, [cls(secret_fingerprint(KEY)) for cls in PROJECTIONS])
        bare: list[float] = []
        checks: list[float] = []
        ours: dict[str, list[float]] = {name: [] for name in store.projections}
        for _ in range(repeats):  # interleaved, so a slow spell of the machine hits both
            bare.append(bare_read(app))
            checks.append(verify_rate(app))
            for name in store.projections:
                ours[name].append(rebuild(app, store, name))
    finally:
        views.close()
        app.close()
    base = statistics.median(bare)
    print(f"{label}: bare read-and-decode {base:10,.0f} events/s")
    for name, rates in ours.items():
        rate = statistics.median(rates)
        print(f"{label}: rebuild {name:<8} {rate:10,.0f} events/s  ratio {rate / base:.2f} "
              "(target >= 0.50)")
    check = statistics.median(checks)
    print(f"{label}: audit verify     {check:10,.0f} events/s  ratio {check / base:.2f}")
    if bare_written:
        print(f"{label}: write with proof {proof_write:10,.0f} events/s, bare library "
              f"{bare_written:,.0f}: ratio {proof_write / bare_written:.2f} (one run)")
    else:
        print(f"{label}: write with proof {proof_write:10,.0f} events/s (one run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=os.environ.get(
        "TRUNKPLANE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"{args.events:,} events ({EVENTS_PER_TRUNK} per trunk), AES-GCM and zlib, "
          f"pages of {READ_PAGE}, median of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url="", cipher_key=KEY, listen="",
                            log_level="")
        run("sqlite", settings, SqliteDatabase(Path(tmp) / "views.sqlite"), args.events,
            args.repeats)
    if args.sqlite_only:
        return
    name = f"trunkplane_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    try:
        settings = Settings(data_dir=Path("."), database_url=url, cipher_key=KEY, listen="",
                            log_level="")
        run("postgres", settings, PostgresDatabase(url), args.events, args.repeats)
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
