// Addresses (`#/runs/ID/step/L12`, `#/environments/owner/name`, ...) to
// pages: one page at a time, its streams and timers stopped when it goes.

import { api, session } from "./api.js";
import { h } from "./dom.js";
import { environmentsPage } from "./pages/environments.js";
import { previewsPage } from "./pages/previews.js";
import { runnersPage } from "./pages/runners.js";
import { runsPage } from "./pages/runs.js";
import { secretsPage } from "./pages/secrets.js";
import { signInPage } from "./pages/sign-in.js";
import { managesSecrets } from "./secret-form.js";

let current = null; // { key, cleanup, update }

/** The address in the hash: its path segments (decoded) and query. */
export function parseHash(hash) {
  const raw = hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path
    .split("/")
    .filter(Boolean)
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p; // a stray `%` is kept as typed
      }
    });
  return { parts, query: new URLSearchParams(query) };
}

const PAGES = { runs: runsPage, environments: environmentsPage, previews: previewsPage, runners: runnersPage, secrets: secretsPage };

/** Shows the page of the current address (or sign-in, saying `why`). */
export async function route(why) {
  const main = document.getElementById("main");
  const signedIn = !!session.token;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  if (!signedIn) {
    if (current && current.cleanup) current.cleanup();
    current = null;
    main.replaceChildren(signInPage(why, () => route()).el);
    document.title = "Sign in · Slipway";
    return;
  }
  if (!session.me) {
    try {
      session.me = await api("/me");
    } catch (e) {
      if (!session.token) return;
      main.replaceChildren(h("p", { class: "error", role: "alert" }, `Cannot reach the server: ${e.message}`));
      return;
    }
  }
  const me = session.me;
  document.getElementById("who-name").textContent = `${me.user} (${me.scope})`;
  // Only those who may set secrets see the page in the menu.
  document.getElementById("nav-secrets").hidden = !managesSecrets(me);
  const { parts, query } = parseHash(location.hash);
  const section = parts[0] || "runs";
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const page = PAGES[section] || notFoundPage;
  const key = page === runsPage && parts[1] ? `run:${parts[1]}` : `${section}:${query}`;
  // A page that can show the new address in place does (a run page moving
  // to another step or line keeps its graph and stream).
  if (current && current.key === key && current.update && current.update(parts, query)) return;
  if (current && current.cleanup) current.cleanup();
  // A control the new page also has (a filter just changed) keeps focus;
  // otherwise focus moves to the new page, as after a page load.
  const focusedId = document.activeElement && document.activeElement.id;
  const ctl = new AbortController();
  const shown = { key, cleanup: () => ctl.abort() };
  current = shown;
  // Markers the run page sets for tests and styles belong to that page.
  delete document.body.dataset.logPainted;
  delete document.body.dataset.runStatus;
  // A page that learns its address should read otherwise (a run opened by
  // a prefix of its id) says so, and still counts as the same page.
  const view = page(parts, query, ctl.signal, { rekey: (k) => (shown.key = k) });
  shown.update = view.update;
  main.replaceChildren(view.el);
  const same = focusedId && document.getElementById(focusedId);
  if (same && main.contains(same)) same.focus();
  else main.focus({ preventScroll: true });
}

function notFoundPage() {
  return { el: h("p", {}, "No such page. ", h("a", { href: "#/runs" }, "See the runs.")) };
}
