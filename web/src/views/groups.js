// Trader: the multi-leg group builder with the group's live status (a Firestore listener on the
// group document, which firestore.rules let its owner read). Admin/auditor: the group inspector
// (GET /groups with filters and cursor paging, GET /groups/{id} with legs and rollback).
import { collection, doc, getDoc, onSnapshot, query, where, limit } from "firebase/firestore";
import { apiGet, apiPost, derivedId, newKey } from "../api.js";
import { errorBox } from "../errors.js";
import { field, formValues, h, latest, replace, select, shortId, table, when } from "../dom.js";
import { firestore } from "../session.js";

const DIRECTIONS = [["1", "Buy / long (+1)"], ["-1", "Sell / short (−1)"]];

function legRow(index, leg = {}) {
  const n = index + 1;
  return h("fieldset", { class: "grid leg", "data-leg": n },
    h("legend", {}, `Leg ${n}`),
    field("Leg id", { name: `leg_id_${n}`, value: leg.leg_id || `leg_${n}`, required: true }),
    field("Symbol", { name: `symbol_${n}`, value: leg.symbol || "", required: true, autocomplete: "off" }),
    select("Direction", `direction_${n}`, DIRECTIONS, leg.direction || "1"),
    field("Units", { name: `units_${n}`, value: leg.units || "1", inputmode: "decimal", required: true }));
}

export function legsTable(legs, testid) {
  return table([
    ["Leg", (l) => l.leg_id], ["Symbol", (l) => l.symbol], ["Dir", (l) => (l.direction > 0 ? "+1 long" : "−1 short")],
    ["Units", (l) => l.units, "num"], ["Status", (l) => h("span", { class: `s-${l.status}` }, l.status)],
    ["Filled", (l) => l.filled_units, "num"], ["Fill price", (l) => l.fill_price, "num"],
    ["Intended", (l) => l.intended_price, "num"],
    ["Slippage (ticks)", (l) => l.slippage_pips, "num"],
    ["Rejection", (l) => (l.rejection ? `${l.rejection.code}: ${l.rejection.detail || ""}` : null)],
  ], legs || [], { testid, empty: "No legs." });
}

function liveGroupView(data) {
  if (!data) return h("p", { class: "muted", "data-testid": "live-status" }, "Waiting for the group document…");
  return h("div", {},
    h("p", {}, "Live status: ", h("span", { class: `status-word s-${data.status}`, "data-testid": "live-status" }, data.status),
      data.verdict && data.verdict !== data.status ? ` (verdict ${data.verdict})` : "",
      data.rejection ? ` — ${data.rejection.code}: ${data.rejection.detail || ""}` : ""),
    legsTable(data.legs, "live-legs"),
    data.rollback_orders && data.rollback_orders.length
      ? h("div", {}, h("h2", {}, "Rollback orders"), table([["Leg", (o) => o.leg_id], ["Side", (o) => o.side],
        ["Qty", (o) => o.qty, "num"], ["Status", (o) => o.status], ["Filled", (o) => o.filled_qty, "num"],
        ["Price", (o) => o.fill_price, "num"]], data.rollback_orders, { testid: "rollback-orders" }))
      : null);
}

export function renderGroupBuilder(root, ctx) {
  const legsBox = h("div", {}, legRow(0, { symbol: "SPY", direction: "1", units: "2" }),
    legRow(1, { symbol: "MSFT", direction: "-1", units: "1" }));
  const live = h("section", { "aria-live": "polite", "data-testid": "live-group" });
  const result = h("div");
  let unsubscribe = null;
  const addLeg = h("button", { type: "button", class: "secondary", onclick: () => {
    const count = legsBox.querySelectorAll("fieldset.leg").length;
    if (count < 10) legsBox.append(legRow(count));
  } }, "Add leg");
  const removeLeg = h("button", { type: "button", class: "secondary", onclick: () => {
    const legs = legsBox.querySelectorAll("fieldset.leg");
    if (legs.length > 2) legs[legs.length - 1].remove();
  } }, "Remove last leg");
  const form = h("form", { "aria-label": "Multi-leg group" },
    h("div", { class: "grid" },
      field("Strategy", { name: "strategy_id", value: "console_pairs", required: true }),
      field("Risk approval (decision id)", { name: "decision_id", required: true, autocomplete: "off" }),
      field("Account (blank: your default)", { name: "broker_account_id", autocomplete: "off" }),
      field("Max group slippage (pips)", { name: "max_group_slippage_pips", value: "50", inputmode: "decimal" }),
      h("label", { class: "inline" }, h("input", { type: "checkbox", name: "allow_partial_fills", id: "f-partial" }), "Allow partial fills")),
    legsBox, h("p", {}, addLeg, " ", removeLeg, " ", h("button", { type: "submit" }, "Execute group")));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = formValues(form);
    const legs = [...legsBox.querySelectorAll("fieldset.leg")].map((_, i) => ({
      leg_id: v[`leg_id_${i + 1}`], symbol: v[`symbol_${i + 1}`], direction: Number(v[`direction_${i + 1}`]),
      units: v[`units_${i + 1}`] }));
    const body = { strategy_id: v.strategy_id, legs, rpm_output: { decision_id: v.decision_id, approved: true },
      max_group_slippage_pips: v.max_group_slippage_pips || "0", allow_partial_fills: v.allow_partial_fills };
    if (v.broker_account_id) body.broker_account_id = v.broker_account_id;
    const key = newKey("webg");
    const groupId = await derivedId("g", ctx.user.tenantId, ctx.user.uid, key);
    if (unsubscribe) unsubscribe();
    replace(live, h("h2", {}, `Group ${groupId}`), liveGroupView(null));
    // The owner may read their groups (rules: uid == auth.uid); a query (not a document get) also
    // works before the document exists.
    const q = query(collection(firestore(), "tenants", ctx.user.tenantId, "execution_groups"),
      where("uid", "==", ctx.user.uid), where("group_id", "==", groupId), limit(1));
    unsubscribe = onSnapshot(q, (snap) => {
      const data = snap.empty ? null : snap.docs[0].data();
      replace(live, h("h2", {}, `Group ${groupId}`), liveGroupView(data));
    }, (err) => replace(live, errorBox(err)));
    replace(result, h("p", { class: "muted" }, "Executing…"));
    try {
      const r = await apiPost("/execute/multi-leg", body, { "Idempotency-Key": key });
      const g = r.body;
      replace(result, h("section", { class: "verdict", "data-testid": "group-result" },
        h("div", {}, "API answer: ", h("span", { class: `status-word s-${g.status}`, "data-testid": "group-status" }, g.status),
          ` · avg slippage ${g.avg_slippage_pips ?? "–"} ticks · rollback ${g.rollback_executed ? "executed" : "none"}`),
        g.rejection ? h("p", {}, h("code", { "data-testid": "rejection-code" }, g.rejection.code), `: ${g.rejection.detail}`) : null,
        legsTable(g.legs, "result-legs")));
    } catch (err) {
      replace(result, errorBox(err));
    }
  });
  replace(root, h("h1", {}, "Multi-leg group"),
    h("p", { class: "muted" }, `Legs are validated all-or-nothing and rolled back if the group fails. A risk manager issues the approval for your uid (${ctx.user.uid}).`),
    form, live, result);
  return () => unsubscribe && unsubscribe();
}

/** The group's audit trail from its document (firestore.rules: the tenant's admins and auditors
 *  read it): creation, each leg's submission and completion, rollback orders, completion. */
async function timeline(ctx, groupId) {
  try {
    const snap = await getDoc(doc(firestore(), "tenants", ctx.user.tenantId, "execution_groups", groupId));
    if (!snap.exists()) return h("p", { class: "muted" }, "No group document.");
    const d = snap.data();
    const events = [];
    const at = (v) => (v && typeof v.toDate === "function" ? v.toDate().toISOString() : v ? String(v) : null);
    if (at(d.created_timestamp)) events.push([at(d.created_timestamp), `group created by ${d.uid} (strategy ${d.strategy_id})`]);
    for (const leg of d.legs || []) {
      if (at(leg.submitted_timestamp)) events.push([at(leg.submitted_timestamp), `${leg.leg_id} ${leg.symbol} submitted (${leg.direction > 0 ? "buy" : "sell"} ${leg.units}, intended ${leg.intended_price ?? "–"})`]);
      if (at(leg.completed_timestamp)) events.push([at(leg.completed_timestamp), `${leg.leg_id} ${leg.symbol} ${leg.status}${leg.filled_units ? `: ${leg.filled_units} @ ${leg.fill_price}` : ""}${leg.rejection ? ` — ${leg.rejection.code}` : ""}`]);
    }
    for (const o of d.rollback_orders || []) {
      events.push([at(o.updated_timestamp || o.created_timestamp) || "", `rollback ${o.leg_id} #${o.seq}: ${o.side} ${o.qty} → ${o.status}${o.filled_qty ? ` (${o.filled_qty} @ ${o.fill_price})` : ""}`]);
    }
    if (at(d.completed_timestamp)) events.push([at(d.completed_timestamp), `group ${d.status}${d.rejection ? ` — ${d.rejection.code}` : ""}`]);
    events.sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    return h("ol", { "data-testid": "audit-trail" }, events.map(([time, text]) => h("li", {}, h("span", { class: "muted" }, `${when(time)}  `), text)));
  } catch (err) {
    return errorBox(err);
  }
}

const GROUP_STATUSES = ["", "PENDING", "VALIDATING", "REJECTED", "SUBMITTING", "MONITORING", "RESOLVING", "FILLED",
  "PARTIALLY_FILLED", "ROLLING_BACK", "ROLLED_BACK", "FAILED_NEEDS_ATTENTION"];

export function renderGroupInspector(root, ctx) {
  const list = h("div");
  const detail = h("section", { "aria-live": "polite" });
  const cursors = [null];
  let page = 0;
  const form = h("form", { class: "grid", "aria-label": "Group filters" },
    select("Status", "status", GROUP_STATUSES.map((s) => [s, s || "any"]), ""),
    field("Strategy", { name: "strategy_id" }), field("User (uid)", { name: "uid" }),
    field("From", { name: "from", type: "date" }), field("To", { name: "to", type: "date" }),
    h("button", { type: "submit" }, "Search"));
  const fresh = latest();
  async function load() {
    const current = fresh();
    const v = formValues(form);
    replace(list, h("p", { class: "muted" }, "Loading…"));
    try {
      const r = await apiGet("/groups", { ...v, limit: 20, cursor: cursors[page] });
      if (!current()) return;  // superseded (other filters, another page): the newer load renders
      cursors[page + 1] = r.body.next_cursor;
      replace(list, table([
        ["Created (UTC)", (g) => when(g.created_timestamp)], ["Group", (g) => h("button", { class: "secondary", type: "button",
          onclick: () => showGroup(g.group_id) }, g.group_id.slice(0, 18))],
        ["Strategy", (g) => g.strategy_id], ["User", (g) => shortId(g.uid, 8)], ["Status", (g) => h("span", { class: `s-${g.status}` }, g.status)],
        ["Legs", (g) => g.legs.map((l) => `${l.direction > 0 ? "+" : "−"}${l.units} ${l.symbol}`).join(", ")],
        ["Avg slip (ticks)", (g) => g.avg_slippage_pips, "num"], ["Rollback", (g) => (g.rollback_executed ? "yes" : "no")],
      ], r.body.items, { testid: "groups-table", empty: "No groups match." }),
      h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous page"),
        h("span", {}, `Page ${page + 1}`),
        h("button", { type: "button", class: "secondary", disabled: !r.body.next_cursor, onclick: () => { page += 1; load(); } }, "Next page")));
    } catch (err) {
      if (current()) replace(list, errorBox(err));
    }
  }
  async function showGroup(groupId) {
    replace(detail, h("p", { class: "muted" }, "Loading group…"));
    try {
      const g = (await apiGet(`/groups/${encodeURIComponent(groupId)}`)).body;
      replace(detail, h("h2", {}, `Group ${g.group_id}`),
        h("p", {}, "Status ", h("span", { class: `status-word s-${g.status}`, "data-testid": "inspected-status" }, g.status),
          ` · strategy ${g.strategy_id} · completed ${g.completed_timestamp ?? "–"} · rollback ${g.rollback_executed ? "executed" : "none"}`),
        g.rejection ? h("p", {}, h("code", {}, g.rejection.code), `: ${g.rejection.detail}`) : null,
        h("h2", {}, "Legs (in execution order)"), legsTable(g.legs, "inspected-legs"),
        h("h2", {}, "Timeline (group document)"), await timeline(ctx, g.group_id));
    } catch (err) {
      replace(detail, errorBox(err));
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); cursors.length = 1; page = 0; load(); });
  replace(root, h("h1", {}, "Group inspector"), form, list, detail);
  load();
}
