// A tiny DOM helper instead of a UI library: h("tag", {attrs, on*: handlers}, ...children).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A labelled input: <div class=fld><label for=id>Text</label><input id=id name=…></div>. The label
 *  is tied by `for`, so the control's accessible name is exactly the label text. */
export function field(label, attrs) {
  const id = attrs.id || `f-${attrs.name}`;
  return h("div", { class: "fld" }, h("label", { for: id }, label), h("input", { ...attrs, id }));
}

export function select(label, name, options, value, attrs = {}) {
  const id = attrs.id || `f-${name}`;
  return h("div", { class: "fld" }, h("label", { for: id }, label),
    h("select", { name, ...attrs, id },
      options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
}

/** A table from rows and [header, (row) => cell] columns; an empty list says so. */
export function table(columns, rows, { caption, empty = "Nothing yet.", testid } = {}) {
  if (!rows.length) return h("p", { class: "muted", "data-testid": testid }, empty);
  return h("div", { class: "scroll" }, h("table", { "data-testid": testid },
    caption ? h("caption", { class: "muted" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell, cls]) => {
      const value = cell(row);
      return h("td", { class: cls }, value === undefined || value === null ? "–" : value);
    }))))));
}

/** A long id shortened on screen, whole in its tooltip and for screen readers. */
export function shortId(id, keep = 10) {
  if (!id || id.length <= keep + 2) return id;
  return h("span", { title: id, "aria-label": id }, `${id.slice(0, keep)}…`);
}

/** ISO-8601 text → "YYYY-MM-DD HH:MM:SS" (UTC, as stored). */
export function when(iso) {
  return iso ? String(iso).replace("T", " ").slice(0, 19) : null;
}

export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || (el.type === "radio" && !el.checked)) continue;
    out[el.name] = el.type === "checkbox" ? el.checked : el.value.trim();
  }
  return out;
}

export function pct(share, digits = 3) {
  if (share === null || share === undefined || share === "") return null;
  return `${(Number(share) * 100).toFixed(digits)}%`;
}

export function today() {
  return new Date().toISOString().slice(0, 10);
}

/**
 * The newest of a view's loads: `const fresh = latest();` once per view, then in each load
 * `const current = fresh();` before the request and `if (!current()) return;` after it. A load
 * superseded by a newer one (other filters, another page, a second click) must not render its answer
 * over the newer one's when it arrives last, nor move the cursor chain.
 */
export function latest() {
  let newest = 0;
  return () => {
    const mine = ++newest;
    return () => mine === newest;
  };
}
