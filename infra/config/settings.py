"""Settings from the environment. Every variable is documented in the README."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from domain.status import HEARTBEAT_EVERY, SESSION_TIMEOUT, SILENT_AFTER, silent_after
from sipagent.destinations import Destinations
from sipagent.settings import CallSettings, SipSettings
from sipagent.sip.locate import parse_resolver

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_METRICS = "127.0.0.1:9464"
DEFAULT_WEB = "127.0.0.1:8080"
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024
DEFAULT_RATE_LIMIT = 500


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class KafkaSettings:
    """The distributed mode's broker: where it is, the topics, and how `kafka init` makes
    them."""

    bootstrap: str
    topic_prefix: str = "trunkplane."
    partitions: int = 12
    replication: int = 3
    events_retention_ms: int = -1  # the source of every state: kept (a full replay needs it)
    status_retention_ms: int = 7 * 24 * 3600 * 1000
    calls_retention_ms: int = 7 * 24 * 3600 * 1000  # control planes copy them to their store
    wire_key: str = ""  # id:base64key,...: seals passwords on the wire
    agent_group: str = "trunkplane-agents"
    agent_id: str = ""
    # How long the group waits for a silent agent before its partitions move. The control
    # planes call an agent silent (and stop showing its trunks registered) a second
    # before that; heartbeats go out often enough that a live one never looks silent.
    session_timeout: float = SESSION_TIMEOUT
    heartbeat_every: float = HEARTBEAT_EVERY
    handover_wait: float = 20.0  # a stopping agent waits this long for others to take over
    # how often an agent writes its tenants' changed aggregates to the state topic (what
    # the next owner of a partition starts from, then reading only the events after)
    state_every: float = 1.0

    @property
    def silent_after(self) -> float:
        return silent_after(self.session_timeout, self.heartbeat_every)

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}events"

    @property
    def status_topic(self) -> str:
        return f"{self.topic_prefix}status"

    @property
    def state_topic(self) -> str:
        return f"{self.topic_prefix}state"

    @property
    def calls_topic(self) -> str:
        return f"{self.topic_prefix}calls"

    @property
    def control_group(self) -> str:
        """The control planes' group on the status topic. Named by the prefix, like the
        topics: deployments sharing a Kafka cluster (or tests sharing a broker) must not
        share a group, where one's members coming and going stalls the other's reads."""
        return f"{self.topic_prefix}control"

    @property
    def control_calls_group(self) -> str:
        return f"{self.topic_prefix}control-calls"

    @property
    def heads_topic(self) -> str:
        return f"{self.topic_prefix}heads"

    def dead_letters(self, topic: str) -> str:
        return f"{topic}.dlq"

    @classmethod
    def from_env(cls, env: dict[str, str]) -> KafkaSettings | None:
        bootstrap = env.get("TRUNKPLANE_KAFKA_BOOTSTRAP", "").strip()
        if not bootstrap:
            return None
        retention = env.get("TRUNKPLANE_KAFKA_EVENTS_RETENTION_MS", "-1")
        if retention != "-1" and not retention.isdigit():
            raise SettingsError("TRUNKPLANE_KAFKA_EVENTS_RETENTION_MS must be -1 (keep "
                                f"forever) or milliseconds, not '{retention}'")
        return cls(
            bootstrap=bootstrap,
            topic_prefix=env.get("TRUNKPLANE_KAFKA_TOPIC_PREFIX", "trunkplane."),
            partitions=_number(env, "TRUNKPLANE_KAFKA_PARTITIONS", 12),
            replication=_number(env, "TRUNKPLANE_KAFKA_REPLICATION", 3),
            events_retention_ms=int(retention),
            status_retention_ms=_number(env, "TRUNKPLANE_KAFKA_STATUS_RETENTION_MS",
                                        7 * 24 * 3600 * 1000),
            calls_retention_ms=_number(env, "TRUNKPLANE_KAFKA_CALLS_RETENTION_MS",
                                       7 * 24 * 3600 * 1000),
            wire_key=env.get("TRUNKPLANE_WIRE_KEY", ""),
            agent_group=env.get("TRUNKPLANE_AGENT_GROUP", "trunkplane-agents"),
            agent_id=env.get("TRUNKPLANE_AGENT_ID", ""),
            session_timeout=_seconds(env, "TRUNKPLANE_AGENT_SESSION_TIMEOUT",
                                     SESSION_TIMEOUT),
            heartbeat_every=_seconds(env, "TRUNKPLANE_AGENT_HEARTBEAT", HEARTBEAT_EVERY),
            handover_wait=_seconds(env, "TRUNKPLANE_AGENT_HANDOVER_WAIT", 20.0),
            state_every=_seconds(env, "TRUNKPLANE_AGENT_STATE_EVERY", 1.0),
        )


@dataclass(frozen=True)
class ControlSettings:
    """A control plane a distributed agent calls (to record fraud alerts)."""

    address: str
    token: str = ""
    ca: str = ""  # PEM of the CA of the control plane's certificate; empty: system CAs
    tls: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ControlSettings | None:
        address = env.get("TRUNKPLANE_CONTROL", "").strip()
        if not address:
            return None
        return cls(address=address, token=env.get("TRUNKPLANE_CONTROL_TOKEN", ""),
                   ca=env.get("TRUNKPLANE_CONTROL_CA", ""),
                   tls=_choice(env, "TRUNKPLANE_CONTROL_TLS", "on", ("on", "off")) == "on")


@dataclass(frozen=True)
class NotifySettings:
    """The notifier's clock and its patience with channels (the tenants' thresholds are
    configuration, not settings: see domain.alerting)."""

    enabled: bool = True
    tick: float = 1.0  # seconds between looks at time-based thresholds and due retries
    retry_base: float = 5.0  # the first retry waits about this, doubling per failure,
    retry_cap: float = 300.0  # capped at this (each wait uniform in [W/2, W])
    max_attempts: int = 8  # then the delivery is kept as failed
    timeout: float = 10.0  # one HTTP or SMTP exchange
    ca_file: str = ""  # CA bundle for webhook and SMTP TLS; empty: the system's
    audit_interval: float = 3600.0  # seconds between checks of the log's hash chain

    @classmethod
    def from_env(cls, env: dict[str, str]) -> NotifySettings:
        return cls(
            enabled=_choice(env, "TRUNKPLANE_NOTIFY", "on", ("on", "off")) == "on",
            tick=_seconds(env, "TRUNKPLANE_NOTIFY_TICK", 1.0),
            retry_base=_seconds(env, "TRUNKPLANE_NOTIFY_RETRY_BASE", 5.0),
            retry_cap=_seconds(env, "TRUNKPLANE_NOTIFY_RETRY_CAP", 300.0),
            max_attempts=max(1, _number(env, "TRUNKPLANE_NOTIFY_MAX_ATTEMPTS", 8)),
            timeout=_seconds(env, "TRUNKPLANE_NOTIFY_TIMEOUT", 10.0),
            ca_file=env.get("TRUNKPLANE_NOTIFY_CA", ""),
            audit_interval=_seconds(env, "TRUNKPLANE_NOTIFY_AUDIT_INTERVAL", 3600.0))


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    cipher_key: str
    listen: str
    log_level: str
    tenant: str = "default"
    log_format: str = "text"
    metrics_listen: str = "off"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE
    rate_limit: float = 0.0  # requests per second per principal; 0 = no limit
    address_rate_limit: float = 0.0  # per client address, before authentication
    total_rate_limit: float = 0.0  # all principals together, after authentication
    max_streams: int = 1000  # open streams in all (each holds a thread of the streams' pool)
    max_streams_per_caller: int = 64  # per principal, or per address without credentials
    reflection: bool = False  # server reflection, for callers with a token
    tls: bool = True
    tls_cert: str = ""  # PEM paths; empty: a self-signed pair in the data directory
    tls_key: str = ""
    tls_client_ca: str = ""  # set: clients may prove themselves with certificates (mTLS)
    kafka: KafkaSettings | None = None  # None: embedded mode, no broker
    sip: SipSettings | None = None  # None: the agent puts nothing on the wire
    calls: CallSettings | None = None  # None: no B2BUA (no SIP, or TRUNKPLANE_PBX_LISTEN=off)
    lease_ttl: float = 120.0  # seconds a channel lease lives unless renewed
    call_records_days: int = 90  # call records older than this are deleted; 0: kept
    control: ControlSettings | None = None  # where a distributed agent reports alerts
    advertise: str = ""  # host:port others reach this process's gRPC at
    notify: NotifySettings = NotifySettings()
    web_listen: str = "off"  # the web console's address; off (the default in code): none
    # The key that signs tree heads: inline (base64 or PEM) or a file, which may live on
    # another volume than the data; neither: signing.key in the data directory.
    signing_key: str = ""
    signing_key_file: str = ""

    @property
    def silent_after(self) -> float:
        """When this process calls an agent silent (and its reports stale)."""
        return self.kafka.silent_after if self.kafka else SILENT_AFTER

    @property
    def heartbeat_every(self) -> float:
        return self.kafka.heartbeat_every if self.kafka else HEARTBEAT_EVERY

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Every setting checked here, at start: a mistake is one SettingsError naming the
        variable, never a traceback later. Secrets may come from files (*_FILE)."""
        env = with_secret_files(dict(os.environ if env is None else env))
        url = env.get("TRUNKPLANE_DATABASE_URL", "")
        if url and urlparse(url).scheme not in ("postgresql", "postgres"):
            raise SettingsError(
                "TRUNKPLANE_DATABASE_URL must be postgresql://user:password@host:port/dbname"
            )
        return cls(
            data_dir=Path(env.get("TRUNKPLANE_DATA", "./var")),
            database_url=url,
            cipher_key=env.get("TRUNKPLANE_CIPHER_KEY", ""),
            listen=_address(env, "TRUNKPLANE_LISTEN", DEFAULT_LISTEN),
            log_level=_choice(env, "TRUNKPLANE_LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            log_format=_choice(env, "TRUNKPLANE_LOG_FORMAT", "text", ("text", "json")),
            metrics_listen=_address(env, "TRUNKPLANE_METRICS_LISTEN", DEFAULT_METRICS,
                                    off=True),
            max_message_bytes=_number(env, "TRUNKPLANE_MAX_MESSAGE_BYTES",
                                      DEFAULT_MAX_MESSAGE),
            rate_limit=_number(env, "TRUNKPLANE_RATE_LIMIT", DEFAULT_RATE_LIMIT),
            address_rate_limit=_number(env, "TRUNKPLANE_ADDRESS_RATE_LIMIT", 2000),
            total_rate_limit=_number(env, "TRUNKPLANE_TOTAL_RATE_LIMIT", 5000),
            max_streams=max(1, _number(env, "TRUNKPLANE_MAX_STREAMS", 1000)),
            max_streams_per_caller=max(1, _number(env, "TRUNKPLANE_MAX_STREAMS_PER_CALLER", 64)),
            reflection=_choice(env, "TRUNKPLANE_REFLECTION", "off", ("on", "off")) == "on",
            tls=_choice(env, "TRUNKPLANE_TLS", "on", ("on", "off")) == "on",
            tls_cert=env.get("TRUNKPLANE_TLS_CERT", ""),
            tls_key=env.get("TRUNKPLANE_TLS_KEY", ""),
            tls_client_ca=env.get("TRUNKPLANE_TLS_CLIENT_CA", ""),
            kafka=KafkaSettings.from_env(env),
            sip=sip_settings(env),
            calls=call_settings(env, sip_settings(env)),
            lease_ttl=_seconds(env, "TRUNKPLANE_LEASE_TTL", 120.0),
            call_records_days=_number(env, "TRUNKPLANE_CALL_RECORDS_DAYS", 90),
            control=ControlSettings.from_env(env),
            advertise=_address(env, "TRUNKPLANE_ADVERTISE", "", empty=True),
            web_listen=_address(env, "TRUNKPLANE_WEB_LISTEN", DEFAULT_WEB, off=True),
            signing_key=env.get("TRUNKPLANE_SIGNING_KEY", ""),
            signing_key_file=env.get("TRUNKPLANE_SIGNING_KEY_FILE", ""),
            notify=NotifySettings.from_env(env),
        )

    def private_data_dir(self) -> Path:
        """The data directory, made (or made again) readable by its owner only: it holds
        the keys, the tokens and, in the views, the whole configuration in clear."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        return self.data_dir

    def with_listen(self, listen: str) -> Settings:
        return replace(self, listen=listen)

    def store_env(self, cipher_key: str) -> dict[str, str]:
        """The eventsourcing environment for the event store these settings name."""
        env = {
            "CIPHER_TOPIC": "infra.security.keys:KeyRingCipher",
            "CIPHER_KEY": cipher_key,
            "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
        }
        # The recorders write each event's proof in its transaction (infra.ledger); named
        # here by topic, since settings sit below the ledger in infra's layers.
        if not self.database_url:
            env |= {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                    "APPLICATION_RECORDER_TOPIC": "infra.ledger.recorders:SqliteProofRecorder",
                    "SQLITE_DBNAME": str(self.data_dir / "events.sqlite"),
                    "SQLITE_LOCK_TIMEOUT": "10"}
            return env
        url = urlparse(self.database_url)
        return env | {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "APPLICATION_RECORDER_TOPIC": "infra.ledger.recorders:PostgresProofRecorder",
            "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": unquote(url.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "8",
        }

    def describe_store(self) -> str:
        if not self.database_url:
            return f"SQLite {self.data_dir / 'events.sqlite'}"
        url = urlparse(self.database_url)
        return f"PostgreSQL {url.hostname}:{url.port or 5432}/{url.path.lstrip('/')}"


def sip_settings(env: dict[str, str]) -> SipSettings | None:
    """The SIP engine's settings (TRUNKPLANE_SIP=off: none, the agent stays off the wire)."""
    if _choice(env, "TRUNKPLANE_SIP", "on", ("on", "off")) == "off":
        return None
    # Loopback unless the operator names the address providers reach (issue 20: listening
    # everywhere by default answered anyone who could reach the machine); the port is
    # the provider face's usual 5060 (issue 12), TCP on it too.
    listen = env.get("TRUNKPLANE_SIP_LISTEN", "127.0.0.1:5060")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise SettingsError(f"TRUNKPLANE_SIP_LISTEN must be host:port, not '{listen}'")
    chosen = env.get("TRUNKPLANE_SIP_DESTINATIONS", "")
    try:
        Destinations.parse(chosen)
    except ValueError as error:
        raise SettingsError(f"TRUNKPLANE_SIP_DESTINATIONS: {error}") from None
    destinations = tuple(d.strip() for d in chosen.split(",") if d.strip())
    resolver = env.get("TRUNKPLANE_SIP_RESOLVER", "").strip()
    try:
        parse_resolver(resolver)
    except ValueError as error:
        raise SettingsError(f"TRUNKPLANE_SIP_RESOLVER: {error}") from None
    return SipSettings(
        agent_id=env.get("TRUNKPLANE_AGENT_ID", "") or socket.gethostname(),
        listen_host=host.strip("[]"), listen_port=int(port),
        options_interval=_seconds(env, "TRUNKPLANE_SIP_OPTIONS_INTERVAL", 30.0),
        options_timeout=_seconds(env, "TRUNKPLANE_SIP_OPTIONS_TIMEOUT", 3.0),
        down_after=_number(env, "TRUNKPLANE_SIP_DOWN_AFTER", 2),
        up_after=_number(env, "TRUNKPLANE_SIP_UP_AFTER", 1),
        max_in_flight=max(1, _number(env, "TRUNKPLANE_SIP_MAX_IN_FLIGHT", 100)),
        startup_spread=_seconds(env, "TRUNKPLANE_SIP_STARTUP_SPREAD", 5.0),
        backoff_base=_seconds(env, "TRUNKPLANE_SIP_BACKOFF_BASE", 30.0),
        backoff_max=_seconds(env, "TRUNKPLANE_SIP_BACKOFF_MAX", 1800.0),
        stun_interval=_seconds(env, "TRUNKPLANE_SIP_STUN_INTERVAL", 30.0),
        stun_timeout=_seconds(env, "TRUNKPLANE_SIP_STUN_TIMEOUT", 3.0),
        failover_after=_seconds(env, "TRUNKPLANE_SIP_FAILOVER_AFTER", 4.0),
        register_expires=_number(env, "TRUNKPLANE_SIP_EXPIRES", 3600),
        tls_ca=env.get("TRUNKPLANE_SIP_TLS_CA", ""),
        destinations=destinations, resolver=resolver,
        tcp_port=int(port),  # TCP on the UDP port; TLS on its own, with a certificate
        tls_port=_tls_port(env, "TRUNKPLANE_SIP_TLS_PORT", 5061),
        tls_cert=env.get("TRUNKPLANE_SIP_TLS_CERT", ""),
        tls_key=env.get("TRUNKPLANE_SIP_TLS_KEY", ""))


def call_settings(env: dict[str, str], sip: SipSettings | None) -> CallSettings | None:
    """The B2BUA's PBX face and call timers (none without SIP, or with
    TRUNKPLANE_PBX_LISTEN=off)."""
    listen = env.get("TRUNKPLANE_PBX_LISTEN", "127.0.0.1:5080")
    if sip is None or listen == "off":
        return None
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise SettingsError(f"TRUNKPLANE_PBX_LISTEN must be host:port or off, not '{listen}'")
    return CallSettings(
        agent_id=sip.agent_id, pbx_host=host.strip("[]"), pbx_port=int(port),
        pbx_tcp_port=int(port), pbx_tls_port=_tls_port(env, "TRUNKPLANE_PBX_TLS_PORT", 5081),
        tls_cert=sip.tls_cert, tls_key=sip.tls_key,
        provider_timeout=_seconds(env, "TRUNKPLANE_CALL_PROVIDER_TIMEOUT", 8.0),
        ring_timeout=_seconds(env, "TRUNKPLANE_CALL_RING_TIMEOUT", 120.0),
        probe_interval=max(1.0, _seconds(env, "TRUNKPLANE_CALL_PROBE_INTERVAL", 30.0)),
        max_duration=_seconds(env, "TRUNKPLANE_CALL_MAX_DURATION", 14400.0))


def _tls_port(env: dict[str, str], name: str, default: int) -> int | None:
    """A TLS listener only with a certificate and key (TRUNKPLANE_SIP_TLS_CERT/KEY)."""
    if not (env.get("TRUNKPLANE_SIP_TLS_CERT") and env.get("TRUNKPLANE_SIP_TLS_KEY")):
        return None
    return _number(env, name, default)


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    text = env.get(name, str(default))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise SettingsError(f"{name} must be a number of seconds, not '{text}'")
    return value


def _choice(env: dict[str, str], name: str, default: str, allowed: tuple[str, ...],
            upper: bool = False) -> str:
    value = env.get(name, default)
    value = value.upper() if upper else value
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, not '{value}'")
    return value


def _number(env: dict[str, str], name: str, default: int) -> int:
    text = env.get(name, str(default))
    if not text.isdigit():
        raise SettingsError(f"{name} must be a whole number, not '{text}'")
    return int(text)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Secrets that may come from a file (a mounted secret) instead of the environment, as the
# token already could (TRUNKPLANE_TOKEN_FILE): NAME_FILE holds the value.
SECRETS = ("TRUNKPLANE_CIPHER_KEY", "TRUNKPLANE_WIRE_KEY", "TRUNKPLANE_DATABASE_URL",
           "TRUNKPLANE_CONTROL_TOKEN")


def with_secret_files(env: dict[str, str]) -> dict[str, str]:
    """env with each secret read from its *_FILE when that is set (surrounding white space
    dropped); setting both is a mistake, and so is a file that cannot be read."""
    for name in SECRETS:
        path = env.get(f"{name}_FILE", "")
        if not path:
            continue
        if env.get(name):
            raise SettingsError(f"{name} and {name}_FILE are both set: keep one")
        try:
            env[name] = Path(path).read_text().strip()
        except OSError as error:
            raise SettingsError(f"{name}_FILE: cannot read {path}: "
                                f"{error.strerror or error}") from None
    return env


def _address(env: dict[str, str], name: str, default: str, *, off: bool = False,
             empty: bool = False) -> str:
    """host:port (IPv6 in brackets), or `off` / empty where the setting allows it."""
    value = env.get(name, default).strip()
    if (off and value == "off") or (empty and not value):
        return value
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        allowed = " or off" if off else ""
        raise SettingsError(f"{name} must be host:port{allowed}, not '{value}'")
    return value
