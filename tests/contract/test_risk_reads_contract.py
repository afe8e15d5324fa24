"""The group path's batched risk reads agree with ``risk_snapshot`` on both stores: the halt flags
(``risk.gate.halt_paths``) and exposure documents fetched in one ``get_all``, and ``count_trades``."""
from __future__ import annotations

from decimal import Decimal as D

from backend.execution.store_rules import exposure_from_doc, exposure_path
from backend.risk.gate import halt_flags, halt_paths
from backend.risk.manager import Exposure
from tests.contract.test_store_contract import DAY, KEY, claim


def test_one_batched_read_and_the_slot_count_give_what_risk_snapshot_gives(h):
    h.put("ops/execution", {"kill_switch": True})
    h.put("tenants/acme/config/risk", {"max_trades_per_day": 3})
    h.store.claim(claim("i1"))
    h.store.claim(claim("i2", seen=1))

    docs = h.store.get_all([*halt_paths("acme"), exposure_path("acme", KEY)])
    flags = halt_flags(docs, "acme")

    snap = h.store.risk_snapshot("acme", KEY, DAY)
    assert (flags.global_kill_switch, flags.tenant_overrides) == (snap.global_kill_switch, snap.tenant_overrides)
    assert exposure_from_doc(docs[exposure_path("acme", KEY)][0]) == snap.exposure == Exposure(reserved_long=D(20))
    assert h.store.count_trades("acme", DAY) == snap.trades_today == 2


def test_the_batched_read_of_a_quiet_tenant_is_empty(h):
    docs = h.store.get_all([*halt_paths("acme"), exposure_path("acme", KEY)])

    flags = halt_flags(docs, "acme")
    assert (flags.global_kill_switch, flags.tenant_overrides) == (False, None)
    assert exposure_from_doc(docs[exposure_path("acme", KEY)][0]) == Exposure()
    assert h.store.count_trades("acme", DAY) == 0
