"""`trunkplane channel ...`: call admission by hand, as a PBX would ask (role pbx or admin)."""

from __future__ import annotations

import argparse

from infra.cli.client import Client
from infra.cli.output import fields, print_json, table
from trunkplane.v1 import agent_pb2

EXAMPLES = """examples:
  trunkplane channel acquire 92125551234 --from 1001
  trunkplane channel acquire 15551234567 --inbound-on voco
  trunkplane channel release LEASE_ID --json"""


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    acquire = sub.add_parser("acquire", help="which trunk would carry this call now; holds a "
                                             "lease until released or expired")
    acquire.add_argument("number", help="outbound: the number dialled; inbound: the DID")
    acquire.add_argument("--from", dest="extension", default="", metavar="EXTENSION",
                         help="outbound: the calling extension")
    acquire.add_argument("--inbound-on", dest="trunk", default="", metavar="TRUNK",
                         help="inbound: the trunk the call arrived on (id or name)")
    acquire.add_argument("--call-id", default="", metavar="ID",
                         help="the PBX's call id, for the logs and call records")
    acquire.set_defaults(handler=acquire_channel)
    for action, handler, text in (
            ("renew", renew_channel, "keep a lease alive for another TTL"),
            ("release", release_channel, "the call ended: free the channel")):
        p = sub.add_parser(action, help=text)
        p.add_argument("lease", help="the lease id that acquire printed")
        p.set_defaults(handler=handler)
    fail = sub.add_parser("fail", help="the call failed with a SIP code: 408/5xx fail over")
    fail.add_argument("lease", help="the lease id that acquire printed")
    fail.add_argument("sip_code", type=int, help="the final SIP answer, e.g. 503")
    fail.set_defaults(handler=report_failure)


def acquire_channel(client: Client, args: argparse.Namespace) -> int:
    inbound = bool(args.trunk)
    request = agent_pb2.AcquireChannelRequest(
        tenant=client.tenant, direction=agent_pb2.INBOUND if inbound else agent_pb2.OUTBOUND,
        number="" if inbound else args.number, did=args.number if inbound else "",
        extension=args.extension, trunk=args.trunk, call_id=args.call_id)
    answer = client.call(client.agent.AcquireChannel, request)
    if args.json:
        print_json(answer)
        return 0
    show_lease(answer.lease)
    table(["trunk", "outcome", "why"], [(c.trunk_name, c.outcome, c.detail)
                                         for c in answer.considered])
    return 0


def show_lease(lease: agent_pb2.Lease) -> None:
    fields([("lease", lease.lease_id), ("trunk", lease.trunk_name),
            ("dial", lease.dial_number), ("destination", lease.destination or "-"),
            ("expires (utc)", lease.expires_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"))])


def renew_channel(client: Client, args: argparse.Namespace) -> int:
    lease = client.call(client.agent.RenewChannel,
                        agent_pb2.RenewChannelRequest(lease_id=args.lease))
    if args.json:
        print_json(lease)
    else:
        show_lease(lease)
    return 0


def release_channel(client: Client, args: argparse.Namespace) -> int:
    answer = client.call(client.agent.ReleaseChannel,
                         agent_pb2.ReleaseChannelRequest(lease_id=args.lease))
    if args.json:
        print_json(answer)
    else:
        print("released" if answer.released else "already released or expired")
    return 0


def report_failure(client: Client, args: argparse.Namespace) -> int:
    answer = client.call(client.agent.ReportCallFailure, agent_pb2.ReportCallFailureRequest(
        lease_id=args.lease, sip_code=args.sip_code))
    if args.json:
        print_json(answer)
    elif answer.failed_over:
        print("failed over:")
        show_lease(answer.lease)
    else:
        print(f"released; {args.sip_code} does not fail over (the number, not the trunk)")
    return 0
