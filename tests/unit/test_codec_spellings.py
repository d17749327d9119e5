"""Codecs as PBX forms and provider documents write them, the default list, and every
unknown codec named at once."""

from __future__ import annotations

import pytest

from domain.errors import ValidationError
from domain.trunk_settings import validate_trunk, with_default_codecs
from domain.values import Codec, parse_codec


@pytest.mark.parametrize(("text", "codec"), [
    ("G.711u (PCMU)", Codec.PCMU), ("G.711a (PCMA)", Codec.PCMA), ("ulaw", Codec.PCMU),
    ("alaw", Codec.PCMA), ("u-law", Codec.PCMU), ("\u00b5-law", Codec.PCMU),
    ("G.711 A-law", Codec.PCMA), ("g.729", Codec.G729), ("opus", Codec.OPUS),
    (" PCMU ", Codec.PCMU),
])
def test_usual_spellings_store_the_canonical_name(text: str, codec: Codec) -> None:
    assert parse_codec(text) is codec


def test_default_codecs_only_when_none_given() -> None:
    assert with_default_codecs({"codecs": []})["codecs"] == ["PCMU", "PCMA"]
    assert with_default_codecs({})["codecs"] == ["PCMU", "PCMA"]
    assert with_default_codecs({"codecs": ["OPUS"]})["codecs"] == ["OPUS"]


def test_every_unknown_codec_is_named() -> None:
    with pytest.raises(ValidationError) as refused:
        validate_trunk({"name": "t", "type": "peer", "peer_addresses": ["192.0.2.1"],
                        "codecs": ["G722", "PCMU", "iLBC", "ulaw"]})
    text = str(refused.value)
    assert "[0] 'G722' is not one of" in text and "[2] 'iLBC' is not one of" in text
    assert "[3] PCMU is listed twice" in text
