// The secrets page: the secrets this token may manage (names, scopes,
// filters, where they come from, who set them; never a value), and a
// write-only form to set one. A value typed here goes to the server in the
// PUT's body and nowhere else: not the address, storage, the console, or
// the page once sent.

import { api, session } from "../api.js";
import { announce, h, timeEl } from "../dom.js";
import { ago, repoPath } from "../format.js";
import { managesSecrets, manageable, onlyFor, secretBody, secretQuery } from "../secret-form.js";

const EVENTS = ["push", "tag", "pull_request", "manual", "deploy"];

export function secretsPage(parts, query, signal) {
  document.title = "Secrets · Slipway";
  const me = session.me;
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const el = h(
    "section",
    { "aria-labelledby": "secrets-title" },
    h("h1", { id: "secrets-title" }, "Secrets"),
    h(
      "p",
      { class: "muted" },
      "Values are write-only: set or replace one here; nobody can read it back. Steps get the secrets they list, as the secret's events, branches and tags allow.",
    ),
    body,
  );
  if (!managesSecrets(me)) {
    body.replaceChildren(
      h(
        "p",
        { class: "muted", id: "no-secret-rights" },
        "Your token may manage no secrets: that takes an admin token, or a write token whose `maintains` lists the repository.",
      ),
    );
    return { el };
  }
  const asked = parts[1] && parts[2] ? `${parts[1]}/${parts[2]}` : null;
  api("/repos", { signal })
    .then((all) => {
      const repos = manageable(all, me);
      // Only a repository the server lists and the token manages.
      const known = asked ? repos.find((r) => r.name.toLowerCase() === asked.toLowerCase()) : null;
      const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
      const error = h("p", { class: "error", role: "alert", id: "secret-error", hidden: true });
      const shown = known ? known.name : null;
      const refresh = secretList(shown, list, error, signal);
      const show = h(
        "select",
        { id: "secrets-show" },
        h("option", { value: "" }, "every secret you manage"),
        repos.map((r) => h("option", { value: r.name, selected: r.name === shown }, r.name)),
      );
      show.addEventListener("change", () => (location.hash = show.value ? `#/secrets/${repoPath(show.value)}` : "#/secrets"));
      body.replaceChildren(
        secretForm(me, repos, known, error, refresh),
        error,
        h("h2", {}, "Secrets you manage"),
        h("div", { class: "filters" }, h("div", { class: "field" }, h("label", { for: "secrets-show" }, "Show"), show)),
        list,
      );
      if (asked && !known) {
        list.replaceChildren(
          h("p", { class: "error", role: "alert" }, `No repository “${asked}” whose secrets you may manage here.`),
        );
        return;
      }
      refresh();
    })
    .catch((e) => {
      if (!signal.aborted) body.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    });
  // "Set 3m ago" ticks without a change.
  const timer = setInterval(() => {
    for (const t of el.querySelectorAll("time[data-ms]")) t.textContent = ago(Number(t.dataset.ms));
  }, 10000);
  signal.addEventListener("abort", () => clearInterval(timer));
  return { el };
}

/** Draws the secrets of `repo` (all, if null) into `list`; returns its refresh. */
function secretList(repo, list, error, signal) {
  let latest = 0;
  const refresh = async () => {
    // Answers may arrive out of order; only the newest request's is drawn.
    const mine = ++latest;
    try {
      const q = repo ? `?repo=${encodeURIComponent(repo)}` : "";
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
          h(
            "thead",
            {},
            h("tr", {}, ["Name", "Scope", "Only for", "Source", "Set", ""].map((c) => h("th", { scope: "col" }, c))),
          ),
          h("tbody", {}, secrets.map((s) => secretRow(s, error, refresh))),
        ),
      );
    } catch (e) {
      if (mine === latest && !signal.aborted) list.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  };
  return refresh;
}

function secretForm(me, repos, known, error, refresh) {
  const repo = h(
    "select",
    { id: "secret-repo", name: "repo" },
    me.scope === "admin" ? h("option", { value: "" }, "server-wide (every repository)") : null,
    repos.map((r) => h("option", { value: r.name, selected: !!known && r.name === known.name }, r.name)),
  );
  const environment = h("select", { id: "secret-environment", name: "environment" });
  // The chosen repository's environments; none for a server-wide secret.
  const environments = () => {
    const chosen = repos.find((r) => r.name === repo.value);
    const envs = chosen ? chosen.environments : [];
    const was = environment.value;
    environment.replaceChildren(
      h("option", { value: "" }, chosen ? "none: every step of the repository" : "none"),
      ...envs.map((e) => h("option", { value: e, selected: e === was }, e)),
    );
    environment.disabled = !envs.length;
  };
  environments();
  repo.addEventListener("change", environments);
  const name = h("input", {
    id: "secret-name",
    name: "name",
    required: true,
    pattern: "[A-Za-z_][A-Za-z0-9_]*",
    title: "letters, digits and _, not starting with a digit",
    autocomplete: "off",
    spellcheck: "false",
  });
  // A password field: not echoed, not offered to autofill or spellcheck.
  const value = h("input", {
    id: "secret-value",
    name: "value",
    type: "password",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
  });
  const events = h("input", { id: "secret-events", name: "events", placeholder: EVENTS.join(", "), autocomplete: "off" });
  const branches = h("input", { id: "secret-branches", name: "branches", placeholder: "main, release/*", autocomplete: "off" });
  const tags = h("input", { id: "secret-tags", name: "tags", placeholder: "v*", autocomplete: "off" });
  const save = h("button", { type: "submit", id: "secret-save", class: "primary" }, "Set secret");
  const field = (label, input) => h("div", { class: "field" }, h("label", { for: input.id }, label), input);
  const form = h(
    "form",
    { id: "secret-form", class: "filters", autocomplete: "off", "aria-label": "Set a secret" },
    field("Repository", repo),
    field("Environment (its deploy steps only)", environment),
    field("Name", name),
    field("Value", value),
    field("Only for events", events),
    field("Only for branches", branches),
    field("Only for tags", tags),
    save,
  );
  form.addEventListener("submit", async (e) => {
    // The page sends it itself: no navigation, so the value is in no URL.
    e.preventDefault();
    error.hidden = true;
    const body = secretBody({
      repo: repo.value,
      environment: environment.disabled ? "" : environment.value,
      name: name.value,
      value: value.value,
      events: events.value,
      branches: branches.value,
      tags: tags.value,
    });
    save.disabled = true;
    try {
      const set = await api("/secrets", { method: "PUT", body });
      value.value = "";
      announce(`Secret ${set.name} set for ${set.scope}`);
      refresh();
    } catch (err) {
      // The value stays in its field (not in the page's HTML) to be fixed.
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      // Whatever happened, the page keeps no other copy of the value.
      body.value = "";
      save.disabled = false;
    }
  });
  return form;
}

function secretRow(s, error, refresh) {
  const id = `${s.scope}/${s.name}`;
  const actions = h("td", { "data-label": "Actions" });
  if (s.source === "api") {
    const rm = h("button", { type: "button", class: "danger", "data-secret": id }, "Remove");
    let armed = null;
    rm.addEventListener("click", async () => {
      // The first click only arms the button, for a few seconds.
      if (!armed) {
        rm.textContent = "Confirm remove";
        armed = setTimeout(() => {
          armed = null;
          rm.textContent = "Remove";
        }, 5000);
        return;
      }
      clearTimeout(armed);
      rm.disabled = true;
      try {
        await api(`/secrets?${secretQuery(s)}`, { method: "DELETE" });
        error.hidden = true;
        announce(`Secret ${s.name} removed from ${s.scope}`);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
      refresh();
    });
    actions.append(rm);
  } else {
    actions.append(h("span", { class: "muted" }, "change it in the config file"));
  }
  return h(
    "tr",
    { dataset: { secret: id, source: s.source } },
    h("td", { "data-label": "Name", class: "mono" }, s.name),
    h("td", { "data-label": "Scope" }, s.scope),
    h("td", { "data-label": "Only for" }, onlyFor(s)),
    h("td", { "data-label": "Source" }, s.source === "api" ? "API" : "config file"),
    h("td", { "data-label": "Set" }, s.set_by ? [`by ${s.set_by}, `, timeEl(s.set_ms)] : "—"),
    actions,
  );
}
