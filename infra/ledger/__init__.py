"""The proof of the event log: a Merkle tree (RFC 9162) written with the events, signed
heads, proofs on demand and the check of the log against them."""

from __future__ import annotations

from typing import Any

from infra.ledger.recorders import recorder_topic


def proof_env(env: dict[str, str]) -> dict[str, str]:
    """The store environment with the recorder that writes the proof."""
    return env | {"APPLICATION_RECORDER_TOPIC": recorder_topic(env["PERSISTENCE_MODULE"])}


def decoder(app: Any) -> Any:
    """`decode(stored) -> ""`, or why the stored event cannot be read (cipher, format)."""

    def decode(stored: Any) -> str:
        try:
            app.mapper.to_domain_event(stored)
        except Exception as error:  # any failure to read it is the finding
            return f"{type(error).__name__}: {error}"
        return ""

    return decode
