"""SDP offers reduced to a trunk's codecs (RFC 4566, RFC 3264): the audio payloads the
trunk allows, in the trunk's order, and `telephone-event` only when the trunk sends DTMF
as RFC 2833/4733 events. Media itself never passes through the agent."""

from __future__ import annotations

# the trunk's codec names -> (encoding name in rtpmap, static payload type or None)
CODECS = {"PCMU": ("pcmu", 0), "PCMA": ("pcma", 8), "G729": ("g729", 18),
          "OPUS": ("opus", None), "G722": ("g722", 9)}
STATIC = {pt: name for name, (_, pt) in CODECS.items() if pt is not None}
EVENT = "telephone-event"


class NoCommonCodecError(ValueError):
    """The offer has none of the trunk's codecs."""


def reduce_offer(body: bytes, codecs: list[str], rfc2833: bool) -> bytes:
    """The offer with each audio stream's payloads filtered and ordered; other media and
    lines are kept as they are. An empty codec list keeps every codec."""
    text = body.decode("utf-8", "surrogateescape")
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = [line for line in text.split(newline)]
    if lines and lines[-1] == "":
        lines.pop()
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out = list(sections[0])
    for section in sections[1:]:
        out += _audio(section, codecs, rfc2833) if section[0].startswith("m=audio") \
            else section
    return (newline.join(out) + newline).encode("utf-8", "surrogateescape")


def _audio(section: list[str], codecs: list[str], rfc2833: bool) -> list[str]:
    fields = section[0].split(" ")
    if len(fields) < 4:
        raise ValueError(f"bad media line '{section[0][:60]}'")
    offered = fields[3:]
    names = {pt: STATIC.get(int(pt), "") if pt.isdigit() else "" for pt in offered}
    for line in section[1:]:
        if line.startswith("a=rtpmap:"):
            pt, _, rest = line[len("a=rtpmap:"):].partition(" ")
            names[pt] = rest.split("/")[0].strip().lower()
    wanted = [CODECS[c.upper()][0] for c in codecs if c.upper() in CODECS]
    kept: list[str] = []
    for encoding in wanted or sorted({n for n in names.values()} - {EVENT}):
        kept += [pt for pt in offered if names.get(pt) == encoding and pt not in kept]
    if not wanted:
        kept = [pt for pt in offered if names.get(pt) != EVENT]
    if not kept:
        raise NoCommonCodecError(f"the offer has none of {', '.join(codecs)}")
    if rfc2833:
        kept += [pt for pt in offered if names.get(pt) == EVENT]
    dropped = set(offered) - set(kept)
    result = [" ".join(fields[:3] + kept)]
    for line in section[1:]:
        if line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            pt = line.split(":", 1)[1].split(" ")[0]
            if pt in dropped:
                continue
        result.append(line)
    return result


def codecs_of(body: bytes) -> list[str]:
    """The encoding names of the first audio stream, in offer order (for tests and logs)."""
    text = body.decode("utf-8", "replace").replace("\r\n", "\n")
    offered: list[str] = []
    names: dict[str, str] = {}
    for line in text.split("\n"):
        if line.startswith("m=audio") and not offered:
            offered = line.split(" ")[3:]
        elif line.startswith("a=rtpmap:"):
            pt, _, rest = line[len("a=rtpmap:"):].partition(" ")
            names.setdefault(pt, rest.split("/")[0])
    return [names.get(pt) or STATIC.get(int(pt), pt).upper() if pt.isdigit() else
            names.get(pt, pt) for pt in offered]
