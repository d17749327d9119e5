"""The relay as a process of its own, for the crash test: with `--crash-after N` it dies
(os._exit, no clean-up) after the broker acknowledged its Nth batch and before the
position is recorded, the worst moment there is."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from infra.app.control import build_app
from infra.config.settings import KafkaSettings, Settings
from infra.messaging.codec import AvroCodec
from infra.messaging.relay import DatabasePositions, Relay
from infra.security.sealing import WireCipher
from projections.db import PostgresDatabase
from tests.conftest import CIPHER_KEY


class CrashingPositions(DatabasePositions):
    def __init__(self, db: PostgresDatabase, crash_after: int) -> None:
        super().__init__(db)
        self.batches = 0
        self.crash_after = crash_after

    def save(self, name: str, position: int) -> None:
        self.batches += 1
        if self.batches == self.crash_after:
            os._exit(9)
        super().save(name, position)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("database", "bootstrap", "prefix", "wire_key", "data"):
        parser.add_argument(f"--{name.replace('_', '-')}", required=True)
    parser.add_argument("--crash-after", type=int, default=0)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    settings = Settings(data_dir=Path(args.data),
                        database_url=args.database, cipher_key=CIPHER_KEY,
                        listen="127.0.0.1:0", log_level="WARNING")
    kafka = KafkaSettings(bootstrap=args.bootstrap, topic_prefix=args.prefix,
                          wire_key=args.wire_key, replication=1, partitions=4)
    app = build_app(settings)
    positions = CrashingPositions(PostgresDatabase(args.database), args.crash_after)
    relay = Relay(app, AvroCodec(WireCipher(kafka.wire_key)), kafka, positions, batch=args.batch)
    while relay.publish_once():
        pass
    relay.stop()
    print(relay.position)


if __name__ == "__main__":
    main()
