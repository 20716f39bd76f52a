// The runs page: every run, newest first, filtered by repository, status
// and branch, updated live; writers may start a run from it.

import { api, follow, session } from "../api.js";
import { announce, badge, h, timeEl } from "../dom.js";
import { duration, short } from "../format.js";
import { RUN_STATUSES, runEnded, statusLabel } from "../status.js";
import { runPage } from "./run.js";

/** `#/runs` (with filters in the query), or one run at `#/runs/ID/...`. */
export function runsPage(parts, query, signal, ctx) {
  if (parts[1]) return runPage(parts, query, signal, ctx);
  const filters = { repo: query.get("repo") || "", status: query.get("status") || "", branch: query.get("branch") || "" };
  const repoSelect = h("select", { id: "f-repo", name: "repo" }, h("option", { value: "" }, "All repositories"));
  const statusSelect = h(
    "select",
    { id: "f-status", name: "status" },
    h("option", { value: "" }, "Any status"),
    RUN_STATUSES.map((st) => h("option", { value: st, selected: st === filters.status }, statusLabel(st))),
  );
  const branchInput = h("input", { id: "f-branch", name: "branch", value: filters.branch, placeholder: "main" });
  const apply = () => {
    const q = new URLSearchParams();
    if (repoSelect.value) q.set("repo", repoSelect.value);
    if (statusSelect.value) q.set("status", statusSelect.value);
    if (branchInput.value.trim()) q.set("branch", branchInput.value.trim());
    location.hash = `#/runs${q.toString() ? "?" + q : ""}`;
  };
  repoSelect.addEventListener("change", apply);
  statusSelect.addEventListener("change", apply);
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter runs" },
    h("div", { class: "field" }, h("label", { for: "f-repo" }, "Repository"), repoSelect),
    h("div", { class: "field" }, h("label", { for: "f-status" }, "Status"), statusSelect),
    h("div", { class: "field" }, h("label", { for: "f-branch" }, "Branch"), branchInput),
    h("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    apply();
  });
  // Writers may start a run of what a branch or tag points at now.
  const triggerBox = h("form", { class: "filters", "aria-label": "Start a run" });
  const trigger = h("details", { id: "trigger", class: "trigger", hidden: true }, h("summary", {}, "Start a run…"), triggerBox);
  api("/repos", { signal })
    .then((repos) => {
      for (const r of repos) repoSelect.append(h("option", { value: r.name, selected: r.name === filters.repo }, r.name));
      if (session.canWrite && repos.length) {
        triggerForm(repos, triggerBox);
        trigger.hidden = false;
      }
    })
    .catch(() => {});

  const tbody = h("tbody", { id: "runs-body" });
  const table = h(
    "table",
    { class: "list", id: "runs" },
    h("caption", { class: "visually-hidden" }, "Runs, newest first, updated live"),
    h("thead", {}, h("tr", {}, ["Status", "Run", "Repository", "Ref", "Commit", "Trigger", "Started", "Duration"].map((c) => h("th", { scope: "col" }, c)))),
    tbody,
  );
  const more = h("button", { type: "button", hidden: true }, "Load older runs");
  const empty = h("p", { class: "muted", hidden: true }, "No runs yet. Push to a configured repository, or trigger one with `slipway trigger`.");
  const rows = new Map();
  let next = null;

  const matches = (r) =>
    (!filters.repo || (r.repo || "").toLowerCase() === filters.repo.toLowerCase()) &&
    (!filters.status || r.status === filters.status) &&
    (!filters.branch || r.branch === filters.branch);

  const cells = (r) => {
    const ref = r.pull_request ? `PR #${r.pull_request}` : r.branch || (r.git_ref || "").replace(/^refs\/tags\//, "tag ") || "local";
    const dur = r.finished_ms ? r.finished_ms - r.created_ms : Date.now() - r.created_ms;
    return [
      h("td", { "data-label": "Status" }, badge(r.status)),
      h("td", { "data-label": "Run" }, h("a", { href: `#/runs/${encodeURIComponent(r.id)}` }, h("span", { class: "mono" }, r.id)), " ", h("span", { class: "muted" }, r.pipeline)),
      h("td", { "data-label": "Repository" }, r.repo || "local"),
      h("td", { "data-label": "Ref", class: "wrap" }, ref),
      h("td", { "data-label": "Commit", class: "mono", title: r.sha || "" }, short(r.sha)),
      h("td", { "data-label": "Trigger" }, r.event),
      h("td", { "data-label": "Started" }, timeEl(r.created_ms)),
      h("td", { "data-label": "Duration", class: "dur" }, duration(dur)),
    ];
  };

  /** Adds or updates a row; `live` rows go where their start time puts them. */
  const put = (r, { live = false } = {}) => {
    let row = rows.get(r.id);
    if (row && runEnded(row.run.status) && !runEnded(r.status)) return; // an older event
    if (!row) {
      if (!matches(r)) return;
      row = { tr: h("tr", { dataset: { run: r.id } }), run: r };
      if (live) {
        const after = [...tbody.children].find((tr) => rows.get(tr.dataset.run).run.created_ms < r.created_ms);
        // Older than every row shown while older pages exist: it belongs
        // to a page not loaded yet, and comes with it.
        if (!after && next) return;
        tbody.insertBefore(row.tr, after || null);
        row.tr.classList.add("fresh");
      } else tbody.append(row.tr);
      rows.set(r.id, row);
    }
    row.run = { ...row.run, ...r };
    if (!matches(row.run)) {
      // It left the filter (a status filter, say): it goes from the list.
      row.tr.remove();
      rows.delete(r.id);
    } else {
      row.tr.dataset.status = row.run.status;
      row.tr.replaceChildren(...cells(row.run));
    }
    empty.hidden = rows.size > 0;
  };

  const error = h("p", { class: "error", role: "alert", hidden: true });
  const showError = (e) => {
    if (signal.aborted) return;
    error.hidden = false;
    error.textContent = e.message;
  };
  // Each (re)load is a generation; an older one still in flight draws nothing.
  let generation = 0;
  const load = async (cursor) => {
    const mine = generation;
    const q = new URLSearchParams({ limit: "50" });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (cursor) q.set("cursor", cursor);
    const page = await api(`/runs?${q}`, { signal });
    if (mine !== generation) return;
    for (const r of page.runs) put(r);
    next = page.next;
    more.hidden = !next;
    empty.hidden = rows.size > 0;
  };
  more.addEventListener("click", () => load(next).catch(showError));

  // Subscribe first, then read the list: events from the moment the feed
  // opened wait in `early` until the list is drawn, then apply in order,
  // so no change falls between the two. A feed that opens without resuming
  // (first time, or the server forgot where we were) means a fresh read.
  let early = null;
  const applyEvent = (ev) => {
    const known = rows.has(ev.run);
    put({ id: ev.run, ...ev }, { live: true });
    if (!known && rows.has(ev.run) && ev.status === "queued") announce(`New run ${ev.run} on ${ev.repo || "local"}`);
  };
  const reload = () => {
    generation++;
    const mine = generation;
    early = [];
    rows.clear();
    tbody.replaceChildren();
    next = null;
    load()
      .then(() => {
        if (mine !== generation) return;
        const waiting = early;
        early = null;
        waiting.forEach(applyEvent);
      })
      .catch(showError);
  };
  let opened = false;
  // Should the feed not open, the list is still shown, just not live.
  const fallback = setTimeout(() => opened || reload(), 3000);
  signal.addEventListener("abort", () => clearTimeout(fallback));
  follow(
    "/events",
    signal,
    (name, ev) => {
      if (name !== "run") return;
      if (early) early.push(ev);
      else applyEvent(ev);
    },
    {
      onOpen: (resumed) => {
        opened = true;
        if (!resumed) reload();
      },
    },
  );
  // Running runs' durations tick.
  const tick = setInterval(() => {
    for (const row of rows.values()) {
      if (!runEnded(row.run.status)) row.tr.querySelector(".dur").textContent = duration(Date.now() - row.run.created_ms);
    }
  }, 1000);
  signal.addEventListener("abort", () => clearInterval(tick));
  document.title = "Runs · Slipway";
  return { el: h("section", { "aria-labelledby": "runs-title" }, h("h1", { id: "runs-title" }, "Runs"), trigger, form, error, table, empty, more) };
}

/** Fills the (hidden) trigger form: repository, ref, Start. */
function triggerForm(repos, form) {
  const repo = h("select", { id: "t-repo" }, repos.map((r) => h("option", { value: r.name }, r.name)));
  const ref = h("input", { id: "t-ref", required: true, placeholder: "main, v1.2.0 or refs/…", value: repos[0].default_branch || "" });
  repo.addEventListener("change", () => {
    const r = repos.find((x) => x.name === repo.value);
    if (r && r.default_branch) ref.value = r.default_branch;
  });
  const msg = h("p", { role: "status" });
  const submit = h("button", { type: "submit", class: "primary" }, "Start run");
  form.replaceChildren(
    h("div", { class: "field" }, h("label", { for: "t-repo" }, "Run repository"), repo),
    h("div", { class: "field" }, h("label", { for: "t-ref" }, "at branch, tag or ref"), ref),
    submit,
    msg,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (submit.disabled) return; // one run per click, however fast the clicks
    submit.disabled = true;
    try {
      const res = await api("/trigger", { method: "POST", body: { repo: repo.value, ref: ref.value.trim() } });
      location.hash = `#/runs/${encodeURIComponent(res.run)}`;
    } catch (e) {
      msg.className = "error";
      msg.textContent = e.message;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
