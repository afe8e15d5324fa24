"""The yardstick of the decision benchmark: pydantic v2 validation of the same intent JSON.

Standalone on purpose (imports pydantic only) so the nautilus worker, which runs in its own venv
without the project, validates with exactly the same model. Fields and rules mirror
``backend.execution.intent.OrderIntent``: ids of ``[A-Za-z0-9_-]{1,100}``, side buy/sell,
positive Decimal quantity, known asset classes, market/limit, unknown keys refused.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

_ID = r"^[A-Za-z0-9_-]{1,100}$"


class IntentModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    intent_id: str = Field(pattern=_ID)
    strategy_id: str = Field(pattern=_ID)
    broker_account_id: str = Field(pattern=_ID)
    symbol: str = Field(min_length=1, max_length=40)
    side: Literal["buy", "sell"]
    qty: Decimal = Field(gt=0, max_digits=24, decimal_places=10)
    asset_class: Literal["EQUITY", "CRYPTO", "FOREX", "FX", "OPTIONS", "COMMODITY"] = "EQUITY"
    order_type: Literal["market", "limit"] = "market"
    limit_price: Optional[Decimal] = Field(default=None, gt=0)
    estimated_slippage: Optional[Decimal] = Field(default=None, ge=0, lt=1)
    metadata: dict[str, Union[str, int, bool, None]] = Field(default_factory=dict)


def intent_json(intent_id: str, *, qty: str = "10") -> dict:
    """The intent every decision-path contender receives (an equity market buy)."""
    return {"intent_id": intent_id, "strategy_id": "momentum_01", "broker_account_id": "acct_main",
            "symbol": "AAPL", "side": "buy", "qty": qty, "asset_class": "EQUITY", "order_type": "market",
            "metadata": {}}
