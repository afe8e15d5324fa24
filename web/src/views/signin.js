// Sign-in with email and password (the Auth emulator locally; the run command prints demo users).
import { errorBox } from "../errors.js";
import { field, formValues, h, replace } from "../dom.js";
import { signIn } from "../session.js";

export function renderSignIn(root) {
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "grid", "aria-label": "Sign in" },
    field("Email", { name: "email", type: "email", autocomplete: "username", required: true }),
    field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = formValues(form);
    replace(out, h("p", { class: "muted" }, "Signing in…"));
    try {
      await signIn(v.email, v.password);
      replace(out);
    } catch (err) {
      replace(out, errorBox(err));
    }
  });
  replace(root, h("h1", {}, "Sign in"), form, out);
  form.elements.email.focus();
}
