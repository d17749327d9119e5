"""Sending one notification to one channel: a webhook POST signed as Stripe and GitHub sign
theirs, or an email over SMTP with STARTTLS and authentication. Neither the secret nor the
password ever reaches a log line or an attempt's recorded detail."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any

from infra.config.settings import NotifySettings

SIGNATURE_HEADER = "Trunkplane-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
Doc = dict[str, Any]


class DeliveryError(Exception):
    """The channel did not take the notification; the message says why (no secrets)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over `timestamp.body`: the timestamp is signed too, so a receiver that
    refuses old timestamps cannot be fed a recorded request again."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def send(channel: Doc, doc: Doc, settings: NotifySettings) -> str:
    """Delivers or raises DeliveryError; returns what the receiver answered."""
    if channel["kind"] == "webhook":
        return _post(channel, doc, settings)
    return _mail(channel, doc, settings)


def _tls(settings: NotifySettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file or None)


def _post(channel: Doc, doc: Doc, settings: NotifySettings) -> str:
    body = json.dumps(doc, sort_keys=True).encode()
    # The URL is https:// (domain.alerting checks it), never file: or another scheme.
    headers = {"Content-Type": "application/json", "User-Agent": "trunkplane-notifier",
               IDEMPOTENCY_HEADER: doc["id"],
               SIGNATURE_HEADER: signature(channel["secret"], int(time.time()), body)}
    request = urllib.request.Request(channel["url"], body, headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout,  # noqa: S310
                                    context=_tls(settings)) as answer:
            return f"HTTP {answer.status}"
    except urllib.error.HTTPError as error:
        raise DeliveryError(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DeliveryError(f"cannot reach {_origin(channel['url'])}: {reason}") from None


def _origin(url: str) -> str:
    return url.split("?", 1)[0]


def _mail(channel: Doc, doc: Doc, settings: NotifySettings) -> str:
    host, _, port = channel["smtp_server"].rpartition(":")
    message = EmailMessage()
    message["From"] = channel["sender"]
    message["To"] = ", ".join(channel["recipients"])
    message["Subject"] = f"[trunkplane] {doc['title']}"
    message["Message-ID"] = f"<{doc['id']}@trunkplane>"  # a receiver's duplicate check
    message[IDEMPOTENCY_HEADER] = doc["id"]
    message.set_content(render_text(doc))
    try:
        with smtplib.SMTP(host.strip("[]"), int(port), timeout=settings.timeout) as smtp:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise DeliveryError(f"{channel['smtp_server']} does not offer STARTTLS; "
                                    "the password is not sent in clear")
            smtp.starttls(context=_tls(settings))
            smtp.ehlo()
            smtp.login(channel["username"], channel["password"])
            refused = smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as error:
        raise DeliveryError(f"SMTP authentication refused ({error.smtp_code})") from None
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(f"SMTP {channel['smtp_server']}: {type(error).__name__}: "
                            f"{_first_line(error)}") from None
    if refused:
        raise DeliveryError(f"recipients refused: {', '.join(sorted(refused))}")
    return "SMTP 250"


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else ""


def render_text(doc: Doc) -> str:
    """The plain-text body: the trunk, what happened, the provider's code and reason,
    since when, and the fix doctor gives."""
    lines = [doc["summary"], ""]
    for label, key in (("Trunk", "trunk_name"), ("Trunk id", "trunk_id"),
                       ("Tenant", "tenant"), ("What happened", "event"),
                       ("Provider's answer", "provider"), ("Since", "since"),
                       ("Address", "address"), ("Detail", "detail"), ("Fix", "fix")):
        if doc.get(key):
            lines.append(f"{label}: {doc[key]}")
    lines += ["", f"Notification {doc['id']} ({doc['type']}) at {doc['created_at']}."]
    return "\n".join(lines) + "\n"
