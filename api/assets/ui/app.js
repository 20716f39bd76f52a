// Slipway's web page: plain modules, no build step. It speaks only the
// public /api/v1 with the token the user signs in with (kept in session
// storage, so it goes when the tab does), and shows only the actions that
// token may take. Everything live comes from the API's event streams.

const TOKEN_KEY = "slipway.token";
const LINE_H = 18; // px; must match --line-h in app.css
const OVERSCAN = 30; // log lines rendered above and below the viewport

// ---------------------------------------------------------------- helpers

// Tables turn into cards at phone width (display: block), which makes
// some browsers forget they are tables; explicit roles keep them one.
const TABLE_ROLES = { table: "table", thead: "rowgroup", tbody: "rowgroup", tr: "row", th: "columnheader", td: "cell" };

/** Builds an element; strings become text nodes, never HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  if (TABLE_ROLES[tag]) el.setAttribute("role", TABLE_ROLES[tag]);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function announce(text) {
  const el = document.getElementById("announce");
  el.textContent = "";
  // A fresh text node is announced even when the text repeats.
  requestAnimationFrame(() => (el.textContent = text));
}

/** `owner/name` as two encoded path segments. */
const repoPath = (repo) => repo.split("/").map(encodeURIComponent).join("/");
const short = (sha) => (sha ? sha.slice(0, 8) : "");
const shortDigest = (d) => (d ? d.replace(/^.*@/, "").replace(/^sha256:/, "sha256:").slice(0, 19) : "");

function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  const s = Math.round(ms / 1000);
  if (s < 60) return ms < 10000 ? `${(ms / 1000).toFixed(1)}s` : `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");
const timeEl = (ms) => h("time", { datetime: new Date(ms).toISOString(), title: when(ms), dataset: { ms: String(ms) } }, ago(ms));

const ENDED = (status) => !["queued", "running"].includes(status);
const SYMBOL = {
  success: "✓", succeeded: "✓", failed: "✗", error: "✗", rejected: "✗", running: "●", promoting: "●",
  queued: "○", pending: "○", approved: "●", cancelled: "⊘", skipped: "⊘", expired: "⊘",
  interrupted: "!", timeout: "!",
};
const badge = (status) => h("span", { class: `badge st-${status}` }, `${SYMBOL[status] || ""} ${status}`);

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  get canWrite() {
    return this.me && this.me.scope !== "read";
  },
  approves(repo, env) {
    return (
      this.canWrite &&
      this.me.approver_of.some((a) => a.repo.toLowerCase() === repo.toLowerCase() && a.environment === env)
    );
  },
};

async function api(path, { method = "GET", body, signal, token = session.token } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: "http", message: `${res.status} ${res.statusText}` };
    if (res.status === 401 && token === session.token) signOut(err.message);
    throw new ApiError(res.status, err.code, err.message);
  }
  return data;
}

/**
 * Follows a Server-Sent Events endpoint with fetch, because EventSource
 * cannot send the Authorization header. Reconnects after a dropped
 * connection with Last-Event-ID, so no event is missed or repeated; stops
 * on `end`, or when `signal` aborts.
 */
async function follow(path, signal, onEvent, { after = 0, onOpen = null } = {}) {
  let last = after;
  let wait = 1000;
  while (!signal.aborted) {
    let reader = null;
    try {
      const headers = { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" };
      if (last) headers["Last-Event-ID"] = String(last);
      const res = await fetch(`/api/v1${path}`, { headers, signal });
      if (res.status === 401) return signOut("your token is no longer accepted");
      // Not found or not allowed will not change by asking again.
      if (res.status === 403 || res.status === 404) return;
      if (!res.ok) throw new Error(`${res.status}`);
      wait = 1000;
      // The server subscribes before it answers: state read now misses nothing.
      if (onOpen) onOpen(last > 0);
      reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      let heldCR = false;
      let busySince = performance.now();
      for (;;) {
        // Reads of data already received resolve without giving the page
        // a frame; a long replay would otherwise paint only at its end.
        // (Hidden tabs get no frames anyway, and throttle timers.)
        if (!document.hidden && performance.now() - busySince > 12) {
          await new Promise((r) => setTimeout(r));
          busySince = performance.now();
        }
        const { value, done } = await reader.read();
        if (done) break;
        // Lines may end in CRLF, LF or CR; a CR at a chunk's end may be
        // half of a CRLF, so it waits for the next chunk.
        buf += (heldCR ? "\r" : "") + value;
        heldCR = buf.endsWith("\r");
        if (heldCR) buf = buf.slice(0, -1);
        buf = buf.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let name = "message", id = null, data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") name = val;
            else if (field === "id") id = val;
            else if (field === "data") data.push(val);
          }
          if (name === "end") return;
          if (data.length) onEvent(name, JSON.parse(data.join("\n")));
          // Only once handled: a reconnect resends what failed.
          if (id) last = Number(id);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      console.warn(`event stream ${path}:`, e);
    } finally {
      if (reader) reader.cancel().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 15000);
  }
}

// ---------------------------------------------------------------- sign-in

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  session.token = null;
  session.me = null;
  route(why);
}

function signInPage(why) {
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
      sessionStorage.setItem(TOKEN_KEY, token);
      session.token = token;
      session.me = me;
      route();
    } catch (e) {
      error.hidden = false;
      error.textContent = e.status === 401 ? "That token is not known to this server." : e.message;
      input.focus();
    }
  });
  setTimeout(() => input.focus());
  return { el: form };
}

// ---------------------------------------------------------------- routing

let current = null; // { page, key, cleanup, update }

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
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

async function route(why) {
  const main = document.getElementById("main");
  const signedIn = !!session.token;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  if (!signedIn) {
    if (current && current.cleanup) current.cleanup();
    current = null;
    main.replaceChildren(signInPage(why).el);
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
  const { parts, query } = parseHash();
  const section = parts[0] || "runs";
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const pages = { runs: runsPage, environments: environmentsPage, previews: previewsPage };
  const page = pages[section] || notFoundPage;
  const key = page === runsPage && parts[1] ? `run:${parts[1]}` : `${section}:${query}`;
  // A page that can show the new address in place does (a run page moving
  // to another step or line keeps its graph and stream).
  if (current && current.key === key && current.update && current.update(parts, query)) return;
  if (current && current.cleanup) current.cleanup();
  // A control the new page also has (a filter just changed) keeps focus;
  // otherwise focus moves to the new page, as after a page load.
  const focusedId = document.activeElement && document.activeElement.id;
  const ctl = new AbortController();
  current = { key, cleanup: () => ctl.abort() };
  // Markers the run page sets for tests and styles belong to that page.
  delete document.body.dataset.logPainted;
  delete document.body.dataset.runStatus;
  const view = page(parts, query, ctl.signal);
  current.update = view.update;
  main.replaceChildren(view.el);
  const same = focusedId && document.getElementById(focusedId);
  if (same && main.contains(same)) same.focus();
  else main.focus({ preventScroll: true });
}

function notFoundPage() {
  return { el: h("p", {}, "No such page. ", h("a", { href: "#/runs" }, "See the runs.")) };
}

// ---------------------------------------------------------------- runs

const RUN_STATUSES = ["queued", "running", "success", "failed", "cancelled", "interrupted", "error"];

function runsPage(parts, query, signal) {
  if (parts[1]) return runPage(parts, query, signal);
  const filters = { repo: query.get("repo") || "", status: query.get("status") || "", branch: query.get("branch") || "" };
  const repoSelect = h("select", { id: "f-repo", name: "repo" }, h("option", { value: "" }, "All repositories"));
  const statusSelect = h(
    "select",
    { id: "f-status", name: "status" },
    h("option", { value: "" }, "Any status"),
    RUN_STATUSES.map((st) => h("option", { value: st, selected: st === filters.status }, st)),
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
    if (row && ENDED(row.run.status) && !ENDED(r.status)) return; // an older event
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
      if (!ENDED(row.run.status)) row.tr.querySelector(".dur").textContent = duration(Date.now() - row.run.created_ms);
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

// ---------------------------------------------------------------- a run

/** Columns by longest path from a root; rows ordered near their needs. */
function layout(steps, edges) {
  const needs = new Map(steps.map((st) => [st.name, []]));
  for (const [step, need] of edges) if (needs.has(step) && needs.has(need)) needs.get(step).push(need);
  const level = new Map();
  const visit = (name, seen = new Set()) => {
    if (level.has(name)) return level.get(name);
    if (seen.has(name)) return 0;
    seen.add(name);
    const l = needs.get(name).reduce((m, n) => Math.max(m, visit(n, seen) + 1), 0);
    level.set(name, l);
    return l;
  };
  steps.forEach((st) => visit(st.name));
  const columns = [];
  for (const st of steps) (columns[level.get(st.name)] ||= []).push(st.name);
  const row = new Map();
  columns.forEach((col, c) => {
    if (c > 0) {
      const weight = (n) => {
        const ns = needs.get(n);
        return ns.length ? ns.reduce((a, x) => a + row.get(x), 0) / ns.length : 0;
      };
      col.sort((a, b) => weight(a) - weight(b));
    }
    col.forEach((n, i) => row.set(n, i));
  });
  return { columns, needs, level, row };
}

const NODE_W = 168, NODE_H = 34, GAP_X = 56, GAP_Y = 12, PAD = 12;

function drawGraph(run, onPick) {
  const { columns, needs, level, row } = layout(run.steps, run.edges);
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * GAP_X;
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y;
  const svg = s("svg", {
    class: "graph",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "group",
    "aria-label": `Pipeline graph: ${run.steps.length} steps. Arrow keys move between steps: up and down within a stage, left to what a step needs, right to what needs it.`,
  });
  const at = (n) => ({ x: PAD + level.get(n) * (NODE_W + GAP_X), y: PAD + row.get(n) * (NODE_H + GAP_Y) });
  const edges = s("g");
  for (const [step, ns] of needs) {
    const b = at(step);
    for (const n of ns) {
      const a = at(n);
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mx = (x1 + x2) / 2;
      edges.append(s("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    }
  }
  svg.append(edges);
  const nodes = new Map();
  for (const st of run.steps) {
    const { x, y } = at(st.name);
    // One node is in the tab order (roving tabindex); arrows move within.
    const g = s("g", { class: "node", transform: `translate(${x},${y})`, tabindex: st === run.steps[0] ? "0" : "-1", role: "button", "data-step": st.name });
    const title = s("title");
    const label = s("text", { x: 10, y: 21 });
    g.append(s("rect", { width: NODE_W, height: NODE_H, rx: 6 }), label, title);
    g.addEventListener("click", () => onPick(st.name));
    g.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        onPick(st.name);
        return;
      }
      const next = neighbour(st.name, ev.key);
      if (next) {
        ev.preventDefault();
        focusNode(next);
      }
    });
    nodes.set(st.name, { g, label, title });
    svg.append(g);
  }
  const paint = (st) => {
    const n = nodes.get(st.name);
    if (!n) return;
    n.g.setAttribute("class", `node st-${st.status}${n.g.classList.contains("selected") ? " selected" : ""}`);
    n.g.dataset.status = st.status;
    const name = st.name.length > 19 ? st.name.slice(0, 18) + "…" : st.name;
    n.label.textContent = `${SYMBOL[st.status] || ""} ${name}`;
    const took = st.duration_ms !== undefined && st.duration_ms !== null ? `, ${duration(st.duration_ms)}` : "";
    n.title.textContent = `${st.name}: ${st.status}${took}`;
    n.g.setAttribute("aria-label", `Step ${st.name}: ${st.status}${took}. Show its log.`);
  };
  run.steps.forEach(paint);
  const dependents = (name) => [...needs].filter(([, ns]) => ns.includes(name)).map(([n]) => n);
  const neighbour = (name, key) => {
    const col = columns[level.get(name)];
    const i = row.get(name);
    if (key === "ArrowUp") return col[i - 1];
    if (key === "ArrowDown") return col[i + 1];
    if (key === "ArrowLeft") return needs.get(name)[0];
    if (key === "ArrowRight") return dependents(name)[0];
    if (key === "Home") return run.steps[0] && run.steps[0].name;
    if (key === "End") return run.steps.length && run.steps[run.steps.length - 1].name;
    return null;
  };
  const focusNode = (name) => {
    for (const [n, { g }] of nodes) g.setAttribute("tabindex", n === name ? "0" : "-1");
    const node = nodes.get(name);
    if (node) {
      scrollTo(name);
      node.g.focus();
    }
  };
  // A wide graph scrolls; bring a step into view.
  const scrollTo = (name) => {
    const wrap = svg.parentElement;
    if (wrap && level.has(name)) {
      const { x, y } = at(name);
      if (x < wrap.scrollLeft || x + NODE_W > wrap.scrollLeft + wrap.clientWidth) wrap.scrollLeft = x - (wrap.clientWidth - NODE_W) / 2;
      if (y < wrap.scrollTop || y + NODE_H > wrap.scrollTop + wrap.clientHeight) wrap.scrollTop = y - (wrap.clientHeight - NODE_H) / 2;
    }
  };
  const select = (name) => {
    for (const [n, { g }] of nodes) {
      g.classList.toggle("selected", n === name);
      g.setAttribute("aria-current", n === name ? "true" : "false");
      g.setAttribute("tabindex", n === name ? "0" : "-1");
    }
    scrollTo(name);
  };
  return { svg, paint, select };
}

/** SGR state → CSS classes; other escape sequences are dropped. */
function sgr(state, params) {
  const codes = params === "" ? [0] : params.split(";").map(Number);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) state = {};
    else if (c === 1) state = { ...state, b: 1 };
    else if (c === 2) state = { ...state, d: 1 };
    else if (c === 3) state = { ...state, i: 1 };
    else if (c === 4) state = { ...state, u: 1 };
    else if (c === 22) state = { ...state, b: 0, d: 0 };
    else if (c === 23) state = { ...state, i: 0 };
    else if (c === 24) state = { ...state, u: 0 };
    else if (c >= 30 && c <= 37) state = { ...state, f: c - 30, fx: null };
    else if (c >= 90 && c <= 97) state = { ...state, f: c - 90 + 8, fx: null };
    else if (c === 39) state = { ...state, f: null, fx: null };
    else if (c >= 40 && c <= 47) state = { ...state, bg: c - 40, bx: null };
    else if (c >= 100 && c <= 107) state = { ...state, bg: (c - 100) % 8, bx: null };
    else if (c === 49) state = { ...state, bg: null, bx: null };
    else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
      const n = codes[i + 2];
      const css = xterm(n);
      state = c === 38 ? (n < 16 ? { ...state, f: n, fx: null } : { ...state, f: null, fx: css }) : { ...state, bg: n < 8 ? n : null, bx: n < 8 ? null : css };
      i += 2;
    } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
      const css = `rgb(${codes[i + 2] | 0},${codes[i + 3] | 0},${codes[i + 4] | 0})`;
      state = c === 38 ? { ...state, f: null, fx: css } : { ...state, bg: null, bx: css };
      i += 4;
    }
  }
  return state;
}

function xterm(n) {
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16, steps = [0, 95, 135, 175, 215, 255];
  return `rgb(${steps[Math.floor(i / 36) % 6]},${steps[Math.floor(i / 6) % 6]},${steps[i % 6]})`;
}

const ESC = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][A-Za-z0-9]|\x1b./g;

/** A line's text runs with their ANSI state, escapes removed. */
function segments(raw, state) {
  // A carriage return redraws the line in a terminal: keep what came last.
  // Colours set before the CR still apply to what follows it.
  const line = raw.replace(/\r+$/, "");
  const cut = line.lastIndexOf("\r") + 1;
  const out = [];
  const emit = (from, to) => {
    from = Math.max(from, cut);
    if (to > from) out.push({ text: line.slice(from, to), state });
  };
  let last = 0, m;
  ESC.lastIndex = 0;
  while ((m = ESC.exec(line))) {
    emit(last, m.index);
    if (m[2] === "m") state = sgr(state, m[1]);
    last = ESC.lastIndex;
  }
  emit(last, line.length);
  return { parts: out, end: state };
}

/** A line's text as shown: escapes removed, text a CR overwrote dropped. */
function shown(raw) {
  return raw.includes("\x1b") || raw.includes("\r") ? segments(raw, {}).parts.map((p) => p.text).join("") : raw;
}

function classesOf(st) {
  const c = [];
  if (st.b) c.push("a-b");
  if (st.d) c.push("a-d");
  if (st.i) c.push("a-i");
  if (st.u) c.push("a-u");
  if (st.f !== null && st.f !== undefined) c.push(`f${st.f}`);
  if (st.bg !== null && st.bg !== undefined) c.push(`b${st.bg}`);
  return c.join(" ");
}

/**
 * The log, rendered virtually: only the lines in view (and a margin) are in
 * the page, so fifty thousand lines cost what fifty do. Lines keep their
 * ANSI state from the lines before them, as in a terminal.
 */
class LogView {
  constructor(linkFor) {
    this.linkFor = linkFor;
    this.lines = []; // raw text, without the newline
    this.starts = []; // ANSI state at a line's start, where not plain
    this.state = {};
    this.partial = ""; // a chunk's unterminated tail
    this.target = null;
    this.query = "";
    this.find = null;
    this.findAll = null;
    this.matches = [];
    this.at = -1;
    this.follow = false;
    this.spacer = h("div", { class: "log-spacer" });
    this.rowsEl = h("div", { class: "log-rows" });
    this.empty = h("div", { class: "log-empty" }, "No output yet.");
    this.el = h("div", { class: "log", tabindex: "0", role: "log", "aria-label": "Step log", "aria-live": "off" }, this.empty, this.spacer);
    this.spacer.append(this.rowsEl);
    this.el.addEventListener("scroll", () => {
      this.follow = this.atBottom();
      this.schedule();
    });
    this.pending = false;
    this.shown = [-1, -1];
  }

  atBottom() {
    return this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - LINE_H;
  }

  add(text) {
    if (!text) return;
    const wasBottom = this.follow;
    const all = (this.partial + text).split("\n");
    this.partial = all.pop();
    for (const line of all) {
      if (Object.keys(this.state).length) this.starts[this.lines.length] = this.state;
      this.lines.push(line);
      if (line.includes("\x1b")) this.state = segments(line, this.state).end;
      if (this.find && this.find.test(shown(line))) this.matches.push(this.lines.length - 1);
    }
    this.spacer.style.height = `${this.lines.length * LINE_H}px`;
    this.empty.hidden = this.lines.length > 0;
    // A linked line is scrolled to once, when it arrives; after that the
    // reader scrolls where they like.
    if (this.target && !this.revealed && this.target <= this.lines.length) this.reveal(this.target, false);
    else if (wasBottom) this.el.scrollTop = this.el.scrollHeight;
    this.schedule();
  }

  finish() {
    if (this.partial) this.add("\n");
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  render(force = false) {
    const first = Math.max(0, Math.floor(this.el.scrollTop / LINE_H) - OVERSCAN);
    const last = Math.min(this.lines.length, Math.ceil((this.el.scrollTop + this.el.clientHeight) / LINE_H) + OVERSCAN);
    if (!force && first === this.shown[0] && last === this.shown[1]) return;
    this.shown = [first, last];
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.append(this.row(i));
    this.rowsEl.style.transform = `translateY(${first * LINE_H}px)`;
    this.rowsEl.replaceChildren(frag);
    if (this.onRender) this.onRender(last - first);
  }

  row(i) {
    const n = i + 1;
    const tx = h("span", { class: "tx" });
    const { parts } = segments(this.lines[i], this.starts[i] || {});
    const hits = this.findAll ? this.ranges(parts) : [];
    let offset = 0;
    for (const part of parts) {
      const cls = classesOf(part.state);
      const style = [part.state.fx && `color:${part.state.fx}`, part.state.bx && `background:${part.state.bx}`].filter(Boolean).join(";");
      const span = cls || style ? h("span", { class: cls || undefined }) : null;
      if (span && style) span.style.cssText = style;
      const into = span || tx;
      this.markInto(into, part.text, offset, hits, i === this.matches[this.at]);
      offset += part.text.length;
      if (span) tx.append(span);
    }
    return h(
      "div",
      { class: n === this.target ? "line target" : "line", id: `L${n}` },
      h("a", { class: "ln", href: this.linkFor(n), "aria-label": `Line ${n}`, tabindex: "-1" }, String(n)),
      tx,
    );
  }

  ranges(parts) {
    const text = parts.map((p) => p.text).join("");
    return [...text.matchAll(this.findAll)].map((m) => [m.index, m.index + m[0].length]);
  }

  markInto(el, text, offset, hits, current) {
    let pos = 0;
    for (const [a, b] of hits) {
      const s0 = Math.max(a - offset, pos), s1 = Math.min(b - offset, text.length);
      if (s1 <= s0) continue;
      if (s0 > pos) el.append(text.slice(pos, s0));
      el.append(h("mark", { class: current ? "current" : undefined }, text.slice(s0, s1)));
      pos = s1;
    }
    if (pos < text.length) el.append(text.slice(pos));
  }

  /** Scrolls a line (1-based) into the middle of the view. */
  reveal(n, mark = true) {
    if (mark) this.target = n;
    this.revealed = true;
    this.follow = false; // the reader asked for this line, not the end
    this.el.scrollTop = Math.max(0, (n - 1) * LINE_H - this.el.clientHeight / 2);
    this.render(true);
  }

  /** Searches what is shown (escapes and overwritten text excluded), case-insensitively. */
  search(query) {
    this.query = query;
    const escaped = query.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    this.find = query ? new RegExp(escaped, "i") : null;
    this.findAll = query ? new RegExp(escaped, "gi") : null;
    this.matches = [];
    this.at = -1;
    if (this.find) this.lines.forEach((l, i) => this.find.test(shown(l)) && this.matches.push(i));
    this.render(true);
    return this.matches.length;
  }

  step(dir) {
    if (!this.matches.length) return null;
    const from = Math.floor(this.el.scrollTop / LINE_H);
    if (this.at < 0) this.at = dir > 0 ? Math.max(0, this.matches.findIndex((m) => m >= from)) : this.matches.length - 1;
    else this.at = (this.at + dir + this.matches.length) % this.matches.length;
    const line = this.matches[this.at] + 1;
    this.el.scrollTop = Math.max(0, (line - 1) * LINE_H - this.el.clientHeight / 2);
    this.render(true);
    return { index: this.at + 1, line };
  }
}

function runPage(parts, query, signal) {
  const id = parts[1];
  const el = h("section", { "aria-labelledby": "run-title" }, h("p", { class: "muted" }, "Loading run…"));
  let run = null, graph = null, log = null, stream = null, selected = null;
  const head = h("div");
  const graphWrap = h("div", { class: "graph-wrap" });
  const logPanel = h("section", { class: "log-panel", "aria-labelledby": "log-title" });

  const linkFor = (step) => (n) => `#/runs/${encodeURIComponent(run.id)}/${encodeURIComponent(step)}/L${n}`;

  let shownHead = null;
  const renderHead = () => {
    // Replayed events repeat what is shown; redrawing would swap a button
    // out from under a pointer.
    const key = JSON.stringify([run.status, run.error, run.notes, run.finished_ms]);
    if (key === shownHead) return;
    shownHead = key;
    const focusedId = head.contains(document.activeElement) ? document.activeElement.id : null;
    const ref = run.pull_request ? `PR #${run.pull_request}` : run.branch || run.git_ref || "local run";
    const dur = run.duration_ms ?? (run.finished_ms ? run.finished_ms - run.created_ms : Date.now() - run.created_ms);
    const buttons = [];
    if (session.canWrite && !ENDED(run.status)) buttons.push(h("button", { type: "button", class: "danger", id: "cancel", onclick: () => act("cancel") }, "Cancel run"));
    if (session.canWrite && ENDED(run.status) && run.repo) {
      buttons.push(h("button", { type: "button", id: "rerun", onclick: () => act("rerun") }, "Rerun"));
      if (run.status !== "success") buttons.push(h("button", { type: "button", id: "rerun-failed", onclick: () => act("rerun?failed=true") }, "Rerun failed steps"));
    }
    head.replaceChildren(
      ...[
      h(
        "div",
        { class: "run-head" },
        h("h1", { id: "run-title", tabindex: "-1" }, `Run `, h("span", { class: "mono" }, run.id), " ", badge(run.status)),
        h(
          "dl",
          {},
          [
            ["Pipeline", run.pipeline],
            ["Repository", run.repo || "local"],
            ["Ref", ref],
            ["Commit", h("span", { class: "mono", title: run.sha || "" }, short(run.sha))],
            ["Trigger", run.event],
            ["Started", timeEl(run.created_ms)],
            ["Duration", h("span", { id: "run-duration" }, duration(dur))],
          ].map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
        ),
      ),
      run.error ? h("p", { class: "error" }, run.error) : null,
      run.notes && run.notes.length ? h("ul", { class: "notes", "aria-label": "Notes" }, run.notes.map((n) => h("li", {}, n))) : null,
      buttons.length ? h("div", { class: "actions" }, buttons) : null,
      ].filter(Boolean),
    );
    // A button that went (Cancel, once the run ended) hands focus to the title.
    if (focusedId) (document.getElementById(focusedId) || document.getElementById("run-title")).focus();
  };

  const act = async (what) => {
    try {
      const res = await api(`/runs/${encodeURIComponent(run.id)}/${what}`, { method: "POST" });
      if (res && res.run && res.run !== run.id) {
        announce(`Queued run ${res.run}`);
        location.hash = `#/runs/${encodeURIComponent(res.run)}`;
      } else announce(`Run ${run.id}: ${res ? res.status : "done"}`);
    } catch (e) {
      announce(e.message);
      head.append(h("p", { class: "error", role: "alert" }, e.message));
    }
  };

  const pick = (step) => {
    location.hash = `#/runs/${encodeURIComponent(run.id)}/${encodeURIComponent(step)}`;
  };

  const byName = (name) => run.steps.find((st) => st.name === name);

  // Each stream replays the run from its start (so a newly shown step's
  // log comes whole). Run, step and note events already applied are
  // skipped by seq; the notes the first GET returned are skipped by count
  // (the replay sends them first, in order); and nothing that has ended
  // is shown as going again, so a replay never flickers old states.
  let applied = 0;
  let notesToSkip = 0; // set when the run is read
  const settled = (status) => !["pending", "queued", "running"].includes(status);
  // States only move forward: pending/queued, running, then an end.
  const rank = (status) => (status === "pending" || status === "queued" ? 0 : status === "running" ? 1 : 2);
  const backwards = (now, ev) => rank(ev) < rank(now);
  // Steps that ended since the page read the run: their outputs are read
  // again when shown.
  const stale = new Set();
  signal.addEventListener("abort", () => stream && stream.abort());

  // One stream per shown step: the run's state and that step's log lines.
  const listen = (step) => {
    if (stream) stream.abort();
    stream = new AbortController();
    const mine = stream.signal;
    const logs = step ? encodeURIComponent(step) : "";
    let firstLog = true;
    follow(`/runs/${encodeURIComponent(run.id)}/events?logs=${logs}`, mine, (name, ev) => {
      if (mine.aborted) return;
      if (name !== "log") {
        if (ev.seq <= applied) return;
        applied = ev.seq;
      }
      if (name === "run") {
        if (backwards(run.status, ev.status)) return;
        Object.assign(run, { status: ev.status, error: ev.error, finished_ms: ev.finished_ms, duration_ms: ev.finished_ms ? ev.finished_ms - run.created_ms : null });
        renderHead();
        document.body.dataset.runStatus = run.status;
      } else if (name === "step") {
        const st = byName(ev.step);
        if (!st || backwards(st.status, ev.status)) return;
        Object.assign(st, { status: ev.status, exit_code: ev.exit_code, started_ms: ev.started_ms, finished_ms: ev.finished_ms, duration_ms: ev.started_ms && ev.finished_ms ? ev.finished_ms - ev.started_ms : null });
        graph.paint(st);
        if (ev.step === selected) {
          renderLogStatus(st);
          // A step that ended may have left a last line without a newline,
          // and an image or files.
          if (settled(st.status) && log) log.finish();
          if (settled(st.status)) refreshOutputs(st.name);
        } else if (settled(st.status)) {
          stale.add(st.name);
        }
      } else if (name === "note") {
        if (notesToSkip > 0) {
          notesToSkip--;
          return;
        }
        run.notes = [...(run.notes || []), ev.text];
        renderHead();
      } else if (name === "log" && ev.step === selected && log) {
        log.add(ev.text);
        if (firstLog) {
          firstLog = false;
          // After the frame that draws them: rAF runs before paint, the
          // timeout after it.
          requestAnimationFrame(() =>
            setTimeout(() => {
              performance.mark("slipway:log-painted");
              document.body.dataset.logPainted = "1";
            }),
          );
        }
      }
    }).then(() => {
      if (!mine.aborted && log) log.finish();
    });
  };

  const status = h("span", { id: "log-status" });

  // What a step left: the image it pushed and the files it kept.
  const outputs = h("div", { class: "outputs", id: "step-outputs" });
  const renderOutputs = (st) => {
    const items = [];
    if (st.output) items.push(h("div", {}, h("strong", {}, "Image "), h("span", { class: "mono digest" }, st.output)));
    if (st.artifacts && st.artifacts.length) {
      items.push(
        h(
          "div",
          {},
          h("strong", {}, "Artifacts "),
          st.artifacts.map((a) =>
            h("button", { type: "button", class: "link", "data-artifact": a.path, onclick: () => downloadArtifact(st.name, a.path) }, `${a.path} (${size(a.size)})`),
          ),
        ),
      );
    }
    outputs.replaceChildren(...items);
  };
  // A link cannot carry the token, so files are fetched and handed to the
  // browser as downloads.
  const saveAs = (name, blob) => {
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  };
  const failed = (e) => {
    announce(e.message);
    outputs.append(h("p", { class: "error", role: "alert" }, e.message));
  };
  const downloadArtifact = async (step, path) => {
    const url = `/api/v1/runs/${encodeURIComponent(run.id)}/artifacts/${encodeURIComponent(step)}/${path.split("/").map(encodeURIComponent).join("/")}`;
    try {
      const res = await fetch(url, { headers: { Authorization: `Bearer ${session.token}` } });
      if (!res.ok) throw new Error(`${path}: ${res.status} ${res.statusText}`);
      saveAs(path.split("/").pop(), await res.blob());
    } catch (e) {
      failed(e);
    }
  };
  // The whole log as stored, escapes and all, as a terminal would want it.
  const downloadLog = async (step) => {
    try {
      const chunk = await api(`/runs/${encodeURIComponent(run.id)}/logs/${encodeURIComponent(step)}`, { signal });
      saveAs(`${run.id}-${step.replace(/[^A-Za-z0-9._-]/g, "_")}.log`, new Blob([chunk.text], { type: "text/plain" }));
    } catch (e) {
      failed(e);
    }
  };
  // Outputs are recorded when a step ends; the run is read again for them.
  const refreshOutputs = (name) =>
    api(`/runs/${encodeURIComponent(run.id)}`, { signal })
      .then((fresh) => {
        const now = fresh.steps.find((x) => x.name === name);
        const st = byName(name);
        if (!now || !st) return;
        Object.assign(st, { output: now.output, artifacts: now.artifacts });
        if (selected === name) renderOutputs(st);
      })
      .catch(() => {});
  const renderLogStatus = (st) => status.replaceChildren(badge(st.status), st.exit_code !== null && st.exit_code !== undefined ? ` exit ${st.exit_code}` : "");

  const showStep = (step, line) => {
    const st = byName(step);
    if (!st) {
      logPanel.replaceChildren(h("p", { class: "error" }, `This run has no step “${step}”.`));
      // Nothing is shown, so a click on the old step must show it again.
      selected = null;
      log = null;
      listen(null);
      return;
    }
    graph.select(step);
    if (selected === step && log) {
      if (line) log.reveal(line);
      return;
    }
    if (stale.delete(step)) refreshOutputs(step);
    selected = step;
    log = new LogView(linkFor(step));
    log.follow = !settled(st.status);
    if (line) log.target = line;
    const search = h("input", { id: "log-search", type: "search", placeholder: "Search the log", "aria-describedby": "log-found" });
    const found = h("span", { id: "log-found", class: "muted", "aria-live": "polite" });
    const findNext = (dir) => {
      const hit = log.step(dir);
      found.textContent = hit ? `${hit.index} of ${log.matches.length} (line ${hit.line})` : log.query ? "no matches" : "";
    };
    let debounce = null;
    search.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        const n = log.search(search.value);
        found.textContent = search.value ? `${n} matching line${n === 1 ? "" : "s"}` : "";
      }, 120);
    });
    search.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        ev.preventDefault();
        clearTimeout(debounce);
        if (log.query !== search.value) log.search(search.value);
        findNext(ev.shiftKey ? -1 : 1);
      }
    });
    const bottom = h("button", { type: "button", onclick: () => { log.follow = true; log.el.scrollTop = log.el.scrollHeight; } }, "Jump to end");
    const raw = h("button", { type: "button", id: "log-download", onclick: () => downloadLog(step) }, "Download log");
    renderLogStatus(st);
    renderOutputs(st);
    logPanel.replaceChildren(
      h(
        "div",
        { class: "log-bar" },
        h("h2", { id: "log-title" }, "Log: ", h("span", { class: "mono" }, step)),
        status,
        h("label", { for: "log-search", class: "visually-hidden" }, "Search the log"),
        search,
        h("button", { type: "button", onclick: () => findNext(-1), "aria-label": "Previous match" }, "↑"),
        h("button", { type: "button", onclick: () => findNext(1), "aria-label": "Next match" }, "↓"),
        found,
        bottom,
        raw,
      ),
      outputs,
      log.el,
    );
    listen(step);
  };

  const update = (p) => {
    if (!run) return false;
    if (p[2]) showStep(p[2], p[3] && /^L\d+$/.test(p[3]) ? Number(p[3].slice(1)) : null);
    return true;
  };

  api(`/runs/${encodeURIComponent(id)}`, { signal })
    .then((r) => {
      run = r;
      notesToSkip = (run.notes || []).length;
      // Opened by a prefix of the id: links now carry the whole id, and
      // must still count as this page.
      if (!signal.aborted && run.id !== id && current) current.key = `run:${run.id}`;
      document.title = `Run ${run.id} · Slipway`;
      document.body.dataset.runStatus = run.status;
      renderHead();
      graph = drawGraph(run, pick);
      graphWrap.replaceChildren(graph.svg);
      el.replaceChildren(head, h("h2", { class: "visually-hidden" }, "Steps"), graphWrap, logPanel);
      requestAnimationFrame(() => setTimeout(() => performance.mark("slipway:graph-painted")));
      const step = parts[2] || (run.steps.find((st) => st.status === "failed") || run.steps.find((st) => st.status === "running") || {}).name;
      if (step) showStep(step, parts[3] && /^L\d+$/.test(parts[3]) ? Number(parts[3].slice(1)) : null);
      else {
        logPanel.replaceChildren(h("p", { class: "muted" }, "Choose a step in the graph to see its log."));
        listen(null);
      }
    })
    .catch((e) => {
      if (!signal.aborted) el.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    });
  const tick = setInterval(() => {
    if (run && !ENDED(run.status)) {
      const d = document.getElementById("run-duration");
      if (d) d.textContent = duration(Date.now() - run.created_ms);
    }
  }, 1000);
  signal.addEventListener("abort", () => clearInterval(tick));
  return { el, update };
}

// ---------------------------------------------------------------- environments

function environmentsPage(parts, query, signal) {
  const el = h("section", { "aria-labelledby": "env-title" }, h("h1", { id: "env-title" }, "Environments"));
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  el.append(body);
  document.title = "Environments · Slipway";
  api("/repos", { signal })
    .then((repos) => {
      const withEnvs = repos.filter((r) => r.environments.length);
      // Only a repository the server lists: the name goes into API paths.
      const asked = parts[1] && parts[2] ? `${parts[1]}/${parts[2]}`.toLowerCase() : null;
      const known = withEnvs.find((r) => r.name.toLowerCase() === asked);
      if (asked && !known) {
        body.replaceChildren(h("p", { class: "error", role: "alert" }, `No repository “${parts[1]}/${parts[2]}” with environments here.`));
        return;
      }
      const chosen = known ? known.name : withEnvs.length ? withEnvs[0].name : null;
      if (!chosen) {
        body.replaceChildren(h("p", { class: "muted" }, "No repository has environments configured ([[repos.environments]] in slipway.toml)."));
        return;
      }
      const select = h(
        "select",
        { id: "env-repo" },
        withEnvs.map((r) => h("option", { value: r.name, selected: r.name.toLowerCase() === chosen.toLowerCase() }, r.name)),
      );
      select.addEventListener("change", () => (location.hash = `#/environments/${repoPath(select.value)}`));
      const board = h("div", { class: "board", id: "board" });
      const audit = h("div", { id: "audit" });
      body.replaceChildren(
        h("div", { class: "filters" }, h("div", { class: "field" }, h("label", { for: "env-repo" }, "Repository"), select)),
        board,
        h("h2", {}, "Audit trail"),
        audit,
      );
      environmentBoard(chosen, board, audit, signal);
    })
    .catch((e) => {
      if (!signal.aborted) body.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    });
  return { el };
}

function environmentBoard(repo, board, audit, signal) {
  const drafts = new Map(); // comment text typed but not sent survives refreshes
  const openHistory = new Set(); // histories the user opened stay open
  let busy = false, again = false;
  const refresh = async () => {
    if (signal.aborted) return;
    // One fetch at a time; a change seen meanwhile fetches once more after.
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const [envs, trail, promotions] = await Promise.all([
        api(`/repos/${repoPath(repo)}/environments`, { signal }),
        api(`/audit?repo=${encodeURIComponent(repo)}`, { signal }),
        api(`/promotions?repo=${encodeURIComponent(repo)}`, { signal }),
      ]);
      // The last promotion here to close, if it failed: it matters until
      // something newer closes (lands, is rejected, expires).
      const ended = (p) => p.finished_ms || p.created_ms;
      for (const env of envs) {
        const last = promotions
          .filter((p) => p.environment === env.name && !["pending", "approved", "promoting"].includes(p.status))
          .reduce((a, b) => (!a || ended(b) > ended(a) ? b : a), null);
        env.failed = !env.pending && last && last.status === "failed" ? last : null;
      }
      const focused = document.activeElement && document.activeElement.id;
      board.replaceChildren(...envs.map((env) => environmentCard(repo, env, envs, drafts, refresh, openHistory)));
      audit.replaceChildren(auditTable(trail));
      const refocus = focused && document.getElementById(focused);
      if (refocus) {
        refocus.focus();
        // A comment being typed keeps its caret at the end.
        if (refocus.tagName === "TEXTAREA") refocus.selectionStart = refocus.selectionEnd = refocus.value.length;
      }
    } catch (e) {
      if (!signal.aborted) board.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  };
  refresh();
  // Every change to a promotion or an environment writes an audit entry;
  // the board redraws when one arrives.
  // Read again whenever the stream (re)opens: nothing changed between the
  // first read and the subscription goes unseen.
  follow(
    `/audit/events?repo=${encodeURIComponent(repo)}`,
    signal,
    (name, entry) => {
      if (name !== "audit") return;
      refresh();
      announce(`${entry.user} ${entry.action} ${entry.environment}`);
    },
    { onOpen: () => refresh() },
  );
}

function environmentCard(repo, env, all, drafts, refresh, openHistory) {
  const now = env.current;
  const policy = env.auto
    ? "Promoted automatically from the default branch"
    : `From ${env.from || "any"} · ${env.approvals} approval${env.approvals === 1 ? "" : "s"}${env.approvers.length ? ` (${env.approvers.join(", ")})` : ""}`;
  const card = h(
    "article",
    { class: "card env", "aria-labelledby": `env-${env.name}`, dataset: { env: env.name } },
    h("h2", { id: `env-${env.name}` }, env.name, h("span", { class: "muted mono" }, `:${env.tag}`)),
    h("p", { class: "muted" }, policy),
    now
      ? h(
          "div",
          { class: "now", dataset: { digest: now.digest } },
          h("div", {}, h("strong", {}, "Digest "), h("span", { class: "mono digest", title: now.image }, shortDigest(now.digest))),
          h("div", {}, h("strong", {}, "Commit "), h("span", { class: "mono", title: now.sha || "" }, short(now.sha) || "unknown")),
          now.run ? h("div", {}, h("strong", {}, "Run "), h("a", { href: `#/runs/${encodeURIComponent(now.run)}`, class: "mono" }, now.run)) : null,
          h("div", {}, h("strong", {}, "Since "), timeEl(now.promoted_ms)),
        )
      : h("p", { class: "now muted" }, "Nothing promoted here yet."),
  );
  const p = env.pending;
  if (p) card.append(pendingBox(repo, env, p, drafts, refresh));
  else if (env.failed) card.append(failedBox(env.failed, refresh));
  if (!p && session.canWrite && env.from) {
    const source = all.find((e) => e.name === env.from);
    if (source && source.current && (!now || now.digest !== source.current.digest)) {
      const msg = h("p", { role: "status" });
      card.append(
        h(
          "div",
          { class: "actions" },
          h(
            "button",
            {
              type: "button",
              id: `request-${env.name}`,
              onclick: async () => {
                try {
                  await api(`/repos/${repoPath(repo)}/promotions`, { method: "POST", body: { to: env.name } });
                  announce(`Promotion to ${env.name} requested`);
                  refresh();
                } catch (e) {
                  msg.className = "error";
                  msg.textContent = e.message;
                }
              },
            },
            `Request promotion of ${env.from}'s ${shortDigest(source.current.digest)}`,
          ),
        ),
        msg,
      );
    }
  }
  if (env.history.length > 1) {
    const details = h("details", { open: openHistory.has(env.name) });
    details.addEventListener("toggle", () => (details.open ? openHistory.add(env.name) : openHistory.delete(env.name)));
    append(details, [
      h("summary", {}, `History (${env.history.length})`),
      h(
        "ol",
        {},
        env.history.map((st) =>
          h("li", {}, h("span", { class: "mono", title: st.digest }, shortDigest(st.digest)), " · ", h("span", { class: "mono" }, short(st.sha)), " · ", timeEl(st.promoted_ms)),
        ),
      ),
    ]);
    card.append(details);
  }
  return card;
}

/** The last promotion here failed: why, and (for writers) Retry. */
function failedBox(p, refresh) {
  const msg = h("p", { role: "status" });
  const box = h(
    "div",
    { class: "pending failed", id: `promotion-${p.id}`, dataset: { promotion: p.id, status: p.status } },
    h("h3", {}, "Promotion ", badge(p.status)),
    h("div", {}, h("span", { class: "mono", title: p.digest }, shortDigest(p.digest)), p.sha ? ` · commit ${short(p.sha)}` : ""),
    h("p", { class: "error" }, p.error || "failed"),
  );
  if (session.canWrite) {
    box.append(
      h(
        "div",
        { class: "actions" },
        h(
          "button",
          {
            type: "button",
            id: `retry-${p.id}`,
            onclick: async () => {
              try {
                await api(`/promotions/${encodeURIComponent(p.id)}/retry`, { method: "POST" });
                announce("Promotion retried");
                refresh();
              } catch (e) {
                msg.className = "error";
                msg.textContent = e.message;
              }
            },
          },
          "Retry",
        ),
      ),
      msg,
    );
  }
  return box;
}

function pendingBox(repo, env, p, drafts, refresh) {
  const approvedBy = p.approvals.map((a) => a.user);
  const box = h(
    "div",
    { class: "pending", id: `promotion-${p.id}`, dataset: { promotion: p.id, status: p.status } },
    h("h3", {}, "Promotion ", badge(p.status)),
    h("div", {}, h("span", { class: "mono", title: p.digest }, shortDigest(p.digest)), p.sha ? ` · commit ${short(p.sha)}` : "", p.from ? ` · from ${p.from}` : ""),
    h("div", {}, `Requested by ${p.requested_by} `, timeEl(p.created_ms)),
    h("div", {}, `Approvals: ${p.approvals.length} of ${env.approvals}${approvedBy.length ? ` (${approvedBy.join(", ")})` : ""}`),
    p.status === "pending" ? h("div", { class: "muted" }, `Expires ${new Date(p.expires_ms).toLocaleString()}`) : null,
    p.error ? h("p", { class: "error" }, p.error) : null,
  );
  const me = session.me.user;
  const ownRequest = env.prevent_self_approval && (p.requested_by === me || p.author === me);
  if (p.status === "pending" && session.approves(repo, env.name) && !approvedBy.includes(me) && !ownRequest) {
    const cid = `comment-${p.id}`;
    const comment = h("textarea", { id: cid, rows: "2" });
    comment.value = drafts.get(p.id) || "";
    comment.addEventListener("input", () => drafts.set(p.id, comment.value));
    const msg = h("p", { role: "status" });
    const decide = (what) => async () => {
      try {
        await api(`/promotions/${encodeURIComponent(p.id)}/${what}`, { method: "POST", body: { comment: comment.value || null } });
        drafts.delete(p.id);
        announce(`${what === "approve" ? "Approved" : "Rejected"} the promotion to ${env.name}`);
        refresh();
      } catch (e) {
        msg.className = "error";
        msg.textContent = e.message;
      }
    };
    box.append(
      h("div", { class: "field" }, h("label", { for: cid }, "Comment (optional)"), comment),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "primary", id: `approve-${p.id}`, onclick: decide("approve") }, "Approve"),
        h("button", { type: "button", class: "danger", id: `reject-${p.id}`, onclick: decide("reject") }, "Reject"),
      ),
      msg,
    );
  } else if (p.status === "pending" && approvedBy.includes(me)) {
    box.append(h("p", { class: "muted" }, "You approved this; waiting for others."));
  } else if (p.status === "pending" && ownRequest && session.approves(repo, env.name)) {
    box.append(h("p", { class: "muted" }, p.requested_by === me ? "You asked for this; another approver decides." : "You wrote this change; another approver decides."));
  }
  return box;
}

function auditTable(trail) {
  if (!trail.length) return h("p", { class: "muted" }, "No promotion activity yet.");
  return h(
    "table",
    { class: "list" },
    h("caption", { class: "visually-hidden" }, "Audit trail, newest first"),
    h("thead", {}, h("tr", {}, ["When", "Who", "Action", "Environment", "Digest", "Comment"].map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      [...trail].reverse().map((a) =>
        h(
          "tr",
          {},
          h("td", { "data-label": "When" }, timeEl(a.at_ms)),
          h("td", { "data-label": "Who" }, a.user),
          h("td", { "data-label": "Action" }, a.action),
          h("td", { "data-label": "Environment" }, a.environment),
          h("td", { "data-label": "Digest", class: "mono", title: a.digest }, shortDigest(a.digest)),
          h("td", { "data-label": "Comment", class: "wrap" }, a.comment || ""),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------- previews

function previewsPage(parts, query, signal) {
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

// ---------------------------------------------------------------- start

document.getElementById("sign-out").addEventListener("click", () => signOut());
// The skip link must not change the hash: the hash is the page's address.
document.getElementById("skip").addEventListener("click", (ev) => {
  ev.preventDefault();
  document.getElementById("main").focus();
});
window.addEventListener("hashchange", () => route());
route();
