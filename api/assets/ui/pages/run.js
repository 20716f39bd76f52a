// A run's page: its head (status, ref, actions), its pipeline graph, and
// the log of the step shown, all live from one event stream per shown
// step.

import { api, download, follow, session } from "../api.js";
import { announce, badge, h, timeEl } from "../dom.js";
import { duration, short, size } from "../format.js";
import { drawGraph } from "../graph.js";
import { LogView } from "../log.js";
import { goesBack, runEnded, settled } from "../status.js";

/** `#/runs/ID[/STEP[/Ln]]`; `ctx.rekey` when ID was a prefix of the run's id. */
export function runPage(parts, query, signal, ctx) {
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
    const key = JSON.stringify([run.status, run.error, run.notes, run.finished_ms, run.runner, run.waiting]);
    if (key === shownHead) return;
    shownHead = key;
    const focusedId = head.contains(document.activeElement) ? document.activeElement.id : null;
    const ref = run.pull_request ? `PR #${run.pull_request}` : run.branch || run.git_ref || "local run";
    const dur = run.duration_ms ?? (run.finished_ms ? run.finished_ms - run.created_ms : Date.now() - run.created_ms);
    const buttons = [];
    if (session.canWrite && !runEnded(run.status)) buttons.push(h("button", { type: "button", class: "danger", id: "cancel", onclick: () => act("cancel") }, "Cancel run"));
    if (session.canWrite && runEnded(run.status) && run.repo) {
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
            ["Runner", h("span", { id: "run-runner" }, run.runner || (run.runs_on && run.runs_on.length ? `any with ${run.runs_on.join(", ")}` : "—"))],
          ].map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
        ),
      ),
      run.error ? h("p", { class: "error" }, run.error) : null,
      run.status === "queued" && run.waiting ? h("p", { class: "waiting", id: "run-waiting", role: "status" }, `Waiting: ${run.waiting}`) : null,
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
        if (goesBack(run.status, ev.status)) return;
        Object.assign(run, { status: ev.status, error: ev.error, finished_ms: ev.finished_ms, duration_ms: ev.finished_ms ? ev.finished_ms - run.created_ms : null });
        renderHead();
        document.body.dataset.runStatus = run.status;
      } else if (name === "step") {
        const st = byName(ev.step);
        if (!st || goesBack(st.status, ev.status)) return;
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
    const url = `/runs/${encodeURIComponent(run.id)}/artifacts/${encodeURIComponent(step)}/${path.split("/").map(encodeURIComponent).join("/")}`;
    try {
      saveAs(path.split("/").pop(), await download(url, path));
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
      if (!signal.aborted && run.id !== id) ctx.rekey(`run:${run.id}`);
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
  let polled = 0;
  const tick = setInterval(() => {
    if (run && !runEnded(run.status)) {
      const d = document.getElementById("run-duration");
      if (d) d.textContent = duration(Date.now() - run.created_ms);
      // Why a run waits, and which runner took it, come with no event:
      // asked every two seconds until it has a runner.
      if ((run.status === "queued" || !run.runner) && ++polled % 2 === 0) {
        api(`/runs/${encodeURIComponent(run.id)}`, { signal })
          .then((fresh) => {
            if (signal.aborted || !run || fresh.id !== run.id) return;
            Object.assign(run, { waiting: fresh.waiting, runner: fresh.runner, runs_on: fresh.runs_on });
            renderHead();
          })
          .catch(() => {});
      }
    }
  }, 1000);
  signal.addEventListener("abort", () => clearInterval(tick));
  return { el, update };
}
