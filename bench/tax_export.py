"""Tax-lot export of N crypto fills: time and peak memory, against rp2 computing FIFO gains.

Fills are generated deterministically (seeded) as an iterator: BTC/USD and ETH/USD, buys and
sells (a sell never exceeds the holdings, so no shortfalls), no fees, timestamps between 14:00 and
20:00 UTC so the UTC date equals the New York trade date, spread over ~700 days from 2024-01-02
whatever N is (lots bought in 2024 are sold in 2025: short- and long-term rows).

Each contender runs in its own fresh interpreter (``python -m bench.tax_export --worker ...``) in
a temporary directory (rp2 writes ./log), so peak RSS belongs to it alone:

- ``ours``: ``write_form_8949_csv(iter_form_8949_rows(fills, 2025, FIFO), file)`` — the streaming
  export of the whole history (Fill objects built from the raw records on the fly). Timed;
  ``ru_maxrss`` is the process peak. A second, untimed pass sums the exact disposal gains per
  year (``iter_disposals``) for the equality check.
- ``ours-tracemalloc``: the same export under tracemalloc (peak of Python allocations).
- ``rp2``: the same raw records into rp2's ``InTransaction`` / ``OutTransaction`` sets, then
  ``compute_tax`` with rp2's FIFO plugin per asset; gains summed per year of the taxable event.
  Timed from the first record to the last gain (no report generation).

Targets (N = 100,000): time(ours) ÷ time(rp2) ≤ 0.5; peak ≤ 200 MB; per-year gain totals equal.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterator

ASSETS = ("BTC", "ETH")
YEAR = 2025
SEED = 20251
SPAN_DAYS = 700
WINDOW_SECONDS = 6 * 3600  # 14:00-20:00 UTC

RP2_INI = """\
[general]
assets = BTC, ETH
exchanges = Bench
holders = Bench
[in_header]
timestamp = 0
asset = 1
exchange = 2
holder = 3
transaction_type = 4
spot_price = 5
crypto_in = 6
[out_header]
timestamp = 0
asset = 1
exchange = 2
holder = 3
transaction_type = 4
spot_price = 5
crypto_out_no_fee = 6
crypto_fee = 7
[intra_header]
timestamp = 0
asset = 1
from_exchange = 2
from_holder = 3
to_exchange = 4
to_holder = 5
spot_price = 6
crypto_sent = 7
crypto_received = 8
"""


def raw_fills(n: int, seed: int = SEED) -> Iterator[dict[str, Any]]:
    """n deterministic fill records (amounts as strings, aware UTC timestamps), in time order."""
    rng = random.Random(seed)
    holdings = {asset: 0 for asset in ASSETS}  # micro-units (1e-6)
    price = {"BTC": 4_000_000, "ETH": 250_000}  # cents
    per_day = max(1, math.ceil(n / SPAN_DAYS))
    step = WINDOW_SECONDS // per_day
    start = datetime(2024, 1, 2, 14, 0, tzinfo=timezone.utc)
    for i in range(n):
        day, slot = divmod(i, per_day)
        asset = ASSETS[rng.random() < 0.5]
        price[asset] = max(100, price[asset] + rng.randint(-price[asset] // 50, price[asset] // 50))
        if holdings[asset] > 0 and rng.random() < 0.45:
            qty = rng.randint(1, holdings[asset])
            holdings[asset] -= qty
            side = "SELL"
        else:
            qty = rng.randint(1_000, 2_000_000)
            holdings[asset] += qty
            side = "BUY"
        yield {"trade_id": f"t{i}", "symbol": f"{asset}/USD", "side": side, "qty": str(Decimal(qty).scaleb(-6)),
               "price": str(Decimal(price[asset]).scaleb(-2)),
               "timestamp": start + timedelta(days=day, seconds=slot * step)}


def our_fills(n: int, seed: int = SEED) -> Iterator[Any]:
    from backend.tax import Fill

    for r in raw_fills(n, seed):
        yield Fill(trade_id=r["trade_id"], symbol=r["symbol"], side=r["side"], qty=Decimal(r["qty"]),
                   price=Decimal(r["price"]), timestamp=r["timestamp"], asset_class="CRYPTO")


def _maxrss_mb() -> float:
    """Peak resident set of this process image. Linux ``VmHWM`` (reset by exec); not ``ru_maxrss``,
    which a child inherits from its parent's size at fork and would report the harness's memory."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; macOS: bytes


# --- workers (run in a fresh interpreter) ----------------------------------------------------------

def worker_ours(n: int, year: int, *, totals: bool, trace: bool) -> dict[str, Any]:
    import tracemalloc

    from backend.tax import LotMethod, iter_disposals, iter_form_8949_rows, write_form_8949_csv

    baseline = _maxrss_mb()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    with open("form8949.csv", "w", newline="") as stream:
        rows = write_form_8949_csv(iter_form_8949_rows(our_fills(n), year, LotMethod.FIFO), stream)
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"seconds": seconds, "rows": rows, "maxrss_mb": _maxrss_mb(), "baseline_rss_mb": baseline,
                           "csv_bytes": os.path.getsize("form8949.csv")}
    if trace:
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    if totals:
        per_year: dict[int, Decimal] = {}
        disposals = 0
        for d in iter_disposals(our_fills(n), LotMethod.FIFO):
            per_year[d.sold.year] = per_year.get(d.sold.year, Decimal(0)) + d.gain
            disposals += 1
        out["gains_by_year"] = {str(y): str(v) for y, v in sorted(per_year.items())}
        out["disposals"] = disposals
        csv_total = Decimal(0)
        with open("form8949.csv", newline="") as stream:
            import csv

            reader = csv.reader(stream)
            header = next(reader)
            col = header.index("Gain or (loss)")
            for record in reader:
                csv_total += Decimal(record[col])
        out["csv_gain_total"] = str(csv_total)
    return out


def worker_rp2(n: int) -> dict[str, Any]:
    from prezzemolo.avl_tree import AVLTree
    from rp2.accounting_engine import AccountingEngine
    from rp2.configuration import MIN_DATE, Configuration
    from rp2.in_transaction import InTransaction
    from rp2.input_data import InputData
    from rp2.out_transaction import OutTransaction
    from rp2.plugin.accounting_method.fifo import AccountingMethod
    from rp2.plugin.country.us import US
    from rp2.rp2_decimal import ZERO, RP2Decimal
    from rp2.tax_engine import compute_tax
    from rp2.transaction_set import TransactionSet

    with open("bench.ini", "w") as ini:
        ini.write(RP2_INI)
    baseline = _maxrss_mb()
    t0 = time.perf_counter()
    config = Configuration("bench.ini", US())
    sets = {a: (TransactionSet(config, "IN", a), TransactionSet(config, "OUT", a), TransactionSet(config, "INTRA", a))
            for a in ASSETS}
    for row, r in enumerate(raw_fills(n), start=1):
        asset = r["symbol"].split("/", 1)[0]
        stamp = r["timestamp"].isoformat()
        if r["side"] == "BUY":
            sets[asset][0].add_entry(InTransaction(config, stamp, asset, "Bench", "Bench", "Buy", RP2Decimal(r["price"]),
                                                   RP2Decimal(r["qty"]), fiat_fee=ZERO, row=row,
                                                   unique_id=r["trade_id"]))
        else:
            sets[asset][1].add_entry(OutTransaction(config, stamp, asset, "Bench", "Bench", "Sell",
                                                    RP2Decimal(r["price"]), RP2Decimal(r["qty"]), ZERO, row=row,
                                                    unique_id=r["trade_id"]))
    methods: AVLTree = AVLTree()
    methods.insert_node(MIN_DATE.year, AccountingMethod())
    engine = AccountingEngine(methods)
    per_year: dict[int, Decimal] = {}
    gains = 0
    for asset in ASSETS:
        computed = compute_tax(config, engine, InputData(asset, *sets[asset]))
        for gain_loss in computed.gain_loss_set:
            year = gain_loss.taxable_event.timestamp.year
            per_year[year] = per_year.get(year, Decimal(0)) + Decimal(str(gain_loss.fiat_gain))
            gains += 1
    seconds = time.perf_counter() - t0
    import rp2 as _rp2  # noqa: F401
    from importlib import metadata

    return {"seconds": seconds, "gain_losses": gains, "maxrss_mb": _maxrss_mb(), "baseline_rss_mb": baseline,
            "gains_by_year": {str(y): str(v) for y, v in sorted(per_year.items())},
            "rp2_version": metadata.version("rp2")}


# --- driver ----------------------------------------------------------------------------------------

def _spawn(kind: str, n: int, *, totals: bool = False) -> dict[str, Any]:
    from bench.common import repo_env

    args = [sys.executable, "-m", "bench.tax_export", "--worker", kind, "--n", str(n), "--year", str(YEAR)]
    if totals:
        args.append("--totals")
    with tempfile.TemporaryDirectory(prefix="bench-tax-") as cwd:
        proc = subprocess.run(args, cwd=cwd, env=repo_env(), capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"tax worker {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(mode: Any, *, rp2: bool = True) -> dict[str, Any]:
    from bench.common import Figure, have_module, median, rounded, skipped

    n = mode.pick(2_000, 20_000, 100_000)
    repeats = mode.pick(1, 1, 3)
    use_rp2 = rp2 and have_module("rp2")
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for i in range(repeats):
        first = ("ours", "rp2") if i % 2 == 0 else ("rp2", "ours")
        for kind in first:
            if kind == "ours":
                ours.append(_spawn("ours", n, totals=(i == 0)))
            elif use_rp2:
                theirs.append(_spawn("rp2", n))
    traced = _spawn("ours-tracemalloc", n)

    ours_s = median([o["seconds"] for o in ours])
    peak = max(o["maxrss_mb"] for o in ours)
    figures = [
        Figure("tax.ours_seconds", f"Tax export of {n:,} crypto fills (Form 8949 {YEAR}, FIFO)", rounded(ours_s), "s",
               note=f"{ours[0]['rows']:,} rows; {rounded(n / ours_s)} fills/s; median of {repeats}"),
        Figure("tax.peak_rss_mb", "Tax export peak memory (process max RSS)", rounded(peak), "MB", 200, "<=",
               note=f"interpreter + imports alone {rounded(ours[0]['baseline_rss_mb'])} MB"),
        Figure("tax.tracemalloc_peak_mb", "Tax export peak Python allocations (tracemalloc)",
               rounded(traced["tracemalloc_peak_mb"]), "MB", 200, "<="),
    ]
    details: dict[str, Any] = {"fills": n, "year": YEAR, "repeats": repeats, "seed": SEED, "ours": ours,
                               "ours_tracemalloc": traced}
    if use_rp2:
        rp2_s = median([t["seconds"] for t in theirs])
        ours_totals = ours[0]["gains_by_year"]
        rp2_totals = theirs[0]["gains_by_year"]
        years = sorted(set(ours_totals) | set(rp2_totals))
        diff = max(abs(Decimal(ours_totals.get(y, "0")) - Decimal(rp2_totals.get(y, "0"))) for y in years)
        shown = "; ".join(f"{y}: ours {Decimal(ours_totals.get(y, '0')):.2f} / rp2 {Decimal(rp2_totals.get(y, '0')):.2f}"
                          for y in years)
        figures.insert(1, Figure("tax.time_ratio", "Tax export time ÷ rp2 FIFO gains time", rounded(ours_s / rp2_s),
                                 "×", 0.5, "<=", note=f"rp2 {rounded(rp2_s)} s; median of {repeats}"))
        figures.append(Figure("tax.gain_difference", "Sum of gains per year: |ours − rp2| (largest year)",
                              float(diff), "USD", 0.01, "<=", note=shown))
        details["rp2"] = theirs
        details["gains_equal_exactly"] = all(Decimal(ours_totals.get(y, "0")) == Decimal(rp2_totals.get(y, "0"))
                                             for y in years)
    else:
        reason = "rp2 not installed (bench/requirements.txt)" if rp2 else "rp2 disabled"
        figures.insert(1, skipped("tax.time_ratio", "Tax export time ÷ rp2 FIFO gains time", reason, target=0.5))
        figures.append(skipped("tax.gain_difference", "Sum of gains per year: |ours − rp2|", reason, target=0.01))
    return {"figures": [f.to_dict() for f in figures], "details": details}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("ours", "ours-tracemalloc", "rp2"), required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--year", type=int, default=YEAR)
    parser.add_argument("--totals", action="store_true")
    args = parser.parse_args(argv)
    if args.worker == "rp2":
        out = worker_rp2(args.n)
    else:
        out = worker_ours(args.n, args.year, totals=args.totals, trace=args.worker == "ours-tracemalloc")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
