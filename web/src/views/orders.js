// Trader: working orders (GET /orders) with cancel (DELETE /orders/{id}) and replace (PATCH
// /orders/{id} with an Idempotency-Key: a retry answers the first replacement).
import { apiGet, apiSend, newKey } from "../api.js";
import { errorBox } from "../errors.js";
import { field, formValues, h, latest, replace, shortId, table, when } from "../dom.js";

export function renderOrders(root) {
  const box = h("div");
  const out = h("div", { "aria-live": "polite" });
  // the outcome of the action taken last and the list read last are the ones shown, whichever answers last
  const freshOutcome = latest();
  const freshList = latest();
  async function act(promise, what) {
    const current = freshOutcome();
    replace(out, h("p", { class: "muted" }, `${what}…`));
    try {
      const r = (await promise).body;
      if (current()) replace(out, h("p", { class: "verdict placed", "data-testid": "order-outcome" },
        `Order ${r.order.symbol} ${r.order.side} ${r.order.qty ?? ""}: `, h("strong", {}, r.outcome),
        r.replayed ? " (replayed)" : ""));
    } catch (err) {
      if (current()) replace(out, errorBox(err));
    }
    load();
  }
  function replaceForm(o) {
    const form = h("form", { class: "inline-form", "aria-label": `Replace order ${o.intent_id}` },
      field("New qty", { name: "qty", id: `q-${o.intent_id}`, inputmode: "decimal", size: "6" }),
      field("New limit", { name: "limit_price", id: `l-${o.intent_id}`, inputmode: "decimal", size: "7" }),
      h("button", { type: "submit", class: "secondary" }, "Replace"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const v = formValues(form);
      const body = {};
      if (v.qty) body.qty = v.qty;
      if (v.limit_price) body.limit_price = v.limit_price;
      act(apiSend("PATCH", `/orders/${encodeURIComponent(o.intent_id)}`, body, { "Idempotency-Key": newKey("repl") }), "Replacing");
    });
    return form;
  }
  async function load() {
    const current = freshList();
    try {
      const r = (await apiGet("/orders", { limit: 50 })).body;
      if (!current()) return;
      replace(box, table([
        ["Order", (o) => shortId(o.intent_id, 12)], ["Symbol", (o) => o.symbol], ["Side", (o) => o.side],
        ["Type", (o) => `${o.order_type}${o.time_in_force ? ` ${o.time_in_force}` : ""}`], ["Qty", (o) => o.qty, "num"],
        ["Limit", (o) => o.limit_price, "num"], ["Stop", (o) => o.stop_price, "num"], ["Filled", (o) => o.filled_qty, "num"],
        ["Venue state", (o) => o.order_status], ["Replaced", (o) => String(o.replaced_orders.length)],
        ["Updated (UTC)", (o) => when(o.updated_at)],
        ["Actions", (o) => h("div", {}, h("button", { type: "button", onclick: () => act(apiSend("DELETE", `/orders/${encodeURIComponent(o.intent_id)}`, null), "Canceling") }, "Cancel"),
          replaceForm(o))],
      ], r.items, { testid: "orders-table", empty: "No working orders." }));
    } catch (err) {
      if (current()) replace(box, errorBox(err));
    }
  }
  replace(root, h("h1", {}, "Open orders"), h("p", { class: "muted" }, "Orders still working at the venue; fills are recorded in the ledger as they come."), out, box);
  load();
}
