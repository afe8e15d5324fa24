// The console: sign-in, then the screens the user's role (ID token claim) allows. Hash routes.
//   trader        ticket, open orders (cancel, replace), group builder (live status), accounts and
//                 positions, history, tax lots, lot-method election and 1099-B reconciliation
//   tenant_admin  ledger, groups, metrics, and administration with its controls: trading state and
//                 limits, members, accounts, audit log, reconciliation
//   auditor       the same pages read-only (no admin control is rendered), except trading state and
//                 limits, which the API keeps to tenant admins
//   risk_manager  risk approvals
import { h, replace } from "./dom.js";
import { initFirebase, logOut, onUser } from "./session.js";
import { renderTicket } from "./views/ticket.js";
import { renderMyAccounts } from "./views/accounts.js";
import { renderOrders } from "./views/orders.js";
import { renderGroupBuilder, renderGroupInspector } from "./views/groups.js";
import { renderHistory, renderTax } from "./views/portfolio.js";
import { renderTaxTools } from "./views/tax_tools.js";
import { renderLedger } from "./views/ledger.js";
import { renderMetrics } from "./views/metrics.js";
import { renderApprovals } from "./views/risk.js";
import { renderAccounts, renderAuditLog, renderMembers, renderReconciliation, renderTrading } from "./views/admin.js";
import { renderSignIn } from "./views/signin.js";

const SCREENS = {
  ticket: ["Order ticket", renderTicket],
  orders: ["Open orders", renderOrders],
  positions: ["Accounts & positions", renderMyAccounts],
  group: ["Multi-leg group", renderGroupBuilder],
  history: ["Trade history", renderHistory],
  tax: ["Tax lots", renderTax],
  taxtools: ["Tax election & 1099-B", renderTaxTools],
  ledger: ["Ledger", renderLedger],
  groups: ["Groups", renderGroupInspector],
  metrics: ["Metrics", renderMetrics],
  trading: ["Trading state", renderTrading],
  members: ["Members", renderMembers],
  accounts: ["Accounts", renderAccounts],
  audit: ["Audit log", renderAuditLog],
  recon: ["Reconciliation", renderReconciliation],
  approvals: ["Risk approvals", renderApprovals],
};

export const ROLE_SCREENS = {
  trader: ["ticket", "orders", "group", "positions", "history", "tax", "taxtools"],
  tenant_admin: ["ledger", "groups", "metrics", "trading", "members", "accounts", "audit", "recon"],
  auditor: ["ledger", "groups", "metrics", "members", "accounts", "audit", "recon"],
  risk_manager: ["approvals"],
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let user = null;
let cleanup = null;

function screensOf(u) {
  return (u && ROLE_SCREENS[u.role]) || [];
}

function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  if (!user) {
    replace(nav);
    replace(who);
    renderSignIn(main);
    return;
  }
  const allowed = screensOf(user);
  replace(who, h("span", { "data-testid": "who" }, `${user.email} · ${user.role ?? "no role"} · ${user.tenantId ?? "no tenant"}`),
    h("button", { type: "button", class: "secondary", onclick: () => logOut() }, "Sign out"));
  if (!allowed.length) {
    replace(nav);
    replace(main, h("h1", {}, "No access"), h("p", {}, "Your account has no role in a tenant yet. Ask a tenant admin."));
    return;
  }
  const wanted = location.hash.replace(/^#\/?/, "");
  const name = allowed.includes(wanted) ? wanted : allowed[0];
  replace(nav, allowed.map((key) => h("a", { href: `#/${key}`, "aria-current": key === name ? "page" : null }, SCREENS[key][0])));
  document.title = `${SCREENS[name][0]} · Execution console`;
  cleanup = SCREENS[name][1](main, { user }) || null;
  main.focus();
}

window.addEventListener("hashchange", route);

initFirebase().then(() => {
  onUser((u) => { user = u; route(); });
}).catch((err) => {
  replace(main, h("div", { class: "error", role: "alert" }, `Could not start: ${err.message}`));
});
