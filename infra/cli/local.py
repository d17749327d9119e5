"""The commands that work on this machine rather than through the service: the processes
themselves, tokens, keys, doctor, Kafka topics, replay, shell completion."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TypeAlias

from domain.text import escape_control
from infra.cli import cluster, completion
from infra.cli.audit import parse_time
from infra.cli.exits import Exit
from infra.cli.output import print_data
from infra.config.settings import Settings, SettingsError
from infra.ops.logs import configure as configure_logs
from infra.security.tokens import ROLES, TOKENS_FILE, TokenStore
from projections.runner import Until

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(sub: Sub) -> None:
    for name, text in (
            ("serve", "run the embedded service: gRPC, store, views and a SIP agent in one "
                      "process (settings from TRUNKPLANE_* variables)"),
            ("control", "run a control plane of the distributed mode: gRPC, store, views, "
                        "relay to Kafka"),
            ("agent", "run a SIP agent of the distributed mode (consumes Kafka)")):
        sub.add_parser(name, help=text, description=text).set_defaults(
            local=lambda args: _serve(args.command))
    kafka = sub.add_parser("kafka", help="the distributed mode's topics")
    kafka.add_argument("action", choices=("init", "republish"),
                       help="init: create the topics from TRUNKPLANE_KAFKA_* settings; "
                            "republish: have the leading relay publish the log again from "
                            "--from (a broker restored from an old backup)")
    kafka.add_argument("--from", dest="from_position", type=int, default=0,
                       help="republish: the log position to publish from (0: the start)")
    kafka.set_defaults(local=lambda args: cluster.republish(args) if (
        args.action == "republish") else _kafka_init(args))
    sub.add_parser("health", help="exit 0 when the local process (its TRUNKPLANE_LISTEN) "
                                  "says SERVING: a container's health check").set_defaults(
        local=cluster.health)
    _tokens(sub.add_parser("tokens", help="who may call the service, with which role "
                                          "(local: edits the data directory's tokens file)",
                           epilog="examples:\n  trunkplane tokens create --principal "
                                  "alice@example.com --role operator --days 90\n"
                                  "  trunkplane tokens revoke t-3f2a"))
    keys = sub.add_parser("keys", help="the key ring that encrypts stored events "
                                       "(local: reads the server settings)")
    keys.add_argument("action", choices=("list", "rotate"),
                      help="list the keys, or add one that seals new events")
    keys.set_defaults(local=_keys)
    sub.add_parser("doctor", help="what is wrong with the settings, the store, the service "
                                  "and each trunk, with the fix").set_defaults(local=_doctor)


def register_late(sub: Sub) -> None:
    replay = sub.add_parser("replay", help="build every view as of a past point into a new "
                                           "directory (reads the store named by the server "
                                           "settings)",
                            epilog="example:\n  trunkplane replay --until "
                                   "2026-11-26T12:00:00Z --into /tmp/as-of-noon\n"
                                   "  trunkplane trunk list --views /tmp/as-of-noon")
    point = replay.add_mutually_exclusive_group(required=True)
    point.add_argument("--until", type=parse_time, metavar="TIME",
                       help="ISO time: events up to it")
    point.add_argument("--position", type=int, metavar="N",
                       help="log position: events up to it")
    replay.add_argument("--into", required=True, metavar="DIR",
                        help="a new directory for the views")
    replay.set_defaults(local=_replay)
    shell = sub.add_parser("completion", help="print a shell completion script",
                           epilog="example:\n  source <(trunkplane completion bash)\n"
                                  "  trunkplane completion bash > "
                                  "/etc/bash_completion.d/trunkplane")
    shell.add_argument("shell", choices=("bash", "zsh"),
                       help="zsh loads the bash script through bashcompinit")
    shell.set_defaults(local=_completion)


def _tokens(tokens: argparse.ArgumentParser) -> None:
    actions = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a token; prints it once")
    create.add_argument("--principal", required=True, metavar="NAME",
                        help="who the token speaks for; the actor recorded on events")
    create.add_argument("--role", required=True, choices=ROLES,
                        help="what the principal may do (see the README's role table)")
    create.add_argument("--days", type=int, metavar="N",
                        help="expires after this many days (1 or more; left out: never)")
    create.add_argument("--scope", dest="tenants", action="append", metavar="TENANT",
                        help="limit the token to this tenant (repeat for several)")
    create.add_argument("--certificate", action="store_true",
                        help="no token: the principal proves itself with a client "
                             "certificate of this common name (mutual TLS)")
    actions.add_parser("list", help="every token: id, principal, role, state")
    revoke = actions.add_parser("revoke", help="refuse a token from the next call on")
    revoke.add_argument("id", help="the token's id, from `tokens list`")
    tokens.set_defaults(local=_token_action)


def _settings(args: argparse.Namespace) -> Settings | None:
    try:
        return Settings.from_env()
    except SettingsError as error:
        _error(args, str(error))
        return None


def _error(args: argparse.Namespace, text: str) -> None:
    if args.json:
        print_data({"error": {"message": text, "exit": int(Exit.SETTINGS)}}, sys.stderr)
    else:
        print(f"error: {text}", file=sys.stderr)


def _out(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        print_data(data)
    elif text:
        print(text)


def _token_action(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return Exit.SETTINGS
    store = TokenStore(settings.data_dir / TOKENS_FILE)
    if args.action == "create":
        try:
            token_id, clear = store.create(args.principal, args.role, args.days,
                                           args.certificate, args.tenants)
        except ValueError as error:
            _error(args, str(error))
            return Exit.USAGE
        _record(settings, "token_created", {"id": token_id, "principal": args.principal,
                                            "role": args.role})
        _out(args, {"id": token_id, "principal": args.principal, "role": args.role,
                    "token": clear or None},
             clear or f"registered certificate principal {args.principal} as {token_id}")
        return Exit.OK
    if args.action == "revoke":
        if store.revoke(args.id):
            _record(settings, "token_revoked", {"id": args.id})
            _out(args, {"revoked": args.id}, f"revoked {args.id}")
            return Exit.OK
        _error(args, f"no token {args.id} (see `trunkplane tokens list`)")
        return Exit.NOT_FOUND
    records = store.records()
    rows = []
    for r in records:
        state = "revoked" if r.revoked else f"expires {r.expires}" if r.expires else "active"
        scope = f"  tenants {','.join(r.tenants)}" if r.tenants else ""
        rows.append(f"{r.id}  {r.principal}  {r.role}  "
                    f"{'certificate' if not r.sha256 else 'token'}  {state}{scope}")
    _out(args, {"tokens": [{"id": r.id, "principal": r.principal, "role": r.role,
                            "kind": "certificate" if not r.sha256 else "token",
                            "created": r.created, "expires": r.expires,
                            "revoked": r.revoked, "tenants": r.tenants} for r in records]},
         "\n".join(rows))
    return Exit.OK


def _keys(args: argparse.Namespace) -> int:
    from infra.security.keys import key_ring, rotate

    settings = _settings(args)
    if settings is None:
        return Exit.SETTINGS
    try:
        if args.action == "rotate":
            # recorded first, sealed with a key the running service already holds
            _record(settings, "cipher_key_rotated",
                    {"new_key": f"k{len(key_ring(settings, create=False))}"})
            key_id = rotate(settings)
            _out(args, {"added": key_id, "restart_needed": True},
                 f"added key {key_id}; restart the service to seal new events with it "
                 "(events sealed with older keys stay readable)")
            return Exit.OK
        ring = key_ring(settings, create=False)
    except SettingsError as error:
        _error(args, str(error))
        return Exit.SETTINGS
    names = [key_id for key_id, _ in ring]
    _out(args, {"keys": names, "sealing": names[-1] if names else None},
         "\n".join(f"{name}{'  (seals new events)' if i == len(names) - 1 else ''}"
                   for i, name in enumerate(names)))
    return Exit.OK


def _record(settings: Settings, action: str, detail: dict[str, str]) -> None:
    """An action taken on this machine goes into the history too, by the local user, when
    there is a store to write it to; the action itself never fails for it."""
    import getpass
    import logging

    from domain.model import CommandMeta
    from domain.operations import OperatorAction
    from infra.app.control import build_app
    from infra.security.keys import cipher_key

    if not settings.database_url and not (settings.data_dir / "events.sqlite").exists():
        return
    try:
        cipher_key(settings, create=False)
        app = build_app(settings)
    except Exception as error:  # no store or key here: nothing to record into
        print(f"note: not recorded in the history: {error}", file=sys.stderr)
        return
    try:
        app.save(OperatorAction.record("", action, detail,
                                       CommandMeta(actor=f"local:{getpass.getuser()}")))
    except Exception:
        logging.getLogger(__name__).warning("could not record %s", action, exc_info=True)
    finally:
        app.close()


def _named_tenant(args: argparse.Namespace) -> str | None:
    """The tenant doctor looks at: the one named (--tenant or TRUNKPLANE_TENANT), else
    every tenant."""
    named = "--tenant" in sys.argv or any(a.startswith("--tenant=") for a in sys.argv)
    return str(args.tenant) if named or os.environ.get("TRUNKPLANE_TENANT") else None


def _doctor(args: argparse.Namespace) -> int:
    from infra.ops.doctor import examine

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        findings = [{"level": "fail", "subject": "settings", "text": str(error), "fix": ""}]
        _out(args, {"findings": findings, "failed": True}, f"FAIL settings: {error}")
        return Exit.FAILED
    failed, found = False, []
    for finding in examine(settings, args.server, _named_tenant(args)):
        failed |= finding.level == "fail"
        found.append(finding)
        if not args.json:
            print(f"{finding.level.upper():<4} {escape_control(finding.subject)}: "
                  f"{escape_control(finding.text)}", flush=True)
            if finding.fix and finding.level != "ok":
                print(f"     fix: {finding.fix}", flush=True)
    if args.json:
        print_data({"findings": [vars(f) for f in found], "failed": failed})
    return Exit.FAILED if failed else Exit.OK


def _kafka_init(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from infra.messaging.topics import init_topics

    settings = _settings(args)
    if settings is None:
        return Exit.SETTINGS
    if settings.kafka is None:
        _error(args, "set TRUNKPLANE_KAFKA_BOOTSTRAP to the brokers' host:port")
        return Exit.SETTINGS
    try:
        results = init_topics(settings.kafka)
    except KafkaError as error:
        _error(args, f"Kafka at {settings.kafka.bootstrap}: {type(error).__name__}: {error}")
        return Exit.UNAVAILABLE
    _out(args, {"topics": [vars(r) for r in results]},
         "\n".join(f"{'created' if r.created else 'exists '}  {r.name}  {r.detail}"
                   for r in results))
    return Exit.OK


def _replay(args: argparse.Namespace) -> int:
    from infra.ops.replay import replay

    settings = _settings(args)
    if settings is None:
        return Exit.SETTINGS
    try:
        reached = replay(settings, Path(args.into),
                         Until(position=args.position, time=args.until))
    except SettingsError as error:
        _error(args, str(error))
        return Exit.SETTINGS
    views = Path(args.into) / "views.sqlite"
    _out(args, {"views": reached, "written": str(views)},
         "\n".join([*(f"{name}: built up to log position {position}"
                      for name, position in reached.items()),
                    f"views in {views}; read them with --views {args.into}, e.g. "
                    f"`trunkplane trunk list --views {args.into}`"]))
    return Exit.OK


def _completion(args: argparse.Namespace) -> int:
    from infra.cli.main import parser

    print(completion.script(parser(), args.shell))
    return Exit.OK


def _serve(mode: str) -> int:
    from infra.app.agent import run_agent
    from infra.app.control import serve

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return Exit.SETTINGS
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
        return Exit.UNAVAILABLE
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return Exit.SETTINGS
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return Exit.FAILED
    return Exit.OK
