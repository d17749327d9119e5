"""trunkplane: serve the embedded control plane, or manage trunks and routes over gRPC."""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from infra.cli import alerts, audit, channels, config, history, local, ops, pbx, routes, trunks
from infra.cli.client import Client, report
from infra.cli.common import add_common, finish
from infra.cli.exits import Exit, table_text
from infra.grpc_api.clients import Credentials, connection

if TYPE_CHECKING:
    from infra.app.replayed import ReplayedViews

EXAMPLES = """\
examples:
  trunkplane trunk create voco --template thevoco --username 1001 --password-stdin
  trunkplane trunk list --json
  trunkplane trunk status voco
  trunkplane route resolve 92125551234 --from 1001
  source <(trunkplane completion bash)     # tab completion in this shell

exit codes:
"""


def _version() -> str:
    try:
        return version("trunkplane")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="trunkplane", description=__doc__,
                                   epilog=EXAMPLES + table_text())
    root.add_argument("--version", action="version", version=f"trunkplane {_version()}",
                      help="print the version and exit")
    add_common(root, root=True)
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local.register(sub)
    history.register(sub)
    trunks.register(sub.add_parser("trunk", help="create, change and read trunks",
                                   epilog=trunks.EXAMPLES))
    routes.register(sub.add_parser("route", help="outbound and inbound routes, the tenant's "
                                                 "fraud guard", epilog=routes.EXAMPLES))
    pbx.register(sub.add_parser("pbx", help="the tenant's PBX: source networks, digest, "
                                            "where inbound calls go", epilog=pbx.EXAMPLES))
    pbx.register_calls(sub.add_parser("calls", help="call records: newest first, filtered",
                                      epilog=pbx.CALL_EXAMPLES))
    channels.register(sub.add_parser("channel", help="call admission by hand: acquire, "
                                                     "renew, release a trunk channel",
                                     epilog=channels.EXAMPLES))
    alerts.register(sub.add_parser("alerts", help="notifications: channels, rules, what "
                                                  "was sent", epilog=alerts.EXAMPLES))
    alerts.register_capacity(sub.add_parser("capacity", help="each trunk's daily peak of "
                                                         "calls against its limit",
                                            epilog=alerts.CAPACITY_EXAMPLES))
    audit.register(sub.add_parser("audit", help="the change history, for auditors",
                                  epilog=audit.EXAMPLES))
    config.register(sub.add_parser("config", help="backup and restore of the configuration",
                                   epilog=config.EXAMPLES))
    ops.register(sub.add_parser("projections", help="status, rebuild and verify the views",
                                epilog=ops.EXAMPLES))
    ops.register_agents(sub.add_parser("agents", help="the SIP agents: where each serves "
                                                      "AgentService, which tenants it holds"))
    local.register_late(sub)
    finish(root)
    return root


def main(argv: list[str] | None = None) -> int:
    # Every file trunkplane writes (store, views, keys, backups, replays, exports) is the
    # user's alone: the views hold the whole configuration and history in clear.
    os.umask(0o077)
    args = parser().parse_args(argv)
    if getattr(args, "local", None) is not None:
        result: int = args.local(args)
        return result
    replayed = _replayed(args.views) if args.views else None
    if isinstance(replayed, int):
        return replayed
    client = (Client(replayed.address, args.tenant, Credentials("", False, Path(), None))
              if replayed else Client(args.server, args.tenant, connection()))
    try:
        result = args.handler(client, args)
        return result
    except grpc.RpcError as error:
        return report(error, client, args.json)
    except BrokenPipeError:  # the reader (e.g. `| head`) left early; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.OK
    finally:
        client.channel.close()
        if replayed:
            replayed.close()


def _replayed(directory: str) -> ReplayedViews | int:
    """The views of a replay, served in this process; or the exit code of why not."""
    from infra.app.replayed import ReplayedViews
    from infra.config.settings import Settings, SettingsError

    try:
        return ReplayedViews(Settings.from_env(), Path(directory))
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return Exit.SETTINGS


if __name__ == "__main__":
    sys.exit(main())
