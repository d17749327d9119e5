"""Validation of a trunk's settings as a whole: each field alone, then the rules that
tie fields together. The output is the canonical settings dict stored in events."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from domain.certificates import check_pair, facts, parse_certificate, parse_key
from domain.errors import Violations
from domain.model import Fields
from domain.trunk import LIMIT_FIELDS, TIMER_DEFAULTS, TRUNK_FIELDS, fresh
from domain.values import (
    MAX_CODECS,
    MAX_LOCAL_NETWORKS,
    MAX_PEER_ADDRESSES,
    DtmfMode,
    HostPort,
    Transport,
    TrunkType,
    check_count,
    parse_cidr,
    parse_codec,
    parse_description,
    parse_domain,
    parse_enum,
    parse_host_port,
    parse_ip,
    parse_limit,
    parse_name,
    parse_password,
    parse_sip_user,
)

# Secret by name in every aggregate (a PBX's digest password too).
# and a webhook channel's HMAC key (domain.alerting).
SECRET_FIELDS = frozenset(f.name for f in TRUNK_FIELDS if f.secret) | {"secret"}
WEAK_PASSWORD_LENGTH = 16
MAX_REGISTRATIONS = 100
# What every PBX form offers when nobody chose: G.711 in both laws, which every provider
# takes. A template's own list wins; a change to an empty list is still refused.
DEFAULT_CODECS = ("PCMU", "PCMA")



def default_settings() -> Fields:
    return {f.name: fresh(f.default) for f in TRUNK_FIELDS}


def with_default_codecs(raw: Fields) -> Fields:
    """The settings of a new trunk, with the default codecs when none were given."""
    return raw if raw.get("codecs") else {**raw, "codecs": list(DEFAULT_CODECS)}


class _Checker:
    def __init__(self, raw: Fields) -> None:
        self.raw = raw
        self.out: Fields = {}
        self.errors = Violations()

    def field(self, name: str, parse: Callable[[Any], Any], *, optional: bool = False) -> Any:
        value = self.raw.get(name)
        if optional and value in ("", None):
            self.out[name] = "" if value is None else value
            return self.out[name]
        try:
            self.out[name] = parse(value)
        except ValueError as error:
            self.errors.add(name, str(error))
            self.out[name] = None
        return self.out[name]


def validate_trunk(raw: Fields) -> tuple[Fields, list[str]]:
    """Returns (canonical settings, warnings) or raises ValidationError naming every field
    that breaks a rule."""
    c = _Checker({**default_settings(), **raw})
    c.field("name", _text(parse_name))
    kind = c.field("type", lambda v: parse_enum(TrunkType, _str(v)))
    transport = c.field("transport", lambda v: parse_enum(Transport, _str(v) or "udp"))
    c.field("dtmf_mode", lambda v: parse_enum(DtmfMode, _str(v) or "rfc2833").value)
    c.field("host", lambda v: str(parse_host_port(_str(v))), optional=True)
    c.field("username", _text(parse_sip_user), optional=True)
    c.field("password", _text(parse_password), optional=True)
    c.field("auth_id", _text(lambda v: parse_sip_user(v, in_uri=False)), optional=True)
    c.field("from_user", _text(parse_sip_user), optional=True)
    c.field("from_domain", _text(_from_domain), optional=True)
    c.field("description", _text(parse_description), optional=True)
    c.field("outbound_proxy", _text(_outbound_proxy), optional=True)
    c.field("enabled", _bool)
    c.field("max_registrations", _max_registrations)
    c.field("codecs", _codecs)
    c.field("peer_addresses", _peer_addresses)
    _check_nat(c)
    _check_limits(c)
    _check_timers(c)
    _check_client_certificate(c)
    if c.out["transport"] is not None:
        c.out["transport"] = transport.value
    if kind is not None:
        c.out["type"] = kind.value
        _check_kind_rules(c, kind)
    c.errors.raise_if_any()
    return c.out, _warnings(c.out)


def _str(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"must be text, got {type(value).__name__}")
    return value


def _text(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    return lambda value: parse(_str(value))


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number, got {value!r}")
    return value


def _list(value: Any, limit: int) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"must be a list, got {type(value).__name__}")
    check_count(value, limit)
    return list(value)


def _from_domain(text: str) -> str:
    return str(parse_host_port(text)) if text.startswith("[") or ":" in text else parse_domain(text)


def _outbound_proxy(text: str) -> str:
    """host[:port] of a proxy every request of the trunk goes through (a `sip:` prefix and
    `;lr`, as providers print it, are taken off: the agent writes the Route itself)."""
    bare = text.strip()
    if bare.lower().startswith("sip:"):
        bare = bare[4:]
    if bare.lower().endswith(";lr"):
        bare = bare[:-3]
    if ";" in bare or "@" in bare or "<" in bare:
        raise ValueError(f"'{text}' must be host[:port] (e.g. proxy.example.com:5060), "
                         "without a user or parameters")
    return str(parse_host_port(bare))


def _max_registrations(value: Any) -> int:
    number = _int(1 if value in (None, 0) else value)
    if not 1 <= number <= MAX_REGISTRATIONS:
        raise ValueError(f"must be 1 to {MAX_REGISTRATIONS}, got {number}")
    return number


def _codecs(value: Any) -> list[str]:
    items = _list(value, MAX_CODECS)
    if not items:
        raise ValueError("at least one codec is required (PCMU, PCMA, G729, OPUS)")
    codecs: list[str] = []
    mistakes: list[str] = []  # every unknown or repeated codec, not only the first
    for index, item in enumerate(items):
        try:
            codec = parse_codec(_str(item)).value
        except ValueError as error:
            mistakes.append(f"[{index}] {error}")
            continue
        if codec in codecs:
            mistakes.append(f"[{index}] {codec} is listed twice")
        codecs.append(codec)
    if mistakes:
        raise ValueError("; ".join(mistakes))
    return codecs


def _peer_addresses(value: Any) -> list[str]:
    addresses: list[str] = []
    seen: set[tuple[str, int | None]] = set()
    for index, item in enumerate(_list(value, MAX_PEER_ADDRESSES)):
        try:
            address = parse_host_port(_str(item), ip_only=True)
        except ValueError as error:
            raise ValueError(f"[{index}] {error}") from None
        key = (address.host, address.port or 5060)
        if key in seen:
            raise ValueError(f"[{index}] {address} is listed twice")
        seen.add(key)
        addresses.append(str(address))
    return addresses


def _object(c: _Checker, name: str) -> Fields:
    raw = c.raw.get(name) or {}
    if isinstance(raw, dict):
        return raw
    c.errors.add(name, f"must be an object, got {type(raw).__name__}")
    return {}


def _check_nat(c: _Checker) -> None:
    raw = _object(c, "nat")
    nat = {**default_settings()["nat"], **raw}
    out: Fields = {}
    for key, parse in (
        ("enabled", _bool),
        ("external_ip", lambda v: parse_ip(v) if _str(v) else ""),
        ("stun_server", lambda v: str(_stun(_str(v))) if _str(v) else ""),
        ("local_networks",
         lambda v: [parse_cidr(_str(n)) for n in _list(v, MAX_LOCAL_NETWORKS)]),
    ):
        try:
            out[key] = parse(nat[key])
        except ValueError as error:
            c.errors.add(f"nat.{key}", str(error))
            out[key] = None
    c.out["nat"] = out


def _stun(text: str) -> HostPort:
    address = parse_host_port(text)
    return address if address.port is not None else HostPort(address.host, 3478)


def _check_limits(c: _Checker) -> None:
    raw = _object(c, "call_limits")
    limits: Fields = {}
    for key in LIMIT_FIELDS:
        try:
            value = raw.get(key)
            limits[key] = parse_limit(None if value is None else _int(value))
        except ValueError as error:
            c.errors.add(f"call_limits.{key}", str(error))
            limits[key] = None
    total = limits["max_concurrent_calls"]
    for key in ("max_inbound_calls", "max_outbound_calls"):
        if total is not None and limits[key] is not None and limits[key] > total:
            c.errors.add(
                f"call_limits.{key}",
                f"{limits[key]} exceeds max_concurrent_calls ({total})",
            )
    c.out["call_limits"] = limits


# Each timer's bounds (seconds, or answers in a row for the thresholds).
TIMER_BOUNDS = {"registration_expiry": (10, 86400), "backoff_base": (1, 3600),
                "backoff_cap": (1, 86400), "options_interval": (1, 3600),
                "down_after": (1, 10), "up_after": (1, 10), "failover_after": (1, 32)}
MAX_OK_CODES = 20
_CODE_CLASS = re.compile(r"[1-6]xx")


def _check_timers(c: _Checker) -> None:
    raw = _object(c, "timers")
    unknown = sorted(set(raw) - set(TIMER_DEFAULTS))
    if unknown:
        c.errors.add(f"timers.{unknown[0]}", f"unknown timer (known: {', '.join(TIMER_DEFAULTS)})")
    timers = {**fresh(TIMER_DEFAULTS), **{k: v for k, v in raw.items() if k in TIMER_DEFAULTS}}
    out: Fields = {}
    for key, (low, high) in TIMER_BOUNDS.items():
        try:
            value = timers[key]
            number = None if value is None else _int(value)
            if number is not None and not low <= number <= high:
                raise ValueError(f"must be {low} to {high} (unset: the agent's setting), "
                                 f"got {number}")
            out[key] = number
        except ValueError as error:
            c.errors.add(f"timers.{key}", str(error))
            out[key] = None
    try:
        out["qualify"] = _bool(True if timers["qualify"] is None else timers["qualify"])
    except ValueError as error:
        c.errors.add("timers.qualify", str(error))
        out["qualify"] = True
    try:
        out["ok_codes"] = _ok_codes(timers["ok_codes"])
    except ValueError as error:
        c.errors.add("timers.ok_codes", str(error))
        out["ok_codes"] = []
    base, cap = out["backoff_base"], out["backoff_cap"]
    if base is not None and cap is not None and cap < base:
        c.errors.add("timers.backoff_cap", f"{cap} is below backoff_base ({base})")
    c.out["timers"] = {key: out[key] for key in TIMER_DEFAULTS}


def _ok_codes(value: Any) -> list[str]:
    """Answers to OPTIONS that mean the provider is there: codes (200, 404) or classes
    (2xx); empty: 2xx."""
    codes: list[str] = []
    for index, item in enumerate(_list(value, MAX_OK_CODES)):
        text = (str(item) if isinstance(item, int) and not isinstance(item, bool)
                else _str(item)).strip().lower()
        if not (_CODE_CLASS.fullmatch(text) or (text.isascii() and text.isdigit()
                                                and 100 <= int(text) <= 699)):
            raise ValueError(f"[{index}] '{item}' is neither a SIP code (100-699) nor a "
                             "class like 2xx")
        if text in codes:
            raise ValueError(f"[{index}] {text} is listed twice")
        codes.append(text)
    return codes


def _check_client_certificate(c: _Checker) -> None:
    certificate = c.field("client_certificate", _text(parse_certificate), optional=True)
    key = c.field("client_key", _text(parse_key), optional=True)
    if "client_certificate" in c.errors.fields() or "client_key" in c.errors.fields():
        return
    if certificate and not key:
        c.errors.add("client_key", "a client certificate needs its private key")
    elif key and not certificate:
        c.errors.add("client_certificate", "a private key needs its client certificate")
    elif certificate and key:
        try:
            check_pair(certificate, key)
        except ValueError as error:
            c.errors.add("client_key", str(error))
        if c.out.get("transport") not in (None, Transport.TLS):
            c.errors.add("client_certificate", "a client certificate is presented only over "
                                               "TLS: set transport tls")


def _check_kind_rules(c: _Checker, kind: TrunkType) -> None:
    out, errors = c.out, c.errors
    if kind is TrunkType.PEER:
        if out.get("timers") and out["timers"].get("qualify") is False:
            errors.add("timers.qualify", "peer trunks are always watched with OPTIONS: "
                                         "that is how they are known to be up")
        for key in ("username", "password", "auth_id"):
            if out.get(key):
                errors.add(key, "peer trunks take no credentials (the provider trusts our IP)")
        if out.get("peer_addresses") == []:
            errors.add("peer_addresses", "a peer trunk needs at least one provider address")
        if not out.get("host") and out.get("peer_addresses"):
            out["host"] = out["peer_addresses"][0]
    else:
        if not out.get("host") and "host" not in errors.fields():
            errors.add("host", f"a {kind.value} trunk needs the provider's host")
        for key in ("username", "password"):
            if out.get(key) == "":
                errors.add(key, f"a {kind.value} trunk needs a {key}")
        if out.get("peer_addresses"):
            errors.add("peer_addresses", "only peer trunks take peer_addresses")
    if kind is TrunkType.ACCOUNT and out.get("auth_id") == "":
        errors.add("auth_id", "an account trunk needs its own auth_id")
    if kind is not TrunkType.ACCOUNT and out.get("max_registrations") not in (1, None):
        errors.add("max_registrations", "only account trunks hold more than one registration")


def _warnings(out: Fields) -> list[str]:
    warnings = []
    password = out.get("password") or ""
    if password and len(password) < WEAK_PASSWORD_LENGTH:
        warnings.append(
            f"password: shorter than {WEAK_PASSWORD_LENGTH} characters; accepted, but ask the "
            "provider for a longer one if you can"
        )
    nat = out.get("nat") or {}
    if nat.get("enabled") and not (nat.get("external_ip") or nat.get("stun_server")):
        warnings.append(
            "nat: no external_ip or stun_server: the agent learns its public address from "
            "the provider's answers (received/rport), so the first request shows the "
            "private one; set either if the provider does not fill in rport")
    host = parse_host_port(out["host"]) if out.get("host") else None
    if host and out["transport"] == "tls" and host.is_ip:
        warnings.append("host: TLS to an IP address cannot verify the provider's certificate name")
    if host and out["transport"] == "tls" and host.port == 5060:
        warnings.append("host: port 5060 with TLS; providers usually listen for TLS on 5061")
    if out.get("client_certificate"):
        expiry = facts(out["client_certificate"]).not_after
        if expiry is not None and expiry <= datetime.now(UTC):
            warnings.append(f"client_certificate: expired on {expiry:%Y-%m-%d %H:%M} UTC; the "
                            "provider will refuse it: ask it for a new one")
    return warnings
