// Pure: what the Secrets page sends (a PUT's body, a DELETE's query), which
// repositories it offers, and how a secret's limits read. No DOM, so
// `node --test` checks it as it is.

/** "a, b ,c" as ["a", "b", "c"]; empty parts dropped. */
export function words(text) {
  return String(text || "")
    .split(",")
    .map((w) => w.trim())
    .filter(Boolean);
}

/**
 * The body of `PUT /api/v1/secrets` from the form's fields (strings).
 * An empty `repo` is server-wide; an environment goes only with a repo.
 */
export function secretBody({ repo = "", environment = "", name = "", value = "", events = "", branches = "", tags = "" }) {
  const body = { name: name.trim(), value, events: words(events), branches: words(branches), tags: words(tags) };
  if (repo) {
    body.repo = repo;
    if (environment.trim()) body.environment = environment.trim();
  }
  return body;
}

/** The query of `DELETE /api/v1/secrets` that names secret `s` (a list entry). */
export function secretQuery(s) {
  const q = new URLSearchParams({ name: s.name });
  if (s.repo) q.set("repo", s.repo);
  if (s.environment) q.set("environment", s.environment);
  return q.toString();
}

/** When secret `s` reaches a step: "events: push; branches: main", or "every run". */
export function onlyFor(s) {
  const only = [];
  if (s.events && s.events.length) only.push(`events: ${s.events.join(", ")}`);
  if (s.branches && s.branches.length) only.push(`branches: ${s.branches.join(", ")}`);
  if (s.tags && s.tags.length) only.push(`tags: ${s.tags.join(", ")}`);
  return only.length ? only.join("; ") : "every run";
}

/**
 * The repositories of `GET /api/v1/repos` whose secrets `me` (`/me`) may
 * manage: an admin's all, a write token's those it `maintains`.
 */
export function manageable(repos, me) {
  if (!me) return [];
  if (me.scope === "admin") return repos;
  const mine = new Set((me.maintains || []).map((r) => r.toLowerCase()));
  return repos.filter((r) => mine.has(r.name.toLowerCase()));
}

/** Whether `me` may manage any secret at all (the page is for them). */
export const managesSecrets = (me) => !!me && (me.scope === "admin" || (me.maintains || []).length > 0);
