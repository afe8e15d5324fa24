// Trader: the lot-method election (POST /portfolio/tax-lots/election: forward only, from effective_at
// on) and the 1099-B / 1099-DA statement reconciliation (POST /portfolio/tax-lots/reconcile with the
// statement file itself as a text/csv body; year and account in the query; writes nothing).
import { apiPost, apiSendText, newKey } from "../api.js";
import { errorBox } from "../errors.js";
import { field, formValues, h, replace, select, table } from "../dom.js";

const MAX_STATEMENT_BYTES = 65536; // the API's limit (413 beyond it)

/** A datetime-local value (the browser's local time) → ISO-8601 with an offset (UTC), or null. */
function isoWithOffset(local) {
  if (!local) return null;
  const at = new Date(local);
  return Number.isNaN(at.getTime()) ? local : at.toISOString();
}

function electionView(r) {
  const e = r.election;
  return h("div", { class: "verdict placed", role: "status", "data-testid": "election-recorded" },
    h("p", {}, r.replayed ? "Already elected: " : "Recorded: ", h("strong", { "data-testid": "election-method" }, e.method),
      e.default_rule ? ` (sales that name no lots: ${e.default_rule})` : "",
      ` for ${e.account ?? "every account"} from `, h("strong", {}, e.effective_at), "."),
    h("p", { class: "muted" }, `recorded ${e.recorded_at}; past disposals never change.`));
}

function electionForm() {
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "grid", "aria-label": "Lot-method election" },
    select("Lot method", "method", [["FIFO", "FIFO (first in, first out)"], ["LIFO", "LIFO"], ["HIFO", "HIFO (highest cost first)"],
      ["SPECIFIC", "Specific lots (named per sale)"]], "FIFO"),
    select("Default rule (specific lots only)", "default_rule", [["", "FIFO (default)"], ["FIFO", "FIFO"], ["LIFO", "LIFO"], ["HIFO", "HIFO"]], ""),
    field("Effective from (blank: now)", { name: "effective_at", type: "datetime-local" }),
    field("Account (blank: every account)", { name: "broker_account_id", autocomplete: "off" }),
    h("button", { type: "submit" }, "Record election"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    const body = { method: v.method };
    if (v.method === "SPECIFIC" && v.default_rule) body.default_rule = v.default_rule;
    if (v.effective_at) body.effective_at = isoWithOffset(v.effective_at);
    if (v.broker_account_id) body.broker_account_id = v.broker_account_id;
    replace(out, h("p", { class: "muted" }, "Saving…"));
    try {
      replace(out, electionView((await apiPost("/portfolio/tax-lots/election", body, { "Idempotency-Key": newKey("elect") })).body));
    } catch (err) {
      replace(out, errorBox(err));
    }
  });
  return [h("h2", {}, "Lot-method election"),
    h("p", { class: "muted" }, "Which lots a sale closes from a time on (forward only: not before now, not before an earlier election)."),
    form, out];
}

const money = (x) => (x === null || x === undefined ? null : String(x));

function reconciliationView(r) {
  const t = r.totals || {};
  const columns = Object.keys({ ...t.ours, ...t.statement, ...t.difference });
  return h("div", { "data-testid": "statement-result" },
    h("div", { class: "cards" },
      h("div", { class: "card" }, "Statement rows", h("b", { "data-testid": "statement-rows" }, String(t.statement_rows ?? 0))),
      h("div", { class: "card" }, "Our disposals", h("b", {}, String(t.ledger_rows ?? 0))),
      h("div", { class: "card" }, "Matched", h("b", { "data-testid": "statement-matched" }, String(t.matched ?? 0))),
      h("div", { class: "card" }, "With differences", h("b", { "data-testid": "statement-differences" }, String(t.with_differences ?? 0)))),
    table([["Column", (c) => c], ["Ours", (c) => money(t.ours?.[c]), "num"], ["Statement", (c) => money(t.statement?.[c]), "num"],
      ["Ours − statement", (c) => money(t.difference?.[c]), "num"]], columns, { caption: `Totals ${r.year}${r.account ? ` · ${r.account}` : ""}` }),
    table([["Status", (x) => h("span", { class: `s-${x.status}` }, x.status)],
      ["Description", (x) => x.statement?.description ?? x.ours?.description],
      ["Sold", (x) => x.statement?.date_sold ?? x.ours?.date_sold],
      ["Proceeds (ours / statement)", (x) => `${x.ours?.proceeds || "–"} / ${x.statement?.proceeds || "–"}`],
      ["Basis (ours / statement)", (x) => `${x.ours?.cost_basis || "–"} / ${x.statement?.cost_basis || "–"}`],
      ["Differences", (x) => Object.entries(x.differences || {}).map(([k, v]) => `${k} ${v}`).join(" · ") || null],
      ["Reasons", (x) => (x.reasons || []).join(", ") || null]],
    r.rows || [], { testid: "statement-rows-table", empty: "Nothing to compare: no statement rows and no disposals." }));
}

function statementForm() {
  const out = h("div", { "aria-live": "polite" });
  const year = new Date().getFullYear();
  const form = h("form", { class: "grid", "aria-label": "1099-B statement reconciliation" },
    field("Statement CSV file", { name: "statement", type: "file", accept: ".csv,text/csv", required: true }),
    field("Statement tax year", { name: "year", type: "number", min: "1900", max: "9999", value: String(year), required: true }),
    field("Lot book (tenant:account; blank: every account)", { name: "account", autocomplete: "off" }),
    h("button", { type: "submit" }, "Reconcile statement"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.querySelector("input[type=file]").files[0];
    const v = formValues(form);
    if (!file) return;
    if (file.size > MAX_STATEMENT_BYTES) {
      replace(out, h("div", { class: "error", role: "alert", "data-testid": "api-error" },
        `${file.name} is ${file.size.toLocaleString()} bytes; the API takes at most ${MAX_STATEMENT_BYTES.toLocaleString()}. Split the statement.`));
      return;
    }
    replace(out, h("p", { class: "muted" }, `Reconciling ${file.name}…`));
    try {
      const text = await file.text();
      const r = await apiSendText("POST", "/portfolio/tax-lots/reconcile", { year: v.year, account: v.account }, text, "text/csv");
      replace(out, reconciliationView(r.body));
    } catch (err) {
      replace(out, errorBox(err));
    }
  });
  return [h("h2", {}, "1099-B / 1099-DA statement reconciliation"),
    h("p", { class: "muted" }, "Upload the broker's statement as CSV (header row: description, date_sold, proceeds; optional date_acquired, ",
      "cost_basis, wash_sale_disallowed, term, box, symbol, quantity). Each row is matched to a disposal of that year; nothing is written."),
    form, out];
}

export function renderTaxTools(root) {
  replace(root, h("h1", {}, "Tax election and statement"), electionForm(), statementForm());
}
