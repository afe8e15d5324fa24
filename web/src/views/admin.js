// Tenant administration (issue 13's API): trading state (three-state kill switch) and limits,
// members and roles, accounts, the audit log and the daily reconciliation report. A tenant_admin
// gets the controls; an auditor gets the same pages read-only (no control is rendered at all, and
// the API would refuse their writes with 403 anyway).
import { apiGet, apiSend } from "../api.js";
import { errorBox } from "../errors.js";
import { field, formValues, h, latest, replace, select, shortId, table, when } from "../dom.js";
import { limitsText, renderAccountRisk } from "./account_risk.js";

const isAdmin = (ctx) => ctx.user.role === "tenant_admin";
const base = (ctx) => `/tenants/${encodeURIComponent(ctx.user.tenantId)}`;

/** One page at a time with Previous/Next over the API's next_cursor. */
function pagedList(box, fetchPage, columns, { testid, empty }) {
  const cursors = [null];
  let page = 0;
  const fresh = latest();
  async function load() {
    const current = fresh();
    replace(box, h("p", { class: "muted" }, "Loading…"));
    try {
      const body = await fetchPage(cursors[page]);
      if (!current()) return;  // superseded (other filters, another page): the newer load renders
      cursors[page + 1] = body.next_cursor;
      replace(box, table(columns, body.items, { testid, empty }),
        h("div", { class: "pager" },
          h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous page"),
          h("span", {}, `Page ${page + 1}`),
          h("button", { type: "button", class: "secondary", disabled: !body.next_cursor, onclick: () => { page += 1; load(); } }, "Next page")));
    } catch (err) {
      if (current()) replace(box, errorBox(err));
    }
  }
  return { reload: () => { cursors.length = 1; page = 0; return load(); } };
}

function resultLine(out, promise, okText) {
  replace(out, h("p", { class: "muted" }, "Saving…"));
  return promise.then(() => replace(out, h("p", { class: "muted", role: "status", "data-testid": "admin-saved" }, okText)))
    .catch((err) => replace(out, errorBox(err)));
}

// ------------------------------------------------------------------ trading state and limits

const STATES = [["active", "Active: trading as usual"], ["reduce_only", "Reduce only: only position-reducing orders"],
  ["halted", "Halted: no new orders, no new group legs (rollbacks still run)"]];

export function renderTrading(root, ctx) {
  const view = h("div", { "aria-live": "polite" });
  const out = h("div");
  async function load() {
    try {
      const r = (await apiGet(`${base(ctx)}/risk/limits`)).body;
      const ts = r.trading_state || {};
      const rows = Object.keys({ ...r.operator, ...r.tenant, ...r.effective }).map((k) => ({ k,
        operator: r.operator?.[k], tenant: r.tenant?.[k], effective: r.effective?.[k] }));
      const show = (v) => (v === null || v === undefined ? null : typeof v === "object" ? JSON.stringify(v) : String(v));
      replace(view,
        h("p", {}, "Trading state — operator: ", h("strong", {}, ts.operator ?? "?"), " · tenant: ",
          h("strong", { "data-testid": "tenant-state" }, ts.tenant ?? "?")),
        table([["Limit", (x) => x.k], ["Operator", (x) => show(x.operator)], ["Tenant", (x) => show(x.tenant)],
          ["Effective", (x) => show(x.effective)]], rows, { testid: "limits-table" }),
        isAdmin(ctx) ? controls(r) : h("p", { class: "readonly-note" }, "Read-only: auditors see the settings but cannot change them."));
    } catch (err) {
      replace(view, errorBox(err));
    }
  }
  function controls(r) {
    const stateForm = h("form", { "aria-label": "Tenant trading state" },
      h("fieldset", { class: "grid" }, h("legend", {}, "Tenant kill switch"),
        STATES.map(([value, text]) => h("label", { class: "inline" },
          h("input", { type: "radio", name: "state", value, checked: value === r.trading_state?.tenant }), text)),
        h("button", { type: "submit" }, "Set trading state")));
    stateForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const { state } = formValues(stateForm);
      resultLine(out, apiSend("PUT", `${base(ctx)}/trading-state`, { state }), `Tenant trading state set to ${state}.`).then(load);
    });
    const t = r.tenant || {};
    const limitsForm = h("form", { class: "grid", "aria-label": "Tenant limits" },
      field("Max position qty", { name: "max_position_qty", value: t.max_position_qty ?? "", inputmode: "decimal" }),
      field("Max daily trades", { name: "max_daily_trades", value: t.max_daily_trades ?? "", inputmode: "numeric" }),
      field("Max order notional", { name: "max_order_notional", value: t.max_order_notional ?? "", inputmode: "decimal" }),
      h("button", { type: "submit" }, "Save limits"));
    limitsForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const v = formValues(limitsForm);
      const body = {};
      if (v.max_position_qty) body.max_position_qty = v.max_position_qty;
      if (v.max_daily_trades) body.max_daily_trades = Number.parseInt(v.max_daily_trades, 10);
      if (v.max_order_notional) body.max_order_notional = v.max_order_notional;
      if (t.max_position_by_class) body.max_position_by_class = t.max_position_by_class;
      resultLine(out, apiSend("PUT", `${base(ctx)}/risk/limits`, body), "Limits saved; the next decision uses them.").then(load);
    });
    return h("div", {}, stateForm, h("h2", {}, "Tenant limits (tighten only)"), limitsForm);
  }
  replace(root, h("h1", {}, "Trading state and limits"),
    h("p", { class: "muted" }, "The most restrictive of operator, tenant and account wins; each change is audited."), view, out);
  load();
}

// ------------------------------------------------------------------ members

const ROLES = [["trader", "trader"], ["tenant_admin", "tenant_admin"], ["auditor", "auditor"]];

export function renderMembers(root, ctx) {
  const box = h("div");
  const out = h("div");
  const columns = [["User", (m) => shortId(m.uid, 8)], ["Email", (m) => m.email], ["Role", (m) => m.role], ["Status", (m) => m.status],
    ["Default account", (m) => m.default_account_id]];
  if (isAdmin(ctx)) {
    columns.push(["Actions", (m) => h("span", {},
      h("button", { type: "button", class: "secondary", onclick: () => act("PUT", `/members/${m.uid}/status`,
        { status: m.status === "suspended" ? "active" : "suspended" }, `Member ${m.uid} ${m.status === "suspended" ? "re-activated" : "suspended"}.`) },
      m.status === "suspended" ? "Re-activate" : "Suspend"))]);
  }
  const list = pagedList(box, async (cursor) => (await apiGet(`${base(ctx)}/members`, { limit: 20, cursor })).body,
    columns, { testid: "members-table", empty: "No members." });
  function act(method, path, body, ok) {
    return resultLine(out, apiSend(method, `${base(ctx)}${path}`, body), ok).then(list.reload);
  }
  const parts = [h("h1", {}, "Members and roles")];
  if (isAdmin(ctx)) {
    const addForm = h("form", { class: "grid", "aria-label": "Add member" },
      field("Email or uid", { name: "who", required: true, autocomplete: "off" }),
      select("Role", "role", ROLES, "trader"),
      h("label", { class: "inline" }, h("input", { type: "checkbox", name: "create_user", id: "f-create-user" }), "Invite (create the user)"),
      h("button", { type: "submit" }, "Add member"));
    addForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const v = formValues(addForm);
      const body = v.who.includes("@") ? { email: v.who, role: v.role, create_user: v.create_user } : { uid: v.who, role: v.role };
      act("POST", "/members", body, `Added ${v.who} as ${v.role}.`);
    });
    const roleForm = h("form", { class: "grid", "aria-label": "Set role" },
      field("Member uid", { name: "uid", id: "f-role-uid", required: true, autocomplete: "off" }),
      select("New role", "role", [...ROLES, ["", "remove from tenant"]], "trader", { id: "f-new-role" }),
      h("button", { type: "submit" }, "Set role"));
    roleForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const v = formValues(roleForm);
      act("PUT", `/members/${encodeURIComponent(v.uid)}/role`, { role: v.role || null }, `Role of ${v.uid} set; it applies from their next token refresh.`);
    });
    const defaultForm = h("form", { class: "grid", "aria-label": "Default account" },
      field("Member uid", { name: "uid", id: "f-default-uid", required: true, autocomplete: "off" }),
      field("Default account (blank: clear)", { name: "account_id", id: "f-default-account", autocomplete: "off" }),
      h("button", { type: "submit" }, "Set default account"));
    defaultForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const v = formValues(defaultForm);
      act("PUT", `/members/${encodeURIComponent(v.uid)}/default-account`, { account_id: v.account_id || null },
        `Default account of ${v.uid} set.`);
    });
    parts.push(addForm, roleForm, defaultForm);
  } else {
    parts.push(h("p", { class: "readonly-note" }, "Read-only: auditors cannot change members."));
  }
  replace(root, ...parts, out, box);
  list.reload();
}

// ------------------------------------------------------------------ accounts

export function renderAccounts(root, ctx) {
  const box = h("div");
  const out = h("div");
  const columns = [["Account", (a) => a.account_id], ["Connection", (a) => a.connection_id], ["Venue account", (a) => a.venue_account_id],
    ["Owners", (a) => a.owner_uids.map((u) => shortId(u, 8))], ["Status", (a) => a.status], ["Classes", (a) => a.asset_classes.join(", ")],
    ["Own limits", (a) => limitsText(a.limits)]];
  const riskBox = h("div");
  if (isAdmin(ctx)) {
    columns.push(["Risk", (a) => h("button", { type: "button", class: "secondary", "aria-label": `Limits and state of ${a.account_id}`,
      onclick: () => renderAccountRisk(riskBox, base(ctx), a.account_id, () => list.reload()) }, "Limits and state")]);
    columns.push(["Set status", (a) => h("span", {}, ["active", "reduce_only", "halted", "closed"].filter((s) => s !== a.status)
      .map((s) => h("button", { type: "button", class: "secondary", onclick: () => act("PUT", `/accounts/${a.account_id}/status`, { status: s },
        `Account ${a.account_id} is now ${s}.`) }, s)))]);
  }
  const list = pagedList(box, async (cursor) => (await apiGet(`${base(ctx)}/accounts`, { limit: 20, cursor })).body,
    columns, { testid: "accounts-table", empty: "No accounts." });
  function act(method, path, body, ok) {
    return resultLine(out, apiSend(method, `${base(ctx)}${path}`, body), ok).then(list.reload);
  }
  const parts = [h("h1", {}, "Accounts")];
  if (isAdmin(ctx)) {
    const form = h("form", { class: "grid", "aria-label": "Create account" },
      field("Account id", { name: "account_id", required: true }),
      field("Connection", { name: "connection_id", value: "deployment", required: true }),
      field("Venue account id", { name: "venue_account_id", required: true }),
      field("Owner uids (comma separated)", { name: "owner_uids", required: true }),
      field("Asset classes (comma separated)", { name: "asset_classes", value: "EQUITY", required: true }),
      h("button", { type: "submit" }, "Create account"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const v = formValues(form);
      const split = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
      act("POST", "/accounts", { account_id: v.account_id, connection_id: v.connection_id, venue_account_id: v.venue_account_id,
        owner_uids: split(v.owner_uids), asset_classes: split(v.asset_classes).map((x) => x.toUpperCase()) }, `Account ${v.account_id} created.`);
    });
    parts.push(form);
  } else {
    parts.push(h("p", { class: "readonly-note" }, "Read-only: auditors cannot change accounts."));
  }
  replace(root, ...parts, out, box, riskBox);
  list.reload();
}

// ------------------------------------------------------------------ audit log

export function renderAuditLog(root, ctx) {
  const box = h("div");
  const form = h("form", { class: "grid", "aria-label": "Audit log filters" },
    field("Action", { name: "action", placeholder: "e.g. member.role.set" }), field("Actor uid", { name: "actor_uid" }),
    field("Target", { name: "target", placeholder: "member/uid123" }),
    field("From", { name: "from", type: "date" }), field("To", { name: "to", type: "date" }),
    h("button", { type: "submit" }, "Apply filters"));
  const json = (v) => {
    if (v === null || v === undefined) return null;
    const text = JSON.stringify(v);
    return h("code", { title: text }, text.length > 60 ? `${text.slice(0, 58)}…` : text);
  };
  const list = pagedList(box, async (cursor) => (await apiGet(`${base(ctx)}/audit-log`, { ...formValues(form), limit: 20, cursor })).body,
    [["Time (UTC)", (e) => when(e.created_at)], ["Actor", (e) => h("span", {}, shortId(e.actor_uid, 8), ` (${e.actor_role})`)], ["Action", (e) => e.action],
      ["Target", (e) => e.target], ["Before", (e) => json(e.before)], ["After", (e) => json(e.after)], ["Request", (e) => shortId(e.request_id, 8)]],
    { testid: "audit-table", empty: "No audit entries match." });
  form.addEventListener("submit", (e) => { e.preventDefault(); list.reload(); });
  replace(root, h("h1", {}, "Audit log"), h("p", { class: "muted" }, "Append-only: one entry per admin change, newest first."), form, box);
  list.reload();
}

// ------------------------------------------------------------------ reconciliation

export function renderReconciliation(root, ctx) {
  const box = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "grid", "aria-label": "Reconciliation day" },
    field("Day (UTC)", { name: "day", type: "date", value: new Date().toISOString().slice(0, 10) }),
    h("button", { type: "submit" }, "Show report"),
    isAdmin(ctx) ? h("button", { type: "button", class: "secondary", onclick: () => run() }, "Run reconciliation now") : null);
  function show(r) {
    const cashBreaks = r.cash_breaks || [];
    const positionBreaks = r.breaks || [];
    const unavailable = r.cash_unavailable || [];
    const cashLines = (r.accounts || []).flatMap((a) => (Array.isArray(a.cash)
      ? (a.cash.length ? a.cash.map((c) => ({ ...c, account_id: a.account_id, venue_account_id: a.venue_account_id }))
        : [{ account_id: a.account_id, venue_account_id: a.venue_account_id, currency: "–", note: "no cash movement on either side" }])
      : [{ account_id: a.account_id, venue_account_id: a.venue_account_id, currency: "–", note: `unavailable: ${a.cash_unavailable_reason || "the venue reports no activities"}` }]));
    const count = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    replace(box, h("p", {}, "Status ", h("strong", { class: "status-word", "data-testid": "recon-status" }, r.status),
      ` · ${r.accounts_checked} accounts checked · `,
      h("span", { "data-testid": "recon-counts" }, `${count(r.break_count ?? positionBreaks.length, "position break")} · `
        + `${count(r.cash_break_count ?? cashBreaks.length, "cash break")}`
        + (unavailable.length ? ` · cash unavailable for ${count(unavailable.length, "account")}` : "")),
      ` · run ${r.run_at}`),
    h("h2", {}, "Position breaks"),
    table([["Account", (b) => b.account_id], ["Venue account", (b) => b.venue_account_id], ["Symbol", (b) => b.symbol],
      ["Ledger qty", (b) => b.ledger_qty, "num"], ["Venue qty", (b) => b.venue_qty, "num"], ["Difference", (b) => b.difference, "num"],
      ["Since", (b) => b.since]], positionBreaks, { testid: "recon-breaks", empty: "No position breaks." }),
    h("h2", {}, "Cash breaks"),
    table([["Account", (b) => b.account_id], ["Venue account", (b) => b.venue_account_id], ["Currency", (b) => b.currency],
      ["Ledger cash", (b) => b.ledger, "num"], ["Venue cash", (b) => b.venue, "num"], ["Difference (venue − ledger)", (b) => b.difference, "num"],
      ["Since", (b) => b.since]], cashBreaks, { testid: "recon-cash-breaks", empty: "No cash breaks." }),
    unavailable.length ? h("p", { class: "error", role: "alert", "data-testid": "recon-cash-unavailable" },
      "Cash not compared (the report is incomplete, never clean): ",
      unavailable.map((u) => `${u.account_id}: ${u.reason}`).join("; ")) : null,
    h("h2", {}, "Cash per account (the day's fills and fees)"),
    table([["Account", (c) => c.account_id], ["Venue account", (c) => c.venue_account_id], ["Currency", (c) => c.currency],
      ["Ledger", (c) => c.note ?? c.ledger, "num"], ["Venue", (c) => c.venue, "num"], ["Difference", (c) => c.difference, "num"],
      ["Ledger fills", (c) => c.ledger_fills, "num"], ["Venue fills", (c) => c.venue_fills, "num"]],
    cashLines, { testid: "recon-cash", empty: "No accounts in the report." }),
    (r.errors || []).length ? table([["Account", (x) => x.account_id], ["Error", (x) => x.reason]], r.errors) : null);
  }
  // Only the last request's answer is shown: a slow run (or the first load) answering after the admin
  // asked for another day must not replace that day's report.
  const fresh = latest();
  async function load() {
    const current = fresh();
    replace(box, h("p", { class: "muted" }, "Loading…"));
    try {
      const body = (await apiGet(`${base(ctx)}/reconciliation`, { day: formValues(form).day })).body;
      if (current()) show(body);
    } catch (err) {
      if (current()) replace(box, err.status === 404 ? h("p", { class: "muted" }, "No report for that day yet.") : errorBox(err));
    }
  }
  async function run() {
    const current = fresh();
    replace(box, h("p", { class: "muted" }, "Reconciling…"));
    try {
      const body = (await apiSend("POST", `${base(ctx)}/reconciliation`, null)).body;
      if (current()) show(body);
    } catch (err) {
      if (current()) replace(box, errorBox(err));
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  replace(root, h("h1", {}, "Daily reconciliation"),
    h("p", { class: "muted" }, "Per account: ledger net positions against the venue's, and the day's ledger cash (fills and fees) against the venue's activities; a break is reported, never auto-corrected."), form, box);
  load();
}
