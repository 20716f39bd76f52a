// The environments page: per repository, what each environment runs now,
// the promotion waiting for approval (approvers decide here), the last
// failed one (writers retry), and the audit trail, redrawn live.

import { api, follow, session } from "../api.js";
import { announce, append, badge, h, timeEl } from "../dom.js";
import { repoPath, short, shortDigest } from "../format.js";
import { promotionOpen } from "../status.js";

export function environmentsPage(parts, query, signal) {
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
          .filter((p) => p.environment === env.name && !promotionOpen(p.status))
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
