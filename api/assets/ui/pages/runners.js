// The runners page: the built-in runner and every registered remote
// runner, with their labels, busy slots, health and current runs; read
// again every two seconds (runners report by heartbeat, not by event).

import { api } from "../api.js";
import { h, timeEl } from "../dom.js";

export function runnersPage(parts, query, signal) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const el = h("section", { "aria-labelledby": "runners-title" }, h("h1", { id: "runners-title" }, "Runners"), body);
  document.title = "Runners · Slipway";
  let latest = 0;
  const refresh = async () => {
    const mine = ++latest;
    try {
      const list = await api("/runners", { signal });
      if (mine !== latest) return;
      body.replaceChildren(
        h(
          "table",
          { class: "list", id: "runners" },
          h("caption", { class: "visually-hidden" }, "Runners"),
          h("thead", {}, h("tr", {}, ["Name", "State", "Labels", "Busy", "Version", "Last seen", "Runs"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, list.map(runnerRow)),
        ),
        list.some((r) => !r.builtin) ? null : h("p", { class: "muted" }, "No remote runners. An admin adds one with `slipway runners add NAME`."),
      );
    } catch (e) {
      if (mine === latest && !signal.aborted) body.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  };
  refresh();
  const timer = setInterval(refresh, 2000);
  signal.addEventListener("abort", () => clearInterval(timer));
  return { el };
}

/** What a runner's state cell says: unhealthy wins over online. */
export function runnerState(r) {
  if (r.unhealthy) return { word: "unhealthy", title: r.unhealthy };
  return r.online ? { word: "online", title: "" } : { word: "offline", title: "not heard from within its lease" };
}

function runnerRow(r) {
  const state = runnerState(r);
  return h(
    "tr",
    { dataset: { runner: r.name } },
    h("td", { "data-label": "Name" }, r.builtin ? `${r.name} (this server)` : r.name),
    h("td", { "data-label": "State", title: state.title, class: `runner-${state.word}` }, state.word),
    h("td", { "data-label": "Labels" }, r.labels.length ? r.labels.join(", ") : "—"),
    h("td", { "data-label": "Busy" }, `${r.busy} / ${r.capacity}`),
    h("td", { "data-label": "Version", class: "mono" }, r.version || "—"),
    h("td", { "data-label": "Last seen" }, r.last_seen_ms ? timeEl(r.last_seen_ms) : "never"),
    h(
      "td",
      { "data-label": "Runs" },
      r.runs.length ? r.runs.map((id) => h("a", { href: `#/runs/${encodeURIComponent(id)}`, class: "mono" }, id, " ")) : "—",
    ),
  );
}
