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

/** What the ticket asked the venue to hold beside the entry (bracket / OTO / OCO), as one line. */
export function protectiveLine(body) {
  if (!body.order_class && !body.take_profit && !body.stop_loss) return null;
  const parts = [];
  if (body.take_profit) parts.push(`take profit limit ${body.take_profit.limit_price}`);
  if (body.stop_loss) {
    const sl = body.stop_loss;
    parts.push(`stop loss ${sl.trail_price ? `trailing ${sl.trail_price}` : `stop ${sl.stop_price}`}${sl.limit_price ? ` limit ${sl.limit_price}` : ""}`);
  }
  return h("p", { "data-testid": "protective-legs" }, `Order class ${body.order_class || (parts.length === 2 ? "bracket" : "oto")}: `,
    parts.join(", ") || "no exit legs");
}

export function verdictView(r, sent = {}) {
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
    if (rejection.code === "ORDER_TYPE_NOT_SUPPORTED") {
      lines.push(h("p", { class: "muted" }, "The account's venue cannot hold this order for its asset class; nothing was sent."));
    }
  }
  const legs = protectiveLine(sent);
  if (legs && r.status === "placed") lines.push(legs);
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
  // bracket / OTO / OCO: exits held at the venue with the entry (which venue and class take which:
  // backend/domain/capabilities.py; a refusal comes back as a rejection ORDER_TYPE_NOT_SUPPORTED)
  const exits = {
    take_profit: field("Take-profit limit price", { name: "tp_limit_price", inputmode: "decimal", disabled: true }),
    stop_loss_stop: field("Stop-loss stop price", { name: "sl_stop_price", inputmode: "decimal", disabled: true }),
    stop_loss_limit: field("Stop-loss limit price (optional)", { name: "sl_limit_price", inputmode: "decimal", disabled: true }),
    stop_loss_trail: field("Stop-loss trail (price, optional)", { name: "sl_trail_price", inputmode: "decimal", disabled: true }),
  };
  const enableExits = (klass) => {
    for (const wrap of Object.values(exits)) wrap.querySelector("input").disabled = klass === "" || klass === "simple";
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
    select("Order class", "order_class", [["", "Simple"], ["bracket", "Bracket (take profit + stop loss)"],
      ["oto", "OTO (one exit)"], ["oco", "OCO (exit: take profit or stop loss)"]], "", { onchange: (e) => enableExits(e.target.value) }),
    Object.values(exits),
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
    if (v.order_class) {
      body.order_class = v.order_class;
      if (v.tp_limit_price) body.take_profit = { limit_price: v.tp_limit_price };
      const stopLoss = {};
      if (v.sl_stop_price) stopLoss.stop_price = v.sl_stop_price;
      if (v.sl_limit_price) stopLoss.limit_price = v.sl_limit_price;
      if (v.sl_trail_price) stopLoss.trail_price = v.sl_trail_price;
      if (Object.keys(stopLoss).length) body.stop_loss = stopLoss;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    replace(out, h("p", { class: "muted" }, "Sending…"));
    try {
      const r = await apiPost("/execute", body, { "Idempotency-Key": newKey("web") });
      replace(out, verdictView(r.body, body));
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
