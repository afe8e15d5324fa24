// Per-account limits and trading state (GET/PUT /tenants/{t}/accounts/{a}/limits, PUT
// /tenants/{t}/accounts/{a}/trading-state). Tenant admins only: the API keeps these routes to them
// (auditors read each account's own limits and status from the accounts list, read-only).
import { apiGet, apiSend } from "../api.js";
import { errorBox } from "../errors.js";
import { field, formValues, h, latest, replace, table } from "../dom.js";

const STATES = [["active", "Active"], ["reduce_only", "Reduce only"], ["halted", "Halted"]];
const CLASSES = ["EQUITY", "CRYPTO", "FOREX", "OPTIONS", "COMMODITY"];
const PANELS = new WeakMap(); // box -> its newest panel: a panel opened later owns the box

/** An account's own limits in one line (the accounts list shows it to admins and auditors alike). */
export function limitsText(limits) {
  if (!limits) return "none (tenant's apply)";
  const parts = [];
  if (limits.max_position_qty) parts.push(`position ≤ ${limits.max_position_qty}`);
  if (limits.max_order_notional) parts.push(`order notional ≤ ${limits.max_order_notional}`);
  if (limits.max_daily_trades !== null && limits.max_daily_trades !== undefined) parts.push(`${limits.max_daily_trades} trades/day`);
  for (const [cls, v] of Object.entries(limits.max_position_by_class || {})) parts.push(`${cls} ≤ ${v}`);
  return parts.join(" · ") || "none (tenant's apply)";
}

/** "key=value, key=value" → {KEY: value}; blank → null. */
function byClass(text) {
  const out = {};
  for (const item of text.split(",").map((x) => x.trim()).filter(Boolean)) {
    const [k, v] = item.split("=").map((x) => (x || "").trim());
    out[k.toUpperCase()] = v;
  }
  return Object.keys(out).length ? out : null;
}

/** The panel for one account: its own and effective limits, a limits form and the three-state switch.
 *  ``onChange`` runs after a successful change (the accounts list reloads). */
export function renderAccountRisk(box, base, accountId, onChange) {
  const path = `${base}/accounts/${encodeURIComponent(accountId)}`;
  const out = h("div", { "aria-live": "polite" });
  if (!PANELS.has(box)) PANELS.set(box, latest());
  const current = PANELS.get(box)(); // false once another account's panel is opened in this box
  function show(r) {
    const own = r.limits || {};
    const keys = [...new Set([...Object.keys(own), ...Object.keys(r.effective || {})])];
    const val = (v) => (v === null || v === undefined ? null : typeof v === "object" ? JSON.stringify(v) : String(v));
    const limitsForm = h("form", { class: "grid", "aria-label": `Limits of account ${accountId}` },
      field("Account max position qty", { name: "max_position_qty", value: own.max_position_qty ?? "", inputmode: "decimal" }),
      field("Account max order notional", { name: "max_order_notional", value: own.max_order_notional ?? "", inputmode: "decimal" }),
      field("Account max daily trades", { name: "max_daily_trades", value: own.max_daily_trades ?? "", inputmode: "numeric" }),
      field("Account max position by class (CLASS=qty, …)", { name: "max_position_by_class",
        value: Object.entries(own.max_position_by_class || {}).map(([k, v]) => `${k}=${v}`).join(", "),
        placeholder: `${CLASSES[0]}=100, ${CLASSES[1]}=2` }),
      h("button", { type: "submit" }, "Save account limits"));
    limitsForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const v = formValues(limitsForm);
      const body = {};
      if (v.max_position_qty) body.max_position_qty = v.max_position_qty;
      if (v.max_order_notional) body.max_order_notional = v.max_order_notional;
      if (v.max_daily_trades) body.max_daily_trades = /^\d+$/.test(v.max_daily_trades) ? Number(v.max_daily_trades) : v.max_daily_trades;
      const classes = byClass(v.max_position_by_class);
      if (classes) body.max_position_by_class = classes;
      save(apiSend("PUT", `${path}/limits`, body), `Limits of ${accountId} saved; the next decision uses them.`);
    });
    const stateForm = h("form", { "aria-label": `Trading state of account ${accountId}` },
      h("fieldset", { class: "grid" }, h("legend", {}, `Account ${accountId} trading state`),
        STATES.map(([value, text]) => h("label", { class: "inline" },
          h("input", { type: "radio", name: "account_state", value, checked: value === r.status }), `Account ${text.toLowerCase()}`)),
        h("button", { type: "submit" }, "Set account trading state")));
    stateForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const state = formValues(stateForm).account_state;
      save(apiSend("PUT", `${path}/trading-state`, { state }), `Account ${accountId} trading state set to ${state}.`);
    });
    replace(box, h("section", { class: "panel", "data-testid": "account-risk", "aria-label": `Risk of account ${accountId}` },
      h("h2", {}, `Account ${accountId}: limits and trading state`),
      h("p", {}, "Status ", h("strong", { class: "status-word", "data-testid": "account-state" }, r.status)),
      table([["Limit", (k) => k], ["Account's own", (k) => val(own[k])], ["Effective (strictest of operator, tenant, account)", (k) => val(r.effective?.[k])]],
        keys, { testid: "account-limits-table" }),
      limitsForm, stateForm, out));
  }
  async function save(promise, okText) {
    replace(out, h("p", { class: "muted" }, "Saving…"));
    try {
      const r = (await promise).body;
      if (!current()) { // another account's panel was opened meanwhile: the change is made, not shown here
        if (onChange) onChange();
        return;
      }
      if (r.limits !== undefined && r.effective !== undefined) show(r); else await load();
      replace(out, h("p", { class: "muted", role: "status", "data-testid": "account-risk-saved" }, okText));
      if (onChange) onChange();
    } catch (err) {
      if (current()) replace(out, errorBox(err));
    }
  }
  async function load() {
    try {
      const r = (await apiGet(`${path}/limits`)).body;
      if (current()) show(r);
    } catch (err) {
      if (current()) replace(box, errorBox(err));
    }
  }
  replace(box, h("p", { class: "muted" }, "Loading…"));
  load();
}
