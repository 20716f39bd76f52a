// The sign-in page: an API token, checked against the server before it is
// kept.

import { api, signIn } from "../api.js";
import { h } from "../dom.js";

/** Says `why` (if anything sent the user here); `signedIn()` once a token is accepted. */
export function signInPage(why, signedIn) {
  const error = h("p", { class: "error", role: "alert", hidden: !why }, why || "");
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    { class: "signin card", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", { class: "muted" }, "Use the API token your Slipway administrator gave you. It stays in this browser tab only."),
    error,
    h("div", { class: "field" }, h("label", { for: "token" }, "API token"), input),
    h("button", { class: "primary", type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const token = input.value.trim();
      const me = await api("/me", { token });
      signIn(token, me);
      signedIn();
    } catch (e) {
      error.hidden = false;
      error.textContent = e.status === 401 ? "That token is not known to this server." : e.message;
      input.focus();
    }
  });
  setTimeout(() => input.focus());
  return { el: form };
}
