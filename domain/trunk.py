"""The Trunk aggregate: a PBX's line to a SIP provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from domain.errors import ForbiddenError
from domain.model import CommandMeta, Configured, Fields, Subject

# Where a trunk's credentials go: its server (host and port), transport, outbound proxy
# (when the trunk has one) and the domain its From names (the realm a registrar asks for).
CREDENTIAL_ROUTE = ("host", "transport", "outbound_proxy", "from_domain")


class Trunk(Configured):
    KIND: ClassVar[str] = "trunk"
    SUBJECT = Subject.TRUNK

    class TrunkRenamed(Configured.SettingsChanged):
        name: str

    class TrunkTypeChanged(Configured.SettingsChanged):
        type: str

    class ServerChanged(Configured.SettingsChanged):
        host: str
        transport: str

    class CredentialsChanged(Configured.SettingsChanged):
        username: str
        password: str
        auth_id: str

    class RegistrationLimitChanged(Configured.SettingsChanged):
        max_registrations: int

    class FromIdentityChanged(Configured.SettingsChanged):
        from_user: str
        from_domain: str

    class PeerAddressesChanged(Configured.SettingsChanged):
        peer_addresses: list[str]

    class CodecsChanged(Configured.SettingsChanged):
        codecs: list[str]

    class CodecsReordered(CodecsChanged):
        pass

    class DtmfModeChanged(Configured.SettingsChanged):
        dtmf_mode: str

    class NatSettingsChanged(Configured.SettingsChanged):
        nat: dict[str, object]

    class CallLimitsChanged(Configured.SettingsChanged):
        call_limits: dict[str, int | None]

    class DescriptionChanged(Configured.SettingsChanged):
        description: str

    class OutboundProxyChanged(Configured.SettingsChanged):
        outbound_proxy: str
    class TimersChanged(Configured.SettingsChanged):
        timers: dict[str, object]

    class ClientCertificateChanged(Configured.SettingsChanged):
        client_certificate: str
        client_key: str

    def refine_event(
        self, event_class: type[Configured.SettingsChanged], new: Fields
    ) -> type[Configured.SettingsChanged]:
        if event_class is Trunk.CodecsChanged and sorted(new["codecs"]) == sorted(
            self.settings["codecs"]
        ):
            return Trunk.CodecsReordered
        return event_class

    @property
    def name(self) -> str:
        return str(self.settings["name"])

    def check_credentials_stay(self, new: Fields, patch: Fields, meta: CommandMeta) -> None:
        """Sending a trunk's credentials somewhere new needs the admin role or the password
        given again: otherwise anyone who may edit trunks could point one at a server of
        their own, capture the digest and recover the password offline."""
        if meta.may_move_credentials or patch.get("password") or not (
                self.settings.get("password") and new.get("password")):
            return
        moved = [f for f in CREDENTIAL_ROUTE if self.settings.get(f, "") != new.get(f, "")]
        if moved:
            raise ForbiddenError(
                f"changing {', '.join(moved)} of trunk '{self.name}' sends its credentials "
                "somewhere new: it needs the role admin, or the password given again in the "
                "same request")


LIMIT_FIELDS = ("max_concurrent_calls", "max_inbound_calls", "max_outbound_calls")
# A trunk's own timers; None: the agent's process-wide value (TRUNKPLANE_SIP_*). `ok_codes`
# empty: any 2xx answer to OPTIONS means the provider is there.
TIMER_DEFAULTS: dict[str, Any] = {
    "registration_expiry": None, "backoff_base": None, "backoff_cap": None, "qualify": True,
    "options_interval": None, "down_after": None, "up_after": None, "ok_codes": (),
    "failover_after": None,
}


@dataclass(frozen=True)
class TrunkField:
    """One trunk setting, declared once: its default, whether it is a secret, and the event
    that records a change of it. The defaults, the event map, the secrets, the Avro record's
    field order and the gRPC conversion are derived from this table by name; validation,
    which ties fields together, is domain.trunk_settings. The event classes above must
    stay written out: the store names every stored event by its class."""

    name: str
    default: Any
    event: type[Configured.SettingsChanged] | None  # None: Enabled/Disabled change it
    secret: bool = False


TRUNK_FIELDS = (
    TrunkField("name", "", Trunk.TrunkRenamed),
    TrunkField("type", "", Trunk.TrunkTypeChanged),
    TrunkField("host", "", Trunk.ServerChanged),
    TrunkField("transport", "udp", Trunk.ServerChanged),
    TrunkField("username", "", Trunk.CredentialsChanged),
    TrunkField("password", "", Trunk.CredentialsChanged, secret=True),
    TrunkField("auth_id", "", Trunk.CredentialsChanged),
    TrunkField("max_registrations", 1, Trunk.RegistrationLimitChanged),
    TrunkField("from_user", "", Trunk.FromIdentityChanged),
    TrunkField("from_domain", "", Trunk.FromIdentityChanged),
    TrunkField("peer_addresses", (), Trunk.PeerAddressesChanged),
    TrunkField("codecs", (), Trunk.CodecsChanged),
    TrunkField("dtmf_mode", "rfc2833", Trunk.DtmfModeChanged),
    TrunkField("nat", {"enabled": False, "external_ip": "", "local_networks": (),
                       "stun_server": ""}, Trunk.NatSettingsChanged),
    TrunkField("call_limits", dict.fromkeys(LIMIT_FIELDS), Trunk.CallLimitsChanged),
    TrunkField("enabled", True, None),
    TrunkField("description", "", Trunk.DescriptionChanged),
    # RFC 3261 loose routing: registrations and calls go to this proxy, with a Route
    # header naming it; blank: straight to the host (located by RFC 3263).
    TrunkField("outbound_proxy", "", Trunk.OutboundProxyChanged),
    # Fields added after the first release: events written before lack them, so readers
    # take them with .get() or through default_settings().
    TrunkField("timers", TIMER_DEFAULTS, Trunk.TimersChanged),
    TrunkField("client_certificate", "", Trunk.ClientCertificateChanged),
    TrunkField("client_key", "", Trunk.ClientCertificateChanged, secret=True),
)
Trunk.EVENT_FOR_FIELD = {f.name: f.event for f in TRUNK_FIELDS if f.event is not None}


def fresh(value: Any) -> Any:
    """A default as a value of its own (tuples become the lists events carry)."""
    if isinstance(value, dict):
        return {k: fresh(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value
