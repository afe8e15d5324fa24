// Risk manager: issue a risk approval for a trader's group (POST /risk/approvals).
import { apiPost } from "../api.js";
import { errorBox } from "../errors.js";
import { field, formValues, h, replace, select } from "../dom.js";

export function renderApprovals(root) {
  const out = h("div", { "aria-live": "polite" });
  const legs = h("div", {}, [1, 2].map((n) => approvalLeg(n, n === 1 ? ["leg_1", "SPY", "1", "2"] : ["leg_2", "MSFT", "-1", "1"])));
  const expires = new Date(Date.now() + 3600_000).toISOString().slice(0, 16);
  const form = h("form", { "aria-label": "Risk approval" },
    h("div", { class: "grid" },
      field("Decision id", { name: "decision_id", required: true, value: `rpm-${Date.now().toString(36)}` }),
      field("For trader (uid)", { name: "for_uid", required: true, autocomplete: "off" }),
      field("Expires (UTC)", { name: "expires_at", type: "datetime-local", value: expires, required: true })),
    legs,
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => legs.append(approvalLeg(legs.children.length + 1, [`leg_${legs.children.length + 1}`, "", "1", "1"])) }, "Add leg"),
      " ", h("button", { type: "submit" }, "Issue approval")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = formValues(form);
    const body = { decision_id: v.decision_id, for_uid: v.for_uid, expires_at: `${v.expires_at}:00+00:00`,
      legs: [...legs.children].map((_, i) => ({ leg_id: v[`a_leg_id_${i + 1}`], symbol: v[`a_symbol_${i + 1}`],
        direction: Number(v[`a_direction_${i + 1}`]), max_units: v[`a_max_units_${i + 1}`] })) };
    try {
      const r = await apiPost("/risk/approvals", body);
      replace(out, h("p", { class: "verdict placed", "data-testid": "approval-issued" }, `Approval ${r.body.decision_id ?? v.decision_id} issued for ${v.for_uid}.`));
    } catch (err) {
      replace(out, errorBox(err));
    }
  });
  replace(root, h("h1", {}, "Risk approvals"), h("p", { class: "muted" }, "A trader's group references the decision id; the backend checks the stored approval before validation and before each leg."), form, out);
}

function approvalLeg(n, [legId, symbol, direction, units]) {
  return h("fieldset", { class: "grid" }, h("legend", {}, `Approved leg ${n}`),
    field("Leg id", { name: `a_leg_id_${n}`, value: legId, required: true }),
    field("Symbol", { name: `a_symbol_${n}`, value: symbol, required: true }),
    select("Direction", `a_direction_${n}`, [["1", "+1 long"], ["-1", "−1 short"]], direction),
    field("Max units", { name: `a_max_units_${n}`, value: units, required: true }));
}
