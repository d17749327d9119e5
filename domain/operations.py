"""What people do outside the configuration that auditors must still see: exporting
passwords, rotating keys, creating and revoking tokens, rebuilding views, calls refused
for want of a role, a history started anew by importing into an empty store. Each is an
aggregate of one event, so recording one never conflicts with anything else."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from eventsourcing.domain import Aggregate

from domain.errors import ValidationError
from domain.model import CommandMeta

# action -> the event type the history shows (and `audit list --type` filters on)
ACTIONS = {
    "secrets_exported": "SecretsExported",
    "cipher_key_rotated": "CipherKeyRotated",
    "token_created": "TokenCreated",
    "token_revoked": "TokenRevoked",
    "views_rebuilt": "ViewsRebuilt",
    "rebuild_refused": "RebuildRefused",
    "access_refused": "AccessRefused",
    "history_started": "HistoryStarted",
    "history_restored": "HistoryRestored",
}


class OperatorAction(Aggregate):
    class Recorded(Aggregate.Created):
        tenant: str
        action: str
        detail: dict[str, str]
        actor: str
        reason: str
        request_id: str

    def __init__(self, tenant: str, action: str, detail: dict[str, str], actor: str,
                 reason: str, request_id: str) -> None:
        self.tenant = tenant
        self.action = action
        self.detail = detail

    @classmethod
    def record(cls, tenant: str, action: str, detail: dict[str, Any],
               meta: CommandMeta) -> OperatorAction:
        if action not in ACTIONS:
            raise ValidationError.single("action", f"'{action}' is not one of "
                                                   f"{', '.join(sorted(ACTIONS))}")
        return cls._create(cls.Recorded, id=uuid4(), tenant=tenant, action=action,
                           detail={k: str(v) for k, v in detail.items()},
                           **meta.event_kwargs())


def event_type(event: OperatorAction.Recorded) -> str:
    return ACTIONS[event.action]
