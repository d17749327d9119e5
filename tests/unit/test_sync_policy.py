"""A restored backup brings back the tenant's fraud guard and business hours exactly."""

from __future__ import annotations

from domain.application import TrunkplaneApp
from domain.catalog import default_policy
from domain.model import CommandMeta
from domain.sync import DesiredConfig, sync_tenant

META = CommandMeta(actor="admin", request_id="")
POLICY = {"guard": {"max_calls_per_minute": 30, "allow_prefixes": ["+1"],
                    "block_prefixes": ["+882", "1900"], "daily_cap": 500},
          "business_hours": {"timezone": "Europe/Berlin", "days": ["mon", "tue"],
                             "start": "08:00", "end": "18:00"}}


def _policy(app: TrunkplaneApp) -> dict[str, object]:
    catalog = app.catalog("acme")
    assert catalog is not None
    return dict(catalog.policy)


def test_policy_restored_then_in_step_then_reset() -> None:
    app = TrunkplaneApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    try:
        first = app.execute(lambda uow: sync_tenant(
            uow, "acme", DesiredConfig(policy=POLICY), META)).unwrap()
        assert first.changes == ["update policy: business_hours, guard"]
        assert _policy(app) == POLICY
        again = app.execute(lambda uow: sync_tenant(
            uow, "acme", DesiredConfig(policy=POLICY), META)).unwrap()
        assert again.changes == []
        cleared = app.execute(lambda uow: sync_tenant(
            uow, "acme", DesiredConfig(policy=default_policy()), META)).unwrap()
        assert cleared.changes == ["update policy: business_hours, guard"]
        assert _policy(app) == default_policy()
        untouched = app.execute(lambda uow: sync_tenant(
            uow, "acme", DesiredConfig(), META)).unwrap()
        assert untouched.changes == [] and _policy(app) == default_policy()
    finally:
        app.close()
