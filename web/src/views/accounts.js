// Trader: my accounts (GET /accounts), and for the chosen one its positions at the venue beside the
// ledger's (GET /accounts/{id}/positions: a non-zero difference is a break, shown, never hidden) and
// its balance (GET /accounts/{id}/balance).
import { apiGet } from "../api.js";
import { errorBox } from "../errors.js";
import { h, latest, replace, table } from "../dom.js";

export function renderMyAccounts(root) {
  const list = h("div");
  const detail = h("section", { "aria-live": "polite" });
  const freshDetail = latest(); // the account asked for last is the one shown, whichever answers last
  const freshList = latest();
  async function show(accountId) {
    const current = freshDetail();
    replace(detail, h("p", { class: "muted" }, "Reading the venue…"));
    const id = encodeURIComponent(accountId);
    try {
      const [positions, balance] = await Promise.all([apiGet(`/accounts/${id}/positions`), apiGet(`/accounts/${id}/balance`)]);
      if (!current()) return;
      const p = positions.body;
      const b = balance.body;
      replace(detail, h("h2", {}, `Account ${p.account_id}`),
        h("p", { class: "muted" }, `${p.venue} · venue account ${p.venue_account_id} · read ${p.as_of}`),
        h("div", { class: "cards" }, b.balances.map((x) => h("div", { class: "card" }, `${x.venue_name} (${x.currency})`,
          h("b", {}, `cash ${x.cash}`), `equity ${x.equity} · buying power ${x.buying_power}`))),
        h("p", {}, p.in_balance ? "Venue and ledger agree." : h("strong", {}, `${p.differences} symbol(s) differ between venue and ledger.`)),
        table([["Symbol", (x) => x.symbol], ["Venue qty", (x) => x.qty, "num"], ["Avg entry", (x) => x.avg_entry_price, "num"],
          ["Market value", (x) => x.market_value, "num"], ["Ledger qty", (x) => x.ledger_qty, "num"],
          ["Difference", (x) => x.difference, "num"]], p.positions, { testid: "positions-table", empty: "No positions." }));
    } catch (err) {
      if (current()) replace(detail, errorBox(err));
    }
  }
  async function load() {
    const current = freshList();
    replace(list, h("p", { class: "muted" }, "Loading…"));
    try {
      const r = (await apiGet("/accounts", { limit: 50 })).body;
      if (!current()) return;
      replace(list, table([
        ["Account", (a) => h("button", { type: "button", class: "secondary", onclick: () => show(a.account_id) }, a.account_id)],
        ["Venue", (a) => a.venue], ["Status", (a) => a.status], ["Classes", (a) => a.asset_classes.join(", ")],
        ["Default", (a) => (a.is_default ? "yes" : "no")]], r.items, { testid: "my-accounts", empty: "You have no account yet: ask a tenant admin." }));
      const first = r.items.find((a) => a.is_default) || r.items[0];
      if (first) show(first.account_id);
    } catch (err) {
      if (current()) replace(list, errorBox(err));
    }
  }
  replace(root, h("h1", {}, "Accounts and positions"), list, detail);
  load();
}
