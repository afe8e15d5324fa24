// Tenant admin / auditor: execution-quality metrics (GET /tenants/{t}/metrics) with inline-SVG
// charts: decisions by strategy, downgrade rate by day, estimated vs actual slippage and cost savings
// by day, by strategy and by asset class, decisions by asset class.
import { apiGet } from "../api.js";
import { errorBox } from "../errors.js";
import { field, formValues, h, latest, pct, replace } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** Horizontal stacked bars: rows [{label, parts: [{name, value, color}]}]. */
export function barChart(title, rows, { format = (v) => String(v), width = 520 } = {}) {
  const rowH = 22;
  const labelW = 140;
  const max = Math.max(1e-12, ...rows.map((r) => r.parts.reduce((a, p) => a + Math.max(0, p.value), 0)));
  const height = rows.length * rowH + 30;
  const names = [...new Map(rows.flatMap((r) => r.parts.map((p) => [p.name, p.color]))).entries()];
  const svg = s("svg", { width, height, role: "img", "aria-label": title, viewBox: `0 0 ${width} ${height}` },
    s("title", {}, title));
  rows.forEach((row, i) => {
    const y = i * rowH + 4;
    svg.append(s("text", { x: 0, y: y + 14 }, row.label.length > 20 ? `${row.label.slice(0, 19)}…` : row.label));
    let x = labelW;
    for (const part of row.parts) {
      const w = (Math.max(0, part.value) / max) * (width - labelW - 70);
      svg.append(s("rect", { x, y, width: Math.max(0, w), height: rowH - 6, fill: part.color }, s("title", {}, `${part.name}: ${format(part.value)}`)));
      x += w;
    }
    svg.append(s("text", { x: x + 4, y: y + 14 }, row.parts.map((p) => format(p.value)).join(" / ")));
  });
  names.forEach(([name, color], i) => {
    const x = labelW + i * 120;
    svg.append(s("rect", { x, y: height - 16, width: 10, height: 10, fill: color }), s("text", { x: x + 14, y: height - 7 }, name));
  });
  return h("figure", {}, svg, h("figcaption", { class: "muted" }, title));
}

/** Grouped horizontal bars around a zero line (negative values go left): rows [{label, bars: [{name,
 *  value (number or null: no data), color}]}]. Every bar has its value in a <title> and as text. */
export function groupedChart(title, rows, { format = (v) => String(v), width = 620, testid } = {}) {
  const barH = 12;
  const labelW = 140;
  const valueW = 86;
  const perRow = Math.max(1, ...rows.map((r) => r.bars.length));
  const rowH = perRow * barH + 8;
  const values = rows.flatMap((r) => r.bars.map((b) => b.value)).filter((v) => v !== null && Number.isFinite(v));
  const lo = Math.min(0, ...values);
  const hi = Math.max(0, ...values);
  const span = Math.max(1e-12, hi - lo);
  const plotW = width - labelW - valueW;
  const zero = labelW + ((0 - lo) / span) * plotW;
  const names = [...new Map(rows.flatMap((r) => r.bars.map((b) => [b.name, b.color]))).entries()];
  const height = rows.length * rowH + 30;
  const svg = s("svg", { width, height, role: "img", "aria-label": title, viewBox: `0 0 ${width} ${height}`, "data-testid": testid },
    s("title", {}, title));
  rows.forEach((row, i) => {
    const y0 = i * rowH + 4;
    svg.append(s("text", { x: 0, y: y0 + rowH / 2 + 2 }, row.label.length > 20 ? `${row.label.slice(0, 19)}…` : row.label));
    row.bars.forEach((bar, j) => {
      const y = y0 + j * barH;
      const text = bar.value === null || !Number.isFinite(bar.value) ? "–" : format(bar.value);
      if (text !== "–") {
        const x = labelW + ((Math.min(0, bar.value) - lo) / span) * plotW;
        const w = (Math.abs(bar.value) / span) * plotW;
        svg.append(s("rect", { x, y, width: Math.max(1, w), height: barH - 2, fill: bar.color, "data-series": bar.name },
          s("title", {}, `${row.label} ${bar.name}: ${text}`)));
      }
      svg.append(s("text", { x: width - valueW + 4, y: y + barH - 3, "data-series": bar.name }, text));
    });
  });
  svg.append(s("line", { x1: zero, x2: zero, y1: 0, y2: rows.length * rowH + 4, stroke: "#4a4a4a" }));
  names.forEach(([name, color], i) => {
    const x = labelW + i * 150;
    svg.append(s("rect", { x, y: height - 16, width: 10, height: 10, fill: color }), s("text", { x: x + 14, y: height - 7 }, name));
  });
  return h("figure", {}, svg, h("figcaption", { class: "muted" }, title));
}

const num = (v) => (v === null || v === undefined || v === "" ? null : Number(v));
const share = (v) => `${(v * 100).toFixed(3)}%`;
const money = (v) => v.toFixed(2);

/** Estimated vs actual slippage (of the same fills) and cost savings for one labelled summary. */
function slippageBars(x) {
  return [{ name: "estimated (filled)", value: num(x?.tca?.avg_estimated_slippage_of_filled), color: C.est },
    { name: "actual", value: num(x?.tca?.avg_actual_slippage), color: C.act }];
}

/** Slippage and cost-savings charts of the API's by_asset_class breakdown (null when a strategy is
 *  chosen: the per-class counters are the tenant's, not split per strategy). */
function assetClassCharts(m) {
  if (!m.by_asset_class) {
    return [h("p", { class: "muted", "data-testid": "asset-class-note" },
      "Slippage and cost savings by asset class cover the whole tenant: clear the strategy to see them.")];
  }
  const classes = Object.entries(m.by_asset_class);
  return [
    groupedChart("Estimated vs actual slippage by asset class (share of price)",
      classes.map(([cls, x]) => ({ label: cls, bars: slippageBars(x) })), { format: share, testid: "chart-slippage-class" }),
    groupedChart("Cost savings by asset class (spread cost avoided by downgrades, quote currency)",
      classes.map(([cls, x]) => ({ label: cls, bars: [{ name: "cost savings", value: num(x.cost_savings), color: C.placed }] })),
      { format: money, testid: "chart-savings-class" }),
  ];
}

const C = { placed: "#1b7f3b", downgraded: "#b86200", rejected: "#b3261e", est: "#6b7fa8", act: "#0b4fa8" };

function isoDay(d) { return d.toISOString().slice(0, 10); }

export function renderMetrics(root, ctx) {
  const tenant = ctx.user.tenantId;
  const end = new Date();
  const start = new Date(end.getTime() - 6 * 86400_000);
  const form = h("form", { class: "grid", "aria-label": "Metrics period" },
    field("From", { name: "from", type: "date", value: isoDay(start) }), field("To", { name: "to", type: "date", value: isoDay(end) }),
    field("Strategy", { name: "strategy_id" }), h("button", { type: "submit" }, "Show"));
  const box = h("div");
  const fresh = latest();
  async function load() {
    const current = fresh();
    const v = formValues(form);
    replace(box, h("p", { class: "muted" }, "Loading…"));
    try {
      const path = `/tenants/${encodeURIComponent(tenant)}/metrics`;
      const m = (await apiGet(path, v)).body;
      if (!current()) return;  // superseded (other filters): the newer load renders
      const sm = m.summary;
      const tca = sm.tca || {};
      const days = [];
      for (let d = new Date(`${m.from}T00:00:00Z`); isoDay(d) <= m.to && days.length < 31; d = new Date(d.getTime() + 86400_000)) days.push(isoDay(d));
      const daily = await Promise.all(days.map(async (day) => [day, (await apiGet(path, { from: day, to: day, strategy_id: v.strategy_id })).body.summary]));
      if (!current()) return;
      const strategies = Object.entries(m.by_strategy || {});
      replace(box,
        h("div", { class: "cards", "data-testid": "metric-cards" },
          h("div", { class: "card" }, "Decisions", h("b", {}, String(sm.decisions))),
          h("div", { class: "card" }, "Downgrade rate", h("b", {}, pct(sm.downgrade_rate, 1) ?? "–")),
          h("div", { class: "card" }, "Rejection rate", h("b", {}, pct(sm.rejection_rate, 1) ?? "–")),
          h("div", { class: "card" }, "Cost savings", h("b", {}, sm.cost_savings)),
          h("div", { class: "card" }, "Est. slippage (filled)", h("b", {}, pct(tca.avg_estimated_slippage_of_filled) ?? "–")),
          h("div", { class: "card" }, "Actual slippage", h("b", {}, pct(tca.avg_actual_slippage) ?? "–"))),
        barChart("Decisions by strategy (placed / downgraded / rejected)", strategies.map(([name, x]) => ({ label: name,
          parts: [{ name: "placed", value: x.placed, color: C.placed }, { name: "downgraded", value: x.downgraded, color: C.downgraded },
            { name: "rejected", value: x.rejected, color: C.rejected }] }))),
        barChart("Downgrade rate by day", daily.map(([day, x]) => ({ label: day,
          parts: [{ name: "downgrade rate", value: Number(x.downgrade_rate || 0), color: C.downgraded }] })), { format: (v) => `${(v * 100).toFixed(1)}%` }),
        h("h2", {}, "Slippage and cost savings"),
        groupedChart("Estimated vs actual slippage by day (share of price; negative = better than the arrival mid)",
          daily.map(([day, x]) => ({ label: day, bars: slippageBars(x) })), { format: share, testid: "chart-slippage-day" }),
        groupedChart("Estimated vs actual slippage by strategy (share of price)",
          strategies.map(([name, x]) => ({ label: name, bars: slippageBars(x) })), { format: share, testid: "chart-slippage-strategy" }),
        groupedChart("Cost savings by day (spread cost avoided by downgrades, quote currency)",
          daily.map(([day, x]) => ({ label: day, bars: [{ name: "cost savings", value: num(x.cost_savings), color: C.placed }] })),
          { format: money, testid: "chart-savings-day" }),
        groupedChart("Cost savings by strategy (quote currency)",
          strategies.map(([name, x]) => ({ label: name, bars: [{ name: "cost savings", value: num(x.cost_savings), color: C.placed }] })),
          { format: money, testid: "chart-savings-strategy" }),
        h("h2", {}, "By asset class"),
        barChart("Decisions by asset class", Object.entries(sm.asset_class_distribution || {}).map(([cls, x]) => ({ label: cls,
          parts: [{ name: "placed", value: x.placed || 0, color: C.placed }, { name: "other decisions", value: (x.decisions || 0) - (x.placed || 0), color: "#8a8f98" }] }))),
        ...assetClassCharts(m),
        h("p", { class: "muted" }, `${m.shard_documents} metric shard documents read (never ledger rows).`));
    } catch (err) {
      if (current()) replace(box, errorBox(err));
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  replace(root, h("h1", {}, `Metrics of ${tenant}`), form, box);
  load();
}
