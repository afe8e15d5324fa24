"""The executor's persistence: the stored group document, its saves, and the ledger rows they carry.

Mixed into ``GroupExecutor`` (backend/execution/group_executor.py). Every save goes through ``_flush``:
the group document (``_doc``, with the adapter fields a save keeps, ``_carried``), the ledger and
history rows of every final fill not yet written (``_fill_writes``; listed in ``_ledger_written`` so a
retried save adds none twice), the intent document's outcome, and the reservation's settlement
(``_settlement``, executor_gate.py) with the exposure a protective stop's fill moves. The row
builders (``_fill_write``, ``_decision_write``, ``decision_trade_id``) and ``_domain_doc`` (the
domain part of a stored document) are module functions, imported back by group_executor.py.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Mapping

from backend.domain.money import ZERO
from backend.execution import groups as g
from backend.execution.accounts import stored_binding
from backend.execution.group import leg_stop as stops
from backend.execution.group.executor_run import DEFAULT_GROUP_ACCOUNT, _Run, leg_trade_id
from backend.execution.records import group_decision_row, group_fill_rows, tax_fill, with_venue_account
from backend.ports.store import FillWrite, GroupSettlement


class GroupPersistence:
    """The group document, its saves under the run's lease, and the fill and decision rows they write."""

    def _carried(self, run: _Run) -> dict[str, Any]:
        """Adapter fields a save must keep (the group's account label and its reservation)."""
        doc = run.snapshot.doc
        return {"_intent_doc": bool(doc.get("_intent_doc")), "_account": doc.get("_account"),
                "_binding": doc.get("_binding"),
                "_reservation": doc.get("_reservation"), "_settled": bool(doc.get("_settled"))}

    def _lease_until(self) -> datetime:
        return self.clock.now() + timedelta(seconds=float(self.settings.lease_seconds))

    def _doc(self, group: g.ExecutionGroup, owner: str | None, written: tuple[str, ...], *,
             release: bool = False) -> dict[str, Any]:
        # a final group with a stop to place or follow stays findable by the sweeper (``_final`` false;
        # its lease is released by the run's last flush, ``_flush(final=True)``)
        final = group.status.is_final and not stops.stops_open(group)
        return {**group.to_dict(), "_final": final, "_kind": "multi_leg",
                "_lease_owner": None if (final or release) else owner,
                "_lease_until": None if final else (self.clock.now() if release else self._lease_until()),
                "_ledger_written": list(written)}

    def _flush(self, run: _Run, owner: str, *, final: bool = False, release: bool = False) -> None:
        written = tuple(run.snapshot.doc.get("_ledger_written") or ())
        fills = tuple(f for f in self._fill_writes(run.group, self._account(run), self._venue_account(run))
                      if f.trade_id not in written)
        if not run.dirty and not fills and not release and not final:
            return
        settlement = self._settlement(run)
        doc = {**self._doc(run.group, owner, written + tuple(f.trade_id for f in fills), release=release or final),
               **self._carried(run)}
        if settlement is not None:
            doc["_settled"] = True
        settlement = self._with_stop_fills(run, settlement, fills)
        intent_update = None
        if doc["_intent_doc"] and run.group.status.is_final and not run.snapshot.doc.get("_final") \
                and not run.snapshot.doc.get("_outcome_written"):
            response = run.group.to_api_response()
            intent_update = {"status": response["status"].lower(), "result": response}
        if run.group.status.is_final:
            doc["_outcome_written"] = True  # the intent's outcome once, also while a stop is followed
        run.snapshot = self.store.save_group(run.snapshot, doc, fills, intent_update,
                                             **({"settlement": settlement} if settlement is not None else {}))
        run.dirty = False

    def _with_stop_fills(self, run: _Run, settlement: GroupSettlement | None,
                         fills: tuple[FillWrite, ...]) -> GroupSettlement | None:
        """A protective stop's fill (``{group}--{leg}--stop``, first written now) moves the leg's
        exposure in the same commit as its ledger row: the position the group settled shrinks by it."""
        moves = []
        for fill in fills:
            group_id, _, rest = fill.trade_id.partition("--")
            leg_id, _, suffix = rest.partition("--")
            if not (suffix == "stop" or (suffix.startswith("stop--r") and suffix.endswith("--fill"))) \
                    or fill.ledger is None:
                continue
            qty = Decimal(str(fill.ledger.get("filled_qty") or "0"))
            signed = qty if fill.ledger.get("side") == "buy" else -qty
            moves.append((self._leg_key(run, run.group.leg(leg_id)), signed, ZERO))
        if not moves:
            return settlement
        if settlement is None:
            return GroupSettlement(self._trade_day(run), tuple(moves), ())
        return GroupSettlement(settlement.trade_day, settlement.exposure + tuple(moves), settlement.release_slots)

    @staticmethod
    def _venue_account(run: _Run) -> str | None:
        binding = stored_binding(run.snapshot.doc.get("_binding"))
        return None if binding is None else binding.venue_account_id

    def _fill_writes(self, group: g.ExecutionGroup, account: str = DEFAULT_GROUP_ACCOUNT,
                     venue_account_id: str | None = None) -> list[FillWrite]:
        """Ledger + history rows for every final fill: each leg's entry and each rollback order, labelled
        with the group's account and its venue account id (the lot book is per tenant and account)."""
        out = self._fill_rows(group, account)
        for write in out:
            with_venue_account(write.ledger, venue_account_id)
            with_venue_account(write.history, venue_account_id)
        return out

    def _fill_rows(self, group: g.ExecutionGroup, account: str) -> list[FillWrite]:
        now = self.clock.now()
        out = []
        if group.status.is_final:  # every final group is one decision row (issue 19 item 7)
            out.append(_decision_write(group, now, account))
        for leg in group.legs:
            if leg.status.is_final and leg.filled_units > 0 and leg.fill_price is not None:
                out.append(_fill_write(group, leg, leg_trade_id(group.group_id, leg.leg_id), leg.side.value,
                                       leg.filled_units, leg.fill_price, leg.client_order_id, leg.broker_order_id,
                                       "group_fill", now, leg.slippage_pips, account, leg.units))
        for order in group.rollback_orders:
            if order.status.is_final and order.filled_qty > 0 and order.fill_price is not None:
                leg = group.leg(order.leg_id)
                out.append(_fill_write(group, leg, f"{group.group_id}--{leg.leg_id}--rb{order.seq}", order.side.value,
                                       order.filled_qty, order.fill_price, order.client_order_id,
                                       order.broker_order_id, "rollback_fill", now, None, account, order.qty))
        for leg in group.legs:  # a protective stop that filled at the venue (final: counted once)
            stop = leg.stop_loss
            if stop is not None and stop.status.is_final and stop.filled_qty > 0 and stop.fill_price is not None:
                side = "sell" if leg.direction > 0 else "buy"
                out.append(_fill_write(group, leg, f"{group.group_id}--{leg.leg_id}--stop", side, stop.filled_qty,
                                       stop.fill_price, stop.client_order_id or "", stop.broker_order_id,
                                       "fill", now, None, account, stop.qty))  # as exit_legs' exits
        for leg in group.legs:  # the owner's cancel / replace of a stop (group/stop_management.py)
            if leg.stop_loss is not None:
                from backend.execution.group.stop_management import stop_event_writes

                out.extend(stop_event_writes(group, leg, account, now, _fill_write))
        return out


def _fill_write(group: g.ExecutionGroup, leg: g.ExecutionLeg, trade_id: str, side: str, qty: Decimal,
                price: Decimal, client_order_id: str, broker_order_id: str | None, kind: str, now: datetime,
                slippage_ticks: Decimal | None, account: str = DEFAULT_GROUP_ACCOUNT,
                ordered_qty: Decimal | None = None) -> FillWrite:
    ledger, history = group_fill_rows(group=group, leg=leg, trade_id=trade_id, kind=kind, side=side, qty=qty,
                                      ordered_qty=qty if ordered_qty is None else ordered_qty, price=price,
                                      client_order_id=client_order_id, broker_order_id=broker_order_id, now=now,
                                      slippage_ticks=slippage_ticks, account=account)
    tax = tax_fill(trade_id=trade_id, symbol=leg.symbol, asset_class=leg.asset_class.value, side=side, qty=qty,
                   price=price, fees=ZERO, when=now, multiplier=leg.spec.multiplier)
    return FillWrite(trade_id=trade_id, uid=group.uid, ledger=ledger, history=history, tax=tax)


def decision_trade_id(group: g.ExecutionGroup) -> str:
    """The id of the group's one decision row (``--dry_run`` kept for dry-run groups, as before)."""
    return f"{group.group_id}--dry_run" if group.status is g.GroupStatus.DRY_RUN else f"{group.group_id}--decision"


def _decision_write(group: g.ExecutionGroup, now: datetime, account: str = DEFAULT_GROUP_ACCOUNT) -> FillWrite:
    """The group's decision row (like a single order's), written in the commit that makes the group
    final and listed in ``_ledger_written``, so a retried or resumed final save adds no second one.
    ``status``: the final status (filled, partially_filled, rejected, rolled_back,
    failed_needs_attention, dry_run); ``reason_code``/``reason``: the group's coded rejection."""
    trade_id = decision_trade_id(group)
    if group.status is g.GroupStatus.DRY_RUN:
        code, reason = None, "dry run: every gate passed, nothing sent"
    elif group.rejection is not None:
        code, reason = group.rejection.code.value, str(group.rejection)
    else:
        code, reason = None, None
    ledger = group_decision_row(group=group, trade_id=trade_id, status=group.status.value.lower(), reason=reason,
                                reason_code=code, now=now, account=account)
    return FillWrite(trade_id=trade_id, uid=group.uid, ledger=ledger, history=None, tax=None)


def _domain_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}
