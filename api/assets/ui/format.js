// Pure: how times, sizes, commits and digests read on the page. No DOM, so
// `node --test` checks it as it is.

/** `owner/name` as two encoded path segments. */
export const repoPath = (repo) => repo.split("/").map(encodeURIComponent).join("/");
export const short = (sha) => (sha ? sha.slice(0, 8) : "");
export const shortDigest = (d) => (d ? d.replace(/^.*@/, "").replace(/^sha256:/, "sha256:").slice(0, 19) : "");

/** How long ago `ms` was, as of `now`. */
export function ago(ms, now = Date.now()) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "";
  const s = Math.round(ms / 1000);
  if (s < 60) return ms < 10000 ? `${(ms / 1000).toFixed(1)}s` : `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");
