"""`trunkplane config export|import`: backup and restore of the configuration."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from domain.text import escape_control
from infra.cli.client import Client
from infra.cli.exits import Exit
from infra.cli.output import note, print_data, print_json
from trunkplane.v1 import common_pb2, trunk_pb2

EXAMPLES = """examples:
  trunkplane config export --output backup.json                  # passwords left out
  trunkplane config export --with-secrets --output backup.json   # asks for a passphrase
  echo "$PASSPHRASE" | trunkplane config export --with-secrets --passphrase-stdin \\
      --output backup.json                                       # in a script
  trunkplane config import backup.json --dry-run"""


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = sub.add_parser("export", help="every trunk, route and tenant policy as one "
                                           "JSON document", epilog=EXAMPLES)
    export.add_argument("--all-tenants", action="store_true",
                        help="every tenant, not only --tenant")
    export.add_argument("--with-secrets", action="store_true",
                        help="seal the passwords for a passphrase (asked for at a terminal; "
                             "else --passphrase-stdin)")
    export.add_argument("--passphrase-stdin", action="store_true",
                        help="read the passphrase from standard input (scripts)")
    export.add_argument("--output", metavar="FILE",
                        help="file to write (default: standard output)")
    export.set_defaults(handler=export_config)
    restore = sub.add_parser("import", help="bring the configuration to a document",
                             epilog=EXAMPLES)
    restore.add_argument("file", help="a document `config export` wrote")
    restore.add_argument("--dry-run", action="store_true", help="show the changes only")
    restore.add_argument("--passphrase-stdin", action="store_true",
                         help="read the passphrase of sealed passwords from standard input")
    restore.add_argument("--request-id", default="", metavar="ID",
                         help="makes a retry change nothing")
    restore.set_defaults(handler=import_config)


def _passphrase(args: argparse.Namespace, confirm: bool) -> str:
    if args.passphrase_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        print("error: no terminal to ask for the passphrase: pipe it in with "
              "--passphrase-stdin", file=sys.stderr)
        raise SystemExit(Exit.USAGE)
    first = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        print("error: the passphrases differ", file=sys.stderr)
        raise SystemExit(Exit.USAGE)
    return first


def export_config(client: Client, args: argparse.Namespace) -> int:
    passphrase = _passphrase(args, confirm=True) if args.with_secrets else ""
    document = client.call(client.trunks.ExportConfiguration,
                           trunk_pb2.ExportConfigurationRequest(
                               tenant=client.tenant, all_tenants=args.all_tenants,
                               with_secrets=args.with_secrets, passphrase=passphrase))
    if not args.output:
        sys.stdout.write(document.json)
        return 0
    Path(args.output).write_text(document.json)
    summary = {"written": args.output, "bytes": len(document.json.encode()),
               "passwords": "sealed" if args.with_secrets else "left out"}
    if args.json:
        print_data(summary)
    else:
        note(f"wrote {args.output} ({summary['bytes']} bytes; passwords "
             f"{summary['passwords']})")
    return 0


def import_config(client: Client, args: argparse.Namespace) -> int:
    text = Path(args.file).read_text()
    passphrase = _passphrase(args, confirm=False) if '"password_sealed"' in text else ""
    answer = client.call(client.trunks.ImportConfiguration,
                         trunk_pb2.ImportConfigurationRequest(
                             json=text, passphrase=passphrase, dry_run=args.dry_run,
                             options=common_pb2.CommandOptions(
                                 reason=f"import {Path(args.file).name}",
                                 request_id=args.request_id)))
    if args.json:
        print_json(answer)
        return 0
    if answer.replayed:
        print(f"already applied under request id {args.request_id}: nothing changed")
        return 0
    verb = "would change" if args.dry_run else "changed"
    print(f"{verb}: {len(answer.changes)}" + ("" if answer.changes else " (already in step)"))
    starts = "would start" if args.dry_run else "starts"
    for tenant in answer.new_history_tenants:
        print(f"note: tenant {tenant} had nothing: this import {starts} "
              "a NEW history (every change recorded now, by you); earlier actors, reasons and "
              "deleted trunks are not brought back. To restore a history, use `trunkplane "
              "restore` with a `trunkplane backup`.")
    for change in answer.changes:
        print(f"  {escape_control(change)}")
    for kept in answer.kept:
        print(f"  kept, not in the file: {escape_control(kept)}")
    return 0
