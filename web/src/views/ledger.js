// Tenant admin / auditor: ledger review (GET /tenants/{t}/ledger): filters, stable cursor pages
// (one page at a time, never the whole ledger) and the CSV export of every matching row, streamed.
import { apiGet, apiSend, download, newKey } from "../api.js";
import { errorBox } from "../errors.js";
import { field, formValues, h, latest, pct, replace, select, shortId, table, when } from "../dom.js";

const STATUSES = ["", "placed", "downgraded", "rejected", "dry_run", "fill", "group_fill", "rollback_fill", "filled",
  "partially_filled", "rolled_back", "failed_needs_attention", "correction"];

export function renderLedger(root, ctx) {
  const tenant = ctx.user.tenantId;
  const box = h("div");
  const progress = h("p", { class: "progress", "aria-live": "polite", "data-testid": "download-progress" });
  const cursors = [null];
  let page = 0;
  const form = h("form", { class: "grid", "aria-label": "Ledger filters" },
    field("From", { name: "from", type: "date" }), field("To", { name: "to", type: "date" }),
    field("Symbol", { name: "symbol", autocomplete: "off" }), field("Strategy", { name: "strategy_id" }),
    select("Status", "status", STATUSES.map((s) => [s, s || "any"]), ""), field("User (uid)", { name: "uid" }),
    select("Rows per page", "limit", [["5", "5"], ["20", "20"], ["50", "50"], ["100", "100"]], "20"),
    h("button", { type: "submit" }, "Apply filters"),
    h("button", { type: "button", class: "secondary", onclick: () => exportCsv() }, "Download CSV"));
  const filters = () => { const v = formValues(form); const { limit, ...rest } = v; return { rest, limit }; };
  const fresh = latest();
  async function load() {
    const current = fresh();
    const { rest, limit } = filters();
    replace(box, h("p", { class: "muted" }, "Loading…"));
    try {
      const r = await apiGet(`/tenants/${encodeURIComponent(tenant)}/ledger`, { ...rest, limit, cursor: cursors[page] });
      if (!current()) return;  // superseded (other filters, another page): the newer load renders
      cursors[page + 1] = r.body.next_cursor;
      replace(box, table([
        ["Time (UTC)", (x) => when(x.created_at)], ["Kind", (x) => x.kind], ["Status", (x) => x.status],
        ["Symbol", (x) => x.symbol], ["Side", (x) => x.side], ["Qty", (x) => x.qty, "num"],
        ["Filled", (x) => x.filled_qty, "num"], ["Avg price", (x) => x.filled_avg_price, "num"],
        ["Spread", (x) => pct(x.spread_pct)],
        ["Reason", (x) => (x.corrects ? `corrects ${x.corrects}: ${x.correction?.reason ?? x.reason ?? ""}` : x.reason_code || null)],
        ["Strategy", (x) => x.strategy_id], ["User", (x) => shortId(x.uid, 8)], ["Ledger id", (x) => h("code", { class: "ledger-id" }, x.ledger_id)],
      ], r.body.items, { testid: "ledger-table", empty: "No ledger rows match." }),
      h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous page"),
        h("span", { "data-testid": "ledger-page" }, `Page ${page + 1}`),
        h("button", { type: "button", class: "secondary", disabled: !r.body.next_cursor, onclick: () => { page += 1; load(); } }, "Next page")));
    } catch (err) {
      if (current()) replace(box, errorBox(err));
    }
  }
  async function exportCsv() {
    const { rest } = filters();
    const name = `ledger-${tenant}.csv`;
    progress.textContent = "Exporting…";
    try {
      const bytes = await download(`/tenants/${encodeURIComponent(tenant)}/ledger`, { ...rest, format: "csv" }, name,
        (n) => { progress.textContent = `Exporting ${name}: ${n.toLocaleString()} bytes`; });
      progress.textContent = `Saved ${name} (${bytes.toLocaleString()} bytes).`;
    } catch (err) {
      replace(progress, errorBox(err));
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); cursors.length = 1; page = 0; load(); });
  replace(root, h("h1", {}, `Ledger of ${tenant}`), h("p", { class: "muted" }, "Immutable rows, newest first."), form, progress, box,
    ctx.user.role === "tenant_admin" ? correctionForm(tenant, () => load()) : null);
  load();
}

/** Tenant admin: append a correction entry that references a row (the row itself never changes). */
function correctionForm(tenant, reload) {
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "grid", "aria-label": "Ledger correction" },
    field("Ledger id to correct", { name: "ledger_id", id: "f-correct-id", required: true, autocomplete: "off" }),
    field("Reason", { name: "reason", id: "f-correct-reason", required: true, minlength: "3", maxlength: "500" }),
    h("button", { type: "submit" }, "Append correction"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = formValues(form);
    try {
      await apiSend("POST", `/tenants/${encodeURIComponent(tenant)}/ledger/${encodeURIComponent(v.ledger_id)}/corrections`, { reason: v.reason },
        { "Idempotency-Key": newKey("corr") });
      replace(out, h("p", { class: "muted", "data-testid": "admin-saved" }, `Correction appended to ${v.ledger_id}.`));
      reload();
    } catch (err) {
      replace(out, errorBox(err));
    }
  });
  return h("section", {}, h("h2", {}, "Append a correction"), form, out);
}
