// The secrets page: the secrets this token may manage (names, scopes,
// filters, who set them; never a value), and a write-only form to set one.
// A value typed here goes to the server in the PUT's body and nowhere
// else: not the address, storage, the console, or the page once sent.

import { api, session } from "../api.js";
import { announce, h, timeEl } from "../dom.js";

const EVENTS = ["push", "tag", "pull_request", "manual", "deploy"];

/** "a, b ,c" as ["a", "b", "c"]; empty parts dropped. */
export function words(text) {
  return text
    .split(",")
    .map((w) => w.trim())
    .filter(Boolean);
}

export function secretsPage(parts, query, signal) {
  document.title = "Secrets · Slipway";
  const wanted = parts[1] && parts[2] ? `${parts[1]}/${parts[2]}` : null;
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const error = h("p", { class: "error", role: "alert", id: "secret-error", hidden: true });
  const form = secretForm(wanted, error, () => refresh());
  const el = h(
    "section",
    { "aria-labelledby": "secrets-title" },
    h("h1", { id: "secrets-title" }, "Secrets"),
    h(
      "p",
      { class: "muted" },
      "Values are write-only: set or replace one here; nobody can read it back. Steps get the secrets they list, as the secret's events and branches allow.",
    ),
    form,
    error,
    h("h2", {}, "Secrets you manage"),
    list,
  );
  let latest = 0;
  const refresh = async () => {
    const mine = ++latest;
    try {
      const q = wanted ? `?repo=${encodeURIComponent(wanted)}` : "";
      const secrets = await api(`/secrets${q}`, { signal });
      if (mine !== latest) return;
      if (!secrets.length) {
        list.replaceChildren(h("p", { class: "muted", id: "no-secrets" }, "No secrets you may manage yet."));
        return;
      }
      list.replaceChildren(
        h(
          "table",
          { class: "list", id: "secrets" },
          h("caption", { class: "visually-hidden" }, "Secrets"),
          h("thead", {}, h("tr", {}, ["Name", "Scope", "Only for", "Set", ""].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, secrets.map((s) => secretRow(s, error, refresh))),
        ),
      );
    } catch (e) {
      if (mine === latest && !signal.aborted) list.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  };
  refresh();
  return { el };
}

function secretForm(wanted, error, refresh) {
  const me = session.me || { maintains: [], scope: "read" };
  const scope = h(
    "select",
    { id: "secret-repo", name: "repo" },
    me.scope === "admin" ? h("option", { value: "" }, "server-wide (every repository)") : null,
    (me.maintains || []).map((r) => h("option", { value: r, selected: r === wanted }, r)),
  );
  const environment = h("input", { id: "secret-environment", name: "environment", placeholder: "only this environment's deploy steps", autocomplete: "off" });
  const name = h("input", { id: "secret-name", name: "name", required: true, pattern: "[A-Za-z_][A-Za-z0-9_]*", autocomplete: "off", spellcheck: "false" });
  // A password field: not echoed, not offered to autofill or spellcheck.
  const value = h("input", { id: "secret-value", name: "value", type: "password", required: true, autocomplete: "off", spellcheck: "false" });
  const events = h("input", { id: "secret-events", name: "events", placeholder: EVENTS.join(", "), autocomplete: "off" });
  const branches = h("input", { id: "secret-branches", name: "branches", placeholder: "main, release/*", autocomplete: "off" });
  const tags = h("input", { id: "secret-tags", name: "tags", placeholder: "v*", autocomplete: "off" });
  const save = h("button", { type: "submit", id: "secret-save", class: "primary" }, "Set secret");
  const field = (label, input) => h("div", { class: "field" }, h("label", { for: input.id }, label), input);
  const form = h(
    "form",
    { id: "secret-form", class: "filters", autocomplete: "off", "aria-label": "Set a secret" },
    field("Scope", scope),
    field("Environment", environment),
    field("Name", name),
    field("Value", value),
    field("Events", events),
    field("Branches", branches),
    field("Tags", tags),
    save,
  );
  form.addEventListener("submit", async (e) => {
    // The page sends it itself: no navigation, so the value is in no URL.
    e.preventDefault();
    error.hidden = true;
    const body = {
      name: name.value.trim(),
      value: value.value,
      events: words(events.value),
      branches: words(branches.value),
      tags: words(tags.value),
    };
    if (scope.value) body.repo = scope.value;
    if (environment.value.trim()) body.environment = environment.value.trim();
    save.disabled = true;
    try {
      const set = await api("/secrets", { method: "PUT", body });
      value.value = "";
      announce(`Secret ${set.name} set for ${set.scope}`);
      refresh();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      // Whatever happened, the typed value leaves the page's memory here.
      body.value = "";
      save.disabled = false;
    }
  });
  return form;
}

function secretRow(s, error, refresh) {
  const only = [];
  if (s.events.length) only.push(`events: ${s.events.join(", ")}`);
  if (s.branches.length) only.push(`branches: ${s.branches.join(", ")}`);
  if (s.tags.length) only.push(`tags: ${s.tags.join(", ")}`);
  const actions = h("td", { "data-label": "Actions" });
  if (s.source === "api") {
    const rm = h("button", { type: "button", class: "danger", "data-secret": `${s.scope}/${s.name}` }, "Remove");
    let armed = false;
    rm.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        rm.textContent = "Confirm remove";
        setTimeout(() => {
          armed = false;
          rm.textContent = "Remove";
        }, 5000);
        return;
      }
      rm.disabled = true;
      const q = new URLSearchParams({ name: s.name });
      if (s.repo) q.set("repo", s.repo);
      if (s.environment) q.set("environment", s.environment);
      try {
        await api(`/secrets?${q}`, { method: "DELETE" });
        announce(`Secret ${s.name} removed from ${s.scope}`);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
      refresh();
    });
    actions.append(rm);
  } else {
    actions.append(h("span", { class: "muted" }, "in the config file"));
  }
  return h(
    "tr",
    { dataset: { secret: `${s.scope}/${s.name}` } },
    h("td", { "data-label": "Name", class: "mono" }, s.name),
    h("td", { "data-label": "Scope" }, s.scope),
    h("td", { "data-label": "Only for" }, only.length ? only.join("; ") : "every run"),
    h("td", { "data-label": "Set" }, s.set_by ? [`${s.set_by}, `, timeEl(s.set_ms)] : "config"),
    actions,
  );
}
