"""A tenant's PBX as the agents' PBX face sees it, modelled on Twilio's Elastic SIP
Trunking: the source addresses allowed to send calls (termination ACL), optional digest
credentials the PBX must also answer (credential list), and the origination targets that
inbound calls go to (origination URIs with priority and weight).

One aggregate per tenant with a fixed id, apart from the tenant's catalog: the catalog's
version moves with every trunk and route change, so an etag on it would make PBX updates
fail for changes they have nothing to do with, and no rule here spans trunks or routes."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar, Self
from uuid import UUID

from domain.errors import Violations
from domain.model import CommandMeta, Configured, Fields, Subject, uuid_for
from domain.values import (
    check_printable,
    parse_cidr,
    parse_host_port,
    parse_password,
    parse_sip_user,
)

NAMESPACE = UUID("3b0f6f52-51e6-4c71-9a0c-1c0e6c2b9d40")
MAX_SOURCES = 100
MAX_TARGETS = 10
MAX_PRIORITY = 65535
MAX_WEIGHT = 65535
DEFAULT_PRIORITY = 10
TRANSPORTS = ("udp", "tcp", "tls")
# sip:[user@]hostport[;params]; the host part is checked by parse_host_port.
SIP_URI = re.compile(r"^(?P<scheme>sips?):(?:(?P<user>[^@;?]+)@)?(?P<host>[^;?]+)"
                     r"(?P<params>(?:;[^;?]*)*)$", re.IGNORECASE)
PARAM = re.compile(r"^[A-Za-z0-9\-_.!~*'()%]+(?:=[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]+)?$")


class Pbx(Configured):
    KIND: ClassVar[str] = "pbx"
    SUBJECT = Subject.PBX

    class PbxSourcesChanged(Configured.SettingsChanged):
        source_cidrs: list[str]

    class PbxCredentialsChanged(Configured.SettingsChanged):
        username: str
        password: str

    class PbxTargetsChanged(Configured.SettingsChanged):
        targets: list[dict[str, Any]]

    @staticmethod
    def id_for(tenant: str) -> UUID:
        return uuid_for(NAMESPACE, "pbx", tenant)

    @classmethod
    def start(cls, tenant: str, settings: Fields, meta: CommandMeta) -> Self:
        return cls._create(cls.Created, id=cls.id_for(tenant), tenant=tenant,
                           settings=dict(settings), **meta.event_kwargs())


Pbx.EVENT_FOR_FIELD = {
    "source_cidrs": Pbx.PbxSourcesChanged,
    "username": Pbx.PbxCredentialsChanged,
    "password": Pbx.PbxCredentialsChanged,
    "targets": Pbx.PbxTargetsChanged,
}


def default_pbx() -> Fields:
    return {"source_cidrs": [], "username": "", "password": "", "targets": [],
            "enabled": True}


def validate_pbx(raw: Fields, prefix: str = "pbx") -> Fields:
    """The canonical settings, or ValidationError naming every field that breaks a rule."""
    merged = {**default_pbx(), **raw}
    errors = Violations()
    out: Fields = {
        "source_cidrs": _each(errors, f"{prefix}.source_cidrs", merged["source_cidrs"],
                              _sources),
        "targets": _each(errors, f"{prefix}.targets", merged["targets"], _targets),
        "enabled": merged["enabled"],
    }
    if not isinstance(out["enabled"], bool):
        errors.add(f"{prefix}.enabled", f"must be true or false, got {out['enabled']!r}")
    out.update(_credentials(errors, prefix, merged["username"], merged["password"]))
    if out["username"] and out["source_cidrs"] == []:
        errors.add(f"{prefix}.source_cidrs", "digest credentials add to the source addresses "
                   "(the tenant is found by the address its PBX sends from): list at least one")
    errors.raise_if_any()
    return out


def _each(errors: Violations, field: str, value: Any, parse: Any) -> Any:
    if not isinstance(value, list | tuple):
        errors.add(field, f"must be a list, got {type(value).__name__}")
        return None
    try:
        return parse(list(value))
    except ValueError as error:
        errors.add(field, str(error))
        return None


def _sources(items: list[Any]) -> list[str]:
    if len(items) > MAX_SOURCES:
        raise ValueError(f"at most {MAX_SOURCES} networks, got {len(items)}")
    networks: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise ValueError(f"[{index}] must be text, got {type(item).__name__}")
        try:
            network = parse_cidr(item)
        except ValueError as error:
            raise ValueError(f"[{index}] {error}") from None
        if ipaddress.ip_network(network).prefixlen == 0:
            raise ValueError(f"[{index}] {network} would let any address on the internet send "
                             "calls as this tenant; list the PBX's own networks")
        if network in networks:
            raise ValueError(f"[{index}] {network} is listed twice")
        networks.append(network)
    return networks


def _credentials(errors: Violations, prefix: str, username: Any,
                 password: Any) -> dict[str, str]:
    out = {"username": "", "password": ""}
    for key, value, parse in (("username", username, parse_sip_user),
                              ("password", password, parse_password)):
        if not isinstance(value, str):
            errors.add(f"{prefix}.{key}", f"must be text, got {type(value).__name__}")
        elif value:
            try:
                out[key] = parse(value)
            except ValueError as error:
                errors.add(f"{prefix}.{key}", str(error))
    if bool(username) != bool(password):
        missing = "password" if username else "username"
        errors.add(f"{prefix}.{missing}", "username and password go together: set both for "
                   "digest, or neither for source addresses alone")
    return out


def _targets(items: list[Any]) -> list[dict[str, Any]]:
    if len(items) > MAX_TARGETS:
        raise ValueError(f"at most {MAX_TARGETS} origination targets, got {len(items)}")
    targets: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            target = _target(item)
        except ValueError as error:
            raise ValueError(f"[{index}] {error}") from None
        if any(t["uri"] == target["uri"] for t in targets):
            raise ValueError(f"[{index}] {target['uri']} is listed twice")
        targets.append(target)
    # Stored in the order they are tried (stable: equal priorities keep the given order).
    return sorted(targets, key=lambda t: int(t["priority"]))


def _target(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValueError(f"must be a target {{uri, priority, weight}}, got "
                         f"{type(item).__name__}")
    unknown = set(item) - {"uri", "priority", "weight"}
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))} (uri, priority, weight)")
    priority = _number(item.get("priority", DEFAULT_PRIORITY), "priority", 0, MAX_PRIORITY)
    weight = _number(item.get("weight", 1), "weight", 1, MAX_WEIGHT)
    return {"uri": parse_sip_uri(item.get("uri")), "priority": priority, "weight": weight}


def _number(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def parse_sip_uri(value: Any) -> str:
    """A SIP or SIPS URI of the PBX (RFC 3261 19.1, without headers): the canonical text,
    scheme and host in lower case."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("uri must be a SIP URI such as sip:pbx.example.com:5060;transport=tcp")
    text = value.strip()
    check_printable(text)
    match = SIP_URI.match(text)
    if match is None or " " in text:
        raise ValueError(f"uri '{value}' is not a SIP URI (sip:[user@]host[:port][;params], "
                         "no headers)")
    user = match["user"] or ""
    if user:
        parse_sip_user(user)
    host = str(parse_host_port(match["host"]))
    params = [p for p in match["params"].split(";") if p]
    for param in params:
        _check_param(param, text)
    scheme = match["scheme"].lower()
    return f"{scheme}:{user + '@' if user else ''}{host}" + "".join(f";{p}" for p in params)


def _check_param(param: str, uri: str) -> None:
    if not PARAM.match(param):
        raise ValueError(f"uri '{uri}': parameter '{param}' is not a URI parameter")
    name, _, value = param.partition("=")
    if name.lower() == "transport" and value.lower() not in TRANSPORTS:
        raise ValueError(f"uri '{uri}': transport must be one of {', '.join(TRANSPORTS)}")
