// Trader: trade history (GET /portfolio/history, cursor pages) and tax lots (GET
// /portfolio/tax-lots/export: open lots, realized gains by term and Form 8949 box) with the CSV and
// TXF downloads, streamed with a byte count as they arrive.
import { apiGet, download } from "../api.js";
import { errorBox } from "../errors.js";
import { field, h, latest, pct, replace, shortId, table, when } from "../dom.js";

export function renderHistory(root) {
  const box = h("div");
  const cursors = [null];
  let page = 0;
  const fresh = latest();
  async function load() {
    const current = fresh();
    replace(box, h("p", { class: "muted" }, "Loading…"));
    try {
      const r = await apiGet("/portfolio/history", { limit: 20, cursor: cursors[page] });
      if (!current()) return;  // superseded (another page): the newer load renders
      cursors[page + 1] = r.body.next_cursor;
      replace(box, table([
        ["Time (UTC)", (t) => when(t.created_at)], ["Symbol", (t) => t.symbol], ["Side", (t) => t.side],
        ["Qty", (t) => t.quantity, "num"], ["Price", (t) => t.price, "num"], ["Notional", (t) => t.notional, "num"],
        ["Spread", (t) => pct(t.cost_analysis?.spread_pct)], ["Slippage", (t) => pct(t.cost_analysis?.actual_slippage_pct)],
        ["Strategy", (t) => t.strategy_id], ["Account", (t) => shortId(t.broker_account_id, 14)],
        ["Group", (t) => (t.group_id ? h("span", {}, shortId(t.group_id), ` / ${t.leg_id}`) : null)],
      ], r.body.items, { testid: "history-table", empty: "No trades yet." }),
      h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous page"),
        h("span", {}, `Page ${page + 1}`),
        h("button", { type: "button", class: "secondary", disabled: !r.body.next_cursor, onclick: () => { page += 1; load(); } }, "Next page")));
    } catch (err) {
      if (current()) replace(box, errorBox(err));
    }
  }
  replace(root, h("h1", {}, "Trade history"), box);
  load();
}

export function renderTax(root) {
  const year = new Date().getFullYear();
  const yearInput = field("Tax year", { name: "year", type: "number", min: "1900", max: "9999", value: String(year) });
  const box = h("div");
  const progress = h("p", { class: "progress", "aria-live": "polite", "data-testid": "download-progress" });
  const yearOf = () => yearInput.querySelector("input").value;
  async function save(format, section) {
    const name = `tax-${yearOf()}-${section || "disposals"}.${format}`;
    progress.textContent = `Downloading ${name}…`;
    try {
      const bytes = await download("/portfolio/tax-lots/export", { year: yearOf(), format, section }, name,
        (n) => { progress.textContent = `Downloading ${name}: ${n.toLocaleString()} bytes`; });
      progress.textContent = `Saved ${name} (${bytes.toLocaleString()} bytes).`;
    } catch (err) {
      replace(progress, errorBox(err));
    }
  }
  const freshYear = latest();  // a slower answer for the year shown before never replaces the year asked for
  async function load() {
    const current = freshYear();
    replace(box, h("p", { class: "muted" }, "Loading…"));
    try {
      const t = (await apiGet("/portfolio/tax-lots/export", { year: yearOf() })).body;
      if (!current()) return;
      const totals = t.totals || {};
      const boxes = Object.entries(totals.boxes || {});
      replace(box,
        h("div", { class: "cards" },
          h("div", { class: "card" }, "Realized gain/loss", h("b", { "data-testid": "total-gain" }, totals.gain_or_loss ?? "0")),
          h("div", { class: "card" }, "Proceeds", h("b", {}, totals.proceeds ?? "0")),
          h("div", { class: "card" }, "Disposals", h("b", {}, String(totals.disposals ?? 0))),
          h("div", { class: "card" }, "Open lots", h("b", { "data-testid": "open-lot-count" }, String(totals.open_lots ?? t.open_lots.length)))),
        t.provisional ? h("p", { class: "muted" }, "Some rows are provisional: a loss whose 30-day wash-sale window is still open.") : null,
        h("h2", {}, `Realized in ${t.year} by Form 8949 box`),
        table([["Box", ([b]) => b], ["Totals", ([, v]) => Object.entries(v).map(([k, x]) => `${k} ${x}`).join(" · ")]],
          boxes, { empty: "No disposals this year." }),
        h("h2", {}, "Open lots"),
        table([["Symbol", (l) => l.symbol], ["Lot", (l) => shortId(l.lot_id, 12)], ["Position", (l) => l.position], ["Quantity", (l) => l.quantity, "num"],
          ["Acquired", (l) => l.date_acquired], ["Cost basis", (l) => l.cost_basis, "num"], ["Per unit", (l) => l.cost_per_unit, "num"],
          ["Term if sold", (l) => l.term_if_sold], ["Account", (l) => shortId(l.account, 18)]], t.open_lots, { testid: "open-lots", empty: "No open lots." }),
        h("h2", {}, "Disposals"),
        table([["Description", (d) => d.description], ["Acquired", (d) => d.date_acquired], ["Sold", (d) => d.date_sold],
          ["Proceeds", (d) => d.proceeds, "num"], ["Basis", (d) => d.cost_basis, "num"], ["Adj.", (d) => `${d.adjustment_code} ${d.adjustment_amount}`],
          ["Gain/loss", (d) => d.gain_or_loss, "num"], ["Term", (d) => d.term], ["Box", (d) => d.box], ["Status", (d) => d.status]],
          t.disposals, { testid: "disposals", empty: "No disposals this year." }));
    } catch (err) {
      if (current()) replace(box, errorBox(err));
    }
  }
  const controls = h("form", { class: "grid", "aria-label": "Tax year", onsubmit: (e) => { e.preventDefault(); load(); } },
    yearInput, h("button", { type: "submit" }, "Show"),
    h("button", { type: "button", class: "secondary", onclick: () => save("csv") }, "Download CSV (Form 8949)"),
    h("button", { type: "button", class: "secondary", onclick: () => save("csv", "open_lots") }, "Download open lots CSV"),
    h("button", { type: "button", class: "secondary", onclick: () => save("txf") }, "Download TXF"));
  replace(root, h("h1", {}, "Tax lots"), controls, progress, box);
  load();
}
