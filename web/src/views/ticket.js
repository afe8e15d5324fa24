// Trader: the single-order ticket and the smart-routing verdict of POST /execute.
import { apiPost, newKey } from "../api.js";
import { errorBox } from "../errors.js";
import { field, formValues, h, pct, replace, select } from "../dom.js";

const ASSET_CLASSES = [["", "auto"], ["EQUITY", "Equity"], ["CRYPTO", "Crypto"], ["FOREX", "Forex"],
  ["OPTIONS", "Options"], ["COMMODITY", "Commodity"]];

export function threshold(reason) {
  const found = /threshold\s+([0-9.]+%)/i.exec(reason || "");
  return found ? found[1] : null;
}

export function verdictView(r) {
  const routing = r.routing || {};
  const rejection = r.rejection || routing.rejection;
  const spread = pct(routing.spread_pct);
  const lines = [];
  if (r.status === "placed") {
    lines.push(h("p", {}, `Filled ${r.filled_qty ?? "0"} @ ${r.filled_avg_price ?? "–"} on ${r.broker ?? "?"} `,
      h("span", { class: "muted" }, `(order ${r.order_status ?? ""} ${r.broker_order_id ?? ""})`)));
    if (spread) lines.push(h("p", {}, `Spread ${spread}, within the threshold ${threshold(r.reason || routing.reason) ?? ""}`));
  } else if (r.status === "downgraded") {
    lines.push(h("p", { "data-testid": "downgrade-detail" }, "Spread ", h("strong", {}, spread ?? "?"),
      " is above the threshold ", h("strong", {}, threshold(r.reason || routing.reason) ?? "?"),
      ": the order was not sent (WAIT)."));
  } else if (r.status === "rejected" && rejection) {
    lines.push(h("p", {}, "Code ", h("code", { "data-testid": "rejection-code" }, rejection.code), ": ", rejection.detail || rejection.text));
  }
  if (r.reason && !["placed", "downgraded"].includes(r.status) && !(rejection && r.reason.includes(rejection.detail || "\u0000"))) {
    lines.push(h("p", { class: "muted" }, r.reason));
  }
  return h("section", { class: `verdict ${r.status}`, "data-testid": "verdict", "aria-live": "polite" },
    h("div", {}, "Verdict: ", h("span", { class: "status-word", "data-testid": "verdict-status" }, r.status),
      r.replayed ? " (replayed)" : ""),
    lines,
    h("p", { class: "muted" }, `intent ${r.intent_id}${r.trade_id ? ` · trade ${r.trade_id}` : ""}`));
}

export function renderTicket(root) {
  const out = h("div", { id: "ticket-result" });
  const priced = {
    limit_price: field("Limit price", { name: "limit_price", inputmode: "decimal", disabled: true }),
    stop_price: field("Stop price", { name: "stop_price", inputmode: "decimal", disabled: true }),
    trail_price: field("Trail (price)", { name: "trail_price", inputmode: "decimal", disabled: true }),
    trail_percent: field("Trail (%)", { name: "trail_percent", inputmode: "decimal", disabled: true }),
  };
  const NEEDS = { market: [], limit: ["limit_price"], stop: ["stop_price"], stop_limit: ["limit_price", "stop_price"],
    trailing_stop: ["trail_price", "trail_percent"] };
  const enableFor = (type) => {
    for (const [name, wrap] of Object.entries(priced)) wrap.querySelector("input").disabled = !NEEDS[type].includes(name);
  };
  const form = h("form", { class: "grid", "aria-label": "Order ticket" },
    field("Symbol", { name: "symbol", required: true, autocomplete: "off", value: "SPY" }),
    select("Side", "side", [["buy", "Buy"], ["sell", "Sell"]], "buy"),
    field("Quantity", { name: "qty", required: true, inputmode: "decimal", value: "1" }),
    select("Order type", "order_type", [["market", "Market"], ["limit", "Limit"], ["stop", "Stop"],
      ["stop_limit", "Stop limit"], ["trailing_stop", "Trailing stop"]], "market", { onchange: (e) => enableFor(e.target.value) }),
    Object.values(priced),
    select("Time in force", "time_in_force", [["", "venue default"], ["day", "Day"], ["gtc", "GTC"], ["ioc", "IOC"],
      ["fok", "FOK"], ["opg", "OPG"], ["cls", "CLS"]], ""),
    select("Asset class", "asset_class", ASSET_CLASSES, ""),
    field("Strategy", { name: "strategy_id", required: true, value: "console" }),
    field("Account (blank: your default)", { name: "broker_account_id", autocomplete: "off" }),
    h("button", { type: "submit" }, "Place order"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    const body = { strategy_id: v.strategy_id, symbol: v.symbol, side: v.side, qty: v.qty, order_type: v.order_type };
    if (v.broker_account_id) body.broker_account_id = v.broker_account_id;
    for (const name of NEEDS[v.order_type] || []) if (v[name]) body[name] = v[name];
    if (v.time_in_force) body.time_in_force = v.time_in_force;
    if (v.asset_class) body.asset_class = v.asset_class;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    replace(out, h("p", { class: "muted" }, "Sending…"));
    try {
      const r = await apiPost("/execute", body, { "Idempotency-Key": newKey("web") });
      replace(out, verdictView(r.body));
    } catch (err) {
      replace(out, errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  replace(root, h("h1", {}, "Order ticket"),
    h("p", { class: "muted" }, "Smart routing checks the spread first: above the threshold the order is downgraded to WAIT and never sent."),
    form, out);
}
