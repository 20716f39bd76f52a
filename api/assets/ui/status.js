// Pure: what each status the API sends looks like on the page. Status is
// never shown by colour alone: every badge and graph node also carries a
// word and a symbol.

/** Runs the list can be filtered by. */
export const RUN_STATUSES = ["queued", "running", "success", "failed", "cancelled", "interrupted", "error"];

const SYMBOL = {
  success: "✓", succeeded: "✓", failed: "✗", error: "✗", rejected: "✗", running: "●", promoting: "●",
  queued: "○", pending: "○", approved: "●", cancelled: "⊘", skipped: "⊘", expired: "⊘",
  interrupted: "!", timeout: "!",
};

export const statusLabel = (status) => status;
export const statusSymbol = (status) => SYMBOL[status] || "";
/** The CSS class that colours a badge or a graph node. */
export const statusClass = (status) => `st-${status}`;

/** A run in any status but these has ended and will not change again. */
export const runEnded = (status) => !["queued", "running"].includes(status);

/** A run or step in any status but these has ended (settled). */
export const settled = (status) => !["pending", "queued", "running"].includes(status);

// States only move forward: pending/queued, running, then an end.
const rank = (status) => (status === "pending" || status === "queued" ? 0 : status === "running" ? 1 : 2);
/** Whether going from `now` to `next` would move backwards (a replayed old event). */
export const goesBack = (now, next) => rank(next) < rank(now);

/** A promotion in these statuses may still land. */
export const promotionOpen = (status) => ["pending", "approved", "promoting"].includes(status);
