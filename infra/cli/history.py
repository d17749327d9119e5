"""`trunkplane backup` and `trunkplane restore`: the history itself, not the configuration.
A backup is one file: the events at their positions, their proof and signed heads, and the
keys sealed for a passphrase, read in one snapshot while the service keeps writing. A
restore into an empty data directory (or database) gives the same log back; it checks the
proof and shows the backup's head before it returns."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import TypeAlias

from domain.errors import ValidationError
from infra.app.control import build_app
from infra.cli.config import _passphrase
from infra.cli.exits import Exit
from infra.cli.output import print_data
from infra.config.settings import Settings, SettingsError
from infra.ledger.backup import (
    Keys,
    RestoreError,
    Source,
    backup,
    open_keys,
    read_manifest,
    restore_rows,
    write_key_files,
)
from infra.ledger.service import LedgerService
from infra.ledger.signing import load_signer, signing_key_path
from infra.security.keys import KEY_FILE, cipher_key
from infra.security.sealing import PassphraseSealer

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
EXAMPLES = """examples:
  trunkplane backup --output /backups/trunkplane-$(date +%F).tpbackup   # asks a passphrase
  TRUNKPLANE_DATA=/srv/new trunkplane restore /backups/trunkplane-2026-11-29.tpbackup"""


def register(sub: Sub) -> None:
    made = sub.add_parser("backup", epilog=EXAMPLES,
                          help="copy the event store with its proof and signed heads, and the "
                               "keys sealed for a passphrase, while the service runs (local: "
                               "reads the server settings)")
    made.add_argument("--output", required=True, metavar="FILE", help="a new file")
    made.add_argument("--passphrase-stdin", action="store_true",
                      help="read the passphrase from standard input (scripts)")
    made.set_defaults(local=make_backup)
    back = sub.add_parser("restore", epilog=EXAMPLES,
                          help="bring a backup's history back into an empty data directory "
                               "or database, then check it against the backup's head")
    back.add_argument("file", help="a file `trunkplane backup` wrote")
    back.add_argument("--passphrase-stdin", action="store_true",
                      help="read the passphrase from standard input (scripts)")
    back.set_defaults(local=restore_backup)


def make_backup(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        keys = Keys(cipher_key(settings, create=False),
                    load_signer(settings, create=False).private_base64())
        sealer = PassphraseSealer(_passphrase(args, confirm=True))
        summary = backup(_source(settings), Path(args.output), keys, sealer)
    except (SettingsError, ValidationError, FileExistsError) as error:
        return _fail(args, str(error))
    _say(args, {"written": args.output, "events": summary.events,
                "last_position": summary.last_position, "head_size": summary.head_size,
                "head_root": summary.head_root},
         f"wrote {args.output}: {summary.events} events to position {summary.last_position}, "
         f"signed head of {summary.head_size}, root {summary.head_root}")
    return Exit.OK


def restore_backup(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        settings = Settings.from_env()
        manifest = read_manifest(path)
        salt = base64.b64decode(json.loads(manifest["kdf"])["salt"])
        keys = open_keys(manifest, PassphraseSealer(_passphrase(args, confirm=False), salt))
        _place_keys(settings, keys)
        app = build_app(settings)
    except (SettingsError, ValidationError, RestoreError) as error:
        return _fail(args, str(error))
    try:
        count = restore_rows(path, app.recorder, bool(settings.database_url))
        report = LedgerService(app, app.recorder.proof.signer).verify()  # type: ignore[attr-defined]
        size = int(manifest["head_size"])
        root = report.root.hex() if report.size == size else ""
    except RestoreError as error:
        return _fail(args, str(error))
    finally:
        app.close()
    equal = report.intact and root == manifest["head_root"]
    _say(args, {"restored": count, "intact": report.intact, "head_size": size,
                "head_root": root, "equal_to_backup": equal},
         f"restored {count} events into {settings.describe_store()}; audit verify: "
         + (f"intact, the tree of {size} events has root {root}, the backup's head"
            if equal else f"NOT equal to the backup's head ({len(report.findings)} findings)"))
    return Exit.OK if equal else Exit.TAMPERED


def _place_keys(settings: Settings, keys: Keys) -> None:
    """The backup's keys where the settings look for them; keys given in the environment
    must be the backup's."""
    if settings.cipher_key and cipher_key(settings) != keys.cipher_ring:
        raise SettingsError("TRUNKPLANE_CIPHER_KEY differs from the backup's key ring: unset "
                            "it (the restore writes the ring to the data directory)")
    if settings.signing_key:
        raise SettingsError("unset TRUNKPLANE_SIGNING_KEY for the restore: the backup's "
                            "signing key is written to TRUNKPLANE_SIGNING_KEY_FILE or the "
                            "data directory")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.database_url and (settings.data_dir / "events.sqlite").exists():
        raise RestoreError(f"{settings.data_dir} already holds an event store: restore only "
                           "into an empty data directory")
    cipher = keys if not settings.cipher_key else Keys("", keys.signing_key)
    write_key_files(settings.data_dir, cipher, KEY_FILE, signing_key_path(settings))


def _source(settings: Settings) -> Source:
    return Source(None if settings.database_url else settings.data_dir / "events.sqlite",
                  settings.database_url)


def _say(args: argparse.Namespace, data: dict[str, object], text: str) -> None:
    if args.json:
        print_data(data)
    else:
        print(text)


def _fail(args: argparse.Namespace, text: str) -> int:
    if args.json:
        print_data({"error": {"message": text, "exit": int(Exit.SETTINGS)}}, sys.stderr)
    else:
        print(f"error: {text}", file=sys.stderr)
    return Exit.SETTINGS
