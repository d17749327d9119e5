"""trunkplane: serve the embedded control plane, or manage trunks and routes over gRPC."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc

from infra.auth import ROLES, TOKENS_FILE, TokenStore
from infra.cli import audit, channels, config, ops, routes, trunks
from infra.cli.client import Client, credentials, report
from infra.logs import configure as configure_logs
from infra.settings import DEFAULT_LISTEN, Settings, SettingsError
from projections.runner import Until


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="trunkplane", description=__doc__)
    root.add_argument("--server", default=os.environ.get("TRUNKPLANE_SERVER", DEFAULT_LISTEN),
                      help="gRPC address of the server (env TRUNKPLANE_SERVER)")
    root.add_argument("--tenant", default=os.environ.get("TRUNKPLANE_TENANT", "default"))
    root.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = root.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the embedded service (settings from the environment)")
    sub.add_parser("control", help="run a control plane of the distributed mode: gRPC, "
                                   "store, views, relay to Kafka")
    sub.add_parser("agent", help="run a SIP agent of the distributed mode (consumes Kafka)")
    kafka = sub.add_parser("kafka", help="the distributed mode's topics")
    kafka.add_argument("action", choices=("init",),
                       help="create the topics from TRUNKPLANE_KAFKA_* settings")
    tokens = sub.add_parser("tokens", help="who may call the service, with which role "
                                           "(local: edits the data directory's tokens file)")
    token_actions = tokens.add_subparsers(dest="action", required=True)
    create = token_actions.add_parser("create", help="prints the token once")
    create.add_argument("--principal", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--days", type=int, help="expires after this many days")
    create.add_argument("--certificate", action="store_true",
                        help="no token: the principal proves itself with a client "
                             "certificate of this common name (mutual TLS)")
    token_actions.add_parser("list")
    revoke = token_actions.add_parser("revoke")
    revoke.add_argument("id")
    keys = sub.add_parser("keys", help="the key ring that encrypts stored events "
                                       "(local: reads the server settings)")
    keys.add_argument("action", choices=("list", "rotate"))
    sub.add_parser("doctor", help="what is wrong with the settings, the store, the service "
                                  "and each trunk, with the fix")
    trunks.register(sub.add_parser("trunk", help="create, change and read trunks"))
    routes.register(sub.add_parser("route", help="outbound and inbound routes"))
    channels.register(sub.add_parser("channel", help="call admission by hand: acquire, "
                                                     "renew, release a trunk channel"))
    audit.register(sub.add_parser("audit", help="the change history, for auditors"))
    config.register(sub.add_parser("config", help="backup and restore of the configuration"))
    ops.register(sub.add_parser("projections", help="status, rebuild and verify the views"))
    ops.register_agents(sub.add_parser("agents", help="the SIP agents: where each serves "
                                                      "AgentService, which tenants it holds"))
    ops.register_replay(sub.add_parser(
        "replay", help="build every view as of a past point into a new directory "
                       "(reads the store named by the server settings)"))
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command in ("serve", "control", "agent"):
        return _serve(args.command)
    if args.command == "kafka":
        return _kafka_init()
    if args.command == "replay":
        return _replay(args)
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "keys":
        return _keys(args)
    if args.command == "tokens":
        return _tokens(args)
    token, ca_certificate = credentials()
    client = Client(args.server, args.tenant, token, ca_certificate)
    try:
        result: int = args.handler(client, args)
        return result
    except grpc.RpcError as error:
        return report(error)
    except BrokenPipeError:  # the reader (e.g. `| head`) left early; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        client.channel.close()


def _replay(args: argparse.Namespace) -> int:
    from infra.replay import replay

    try:
        reached = replay(Settings.from_env(), Path(args.into),
                         Until(position=args.position, time=args.until))
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, position in reached.items():
        print(f"{name}: built up to log position {position}")
    print(f"views in {Path(args.into) / 'views.sqlite'}")
    return 0


def _tokens(args: argparse.Namespace) -> int:
    store = TokenStore(Settings.from_env().data_dir / TOKENS_FILE)
    if args.action == "create":
        try:
            token_id, clear = store.create(args.principal, args.role, args.days,
                                           args.certificate)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(clear or f"registered certificate principal {args.principal} as {token_id}")
        return 0
    if args.action == "revoke":
        if store.revoke(args.id):
            print(f"revoked {args.id}")
            return 0
        print(f"error: no token {args.id}", file=sys.stderr)
        return 1
    for r in store.records():
        state = "revoked" if r.revoked else f"expires {r.expires}" if r.expires else "active"
        kind = "certificate" if not r.sha256 else "token"
        print(f"{r.id}  {r.principal}  {r.role}  {kind}  {state}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from infra.keys import key_ring, rotate

    try:
        settings = Settings.from_env()
        if args.action == "rotate":
            key_id = rotate(settings)
            print(f"added key {key_id}; restart the service to seal new events with it "
                  "(events sealed with older keys stay readable)")
            return 0
        ring = key_ring(settings, create=False)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for number, (key_id, _) in enumerate(ring):
        print(f"{key_id}{'  (seals new events)' if number == len(ring) - 1 else ''}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from infra.doctor import examine

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"FAIL settings: {error}")
        return 1
    failed = False
    for finding in examine(settings, args.server):
        failed |= finding.level == "fail"
        print(f"{finding.level.upper():<4} {finding.subject}: {finding.text}")
        if finding.fix and finding.level != "ok":
            print(f"     fix: {finding.fix}")
    return 1 if failed else 0


def _kafka_init() -> int:
    from kafka.errors import KafkaError

    from infra.kafka import init_topics

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if settings.kafka is None:
        print("error: set TRUNKPLANE_KAFKA_BOOTSTRAP to the brokers' host:port",
              file=sys.stderr)
        return 2
    try:
        results = init_topics(settings.kafka)
    except KafkaError as error:
        print(f"error: Kafka at {settings.kafka.bootstrap}: {type(error).__name__}: {error}",
              file=sys.stderr)
        return 1
    for result in results:
        print(f"{'created' if result.created else 'exists '}  {result.name}  {result.detail}")
    return 0


def _serve(mode: str) -> int:
    from infra.wiring import run_agent, serve

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logs(settings.log_level, settings.log_format)
    from kafka.errors import KafkaError

    try:
        if mode == "agent":
            run_agent(settings)
        else:
            serve(settings, mode)
    except KafkaError as error:
        kafka = settings.kafka.bootstrap if settings.kafka else "?"
        print(f"error: Kafka at {kafka}: {type(error).__name__}: {error} (check "
              "TRUNKPLANE_KAFKA_BOOTSTRAP and that the brokers run)", file=sys.stderr)
        return 1
    except (SettingsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
