// How an API (or SDK) error is shown: code, message, and every field with its reason.
import { h } from "./dom.js";
import { ApiError } from "./api.js";

export function errorBox(err) {
  if (err instanceof ApiError) {
    const fields = err.errors.length ? err.errors : (err.field || err.reason ? [{ field: err.field, reason: err.reason }] : []);
    return h("div", { class: "error", role: "alert", "data-testid": "api-error" },
      h("strong", {}, `${err.status} ${err.code}`), ": ", err.message,
      fields.length ? h("ul", {}, fields.map((f) => h("li", {},
        h("code", { "data-testid": "error-field" }, f.field ?? "(request)"), " — ",
        h("span", { "data-testid": "error-reason" }, f.reason ?? "")))) : null,
      err.requestId ? h("div", { class: "muted" }, `request id ${err.requestId}`) : null);
  }
  const code = err && err.code ? `${err.code}: ` : "";
  return h("div", { class: "error", role: "alert", "data-testid": "api-error" }, code, String(err && err.message || err));
}
