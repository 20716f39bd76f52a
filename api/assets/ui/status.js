// Pure: every status the API sends, and how each looks on the page. Status
// is never shown by colour alone: every badge and graph node also carries a
// word and a symbol. The stylesheet knows only the six tones (st-ok,
// st-bad, ...), so a status is spelt in one place, here, as the API spells
// it; test/status.test.mjs checks these lists against the API's.

/** A run's statuses (api/src/store.rs), in the order the runs filter offers them. */
export const RUN_STATUSES = ["queued", "running", "success", "failed", "cancelled", "skipped", "interrupted", "error"];
/** A step's statuses (engine/src/state.rs). */
export const STEP_STATUSES = ["pending", "running", "success", "failed", "skipped", "cancelled", "timed_out"];
/** A promotion's statuses (api/src/store/promotions.rs). */
export const PROMOTION_STATUSES = ["pending", "approved", "promoting", "succeeded", "failed", "rejected", "expired"];

// Symbol and tone of each; the tone is the colour, class `st-<tone>`.
const LOOKS = {
  queued: ["○", "wait"],
  pending: ["○", "wait"],
  running: ["●", "live"],
  promoting: ["●", "live"],
  approved: ["●", "live"],
  success: ["✓", "ok"],
  succeeded: ["✓", "ok"],
  failed: ["✗", "bad"],
  error: ["✗", "bad"],
  rejected: ["✗", "bad"],
  cancelled: ["⊘", "off"],
  skipped: ["⊘", "off"],
  expired: ["⊘", "off"],
  interrupted: ["!", "warn"],
  timed_out: ["!", "warn"],
};
// A status one should not have to know the API to read.
const LABELS = { timed_out: "timed out" };
// One the page does not know yet (a newer server) still shows its word.
const UNKNOWN = ["?", "wait"];

export const statusLabel = (status) => LABELS[status] || status;
export const statusSymbol = (status) => (LOOKS[status] || UNKNOWN)[0];
/** The CSS class that colours a badge or a graph node. */
export const statusClass = (status) => `st-${(LOOKS[status] || UNKNOWN)[1]}`;

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
