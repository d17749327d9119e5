"""Provider templates: read-only starting points for a trunk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.errors import ValidationError

PLACEHOLDER = "<yourdomain>"


@dataclass(frozen=True)
class ProviderTemplate:
    id: str
    display_name: str
    description: str
    settings: dict[str, Any] = field(default_factory=dict)
    transports: tuple[str, ...] = ("udp",)

    def apply(self, overrides: dict[str, Any]) -> dict[str, Any]:
        given = {k: v for k, v in overrides.items() if v not in ("", None, [], {})}
        merged = {**self.settings, **given}
        for key in ("nat", "call_limits"):
            if key in self.settings and key in given:
                merged[key] = {**self.settings[key], **given[key]}
        if PLACEHOLDER in str(merged.get("host", "")):
            raise ValidationError.single(
                "host",
                f"template '{self.id}' needs your own host: replace {PLACEHOLDER} in "
                f"'{merged['host']}'",
            )
        transport = merged.get("transport", "udp")
        if transport not in self.transports:
            raise ValidationError.single(
                "transport",
                f"{self.display_name} takes {' or '.join(self.transports)}, not '{transport}'",
            )
        return merged


TEMPLATES: dict[str, ProviderTemplate] = {
    t.id: t
    for t in (
        ProviderTemplate(
            "thevoco", "TheVoĉo", "TheVoĉo SIP trunk, registration over UDP",
            {"type": "register", "host": "sip.thevoco.com", "transport": "udp",
             "codecs": ["PCMU", "PCMA", "OPUS"], "dtmf_mode": "rfc2833"},
        ),
        ProviderTemplate(
            "twilio", "Twilio Elastic SIP Trunking",
            "Twilio termination URI; replace <yourdomain> with your trunk's domain",
            {"type": "register", "host": f"{PLACEHOLDER}.pstn.twilio.com", "transport": "udp",
             "codecs": ["PCMU", "PCMA"], "dtmf_mode": "rfc2833"},
            transports=("udp", "tls"),
        ),
        ProviderTemplate(
            "bandwidth", "Bandwidth", "Bandwidth voice, registration over UDP",
            {"type": "register", "host": "voice.bandwidth.com", "transport": "udp",
             "codecs": ["PCMU", "PCMA", "G729"], "dtmf_mode": "rfc2833"},
            transports=("udp", "tcp", "tls"),
        ),
        ProviderTemplate(
            "generic", "Generic SIP provider", "Any provider; fill in every field yourself",
            {"transport": "udp", "codecs": ["PCMU", "PCMA"], "dtmf_mode": "rfc2833"},
            transports=("udp", "tcp", "tls"),
        ),
    )
}


def get_template(template_id: str) -> ProviderTemplate:
    try:
        return TEMPLATES[template_id.strip().lower()]
    except KeyError:
        known = ", ".join(TEMPLATES)
        raise ValidationError.single(
            "template", f"unknown template '{template_id}' (known: {known})"
        ) from None
