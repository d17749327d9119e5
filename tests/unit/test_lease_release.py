"""Releasing a lease id that was never issued is an error, not "already released"."""

from __future__ import annotations

import pytest

from domain.errors import NotFoundError
from sipagent.admission import OUTBOUND
from tests.unit.test_admission import Tenant


def test_a_lease_id_never_issued_is_not_found() -> None:
    tenant = Tenant()
    trunk_id = tenant.trunk("primary")
    tenant.route("us", [{"match": "NXXNXXXXXX"}], [trunk_id])
    admission = tenant.admission()
    grant = admission.acquire("acme", OUTBOUND, "2125551234")
    assert admission.release(grant.lease.lease_id) is True
    assert admission.release(grant.lease.lease_id) is False  # twice: harmless
    from_earlier_run = f"{trunk_id}.o.{'0' * 32}"
    assert admission.release(from_earlier_run) is False  # could be: expired or released
    for typo in ("LEASE_ID", f"{trunk_id}.x.{'0' * 32}", f"nobody.o.{'0' * 32}", ""):
        with pytest.raises(NotFoundError, match="never issued"):
            admission.release(typo)
