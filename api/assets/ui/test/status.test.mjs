// Every status the API can send gets a word, a symbol and a colour the
// stylesheet defines, and the runs page can filter by every run status.
// The lists below are the API's, written out here on purpose: the page's
// own lists are what is under test.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import test from "node:test";

import * as status from "../status.js";

const { RUN_STATUSES, goesBack, promotionOpen, runEnded, settled, statusClass, statusLabel, statusSymbol } = status;

// api/src/store.rs (RunRecord.status; `error` and `skipped` from
// api/src/executor.rs, `interrupted` from a restart).
const API_RUN = ["queued", "running", "success", "failed", "error", "cancelled", "skipped", "interrupted"];
// engine/src/state.rs, StepStatus::as_str.
const API_STEP = ["pending", "running", "success", "failed", "skipped", "cancelled", "timed_out"];
// api/src/store/promotions.rs, Promotion.status.
const API_PROMOTION = ["pending", "approved", "promoting", "succeeded", "failed", "rejected", "expired"];
const EVERY = [...new Set([...API_RUN, ...API_STEP, ...API_PROMOTION])];

/** The stylesheet's rules, innermost (inside @media too): [selectors, declarations]. */
const RULES = [...readFileSync(new URL("../app.css", import.meta.url), "utf8")
  .replace(/\/\*[\s\S]*?\*\//g, "")
  .matchAll(/([^{}]+)\{([^{}]*)\}/g)].map((m) => [m[1].split(",").map((s) => s.trim().replace(/\s+/g, " ")), m[2]]);
const rule = (selector) => RULES.find(([selectors]) => selectors.includes(selector));

test("the page knows every status the API sends, as the API spells it", () => {
  assert.deepEqual([...RUN_STATUSES].sort(), [...API_RUN].sort());
  assert.deepEqual([...(status.STEP_STATUSES || [])].sort(), [...API_STEP].sort());
  assert.deepEqual([...(status.PROMOTION_STATUSES || [])].sort(), [...API_PROMOTION].sort());
});

test("the runs filter offers every run status, skipped included", () => {
  // The runs page builds its status <select> from RUN_STATUSES.
  const page = readFileSync(new URL("../pages/runs.js", import.meta.url), "utf8");
  assert.match(page, /RUN_STATUSES\.map\(\(st\) => h\("option"/);
  for (const st of API_RUN) assert.ok(RUN_STATUSES.includes(st), `no filter for ${st}`);
});

for (const st of EVERY) {
  test(`${st} has a word, a symbol and a colour`, () => {
    const problems = [];
    const label = statusLabel(st);
    if (!/^[a-z]+( [a-z]+)*$/.test(label)) problems.push(`its label does not read as words: ${JSON.stringify(label)}`);
    if (!statusSymbol(st).trim()) problems.push("no symbol (colour alone must not carry it)");
    const cls = statusClass(st);
    const badge = rule(`.${cls}`);
    if (!badge) problems.push(`app.css has no rule for its class .${cls}`);
    else for (const prop of ["color:", "background:", "--edge:"]) if (!badge[1].includes(prop)) problems.push(`.${cls} sets no ${prop}`);
    assert.deepEqual(problems, [], `${st}: ${problems.join("; ")}`);
  });
}

for (const st of API_STEP) {
  test(`a graph node of a ${st} step is filled and edged by its status`, () => {
    const cls = statusClass(st);
    // Waiting steps keep the node's default fill; every other one has its own.
    const fill = rule(`.graph .node.${cls} rect`);
    const waiting = st === "pending";
    assert.ok(waiting || (fill && fill[1].includes("fill:")), `no node fill for .${cls} (${st})`);
    assert.ok(rule(".graph .node rect")[1].includes("var(--edge"), "the node's edge comes from its status class");
  });
}

test("statuses that look alike mean alike; different meanings look different", () => {
  const look = (s) => `${statusSymbol(s)} ${statusClass(s)}`;
  assert.equal(look("success"), look("succeeded"));
  assert.equal(look("failed"), look("error"));
  assert.equal(look("interrupted"), look("timed_out"));
  assert.notEqual(look("success"), look("failed"));
  assert.notEqual(look("running"), look("queued"));
  assert.notEqual(look("skipped"), look("success"));
  assert.notEqual(look("timed_out"), look("failed"));
});

test("a status the page does not know still shows its word, neutrally", () => {
  assert.equal(statusLabel("paused"), "paused");
  assert.ok(statusSymbol("paused").trim());
  assert.ok(rule(`.${statusClass("paused")}`));
});

test("a run has ended in every status but queued and running", () => {
  assert.deepEqual(API_RUN.filter((s) => !runEnded(s)), ["queued", "running"]);
  assert.deepEqual([...API_RUN, ...API_STEP].filter((s) => !settled(s)).sort(), ["pending", "queued", "running", "running"]);
});

test("states only move forward: a replayed older event does not undo a newer one", () => {
  assert.ok(goesBack("running", "queued"));
  assert.ok(goesBack("success", "running"));
  assert.ok(goesBack("timed_out", "pending"));
  assert.ok(!goesBack("pending", "running"));
  assert.ok(!goesBack("running", "timed_out"));
  assert.ok(!goesBack("failed", "success"), "one end to another is not backwards");
});

test("a promotion is open while pending, approved or promoting", () => {
  assert.deepEqual(API_PROMOTION.filter(promotionOpen), ["pending", "approved", "promoting"]);
});
