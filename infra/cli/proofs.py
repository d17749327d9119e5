"""`trunkplane audit verify | head | consistency | inclusion | verify-export`: the proof of
the history. Proofs are checked here, on the auditor's side, with the RFC 9162 algorithms;
`verify-export` needs no service at all."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any, TypeAlias

from infra.cli.client import Client
from infra.cli.exits import Exit
from infra.cli.output import as_dict, print_data, print_json, table
from infra.ledger.export import verify_export
from infra.ledger.merkle import verify_consistency, verify_inclusion
from infra.ledger.signing import SignedHead, load_public
from trunkplane.v1 import audit_pb2, audit_pb2_grpc

Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(sub: Sub) -> None:
    verify = sub.add_parser("verify", help="check the stored log against the proof written "
                                           "with it and the signed heads; exit 4 on findings")
    verify.set_defaults(handler=verify_log)
    head = sub.add_parser("head", help="the signed tree head now, or at an earlier size or "
                                       "log position (save it: consistency checks it later)")
    head.add_argument("--size", type=int, default=0, metavar="N", help="tree size (events)")
    head.add_argument("--position", type=int, default=0, metavar="N",
                      help="the head once the event at this log position was written")
    head.set_defaults(handler=signed_head)
    consistency = sub.add_parser("consistency", help="prove that today's log extends a head "
                                                     "you saved, unchanged; exit 4 if not")
    consistency.add_argument("head_file", metavar="HEAD.json",
                             help="a head saved from `audit head --json`")
    consistency.set_defaults(handler=check_consistency)
    inclusion = sub.add_parser("inclusion", help="prove that the event at a log position is "
                                                 "in the signed log")
    inclusion.add_argument("position", type=int, help="the event's log position")
    inclusion.add_argument("--size", type=int, default=0, metavar="N",
                           help="in the tree of this size (default: now)")
    inclusion.set_defaults(handler=check_inclusion)
    offline = sub.add_parser("verify-export", help="check an export without the service: "
                                                   "signatures and every row's inclusion")
    offline.add_argument("file", metavar="FILE", help="an `audit export` (csv or jsonl)")
    offline.add_argument("--public-key", default="", metavar="BASE64",
                         help="the operator's public key (default: the one in the file)")
    offline.set_defaults(local=verify_export_file)


def _stub(client: Client) -> audit_pb2_grpc.AuditServiceStub:
    return audit_pb2_grpc.AuditServiceStub(client.channel)


def verify_log(client: Client, args: argparse.Namespace) -> int:
    report = client.call(_stub(client).VerifyLog, audit_pb2.VerifyLogRequest())
    if args.json:
        print_json(report)
    elif report.intact:
        print(f"intact: {report.checked} events match the proof; tree of {report.tree_size} "
              f"to position {report.head_position}, root {report.root_hash.hex()}")
        if report.HasField("signed_head"):
            print(f"signed head: size {report.signed_head.tree_size}, key "
                  f"{report.signed_head.key_id}")
    else:
        print(f"TAMPERED: {len(report.findings) + report.omitted} finding(s)")
        table(["position", "finding", "tenant", "subject", "version", "detail"],
              [(f.position or "-", f.kind, f.tenant, _subject(f), f.version, f.detail)
               for f in report.findings])
    return Exit.OK if report.intact else Exit.TAMPERED


def _subject(finding: audit_pb2.Finding) -> str:
    if finding.subject_name and finding.subject_name != finding.subject_id:
        return f"{finding.subject_kind} {finding.subject_name}"
    return f"{finding.subject_kind} {finding.subject_id}".strip()


def signed_head(client: Client, args: argparse.Namespace) -> int:
    head = client.call(_stub(client).GetSignedHead, audit_pb2.GetSignedHeadRequest(
        tree_size=args.size, position=args.position))
    problem = _head_problem(head)
    if args.json:
        print_json(head)
    else:
        print(f"tree size {head.tree_size} (to log position {head.position}), root "
              f"{head.root_hash.hex()}\nsigned by key {head.key_id} at {head.timestamp_ms} ms; "
              f"public key {head.public_key}")
        print(problem or "signature: valid")
    return Exit.TAMPERED if problem else Exit.OK


def check_consistency(client: Client, args: argparse.Namespace) -> int:
    saved = _saved_head(Path(args.head_file))
    proof = client.call(_stub(client).GetConsistencyProof, audit_pb2.GetConsistencyProofRequest(
        first_size=int(saved["tree_size"]), second_size=0))
    first_root = base64.b64decode(saved["root_hash"])
    holds = verify_consistency(int(saved["tree_size"]), proof.second.tree_size, first_root,
                               proof.second.root_hash, list(proof.path))
    problem = _head_problem(proof.second, saved.get("public_key", ""))
    if holds and not problem:
        problem = _log_problem(client)
    ok = holds and not problem
    if args.json:
        print_data({"consistent": ok, "saved_size": int(saved["tree_size"]),
                    "now": as_dict(proof.second), "problem": problem})
    elif ok:
        print(f"consistent: the log of {proof.second.tree_size} events extends the saved "
              f"head of {saved['tree_size']} unchanged")
    else:
        print(f"TAMPERED: {problem or 'the saved head is not a prefix of the log now'} "
              f"(the service's tree gives root {proof.first_root.hex()} at size "
              f"{saved['tree_size']}, the saved head says {first_root.hex()})")
    return Exit.OK if ok else Exit.TAMPERED


def check_inclusion(client: Client, args: argparse.Namespace) -> int:
    proof = client.call(_stub(client).GetInclusionProof, audit_pb2.GetInclusionProofRequest(
        position=args.position, tree_size=args.size))
    holds = verify_inclusion(proof.leaf_hash, proof.leaf_index, proof.head.tree_size,
                             list(proof.path), proof.head.root_hash)
    problem = _head_problem(proof.head) or ("" if holds else "the path does not lead to "
                                                             "the signed root")
    if args.json:
        print_data({"included": not problem, "proof": as_dict(proof), "problem": problem})
    else:
        print(f"position {proof.position} is leaf {proof.leaf_index} of the signed tree of "
              f"{proof.head.tree_size}: " + (problem or "proven"))
    return Exit.TAMPERED if problem else Exit.OK


def verify_export_file(args: argparse.Namespace) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as error:
        print(f"error: {error}")
        return Exit.SETTINGS
    verdict = verify_export(data, args.public_key)
    if args.json:
        print_data({"ok": verdict.ok, "rows": verdict.rows, "header": verdict.header,
                    "head": verdict.head.as_json() if verdict.head else None,
                    "problems": verdict.problems})
    else:
        for key, value in verdict.header.items():
            print(f"{key}: {value}")
        if verdict.ok and verdict.head is not None:
            print(f"OK: {verdict.rows} rows in the signed log of {verdict.head.size} events, "
                  f"root {verdict.head.root.hex()}")
        for problem in verdict.problems:
            print(f"FAIL: {problem}")
    return Exit.OK if verdict.ok else Exit.TAMPERED


def _log_problem(client: Client) -> str:
    """The proof extending the saved head says nothing of the stored events unless they
    still match it: an edit of the events alone shows here."""
    report = client.call(_stub(client).VerifyLog, audit_pb2.VerifyLogRequest())
    if report.intact:
        return ""
    first = report.findings[0] if report.findings else None
    where = f" (first: position {first.position}, {_subject(first)}, {first.kind})" \
        if first else ""
    return (f"the proof extends the saved head, but the stored log no longer matches it at "
            f"{len(report.findings) + report.omitted} place(s){where}")


def _head_problem(head: audit_pb2.SignedHead, pinned: str = "") -> str:
    """The signature checked with the key the head names (or the one saved before)."""
    key = pinned or head.public_key
    if not key:
        return "the head carries no public key"
    signed = SignedHead(head.tree_size, head.timestamp_ms, head.root_hash, head.key_id,
                        head.signature)
    if pinned and head.public_key != pinned:
        return "the service now signs with another key than the saved head's"
    return "" if signed.verify(load_public(key)) else "the head's signature does not verify"


def _saved_head(path: Path) -> dict[str, Any]:
    """A head as `audit head --json` printed it (bytes in base64)."""
    import json

    doc: dict[str, Any] = json.loads(path.read_text())
    return doc
