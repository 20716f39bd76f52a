// The previews page: every open pull-request preview, live; writers may
// delete one.

import { api, follow, session } from "../api.js";
import { announce, h, timeEl } from "../dom.js";
import { ago, repoPath, short } from "../format.js";

export function previewsPage(parts, query, signal) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const el = h("section", { "aria-labelledby": "previews-title" }, h("h1", { id: "previews-title" }, "Previews"), body);
  document.title = "Previews · Slipway";
  let latest = 0;
  const refresh = async () => {
    // Answers may arrive out of order; only the newest request's is drawn.
    const mine = ++latest;
    const focused = document.activeElement && document.activeElement.dataset.preview;
    try {
      const list = await api("/previews", { signal });
      if (mine !== latest) return;
      if (!list.length) {
        body.replaceChildren(h("p", { class: "muted" }, "No open previews. A green build of a pull request with `preview:` in its pipeline opens one."));
        return;
      }
      body.replaceChildren(
        h(
          "table",
          { class: "list", id: "previews" },
          h("caption", { class: "visually-hidden" }, "Open previews"),
          h("thead", {}, h("tr", {}, ["Pull request", "Commit", "URL", "Age", "Run", ""].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, list.map((p) => previewRow(p, refresh))),
        ),
      );
      // A Delete button that had focus keeps it across the redraw.
      if (focused) {
        const again = [...body.querySelectorAll("button[data-preview]")].find((b) => b.dataset.preview === focused);
        if (again) again.focus();
      }
    } catch (e) {
      if (mine === latest && !signal.aborted) body.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  };
  // Read the list each time the stream (re)opens, then on each change.
  follow("/previews/events", signal, () => refresh(), { onOpen: refresh });
  // Ages tick without a change.
  const timer = setInterval(() => {
    for (const t of body.querySelectorAll("time[data-ms]")) t.textContent = ago(Number(t.dataset.ms));
  }, 10000);
  signal.addEventListener("abort", () => clearInterval(timer));
  return { el };
}

function previewRow(p, refresh) {
  const actions = h("td", { "data-label": "Actions" });
  if (session.canWrite) {
    // Two clicks, not a dialog: a stray click on a phone removes nothing.
    const del = h("button", { type: "button", class: "danger", "data-preview": `${p.repo}#${p.number}` }, "Delete");
    let armed = false;
    del.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        del.textContent = "Confirm delete";
        setTimeout(() => {
          armed = false;
          del.textContent = "Delete";
        }, 5000);
        return;
      }
      del.disabled = true;
      try {
        await api(`/previews/${repoPath(p.repo)}/${p.number}`, { method: "DELETE" });
        announce(`Preview of ${p.repo} #${p.number} deleted`);
      } catch (e) {
        actions.append(h("span", { class: "error" }, e.message));
      }
      refresh();
    });
    actions.append(del);
  }
  return h(
    "tr",
    { dataset: { preview: `${p.repo}#${p.number}` } },
    h("td", { "data-label": "Pull request" }, `${p.repo} #${p.number}`),
    h("td", { "data-label": "Commit", class: "mono", title: p.sha }, short(p.sha)),
    h("td", { "data-label": "URL", class: "wrap" }, h("a", { href: p.url, rel: "noopener" }, p.url)),
    h("td", { "data-label": "Age" }, timeEl(p.created_ms)),
    h("td", { "data-label": "Run" }, h("a", { href: `#/runs/${encodeURIComponent(p.run)}`, class: "mono" }, p.run)),
    actions,
  );
}
