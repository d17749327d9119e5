"""Small readers of SIP addresses: the URI in a name-addr, its user, host, port and
parameters, a header's tag. Lenient: a value they cannot read gives empty strings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SipUri:
    scheme: str
    user: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def transport(self) -> str:
        return self.params.get("transport", "udp").lower()

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") \
            else self.host
        return f"{host}:{self.port}" if self.port else host


def uri_of(value: str) -> str:
    """The URI of a name-addr (`"Bob" <sip:b@h>;tag=1`) or an addr-spec (`sip:b@h;tag=1`)."""
    start = value.find("<")
    if start >= 0:
        end = value.find(">", start)
        return value[start + 1:end if end > 0 else None].strip()
    return value.split(";")[0].strip()


def parse_uri(uri: str) -> SipUri:
    scheme, _, rest = uri.partition(":")
    rest = rest.split("?")[0]
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        hostpart, userinfo = rest, ""
    user = userinfo.split(":")[0]
    host_port, *raw_params = hostpart.split(";")
    params = {}
    for raw in raw_params:
        name, _, value = raw.partition("=")
        params[name.strip().lower()] = value.strip()
    port: int | None = None
    if host_port.startswith("["):
        host, _, after = host_port[1:].partition("]")
        if after.startswith(":") and after[1:].isdigit():
            port = int(after[1:])
    else:
        host, _, port_text = host_port.partition(":")
        if port_text.isdigit():
            port = int(port_text)
    return SipUri(scheme.lower(), user, host, port, params)


def user_of(value: str) -> str:
    return parse_uri(uri_of(value)).user


def tag_of(value: str) -> str:
    close = value.rfind(">")
    for param in value[close + 1:].split(";")[1:] if close >= 0 else value.split(";")[1:]:
        name, _, found = param.partition("=")
        if name.strip().lower() == "tag":
            return found.strip()
    return ""


def branch_of(via: str) -> str:
    for param in via.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "branch":
            return value.strip()
    return ""


def host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host
