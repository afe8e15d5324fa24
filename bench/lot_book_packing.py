"""Issue 17: what a lot book costs per fill, packed (``backend.tax.state.pack_list``) vs the list form
written before — the commit of the whole book on the official Firestore emulator, the read of it,
and the CPU of one fill's step (decode, apply, encode).

    .venv/bin/python -m bench.lot_book_packing [--lots 10,100,500] [--repeat 40]

Prints one line per (lots, form): median / p90 milliseconds and the stored size. Not a test: the
figures depend on the machine; the README of bench/ says how they are reported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

PROJECT = "demo-lot-book-bench"
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)


def book(n: int) -> dict[str, Any]:
    """A packed book of ``n`` lots bought one share at a time (as the HTTP benchmark's trader does)."""
    from backend.tax import Fill
    from backend.tax.state import apply_fill_to_state, pack_list

    state = None
    for i in range(n):
        fill = Fill(trade_id=f"{i:036d}--f1", symbol="SPY", side="buy", qty=Decimal(1),
                    price=Decimal("512.37") + Decimal(i) / 100, timestamp=T0 + timedelta(minutes=i),
                    asset_class="EQUITY", book="acme:main-u1234567890abcdef")
        state = apply_fill_to_state(state, fill).state
    return {**state, "method": "FIFO", "pending_disposals_packed": pack_list([])}


def list_form(state: dict[str, Any]) -> dict[str, Any]:
    from backend.tax.state import PACKED_FIELDS, book_lots, book_pending, book_pending_disposals

    out = {k: v for k, v in state.items() if k not in PACKED_FIELDS.values()}
    out.update(lots=book_lots(state), pending=book_pending(state), pending_disposals=book_pending_disposals(state))
    return out


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"{statistics.median(ordered) * 1000:7.2f} / {ordered[int(len(ordered) * 0.9)] * 1000:7.2f}"


def measure(db: Any, n: int, repeat: int) -> list[str]:
    from backend.domain.storable import record_size
    from backend.tax import Fill
    from backend.tax.state import apply_fill_to_state

    packed = book(n)
    rows = []
    nxt = Fill(trade_id="next--f1", symbol="SPY", side="buy", qty=Decimal(1), price=Decimal("600"),
               timestamp=T0 + timedelta(days=1), asset_class="EQUITY", book="acme:main-u1234567890abcdef")
    for form, state in (("list", list_form(packed)), ("packed", packed)):
        ref = db.document(f"users/u-{form}-{n}/tax_books/SPY")
        ref.set(state)
        commits, reads, steps = [], [], []
        for _ in range(repeat):
            batch = db.batch()
            batch.set(ref, state)
            started = time.perf_counter()
            batch.commit()
            commits.append(time.perf_counter() - started)
            started = time.perf_counter()
            ref.get()
            reads.append(time.perf_counter() - started)
            started = time.perf_counter()
            apply_fill_to_state(state, nxt)
            steps.append(time.perf_counter() - started)
        rows.append(f"{n:5d} lots {form:6s}: commit {_ms(commits)} ms  read {_ms(reads)} ms  "
                    f"fill step (CPU) {_ms(steps)} ms  stored {record_size(state, ref.path):,} bytes")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lots", default="10,100,500")
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from tests.support.emulators import FirestoreEmulator

    with FirestoreEmulator() as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        db = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
        print("median / p90 over", args.repeat, "runs (the official Firestore emulator)")
        for n in (int(x) for x in args.lots.split(",")):
            for line in measure(db, n, args.repeat):
                print(line, flush=True)


if __name__ == "__main__":
    main()
