"""`trunkplane doctor`: what is wrong with this installation and each trunk, and the fix.
It reads the settings and the store directly and asks the running service for its health.
Per trunk: what the agents last reported (with the fix for each failure), a TCP or TLS
connection, or one OPTIONS over UDP."""

from __future__ import annotations

import ipaddress
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from domain.application import TrunkplaneApp
from domain.catalog import TRUNK
from domain.certificates import check_pair
from domain.trunk_settings import WEAK_PASSWORD_LENGTH
from domain.values import Transport, parse_host_port
from infra.config.settings import Settings, SettingsError
from infra.grpc_api.clients import credentials
from infra.ledger.signing import load_signer, signing_key_path
from infra.security.keys import cipher_key
from sipagent.destinations import Destinations

CONNECT_TIMEOUT = 2.0
CERTIFICATE_WARN_DAYS = 21
T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warn | fail
    subject: str
    text: str
    fix: str = ""


def examine(settings: Settings, server: str, tenant: str | None = None) -> Iterator[Finding]:
    """Every check; per trunk for `tenant`, or for every tenant when None."""
    try:
        key = cipher_key(settings, create=False)
    except SettingsError as error:
        yield Finding("fail", "cipher key", str(error),
                      "point TRUNKPLANE_DATA at the data directory, or set TRUNKPLANE_CIPHER_KEY")
        return
    try:
        app = TrunkplaneApp(env=settings.store_env(key))
    except Exception as error:  # any failure to open the store is the finding
        yield Finding("fail", "event store", f"{settings.describe_store()}: {error}",
                      "check TRUNKPLANE_DATABASE_URL, that the database runs, and permissions")
        return
    try:
        yield _opens(app)
        yield Finding("ok", "event store", f"{settings.describe_store()}, {app.head()} events")
        yield from _signing(settings)
        yield from _server(server)
        yield from _exposure(settings)
        yield from _metrics(settings)
        yield from _broker(settings)
        yield from _relay(settings, app)
        yield from _agents(settings)
        yield from _faces(settings)
        for name in [tenant] if tenant else _tenants(settings):
            yield from _trunks(app, settings, name)
        yield from _pbx_networks(settings)
    finally:
        app.close()


def _signing(settings: Settings) -> Iterator[Finding]:
    """The key that signs tree heads: beside the data, whoever can edit the store can also
    sign a rewritten history."""
    try:
        signer = load_signer(settings, create=False)
    except SettingsError as error:
        yield Finding("fail", "signing key", str(error),
                      "set TRUNKPLANE_SIGNING_KEY_FILE to the key's path (or start the "
                      "service once to create one)")
        return
    path = signing_key_path(settings)
    inside = not settings.signing_key and path.resolve().is_relative_to(
        settings.data_dir.resolve())
    if inside:
        yield Finding("warn", "signing key", f"{path} (key id {signer.key_id}) lies in the "
                      "data directory: whoever can edit the store can sign a rewritten history",
                      "move it to another volume and set TRUNKPLANE_SIGNING_KEY_FILE to it")
    else:
        yield Finding("ok", "signing key", f"key id {signer.key_id}, kept apart from the data")


def _exposure(settings: Settings) -> Iterator[Finding]:
    """What the operator chooses on the first start: where SIP may go and where the agent
    listens; and whether other users of the machine can read the data directory."""
    if settings.data_dir.exists() and settings.data_dir.stat().st_mode & 0o077:
        yield Finding("warn", "data directory", f"{settings.data_dir} is readable by others",
                      f"chmod 700 {settings.data_dir} (trunkplane serve does it on start)")
    if settings.sip is None:
        return
    chosen = Destinations.parse(",".join(settings.sip.destinations))
    if not settings.sip.destinations:
        yield Finding("warn", "SIP destinations", f"not chosen: {chosen}",
                      "set TRUNKPLANE_SIP_DESTINATIONS to your providers' networks (CIDRs, "
                      "e.g. 203.0.113.0/24), or `any`")
    else:
        yield Finding("ok", "SIP destinations", str(chosen))
    if settings.sip.listen_host in ("127.0.0.1", "::1", "localhost"):
        yield Finding("warn", "SIP listen", f"{settings.sip.listen_host}:"
                      f"{settings.sip.listen_port}: providers cannot reach the agent",
                      "set TRUNKPLANE_SIP_LISTEN to the address providers send to, e.g. "
                      "203.0.113.5:5062 (0.0.0.0 for every address)")


def _opens(app: TrunkplaneApp) -> Finding:
    """The key is only valid if it opens what is stored (a wrong one serves reads from the
    views and fails every write)."""
    head = app.head()
    try:
        for note in app.recorder.select_notifications(head, 1) if head else []:
            app.mapper.to_domain_event(note)
    except Exception as error:
        return Finding("fail", "cipher key", f"does not open the stored events "
                       f"({type(error).__name__} at log position {head})",
                       "set TRUNKPLANE_CIPHER_KEY to the key the store was written with")
    return Finding("ok", "cipher key", "present, and opens the newest stored event"
                   if head else "present (the store is empty)")


def _tenants(settings: Settings) -> list[str]:
    """Every tenant with configuration (from the config view), else `default`."""
    from infra.store.views import open_views, view_store
    from projections.config_view import ConfigView

    views = open_views(settings)
    try:
        found = ConfigView(view_store(settings, views), lambda: 0,
                           lambda position, wait: True).tenants()
    except Exception:  # no views yet
        found = []
    finally:
        views.close()
    return found or [settings.tenant]


def _relay(settings: Settings, app: TrunkplaneApp) -> Iterator[Finding]:
    """Which control plane publishes (the advisory lock's holder) and how far behind."""
    if settings.kafka is None or not settings.database_url:
        return
    import psycopg

    from infra.store.leader import RELAY_LOCK

    try:
        with psycopg.connect(settings.database_url, connect_timeout=5) as connection:
            holder = connection.execute(
                "SELECT a.pid, a.client_addr, a.backend_start FROM pg_locks l JOIN "
                "pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND "
                "l.granted AND (l.classid::bigint << 32 | l.objid::bigint) = %s",
                (RELAY_LOCK,)).fetchone()
            rows = connection.execute(
                "SELECT name, position FROM tp_feed_positions WHERE name LIKE 'relay:%%' "
                "AND name LIKE %s", (f"%:{settings.kafka.events_topic}",)).fetchall()
    except psycopg.Error as error:
        yield Finding("warn", "relay", f"cannot read the relay's lock and position: {error}")
        return
    head = app.head()
    positions = ", ".join(f"{name.split(':')[1]}: position {pos} of {head} (lag "
                          f"{head - pos})" for name, pos in rows) or "nothing published yet"
    if holder is None:
        yield Finding("fail", "relay", f"no control plane holds the relay lock; {positions}",
                      "start `trunkplane control` (with the same TRUNKPLANE_DATABASE_URL)")
        return
    where = f"backend {holder[0]} from {holder[1] or 'local socket'}"
    lagging = any(head - pos > 1000 for _, pos in rows)
    yield Finding("warn" if lagging else "ok", "relay", f"leader: {where}; cluster {positions}",
                  "the broker may be away; see the leader's log and "
                  "trunkplane_relay_lag_events" if lagging else "")


def _broker(settings: Settings) -> Iterator[Finding]:
    """The distributed mode's broker: reachable, topics made, wire key usable."""
    kafka = settings.kafka
    if kafka is None:
        yield Finding("ok", "broker", "none (embedded mode: events go from the store to the "
                                      "agent in this process)")
        return
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from infra.security.sealing import WireCipher

    try:
        WireCipher(kafka.wire_key)
        yield Finding("ok", "wire key", "TRUNKPLANE_WIRE_KEY present and valid")
    except ValueError as error:
        yield Finding("fail", "wire key", str(error),
                      "set TRUNKPLANE_WIRE_KEY to the same id:key ring on control planes and "
                      "agents")
    try:
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap, request_timeout_ms=5000,
                                 client_id="trunkplane-doctor")
        try:
            topics = set(admin.list_topics())
        finally:
            admin.close()
    except (KafkaError, OSError) as error:
        yield Finding("fail", "broker", f"{kafka.bootstrap}: {type(error).__name__}: {error}",
                      "check TRUNKPLANE_KAFKA_BOOTSTRAP, that the brokers run, and that this "
                      "host may reach them (firewall, advertised listeners)")
        return
    missing = [t for t in (kafka.events_topic, kafka.status_topic, kafka.calls_topic,
                           kafka.dead_letters(kafka.events_topic)) if t not in topics]
    if missing:
        yield Finding("fail", "broker", f"{kafka.bootstrap} lacks topics {', '.join(missing)}",
                      "run `trunkplane kafka init` with the same TRUNKPLANE_KAFKA_* settings")
    else:
        yield Finding("ok", "broker", f"{kafka.bootstrap}, topics {kafka.events_topic}, "
                                      f"{kafka.status_topic} and {kafka.calls_topic} present")


def _faces(settings: Settings) -> Iterator[Finding]:
    """The agent's two SIP listeners answer: the provider face (where registrations leave
    from and providers send calls) and the PBX face (where PBXes send calls)."""
    faces = []
    if settings.sip is not None:
        faces.append(("provider face", settings.sip.listen_host, settings.sip.listen_port,
                      "providers must reach it: open UDP and TCP "
                      f"{settings.sip.listen_port} (and TLS {settings.sip.tls_port or 5061}) in "
                      "the firewall, and check TRUNKPLANE_SIP_LISTEN"))
    if settings.calls is not None:
        faces.append(("PBX face", settings.calls.pbx_host, settings.calls.pbx_port,
                      "the PBX sends calls here: check TRUNKPLANE_PBX_LISTEN and that the "
                      "agent runs on this host"))
    if not faces:
        yield Finding("ok", "SIP faces", "none (TRUNKPLANE_SIP=off: the agent carries no "
                                         "calls)")
    for subject, host, port, fix in faces:
        yield from _face(subject, host, port, fix)


def _face(subject: str, host: str, port: int, fix: str) -> Iterator[Finding]:
    import asyncio

    if port == 0:
        yield Finding("ok", subject, "on a port the system picks (0): not checked")
        return
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host  # noqa: S104
    shown = f"[{target}]:{port}" if ":" in target else f"{target}:{port}"
    try:
        status, reason, ms = asyncio.run(_options(target, port))
    except OSError as error:
        yield Finding("fail", subject, f"no answer to OPTIONS at udp:{shown}: {error}", fix)
        return
    try:
        socket.create_connection((target, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        yield Finding("fail", subject, f"udp:{shown} answers, tcp:{shown} refuses: {error}",
                      fix)
        return
    yield Finding("ok", subject, f"udp:{shown} answers OPTIONS ({status} {reason} in "
                                 f"{ms:.0f} ms), tcp:{shown} accepts")


async def _options(host: str, port: int) -> tuple[int, str, float]:
    import time

    from sipagent.sip.message import Request
    from sipagent.sip.transport import Destination, SipTransport, new_tag

    transport = SipTransport("::1" if ":" in host else "127.0.0.1", 0, t1=0.25)
    await transport.start()
    try:
        target = f"[{host}]" if ":" in host else host
        request = Request(method="OPTIONS", uri=f"sip:{target}:{port}", headers=[
            ("Max-Forwards", "70"), ("From", f"<sip:doctor@{target}>;tag={new_tag()}"),
            ("To", f"<sip:{target}:{port}>"), ("Call-ID", f"{new_tag()}@trunkplane-doctor"),
            ("CSeq", "1 OPTIONS")])
        started = time.monotonic()
        response = await transport.request(request, Destination("udp", host, port),
                                           timeout=CONNECT_TIMEOUT)
        return response.status, response.reason, (time.monotonic() - started) * 1000
    finally:
        transport.close()


def _server(address: str) -> Iterator[Finding]:
    _, ca_certificate = credentials()
    channel = (grpc.secure_channel(address, grpc.ssl_channel_credentials(ca_certificate))
               if ca_certificate else grpc.insecure_channel(address))
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
        serving = answer.status == health_pb2.HealthCheckResponse.SERVING
        yield Finding("ok" if serving else "fail", "service", f"{address} answers "
                      f"{health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}")
    except grpc.RpcError as error:
        yield Finding("fail", "service", f"{address}: {error.code().name}",
                      "start it with `make run` (or `trunkplane serve`), or set --server")
    finally:
        channel.close()


def _metrics(settings: Settings) -> Iterator[Finding]:
    if settings.metrics_listen == "off":
        yield Finding("ok", "metrics", "switched off (TRUNKPLANE_METRICS_LISTEN=off)")
        return
    url = f"http://{settings.metrics_listen}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=3):
            yield Finding("ok", "metrics", url)
    except OSError as error:
        yield Finding("warn", "metrics", f"{url}: {error}",
                      "is the service running with the same TRUNKPLANE_METRICS_LISTEN?")


def _trunks(app: TrunkplaneApp, settings: Settings, tenant: str) -> Iterator[Finding]:
    catalog = app.catalog(tenant)
    entries = catalog.entries[TRUNK] if catalog else {}
    if not entries:
        yield Finding("warn", "trunks", f"tenant '{tenant}' has no trunk",
                      "create one: trunkplane trunk create NAME --template thevoco ...")
    else:
        yield Finding("ok", f"tenant {tenant}", f"{len(entries)} trunks")
    reported = _reported(settings, tenant, list(entries))
    stun_asked: dict[str, Finding] = {}  # one Binding request per STUN server
    for trunk_id, entry in sorted(entries.items(), key=lambda e: e[1]["name"].casefold()):
        trunk: Any = app.aggregate(UUID(trunk_id))
        doc = reported.get(trunk_id)
        agent_up = doc is not None and doc["state"] in ("registered", "ok")
        yield from _own_setting(check_trunk(entry["name"], trunk.settings, settings.sip),
                                agent_up)
        yield from _client_certificate(entry["name"], trunk.settings)
        if trunk.settings["enabled"]:
            yield from _agent_view(entry["name"], trunk.settings, doc)
            yield from _own_setting(_options_probe(entry["name"], trunk.settings, settings),
                                    agent_up)
            yield from _own_setting(_stun_probe(entry["name"], trunk.settings, settings,
                                                stun_asked), agent_up)


def _own_setting(findings: Iterator[Finding], agent_up: bool) -> Iterator[Finding]:
    """doctor probes from its own process, bound by TRUNKPLANE_SIP_DESTINATIONS as its own
    environment sets it. Where that refuses a trunk the agent reports up, the two settings
    differ (a shell without the server's variable): a warning that says whose setting it
    was, not a failure of the trunk."""
    for finding in findings:
        if agent_up and finding.level == "fail" and finding.fix.startswith(
                DESTINATIONS_FIX.split("(", 1)[0]) and "as the agent read it" not in finding.fix:
            yield Finding("warn", finding.subject,
                          f"not probed from here: {finding.text}; that is doctor's own "
                          "TRUNKPLANE_SIP_DESTINATIONS (this shell's environment), while the "
                          "agent, with its own, reports the trunk up",
                          "run doctor with the agent's TRUNKPLANE_SIP_DESTINATIONS to probe "
                          "it from here too")
        else:
            yield finding


def _pbx_networks(settings: Settings) -> Iterator[Finding]:
    """A network two tenants' PBXes both list: the agents refuse calls from it rather than
    guess the tenant (a per-tenant write cannot see the other tenants to refuse it)."""
    try:
        docs = _read_views(settings, lambda view: view.pbxes())
    except Exception as error:  # no views yet: nothing configured to check
        yield Finding("warn", "PBX networks", f"cannot read the config view: {error}")
        return
    owners: dict[str, list[str]] = {}
    for doc in docs:
        if doc["settings"]["enabled"]:
            for network in doc["settings"]["source_cidrs"]:
                owners.setdefault(network, []).append(doc["tenant"])
    shared = {network: tenants for network, tenants in owners.items() if len(tenants) > 1}
    for network, tenants in sorted(shared.items()):
        yield Finding("fail", "PBX networks", f"{network} is listed by tenants "
                      f"{', '.join(tenants)}: calls from it are refused",
                      "give each tenant's PBX its own network (or one host each): "
                      "trunkplane --tenant T pbx set --source ...")
    if docs and not shared:
        yield Finding("ok", "PBX networks", f"{len(docs)} tenant PBX(es), no network listed "
                                             "by two tenants")


def _read_views(settings: Settings, read: Callable[[Any], T]) -> T:
    """One read of the config view, closed after."""
    from infra.store.views import open_views, view_store
    from projections.config_view import ConfigView

    views = open_views(settings)
    try:
        return read(ConfigView(view_store(settings, views), lambda: 0,
                               lambda position, wait: True))
    finally:
        views.close()


def _agents(settings: Settings) -> Iterator[Finding]:
    """The agents' heartbeats: alive (and which partitions each owns), left cleanly, or
    silent; and partitions of the events topic no live agent owns."""
    try:
        agents = _read_status(settings, lambda status: status.agents())
    except Exception as error:
        yield Finding("warn", "agents", f"cannot read the agent directory: {error}")
        return
    if not agents:
        yield Finding("warn", "agents", "no agent has announced itself",
                      "start `trunkplane serve`, or `trunkplane agent` with the same Kafka "
                      "settings in the distributed mode")
    owned: set[int] = set()
    for agent in agents:
        yield _agent_finding(agent)
        if agent["condition"] == "alive":
            owned |= set(agent.get("partitions") or ())
    kafka = settings.kafka
    if kafka is not None and any(a["condition"] == "alive" for a in agents):
        unowned = sorted(set(range(kafka.partitions)) - owned)
        group = f"consumer group {kafka.agent_group}"
        if unowned:
            yield Finding("fail", group, f"partitions {_ranges(unowned)} of "
                          f"{kafka.events_topic} have no live agent: their tenants' trunks "
                          "are not on the wire", "start an agent, or see why the group does "
                          "not rebalance (the agents' logs)")
        else:
            yield Finding("ok", group, f"all {kafka.partitions} partitions of "
                          f"{kafka.events_topic} owned by live agents")


def _agent_finding(agent: dict[str, Any]) -> Finding:
    held = ", ".join(agent["tenants"]) or "no tenant"
    subject = f"agent {agent['agent_id']}"
    quiet = float(agent["quiet_seconds"])
    if agent["condition"] == "left":
        return Finding("ok", subject, f"left cleanly {quiet:.0f} s ago (its trunks were "
                       "handed over or unregistered)")
    if agent["condition"] == "silent":
        return Finding("fail", subject, f"silent for {quiet:.0f} s (it held {held}); "
                       "dropped from this list after an hour",
                       "check that it runs and reaches the broker; its tenants move to the "
                       "other agents of the group when the group notices")
    parts = _ranges(sorted(agent.get("partitions") or ()))
    return Finding("ok", subject, f"alive, AgentService at {agent['address'] or '?'}, "
                   f"partitions {parts or 'none'}, holds {held}")


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def _reported(settings: Settings, tenant: str, trunk_ids: list[str]) -> dict[str, Any]:
    """What the agents last reported, from the status view (empty if it cannot be read)."""
    try:
        return _read_status(settings, lambda status: status.of(tenant, trunk_ids))
    except Exception:  # no views yet: nothing reported
        return {}


def _read_status(settings: Settings, read: Callable[[Any], T]) -> T:
    """One read of the status view (agents' reports and heartbeats), closed after."""
    from infra.store.views import open_views
    from projections.status import StatusView

    views = open_views(settings)
    try:
        return read(StatusView(views, silent_after=settings.silent_after))
    finally:
        views.close()


ADVICE = {
    "auth_failed": "the provider refused the credentials: check username, password and "
                   "auth id (account trunks) against the provider's portal",
    "forbidden": "the provider refuses this account (403): ask the provider; the agent "
                 "retries only every 15-30 minutes",
    "unreachable": "check the host name and port, DNS, that a firewall lets SIP out and "
                   "back in (UDP/TCP 5060, TLS 5061), and that the transport matches the "
                   "provider's",
    "failed": "the provider answered with an error: see the code and reason",
    "no_records": "the name has no SRV record for the trunk's transport (_sip._udp, "
                  "_sip._tcp or _sips._tcp before it) and no A record: check the host's "
                  "spelling and ask the provider for its SIP server's name, or write "
                  "host:port (then only its A record is looked up)",
    "resolver": "the DNS resolver did not answer: check TRUNKPLANE_SIP_RESOLVER (ip[:port], "
                "empty for /etc/resolv.conf's servers), that the resolver runs, and that "
                "DNS (UDP and TCP 53) may leave this machine",
}


def _agent_view(name: str, s: dict[str, Any], doc: Any) -> Iterator[Finding]:
    subject = f"trunk {name}"
    if doc is None:
        yield Finding("warn", subject, "no agent has reported on it yet",
                      "check that `trunkplane serve` or an agent runs (TRUNKPLANE_SIP=on)")
        return
    code = f" ({doc['sip_code']} {doc['reason']})" if doc["sip_code"] else (
        f" ({doc['reason']})" if doc["reason"] else "")
    state = doc["state"]
    text = f"agent {doc['agent_id']} reports {state}{code} since {doc['since']}"
    if state in ("registered", "ok"):
        yield Finding("ok", subject, text)
    elif "TRUNKPLANE_SIP_DESTINATIONS" in doc["reason"]:
        yield Finding("fail", subject, text, DESTINATIONS_FIX.format("as the agent read it"))
    elif _dns_failure(doc["reason"]):
        yield Finding("fail", subject, text, ADVICE[_dns_failure(doc["reason"])])
    elif _certificate_refused(doc["reason"]):
        yield Finding("fail", subject, f"{text}: the provider refused the TLS client "
                      "certificate", _certificate_fix(name, s))
    elif "servers located answered" in doc["reason"]:  # sipagent.engine.none_answered
        after = (s.get("timers") or {}).get("failover_after")
        yield Finding("fail", subject, text, SILENT_FIX.format(
            name=name, after=f"{after} s (timers.failover_after)" if after else
            "TRUNKPLANE_SIP_FAILOVER_AFTER (4 s unless set)"))
    elif state == "unreachable" and doc["sip_code"]:  # it answered, outside the ok codes
        yield Finding("fail", subject, text, OPTIONS_FIX.format(name=name,
                                                                code=doc["sip_code"]))
    elif state in ADVICE:
        yield Finding("fail", subject, text, ADVICE[state])
    else:
        yield Finding("warn", subject, text)


def _dns_failure(reason: str) -> str:
    """The ADVICE key of a failure to locate the provider (sipagent.sip.locate), or ""."""
    if reason.startswith("DNS: the resolver"):
        return "resolver"
    if reason.startswith("DNS:") and ("no SRV record" in reason or "no address" in reason):
        return "no_records"
    return ""


def _locator(sip: Any) -> Any:
    """The agent's RFC 3263 locator: its resolver, its destinations."""
    import os

    from sipagent.sip.locate import Locator, parse_resolver

    text = sip.resolver if sip is not None else os.environ.get("TRUNKPLANE_SIP_RESOLVER", "")
    listen = sip.listen_host if sip is not None else "127.0.0.1"
    return Locator(parse_resolver(text), _destinations(sip), ipv6=":" in listen)


def _located(sip: Any, name: str, s: dict[str, Any]) -> Iterator[Finding]:
    """Where RFC 3263 sends a trunk whose host (or outbound proxy) is a name; the
    failure and its fix when there is nowhere."""
    import asyncio

    from sipagent.sip.transport import TransportError

    for field in ("outbound_proxy", "host"):
        written = str(s.get(field) or "")
        if not written or parse_host_port(written).is_ip or not _destinations(
                sip).resolves_names:
            continue
        try:
            targets = asyncio.run(_locator(sip).locate(written, s["transport"]))
        except TransportError as error:
            kind = _dns_failure(str(error))
            fix = ADVICE[kind] if kind else DESTINATIONS_FIX.format(_destinations(sip)) if (
                "TRUNKPLANE_SIP_DESTINATIONS" in str(error)) else ADVICE["unreachable"]
            yield Finding("fail", f"trunk {name}", f"{field} {written}: {error}", fix)
            continue
        yield Finding("ok", f"trunk {name}", f"{field} {written} located (RFC 3263): "
                      + ", ".join(str(t) for t in targets))
# What a TLS server's alert says when it will not take the client's certificate (none
# given, unknown CA, expired, revoked), as OpenSSL names them in the agent's reason.
CERTIFICATE_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA",
                      "CERTIFICATE_EXPIRED", "CERTIFICATE_UNKNOWN", "CERTIFICATE_REVOKED",
                      "UNSUPPORTED_CERTIFICATE", "HANDSHAKE_FAILURE")
OPTIONS_FIX = ("the provider answers OPTIONS with {code}, which the trunk does not count as "
               "up: if that is its normal answer, accept it (trunkplane trunk update {name} "
               "--ok-code {code} --ok-code 2xx); else ask the provider why")


SILENT_FIX = ("every server DNS located for the trunk (RFC 3263: its SRV targets and their "
              "addresses) was tried and none answered: check that they are the provider's "
              "current servers, that a firewall lets SIP out and back in (UDP/TCP 5060, "
              "TLS 5061) and that the transport matches the provider's. Each server but the "
              "last gets {after} to answer before the next: if the provider answers more "
              "slowly, raise it (trunkplane trunk update {name} --failover-after N, up to 32)")


def _certificate_refused(reason: str) -> bool:
    return any(alert in reason.upper() for alert in CERTIFICATE_ALERTS)


def _certificate_fix(name: str, s: dict[str, Any]) -> str:
    if not s.get("client_certificate"):
        return ("the provider requires a TLS client certificate: get one from it (or have "
                f"your CSR signed), then trunkplane trunk update {name} --client-cert "
                "cert.pem --client-key key.pem")
    return ("the provider does not accept this certificate: check that a CA it trusts "
            "issued it, that it has not expired or been revoked, and that the provider has "
            f"it on file; then trunkplane trunk update {name} --client-cert cert.pem "
            "--client-key key.pem with the one it accepts")


def _client_certificate(name: str, s: dict[str, Any]) -> Iterator[Finding]:
    """The trunk's own certificate: its key matches, it has not expired (nor soon will)."""
    certificate, key = s.get("client_certificate") or "", s.get("client_key") or ""
    if not certificate:
        return
    subject = f"trunk {name}"
    update = (f"trunkplane trunk update {name} --client-cert cert.pem --client-key key.pem")
    try:
        found = check_pair(certificate, key)
    except ValueError as error:
        yield Finding("fail", subject, f"client certificate: {error}",
                      f"give the key that belongs to the certificate: {update}")
        return
    shown = found.subject or "the client certificate"
    if found.not_after is None:
        yield Finding("ok", subject, f"client certificate {shown}")
        return
    left = found.not_after - datetime.now(UTC)
    when = f"{found.not_after:%Y-%m-%d %H:%M} UTC"
    if left.total_seconds() <= 0:
        yield Finding("fail", subject, f"client certificate {shown} expired on {when}: the "
                      "provider refuses it", f"get a new certificate from the provider: "
                      f"{update}")
    elif left < timedelta(days=CERTIFICATE_WARN_DAYS):
        yield Finding("warn", subject, f"client certificate {shown} expires on {when}",
                      f"renew it before then: {update}")
    else:
        yield Finding("ok", subject, f"client certificate {shown}, expires {when}")


def _options_probe(name: str, s: dict[str, Any], settings: Settings) -> Iterator[Finding]:
    """One OPTIONS over UDP to each address of a UDP trunk (TCP and TLS are tried above)."""
    if s["transport"] != Transport.UDP.value or settings.sip is None:
        return
    import asyncio

    targets = list(s["peer_addresses"]) or [s["host"]]
    for target in targets:
        try:
            status, reason, ms = asyncio.run(_probe(settings.sip, target))
        except OSError as error:
            refused = "TRUNKPLANE_SIP_DESTINATIONS" in str(error)
            yield Finding("fail", f"trunk {name}", f"no answer to OPTIONS from {target} over "
                          f"UDP: {error}", DESTINATIONS_FIX.format(
                              _destinations(settings.sip)) if refused else ADVICE["unreachable"])
            continue
        yield Finding("ok", f"trunk {name}", f"{target} answers OPTIONS over UDP: {status} "
                      f"{reason} in {ms:.0f} ms")


async def _probe(sip: Any, target: str) -> tuple[int, str, float]:
    """sip: the agent's SipSettings (where it may send, the address to send from)."""
    import time

    from sipagent.sip.message import Request
    from sipagent.sip.transport import SipTransport, new_tag

    transport = SipTransport(sip.listen_host, 0, t1=0.5)
    await transport.start()
    try:
        destination = (await _locator(sip).locate(target, "udp"))[0].destination
        host, port = transport.local_address(destination)
        request = Request(method="OPTIONS", uri=f"sip:{destination.host}:{destination.port}",
                          headers=[("Max-Forwards", "70"),
                                   ("From", f"<sip:doctor@{host}:{port}>;tag={new_tag()}"),
                                   ("To", f"<sip:{destination.host}>"),
                                   ("Call-ID", f"{new_tag()}@trunkplane-doctor"),
                                   ("CSeq", "1 OPTIONS")])
        started = time.monotonic()
        response = await transport.request(request, destination, timeout=CONNECT_TIMEOUT)
        return response.status, response.reason, (time.monotonic() - started) * 1000
    finally:
        transport.close()


def _stun_probe(name: str, s: dict[str, Any], settings: Settings,
                asked: dict[str, Finding]) -> Iterator[Finding]:
    """A trunk behind NAT that learns its public address by STUN: one Binding request to
    its server (as the agent sends it, from a UDP socket on the agent's listen address),
    and the fix when no answer comes."""
    from sipagent.nat import stun_server

    server = stun_server(s.get("nat"))
    if not server or settings.sip is None:
        return
    if server not in asked:
        asked[server] = _ask_stun(name, server, settings.sip)
    found = asked[server]
    yield Finding(found.level, f"trunk {name}", found.text, found.fix)


def _ask_stun(name: str, server: str, sip: Any) -> Finding:
    import asyncio

    from sipagent.sip.stun import StunError
    from sipagent.sip.transport import SipTransport, TransportError

    async def ask() -> str:
        transport = SipTransport(sip.listen_host, 0, t1=0.5)
        await transport.start()
        try:  # found as the agent finds it: its resolver, its destinations
            destination = (await _locator(sip).locate(server, "udp"))[0].destination
            return str(await transport.stun_mapping(destination, CONNECT_TIMEOUT))
        finally:
            transport.close()

    try:
        mapping = asyncio.run(ask())
    except TransportError as error:
        if "TRUNKPLANE_SIP_DESTINATIONS" in str(error):
            return Finding("fail", "", f"STUN server {server}: {error}",
                           DESTINATIONS_FIX.format(_destinations(sip)))
        return Finding("fail", "", f"STUN server {server} unreachable: {error}; the agent "
                       "falls back to rport's address or the private one",
                       f"check the STUN host and port (3478 unless given), that a firewall "
                       f"lets UDP out to it and back, or set the public address yourself: "
                       f"trunkplane trunk update {name} --external-ip YOUR.PUBLIC.IP")
    except StunError as error:
        return Finding("fail", "", f"STUN server {server} refused the Binding request: "
                       f"{error}", "use a STUN server that answers Binding requests without "
                       "credentials (a TURN-only server asks for them), or set --external-ip")
    return Finding("ok", "", f"STUN server {server} answers: public address {mapping}")


def _destinations(sip: Any) -> Any:
    """Where the agent may send: doctor sends nowhere else (with SIP off, the setting as
    the agent would read it)."""
    import os

    from sipagent.destinations import Destinations

    text = (",".join(sip.destinations) if sip is not None
            else os.environ.get("TRUNKPLANE_SIP_DESTINATIONS", ""))
    return Destinations.parse(text)


def _reach(sip: Any, host: str, transport: Transport) -> tuple[str, Finding | None]:
    """The address the agent would connect to for host, or the finding why it may not:
    doctor sends nothing where the agent itself may not (TRUNKPLANE_SIP_DESTINATIONS)."""
    import asyncio

    from sipagent.sip.transport import TransportError

    allowed = _destinations(sip)
    try:
        return asyncio.run(_locator(sip).locate(host, transport.value))[0].destination.host, None
    except TransportError as error:
        if "TRUNKPLANE_SIP_DESTINATIONS" in str(error):
            return "", Finding("fail", "", f"{host}: {error}", DESTINATIONS_FIX.format(allowed))
        return "", Finding("fail", "", f"{host}: {error}", ADVICE["unreachable"])


DESTINATIONS_FIX = ("TRUNKPLANE_SIP_DESTINATIONS ({}) does not let the agent send there: add "
                    "the provider's network as a CIDR to TRUNKPLANE_SIP_DESTINATIONS, or "
                    "correct the trunk's host")


def check_trunk(name: str, s: dict[str, Any], sip: Any = None) -> Iterator[Finding]:
    """sip: the agent's SipSettings, whose destinations bound where doctor connects."""
    subject = f"trunk {name}"
    if not s["enabled"]:
        yield Finding("warn", subject, "disabled: no registration, no calls",
                      f"trunkplane trunk update {name} --enabled on")
        return
    transport = Transport(s["transport"])
    yield from _located(sip, name, s)
    targets = [parse_host_port(a) for a in s["peer_addresses"]] or [parse_host_port(s["host"])]
    for target in targets:
        port = target.port or transport.default_port
        if (transport is Transport.TLS and port == 5060) or (transport is not Transport.TLS and (
                port == 5061)):
            yield Finding("warn", subject, f"{transport.value} to port {port}: transport "
                          "and port do not match the usual pairing (UDP/TCP 5060, TLS 5061)",
                          "check the transport the provider expects on that port")
        if transport is Transport.UDP:
            continue
        address, refused = _reach(sip, f"{target.host}:{port}" if ":" not in target.host
                                  else f"[{target.host}]:{port}", transport)
        if refused is not None:
            yield Finding(refused.level, subject, refused.text, refused.fix)
            continue
        try:
            with socket.create_connection((address, port), timeout=CONNECT_TIMEOUT):
                yield Finding("ok", subject, f"{target.host}:{port} accepts TCP connections")
        except OSError as error:
            yield Finding("fail", subject, f"cannot connect to {target.host}:{port} over "
                          f"{transport.value} ({error})",
                          f"check the host and the network; a firewall must allow {port}")
    password = s.get("password") or ""
    if s["type"] != "peer" and len(password) < WEAK_PASSWORD_LENGTH:
        yield Finding("warn", subject, f"password shorter than {WEAK_PASSWORD_LENGTH} "
                      "characters", "ask the provider for a longer one")
    yield from _peer_address(name, subject, s, sip)


def _peer_address(name: str, subject: str, s: dict[str, Any], sip: Any) -> Iterator[Finding]:
    """A peer provider trusts one address. An agent listening on a public address shows
    it as it is; behind NAT (a private listen address, or NAT on) it needs the public one
    fixed or learned, else the provider sees an address it does not trust."""
    if s["type"] != "peer" or s["nat"]["external_ip"] or s["nat"]["stun_server"]:
        return
    listen = getattr(sip, "listen_host", "") if sip is not None else ""
    try:
        public = ipaddress.ip_address(listen).is_global
    except ValueError:
        public = False  # a name or all interfaces: the address it shows is not known here
    if s["nat"]["enabled"]:
        yield Finding("warn", subject, "peer trunk behind NAT with neither an external IP "
                      "nor a STUN server: its public address is learned from the provider's "
                      "answers (rport), after the first OPTIONS",
                      f"trunkplane trunk update {name} --external-ip YOUR.PUBLIC.IP")
    elif not public:
        yield Finding("warn", subject, f"peer trunk, NAT off, and the agent listens on "
                      f"{listen or 'no fixed address'}: the provider must see the address it "
                      "trusts", f"trunkplane trunk update {name} --nat on --external-ip "
                      "YOUR.PUBLIC.IP (or --stun HOST), unless this host's address is the "
                      "one the provider trusts")
