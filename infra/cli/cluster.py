"""Commands for the processes themselves: `trunkplane health` (a container's health
check) and `trunkplane kafka republish` (the relay's position lowered by hand)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infra.cli.exits import Exit
from infra.config.settings import Settings, SettingsError
from infra.security.tls import CERT_FILE


def health(args: argparse.Namespace) -> int:
    """grpc.health.v1 of the process these settings run (TRUNKPLANE_LISTEN on this
    machine): exit 0 when SERVING."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return Exit.SETTINGS
    host, _, port = settings.listen.rpartition(":")
    anywhere = ("0.0.0.0", "[::]", "::", "")  # noqa: S104 - naming, not binding
    address = f"127.0.0.1:{port}" if host in anywhere else settings.listen
    if settings.tls:  # its own certificate is the one to trust
        ca = Path(settings.tls_cert or settings.data_dir / CERT_FILE).read_bytes()
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca))
    else:
        channel = grpc.insecure_channel(address)
    stub: Any = health_pb2_grpc.HealthStub(channel)
    try:
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    except grpc.RpcError as error:
        print(f"{address}: {error.code().name}: {error.details()}", file=sys.stderr)
        return Exit.UNAVAILABLE
    finally:
        channel.close()
    state = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{address}: {state}")
    return Exit.OK if answer.status == health_pb2.HealthCheckResponse.SERVING else (
        Exit.UNAVAILABLE)


def republish(args: argparse.Namespace) -> int:
    """Sets the relay's position for the brokers' cluster and the events topic (the next
    check of the leading relay, within 10 s, publishes from there): after restoring a
    broker from an old backup, or to repair what a consumer lost."""
    from kafka.errors import KafkaError

    from infra.messaging.relay import DatabasePositions, position_name
    from infra.messaging.topics import producer
    from infra.store.views import open_views

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return Exit.SETTINGS
    if settings.kafka is None:
        print("error: set TRUNKPLANE_KAFKA_BOOTSTRAP to the brokers' host:port", file=sys.stderr)
        return Exit.SETTINGS
    try:
        client = producer(settings.kafka, "trunkplane-republish")
        client.partitions_for(settings.kafka.events_topic)
        name = position_name(client, settings.kafka.events_topic)
        client.close(timeout=5)
    except KafkaError as error:
        print(f"error: Kafka at {settings.kafka.bootstrap}: {error}", file=sys.stderr)
        return Exit.UNAVAILABLE
    views = open_views(settings)
    try:
        positions = DatabasePositions(views)
        before = positions.load(name)
        positions.save(name, min(args.from_position, before))
    finally:
        views.close()
    print(f"relay {name}: position {before} -> {min(args.from_position, before)}; the "
          "leading relay republishes from there within 10 s")
    return Exit.OK
