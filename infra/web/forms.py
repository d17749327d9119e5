"""The trunk form: which fields each trunk type has, form values to the API's `Trunk` and
update mask, and the API's field violations back to the inputs they are about. Input names
are the API's field paths (`call_limits.max_inbound_calls`), so a violation of
`trunk.host` belongs to the input named `host`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trunkplane.v1 import trunk_pb2

CODECS = ("PCMU", "PCMA", "G729", "OPUS")
TYPES = ("register", "account", "peer")
TRANSPORTS = ("udp", "tcp", "tls")
DTMF_MODES = ("rfc2833", "info", "inband")
LIMITS = ("max_concurrent_calls", "max_inbound_calls", "max_outbound_calls")
NAT = ("nat.enabled", "nat.external_ip", "nat.local_networks", "nat.stun_server")
TIMER_NUMBERS = tuple(f"timers.{k}" for k in ("registration_expiry", "backoff_base",
                                              "backoff_cap", "options_interval", "down_after",
                                              "up_after", "failover_after"))
CERTIFICATE = ("client_certificate", "client_key")
COMMON = ("name", "type", "transport", "outbound_proxy", "from_user", "from_domain", "codecs",
          "dtmf_mode",
          *NAT, *(f"call_limits.{k}" for k in LIMITS), "enabled", "description",
          *TIMER_NUMBERS, "timers.ok_codes", *CERTIFICATE)
# The fields only some types have; the form shows and sends them for those types only.
BY_TYPE: dict[str, tuple[str, ...]] = {
    "register": ("host", "username", "password", "timers.qualify"),
    "account": ("host", "username", "password", "auth_id", "max_registrations",
                "timers.qualify"),
    "peer": ("peer_addresses",),
}
TYPE_OF_FIELD = {f: tuple(t for t in TYPES if f in BY_TYPE[t])
                 for f in {f for fs in BY_TYPE.values() for f in fs}}
NUMBERS = ("max_registrations", *(f"call_limits.{k}" for k in LIMITS), *TIMER_NUMBERS)
LISTS = ("peer_addresses", "nat.local_networks", "timers.ok_codes")
FLAGS = ("enabled", "nat.enabled", "timers.qualify")
SECRETS = ("password", "client_key")  # blank: keep the stored one


def fields_of(kind: str) -> tuple[str, ...]:
    return (*COMMON, *BY_TYPE.get(kind, ()))


@dataclass
class TrunkForm:
    """What the form shows: values by input name, and errors by input name ("" for the
    errors that name no input of the form)."""

    values: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.values.get("type") or "register")

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def take_violations(self, violations: Mapping[str, Sequence[str]]) -> None:
        """Each violation next to its input; the rest (a template's, the mask's) on top."""
        for path, messages in violations.items():
            name = path.removeprefix("trunk.").removeprefix("changes.")
            known = name in fields_of(self.kind) or name.partition("[")[0] in fields_of(
                self.kind)
            for message in messages:
                self.error(name.partition("[")[0] if known else "", message if known
                           else f"{path}: {message}")


def from_trunk(trunk: trunk_pb2.Trunk) -> TrunkForm:
    limits = trunk.call_limits
    values: dict[str, Any] = {
        "name": trunk.name, "type": trunk.type or "register", "host": trunk.host,
        "transport": trunk.transport or "udp", "outbound_proxy": trunk.outbound_proxy,
        "username": trunk.username, "password": "",
        "auth_id": trunk.auth_id, "max_registrations": str(trunk.max_registrations or ""),
        "from_user": trunk.from_user, "from_domain": trunk.from_domain,
        "peer_addresses": "\n".join(trunk.peer_addresses), "codecs": list(trunk.codecs),
        "dtmf_mode": trunk.dtmf_mode or "rfc2833", "nat.enabled": trunk.nat.enabled,
        "nat.external_ip": trunk.nat.external_ip,
        "nat.local_networks": "\n".join(trunk.nat.local_networks),
        "nat.stun_server": trunk.nat.stun_server,
        "enabled": trunk.enabled if trunk.HasField("enabled") else True,
        "description": trunk.description, "password_set": trunk.password_set,
    }
    for key in LIMITS:
        values[f"call_limits.{key}"] = str(getattr(limits, key)) if limits.HasField(key) else ""
    timers = trunk.timers
    for name in TIMER_NUMBERS:
        key = name.partition(".")[2]
        values[name] = str(getattr(timers, key)) if timers.HasField(key) else ""
    values["timers.qualify"] = timers.qualify if timers.HasField("qualify") else True
    values["timers.ok_codes"] = "\n".join(timers.ok_codes)
    values["client_certificate"] = trunk.client_certificate
    values["client_key"] = ""
    values["client_key_set"] = trunk.client_key_set
    return TrunkForm(values)


def from_post(form: Any) -> TrunkForm:
    """The posted values of the chosen type's fields (the others are not read at all)."""
    kind = str(form.get("type", "register"))
    values: dict[str, Any] = {"type": kind}
    for name in fields_of(kind):
        if name == "codecs":
            values[name] = [c for c in form.getlist("codecs") if c in CODECS]
        elif name in FLAGS:
            values[name] = form.get(name) == "on"
        elif name != "type":
            values[name] = str(form.get(name, "")).strip()
    return TrunkForm(values)


def _lines(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def _number(text: str) -> int | None:
    """A whole number, negative ones too: the API's rule about them is the one shown."""
    try:
        return int(text)
    except ValueError:
        return None


def to_trunk(form: TrunkForm) -> trunk_pb2.Trunk:
    """The API's Trunk from the form; a number that is not one is an error of its input
    (and left unset, so the API still reports everything else at once)."""
    trunk = trunk_pb2.Trunk()
    for name in fields_of(form.kind):
        value = form.values.get(name)
        head, _, tail = name.partition(".")
        target = getattr(trunk, head) if tail else trunk
        attribute = tail or head
        if name in NUMBERS:
            if value:
                number = _number(str(value))
                if number is None:
                    form.error(name, f"'{value}' is not a whole number")
                    continue
                setattr(target, attribute, number)
        elif name in LISTS:
            getattr(target, attribute).extend(_lines(str(value or "")))
        elif name == "codecs":
            trunk.codecs.extend(value or [])
        else:
            setattr(target, attribute, value)
    return trunk


def update_mask(form: TrunkForm) -> list[str]:
    """Every field of the type, but a password or client key left blank (blank keeps the
    stored one; the key goes with a certificate removed)."""
    removed = not form.values.get("client_certificate")
    return [name for name in fields_of(form.kind)
            if not (name in SECRETS and not form.values.get(name)
                    and not (name == "client_key" and removed))]
