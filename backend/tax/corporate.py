"""Corporate actions that change lots without a taxable event: stock splits, reverse splits and
symbol changes.

- **Split / reverse split** (``SPLIT``, ``ratio`` = new units per old unit: 2 for a 2-for-1 split,
  0.1 for a 1-for-10 reverse split): every open lot of the symbol acquired before ``effective``
  (the ex-date: the first trade date at split-adjusted prices) gets quantity × ratio; its total
  basis (and wash-sale adjustment) is unchanged, so the per-unit basis is divided by the ratio;
  the acquisition date and holding period are unchanged (Pub. 550, "Stock splits": no gain or
  loss, the basis of the old shares is spread over the new ones, and the new shares' holding
  period includes the old). Pending wash-sale losses of sales before ``effective`` now look for
  ratio × their remaining units of replacement shares. Cash in lieu of a fractional share is a
  sale of that fraction: record it as a sell fill (the core keeps the exact fractional quantity).
- **Symbol change** (``SYMBOL_CHANGE``, ``new_symbol``): the lots carry over unchanged under the
  new symbol (same quantity, basis, dates); the old symbol's book is then empty. Merging into a
  book of the new symbol that already holds lots or pending losses is refused (``InvalidInput``):
  that is a merger, whose basis allocation needs the issuer's figures.

Applied in time order with the fills: ``TaxLedger.apply_corporate_action`` (batch/streaming) or
``apply_action_to_state`` (one stored book document; the store then writes the state under the
returned symbol's key and, for a symbol change, removes the old document in the same commit).
Each application is recorded in the book's ``corporate_actions`` history (id, kind, dates, and
each lot's quantity before and after); an ``action_id`` already in the history is a no-op.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Mapping

from backend.domain.assets import AssetClass, crypto_pair, detect_asset_class, normalize_symbol
from backend.domain.errors import InvalidInput
from backend.domain.money import ZERO, dec_str
from backend.tax import _arith
from backend.tax.model import Lot

HISTORY_KEY = "corporate_actions"
MAX_HISTORY = 200


class CorporateActionConflict(Exception):
    """An action id already recorded for a different action (HTTP 409)."""


class ActionKind(str, Enum):
    SPLIT = "SPLIT"
    SYMBOL_CHANGE = "SYMBOL_CHANGE"


def _symbol(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, f"expected a symbol, got {value!r}")
    text = normalize_symbol(value)
    return crypto_pair(text) if detect_asset_class(text) is AssetClass.CRYPTO else text


@dataclass(frozen=True, kw_only=True)
class CorporateAction:
    action_id: str
    kind: ActionKind
    symbol: str
    effective: date
    ratio: Decimal | None = None
    new_symbol: str | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__
        if not isinstance(self.action_id, str) or not self.action_id.strip():
            raise InvalidInput("action_id", "expected a non-empty string")
        try:
            put(self, "kind", ActionKind(str(getattr(self.kind, "value", self.kind)).upper()))
        except ValueError:
            raise InvalidInput("kind", f"expected one of {[k.value for k in ActionKind]}, got {self.kind!r}") from None
        put(self, "symbol", _symbol(self.symbol, "symbol"))
        if not isinstance(self.effective, date):
            raise InvalidInput("effective", "expected a date")
        if self.kind is ActionKind.SPLIT:
            ratio = _arith.strict_decimal(self.ratio, "ratio")
            if not ratio.is_finite() or ratio <= ZERO or ratio == 1:
                raise InvalidInput("ratio", f"must be positive and not 1, got {self.ratio}")
            put(self, "ratio", ratio)
            if self.new_symbol is not None:
                raise InvalidInput("new_symbol", "only for SYMBOL_CHANGE")
        else:
            if self.ratio is not None:
                raise InvalidInput("ratio", "only for SPLIT")
            new = _symbol(self.new_symbol, "new_symbol")
            if new == self.symbol:
                raise InvalidInput("new_symbol", "is the same symbol")
            put(self, "new_symbol", new)

    @property
    def target_symbol(self) -> str:
        return self.new_symbol if self.kind is ActionKind.SYMBOL_CHANGE else self.symbol  # type: ignore[return-value]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "CorporateAction":
        unknown = set(data) - {"action_id", "kind", "symbol", "effective", "ratio", "new_symbol"}
        if unknown:
            raise InvalidInput("corporate_action", f"unknown fields {sorted(unknown)}")
        values = dict(data)
        if isinstance(values.get("effective"), str):
            try:
                values["effective"] = date.fromisoformat(values["effective"])
            except ValueError:
                raise InvalidInput("effective", f"expected YYYY-MM-DD, got {data['effective']!r}") from None
        if isinstance(values.get("ratio"), str):
            try:
                values["ratio"] = Decimal(values["ratio"])
            except ArithmeticError:
                raise InvalidInput("ratio", f"expected a decimal string, got {data['ratio']!r}") from None
        missing = {"action_id", "kind", "symbol", "effective"} - set(values)
        if missing:
            raise InvalidInput("corporate_action", f"missing fields {sorted(missing)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "kind": self.kind.value, "symbol": self.symbol,
                "effective": self.effective.isoformat(),
                **({"ratio": dec_str(self.ratio)} if self.ratio is not None else {}),
                **({"new_symbol": self.new_symbol} if self.new_symbol is not None else {})}


def history_entry(action: CorporateAction, changed: list[tuple[Lot, Lot]]) -> dict[str, Any]:
    return {**action.to_dict(),
            "lots": [{"lot_id": before.lot_id, "book": before.book, "qty_before": dec_str(before.qty),
                      "qty_after": dec_str(after.qty), "basis": dec_str(after.basis)} for before, after in changed]}


@dataclass(frozen=True)
class ActionStep:
    state: dict[str, Any]
    symbol: str  # the book the state belongs to now (the new symbol after a SYMBOL_CHANGE)
    entry: dict[str, Any] | None  # the history entry written; None when the action was already applied


def apply_action_to_state(state: Mapping[str, Any] | None, action: CorporateAction,
                          target_state: Mapping[str, Any] | None = None) -> ActionStep:
    """Apply one action to a stored lot-book state (``backend.tax.state``). ``target_state``: the
    new symbol's current book for a SYMBOL_CHANGE (must be empty)."""
    from backend.tax.state import book_from_state, book_lots, book_pending, book_to_state

    current = dict(state or {})
    history = list(current.get(HISTORY_KEY) or ())
    if any(item.get("action_id") == action.action_id for item in history):
        return ActionStep(current, action.target_symbol, None)
    if not current:
        raise InvalidInput("symbol", f"no lot book for {action.symbol}")
    asset_class = AssetClass(current["asset_class"])
    book = book_from_state(current, current.get("symbol", action.symbol), asset_class)
    if action.kind is ActionKind.SPLIT:
        changed = book.stock_split(action.ratio, action.effective)  # type: ignore[arg-type]
    else:
        if target_state and (book_lots(target_state) or book_pending(target_state)):
            raise InvalidInput("new_symbol", f"{action.new_symbol} already has lots: a merger, not a symbol change")
        changed = book.rename(action.target_symbol)
    entry = history_entry(action, changed)
    last = current.get("last_fill_at")
    new_state = book_to_state(book, next_seq=int(current.get("next_seq", 0)),
                              last_fill_at=None, trade_ids=list(current.get("recent_trade_ids", [])))
    new_state["last_fill_at"] = last
    new_state[HISTORY_KEY] = (history + [entry])[-MAX_HISTORY:]
    return ActionStep(new_state, action.target_symbol, entry)


# --- a tenant admin's action on one user's stored book (backend/tax/admin_writes.py drives it) ------
class Outcome(str, Enum):
    APPLIED = "APPLIED"
    ALREADY_APPLIED = "ALREADY_APPLIED"
    NOT_THE_TENANTS = "NOT_THE_TENANTS"  # no lot or pending loss of the tenant's accounts: left alone
    REFUSED = "REFUSED"


@dataclass(frozen=True)
class TenantStep:
    outcome: Outcome
    reason: str = ""  # REFUSED: CODE: text
    state: dict[str, Any] | None = None  # APPLIED: the book's new state, stored under ``symbol``
    symbol: str = ""
    target_state: dict[str, Any] | None = None  # APPLIED SYMBOL_CHANGE: merged with the target's bookkeeping


def _books_of(state: Mapping[str, Any]) -> list[str]:
    from backend.tax.state import book_lots, book_pending

    return ([str(lot.get("book") or "") for lot in book_lots(state)]
            + [str((item.get("disposal") or {}).get("book") or "") for item in book_pending(state)])


def apply_tenant_action(state: Mapping[str, Any] | None, action: CorporateAction, tenant_id: str,
                        target_state: Mapping[str, Any] | None = None, tz: Any = None) -> TenantStep:
    """One user's book of ``action.symbol`` under a tenant admin's action. A book document holds the
    lots of every account of the user (``<tenant>:<account>``), so the admin of one tenant changes
    a book only when every lot and pending loss in it is of that tenant's accounts:

    - ``ALREADY_APPLIED``: the action id is in the book's history (a retry, or a resumed request);
    - ``NOT_THE_TENANTS``: nothing in the book is of the tenant (another tenant's user): untouched;
    - ``REFUSED``: ``MIXED_BOOK`` (lots of other tenants' accounts, or from before accounts, share
      the document: each tenant records the action for its own accounts, not for the others');
      ``DUPLICATE_ACTION`` (a split, or a symbol change, of the symbol with the same ex-date is in
      the history under another id: applying it again would split twice); ``FILLS_AFTER_EX_DATE`` (the book
      has fills on or after the ex-date while lots from before it would change: those fills were
      booked at pre-split quantities, and the book must be rebuilt, not adjusted);
      ``TARGET_HAS_LOTS`` (a symbol change into a book with lots: a merger);
    - ``APPLIED``: ``apply_action_to_state``; for a symbol change the new document keeps the
      target document's trade-id memory, history and sequence (a target without lots may exist:
      a book of the new symbol that was sold out)."""
    from backend.tax.holding import resolve_tz, trade_date
    from backend.tax.state import book_lots, book_pending, packed_state

    current = dict(state or {})
    history = list(current.get(HISTORY_KEY) or ())
    if any(item.get("action_id") == action.action_id for item in history):
        return TenantStep(Outcome.ALREADY_APPLIED, symbol=action.target_symbol)
    books = _books_of(current)
    prefix = f"{tenant_id}:"
    if not any(book.startswith(prefix) for book in books):
        return TenantStep(Outcome.NOT_THE_TENANTS)
    others = sorted({book or "(before accounts)" for book in books if not book.startswith(prefix)})
    if others:
        return TenantStep(Outcome.REFUSED, f"MIXED_BOOK: {len(others)} other account(s) share this lot book")
    key = {k: v for k, v in action.to_dict().items() if k in ("kind", "symbol", "effective")}
    for item in history:
        if {k: item.get(k) for k in key} == key:
            return TenantStep(Outcome.REFUSED, f"DUPLICATE_ACTION: already applied as {item.get('action_id')}")
    last = current.get("last_fill_at")
    if action.kind is ActionKind.SPLIT and last:
        last_day = trade_date(datetime.fromisoformat(last), resolve_tz(tz))
        changes = any(date.fromisoformat(str(lot["acquired"])) < action.effective for lot in book_lots(current))
        if last_day >= action.effective and changes:
            return TenantStep(Outcome.REFUSED,
                              f"FILLS_AFTER_EX_DATE: the book's last fill is on {last_day.isoformat()}")
    if action.kind is ActionKind.SYMBOL_CHANGE and target_state and (book_lots(target_state)
                                                                      or book_pending(target_state)):
        return TenantStep(Outcome.REFUSED, f"TARGET_HAS_LOTS: {action.new_symbol} already has lots: a merger")
    step = apply_action_to_state(current, action, target_state)
    # fields the store keeps beside the state stay (method, pending_disposals); packed (issue 17)
    new_state = packed_state({**current, **step.state})
    if action.kind is ActionKind.SYMBOL_CHANGE and target_state:
        new_state = _merged_bookkeeping(new_state, target_state)
    return TenantStep(Outcome.APPLIED, state=new_state, symbol=step.symbol)


def _merged_bookkeeping(moved: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """The moved book plus what the (lot-less) target document remembered: its recent trade ids
    (duplicate deliveries stay no-ops), its history, the larger sequence and the later last fill."""
    out = dict(moved)
    ids = list(target.get("recent_trade_ids") or []) + [i for i in moved.get("recent_trade_ids") or []
                                                         if i not in (target.get("recent_trade_ids") or [])]
    out["recent_trade_ids"] = ids[-50:]
    out[HISTORY_KEY] = (list(target.get(HISTORY_KEY) or []) + list(moved.get(HISTORY_KEY) or []))[-MAX_HISTORY:]
    out["next_seq"] = max(int(moved.get("next_seq", 0)), int(target.get("next_seq", 0)))
    lasts = [x for x in (moved.get("last_fill_at"), target.get("last_fill_at")) if x]
    out["last_fill_at"] = max(lasts, key=datetime.fromisoformat) if lasts else None
    return out
