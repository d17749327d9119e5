"""Who is told when something goes wrong, and when: a tenant's notification channels
(a signed HTTPS webhook, or email over SMTP with STARTTLS) and its alert rules (each kind
of alert on or off, with its threshold). Both are configuration, recorded as events like
trunks: audited, exported, secrets shown only as set or changed.

One aggregate per channel (its secret is a settings field of its own, so the views mask
it as they mask a trunk's password) and one per tenant for the rules (fixed id, apart
from the catalog, for the reason the PBX is: an etag here must not move with trunks)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit
from uuid import UUID

from domain.commands import catalog_of
from domain.errors import NotFoundError, Violations
from domain.model import CommandMeta, Configured, Fields, Subject, uuid_for
from domain.text import name_key
from domain.unit_of_work import UnitOfWork
from domain.values import check_printable, parse_host_port, parse_password

NAMESPACE = UUID("c3f4a8e2-7d1b-4e0a-9f6c-5b2d8e1a4c70")
KINDS = ("webhook", "email")
MAX_RECIPIENTS = 20
MIN_SECRET = 16  # a webhook secret is an HMAC key: short ones are guessable offline
ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")

# Alert kinds with their thresholds. Times are seconds; `attempts` counts failed
# registration reports; `share` is the part of a trunk's max_concurrent_calls.
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "registration_failed": {"enabled": True, "attempts": 3, "seconds": 120},
    "peer_down": {"enabled": True, "seconds": 60},
    "no_healthy_address": {"enabled": True, "seconds": 30},
    "capacity": {"enabled": True, "share": 0.8, "seconds": 600},
    "fraud": {"enabled": True},
    "lag": {"enabled": True, "events": 1000, "seconds": 300},
    "agent_silent": {"enabled": True, "seconds": 60},
    "audit_tampered": {"enabled": True},
}
DEFAULT_REMINDER = 3600
LIMITS: dict[str, tuple[float, float]] = {"attempts": (1, 1000), "seconds": (1, 7 * 86400),
                                          "share": (0.01, 1.0), "events": (1, 10**9)}


class NotificationChannel(Configured):
    KIND: ClassVar[str] = "notification channel"
    SUBJECT = Subject.CHANNEL

    class ChannelTargetChanged(Configured.SettingsChanged):
        url: str
        smtp_server: str
        username: str
        sender: str
        recipients: list[str]

    class ChannelSecretChanged(Configured.SettingsChanged):
        secret: str

    class ChannelPasswordChanged(Configured.SettingsChanged):
        password: str

    @staticmethod
    def id_for(tenant: str, name: str, generation: int = 0) -> UUID:
        """A channel's id follows from its name; a name used again after a delete gets
        the next generation."""
        return uuid_for(NAMESPACE, "channel", tenant, name_key(name), str(generation))


NotificationChannel.EVENT_FOR_FIELD = {
    **{f: NotificationChannel.ChannelTargetChanged
       for f in ("url", "smtp_server", "username", "sender", "recipients")},
    "secret": NotificationChannel.ChannelSecretChanged,
    "password": NotificationChannel.ChannelPasswordChanged,
}


class AlertRules(Configured):
    KIND: ClassVar[str] = "alert rules"
    SUBJECT = Subject.ALERT_RULES

    class AlertRulesChanged(Configured.SettingsChanged):
        rules: dict[str, Any]
        reminder_seconds: int

    @staticmethod
    def id_for(tenant: str) -> UUID:
        return uuid_for(NAMESPACE, "rules", tenant)

    @classmethod
    def start(cls, tenant: str, settings: Fields, meta: CommandMeta) -> Self:
        return cls._create(cls.Created, id=cls.id_for(tenant), tenant=tenant,
                           settings=dict(settings), **meta.event_kwargs())


AlertRules.EVENT_FOR_FIELD = {"rules": AlertRules.AlertRulesChanged,
                              "reminder_seconds": AlertRules.AlertRulesChanged}


def default_channel() -> Fields:
    return {"name": "", "kind": "", "enabled": True, "url": "", "secret": "",
            "smtp_server": "", "username": "", "password": "", "sender": "",
            "recipients": []}


def validate_channel(raw: Fields, prefix: str = "channel") -> Fields:
    """The canonical settings, or ValidationError naming every field that breaks a rule.
    Fields of the other kind are kept empty, so a kind's secret never lingers."""
    merged = {**default_channel(), **raw}
    errors = Violations()
    out = default_channel()
    out["name"] = _checked(errors, f"{prefix}.name", merged["name"], _name)
    out["kind"] = merged["kind"]
    if merged["kind"] not in KINDS:
        errors.add(f"{prefix}.kind", f"must be one of {', '.join(KINDS)}")
    if not isinstance(merged["enabled"], bool):
        errors.add(f"{prefix}.enabled", "must be true or false")
    out["enabled"] = merged["enabled"]
    if merged["kind"] == "webhook":
        out["url"] = _checked(errors, f"{prefix}.url", merged["url"], _https_url)
        out["secret"] = _checked(errors, f"{prefix}.secret", merged["secret"], _secret)
    elif merged["kind"] == "email":
        out["smtp_server"] = _checked(errors, f"{prefix}.smtp_server", merged["smtp_server"],
                                      _smtp_server)
        out["username"] = _checked(errors, f"{prefix}.username", merged["username"], _text)
        out["password"] = _checked(errors, f"{prefix}.password", merged["password"],
                                   parse_password)
        out["sender"] = _checked(errors, f"{prefix}.sender", merged["sender"], _address)
        out["recipients"] = _checked(errors, f"{prefix}.recipients", merged["recipients"],
                                     _recipients)
    errors.raise_if_any()
    return out


def _checked(errors: Violations, field: str, value: Any, parse: Any) -> Any:
    if not isinstance(value, str | list):
        errors.add(field, f"must be text, got {type(value).__name__}")
        return None
    try:
        return parse(value)
    except ValueError as error:
        errors.add(field, str(error))
        return None


def _name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError("must be 1 to 64 letters, digits, spaces, dots, dashes or "
                         "underscores, starting with a letter or digit")
    return value


def _text(value: str) -> str:
    if not 1 <= len(value) <= 256:
        raise ValueError("must have 1 to 256 characters")
    check_printable(value)
    return value


def _https_url(value: str) -> str:
    _text(value)
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https:// URL (the body is signed, not hidden: only TLS "
                         "keeps it private)")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials: the channel's secret signs the body")
    return value


def _secret(value: str) -> str:
    if len(value) < MIN_SECRET:
        raise ValueError(f"must have at least {MIN_SECRET} characters (it is the HMAC key "
                         "the receiver checks signatures with)")
    return parse_password(value)


def _smtp_server(value: str) -> str:
    parsed = parse_host_port(value)
    if parsed.port is None:
        raise ValueError("must be host:port of the SMTP submission server (usually 587)")
    return str(parsed)


def _address(value: str) -> str:
    if len(value) > 254 or not ADDRESS.fullmatch(value):
        raise ValueError(f"'{value}' is not an email address (user@domain)")
    return value


def _recipients(value: list[Any]) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RECIPIENTS:
        raise ValueError(f"must list 1 to {MAX_RECIPIENTS} email addresses")
    out: list[str] = []
    for index, item in enumerate(value):
        try:
            out.append(_address(str(item)))
        except ValueError as error:
            raise ValueError(f"[{index}] {error}") from None
    return out


def validate_rules(raw: dict[str, Any], reminder: Any, prefix: str = "rules") -> Fields:
    """Each rule merged over its defaults and checked: an unknown rule or threshold is an
    error, not ignored."""
    errors = Violations()
    rules: dict[str, dict[str, Any]] = {}
    for kind in raw.keys() - DEFAULT_RULES.keys():
        errors.add(f"{prefix}.{kind}", f"unknown alert; known: {', '.join(DEFAULT_RULES)}")
    for kind, defaults in DEFAULT_RULES.items():
        given = raw.get(kind) or {}
        for key in given.keys() - defaults.keys():
            errors.add(f"{prefix}.{kind}.{key}",
                       f"not a setting of this alert; it has {', '.join(defaults)}")
        rule = {**defaults, **{k: v for k, v in given.items() if k in defaults}}
        for key, value in rule.items():
            _check_threshold(errors, f"{prefix}.{kind}.{key}", key, value)
        rules[kind] = rule
    _check_threshold(errors, "reminder_seconds", "seconds", reminder)
    errors.raise_if_any()
    return {"rules": rules, "reminder_seconds": int(reminder), "enabled": True}


def _check_threshold(errors: Violations, field: str, key: str, value: Any) -> None:
    if key == "enabled":
        if not isinstance(value, bool):
            errors.add(field, "must be true or false")
        return
    low, high = LIMITS[key]
    number_ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not number_ok or not low <= value <= high or (key != "share" and value != int(value)):
        kind = "a number" if key == "share" else "a whole number"
        errors.add(field, f"must be {kind} from {low:g} to {high:g}, got {value!r}")


def default_rules() -> Fields:
    return {"rules": {k: dict(v) for k, v in DEFAULT_RULES.items()},
            "reminder_seconds": DEFAULT_REMINDER, "enabled": True}


# Commands


def put_channel(uow: UnitOfWork, tenant: str, raw: Fields, meta: CommandMeta) -> Configured:
    """Creates the channel named in `raw`, or changes the fields `raw` names (a secret
    left out or empty keeps the one stored)."""
    catalog_of(uow, tenant, meta)
    name = str(raw.get("name", ""))
    channel = live_channel(uow, tenant, name) if NAME.fullmatch(name) else None
    if channel is None:
        settings = validate_channel(raw)
        created = NotificationChannel._create(
            NotificationChannel.Created, id=_free_id(uow, tenant, name), tenant=tenant,
            settings=settings, **meta.event_kwargs())
        uow.add(created)
        return created
    kept = {k: v for k, v in raw.items() if not (k in ("secret", "password") and not v)}
    channel.change_settings(validate_channel({**channel.settings, **kept}), meta)
    return channel


def delete_channel(uow: UnitOfWork, tenant: str, name: str, meta: CommandMeta) -> None:
    catalog_of(uow, tenant, meta)
    channel = live_channel(uow, tenant, name)
    if channel is None:
        raise NotFoundError(f"no notification channel '{name}' in tenant '{tenant}'")
    channel.delete(meta)


def live_channel(uow: UnitOfWork, tenant: str, name: str) -> NotificationChannel | None:
    for generation in range(1000):
        found = uow.find(NotificationChannel.id_for(tenant, name, generation),
                         NotificationChannel)
        if found is None:
            return None
        if not found.deleted:
            return found
    return None


def _free_id(uow: UnitOfWork, tenant: str, name: str) -> UUID:
    generation = 0
    while uow.peek(NotificationChannel.id_for(tenant, name, generation),
                   NotificationChannel) is not None:
        generation += 1
    return NotificationChannel.id_for(tenant, name, generation)


def update_alert_rules(uow: UnitOfWork, tenant: str, rules: dict[str, Any],
                       reminder_seconds: int | None, meta: CommandMeta) -> Configured:
    """Changes the thresholds `rules` names (per alert, per setting); the rest stay."""
    catalog_of(uow, tenant, meta)
    current = uow.find(AlertRules.id_for(tenant), AlertRules)
    base = default_rules() if current is None else current.settings
    merged = {kind: {**base["rules"].get(kind, {}), **(rules.get(kind) or {})}
              for kind in base["rules"].keys() | rules.keys()}
    reminder = base["reminder_seconds"] if reminder_seconds is None else reminder_seconds
    settings = validate_rules(merged, reminder)
    if current is None:
        created = AlertRules.start(tenant, settings, meta)
        uow.add(created)
        return created
    current.change_settings(settings, meta)
    return current


# Restoring a backup (domain.sync)


def sync_alerting(uow: UnitOfWork, tenant: str, channels: list[Fields] | None,
                  rules: Fields | None, meta: CommandMeta, changes: list[str]) -> None:
    """Brings the tenant's channels (by name) and rules to the document's; a channel the
    document leaves out is kept, and a secret it leaves out stays as it is."""
    for wanted in channels or []:
        name = str(wanted.get("name", ""))
        current = live_channel(uow, tenant, name) if NAME.fullmatch(name) else None
        before = dict(current.settings) if current is not None else None
        after = put_channel(uow, tenant, wanted, meta).settings
        if before is None:
            changes.append(f"create channel {name}")
        elif after != before:
            changed = sorted(k for k in after if after[k] != before.get(k))
            changes.append(f"update channel {name}: {', '.join(changed)}")
    if rules is not None:
        found = uow.peek(AlertRules.id_for(tenant), AlertRules)
        before_rules = found.settings if found is not None else default_rules()
        after_rules = update_alert_rules(uow, tenant, dict(rules.get("rules") or {}),
                                         rules.get("reminder_seconds"), meta).settings
        if after_rules != before_rules:
            changes.append("update alert rules")
