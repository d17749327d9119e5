"""The broker as a second witness, against a real Kafka-protocol broker and PostgreSQL:
every signed head the store keeps reaches the heads topic (Avro), in order and once per
acknowledged batch; a head rewritten in the database afterwards disagrees with Kafka's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from infra.app.control import build_app
from infra.config.settings import KafkaSettings, Settings
from infra.ledger.proofs import Ledger
from infra.messaging.codec import AvroCodec
from infra.messaging.relay import DatabasePositions
from infra.messaging.topics import init_topics
from infra.messaging.witness import HeadWitness
from infra.security.sealing import WireCipher
from infra.store.views import open_views
from tests.conftest import CIPHER_KEY
from tests.integration.test_kafka import create, read_topic


def test_every_signed_head_reaches_the_heads_topic(kafka: KafkaSettings,
                                                   fresh_postgres_url: str,
                                                   tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=fresh_postgres_url,
                        cipher_key=CIPHER_KEY, listen="127.0.0.1:0", log_level="WARNING",
                        kafka=kafka)
    assert any(r.name == kafka.heads_topic for r in init_topics(kafka))  # created, or kept
    app = build_app(settings)
    views = open_views(settings)
    ledger = Ledger(app.recorder, app.recorder.proof.signer)  # type: ignore[arg-type, attr-defined]
    codec = AvroCodec(WireCipher(kafka.wire_key))
    witness = HeadWitness(ledger, codec, kafka, DatabasePositions(views))
    try:
        for number in range(5):
            create(app, "acme", f"t{number}")
        assert witness.publish_new() == 5  # one head per write batch
        create(app, "acme", "t5")
        assert witness.publish_new() == 1 and witness.publish_new() == 0
        kept = ledger.heads()
        published = [codec.decode(r.value) for r in read_topic(kafka.bootstrap,
                                                               kafka.heads_topic)]
        assert [d.value for d in published] == kept
        assert [d.position for d in published] == [ledger.position_of(h.size) for h in kept]
        signer = app.recorder.proof.signer  # type: ignore[attr-defined]
        assert all(d.value.verify(signer.public) for d in published)
        forged = replace(kept[-1], root=b"\x00" * 32)  # what a rewrite in the database gives
        assert forged != published[-1].value and not forged.verify(signer.public)
    finally:
        views.close()
        app.close()
