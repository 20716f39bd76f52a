// The pipeline graph's layout: a step's column is its longest path from a
// root, rows follow what they need, and the arrow keys walk the graph.

import assert from "node:assert/strict";
import test from "node:test";

import {
  GAP_X, GAP_Y, NODE_H, NODE_W, PAD, dependents, edgePath, extent, layout, neighbour, nodeName, position, scrollToShow,
} from "../graph-layout.js";

const steps = (...names) => names.map((name) => ({ name }));

// fetch -> lint, test -> package; docs alone.
const PIPE = steps("fetch", "lint", "test", "package", "docs");
const NEEDS = [["lint", "fetch"], ["test", "fetch"], ["package", "lint"], ["package", "test"]];

test("a step's column is the longest path to it from a step that needs nothing", () => {
  const lay = layout(PIPE, NEEDS);
  assert.deepEqual(lay.columns, [["fetch", "docs"], ["lint", "test"], ["package"]]);
  assert.deepEqual(Object.fromEntries(lay.level), { fetch: 0, lint: 1, test: 1, package: 2, docs: 0 });
});

test("a step that needs steps of several columns goes right of the furthest", () => {
  const lay = layout(steps("a", "b", "c"), [["b", "a"], ["c", "a"], ["c", "b"]]);
  assert.deepEqual(lay.columns, [["a"], ["b"], ["c"]]);
});

test("steps without needs stay in the pipeline's order, in the first column", () => {
  const lay = layout(steps("one", "two", "three"), []);
  assert.deepEqual(lay.columns, [["one", "two", "three"]]);
  assert.deepEqual([...lay.row], [["one", 0], ["two", 1], ["three", 2]]);
});

test("a column's rows are ordered by the mean row of what they need", () => {
  // x needs c (row 2), y needs a (row 0): y goes above x.
  const lay = layout(steps("a", "b", "c", "x", "y"), [["x", "c"], ["y", "a"]]);
  assert.deepEqual(lay.columns[1], ["y", "x"]);
  assert.equal(lay.row.get("y"), 0);
  assert.equal(lay.row.get("x"), 1);
});

test("needs of steps that do not exist are left out, and a cycle does not hang", () => {
  const lay = layout(steps("a", "b"), [["a", "ghost"], ["ghost", "b"], ["a", "b"], ["b", "a"]]);
  assert.deepEqual(lay.needs.get("a"), ["b"]);
  assert.deepEqual(lay.needs.get("b"), ["a"]);
  assert.equal(lay.columns.flat().sort().join(), "a,b");
});

test("every step is placed exactly once", () => {
  const many = steps(...Array.from({ length: 200 }, (_, i) => `s${i}`));
  const edges = many.slice(20).map((st, i) => [st.name, many[i].name]);
  const lay = layout(many, edges);
  assert.equal(lay.columns.flat().length, 200);
  assert.equal(new Set(lay.columns.flat()).size, 200);
  assert.equal(lay.columns.length, 10);
});

test("the drawing's size and a node's place follow the columns and rows", () => {
  const lay = layout(PIPE, NEEDS);
  assert.deepEqual(extent(lay), {
    width: PAD * 2 + 3 * NODE_W + 2 * GAP_X,
    height: PAD * 2 + 2 * NODE_H + GAP_Y,
  });
  assert.deepEqual(position(lay, "fetch"), { x: PAD, y: PAD });
  assert.deepEqual(position(lay, "test"), { x: PAD + NODE_W + GAP_X, y: PAD + NODE_H + GAP_Y });
  // An empty pipeline is still a box.
  assert.deepEqual(extent(layout([], [])), { width: PAD * 2, height: PAD * 2 + NODE_H });
});

test("an edge runs from the right middle of what is needed to the left middle of what needs it", () => {
  const d = edgePath({ x: 0, y: 0 }, { x: 300, y: 100 });
  assert.equal(d, `M${NODE_W},${NODE_H / 2} C${(NODE_W + 300) / 2},${NODE_H / 2} ${(NODE_W + 300) / 2},${100 + NODE_H / 2} 300,${100 + NODE_H / 2}`);
});

test("arrow keys: up and down in a column, left to a need, right to a dependent, Home and End", () => {
  const lay = layout(PIPE, NEEDS);
  const key = (from, k) => neighbour(lay, PIPE, from, k);
  assert.equal(key("lint", "ArrowDown"), "test");
  assert.equal(key("test", "ArrowUp"), "lint");
  assert.equal(key("lint", "ArrowUp"), undefined);
  assert.equal(key("package", "ArrowLeft"), "lint");
  assert.equal(key("fetch", "ArrowRight"), "lint");
  assert.equal(key("docs", "ArrowRight"), undefined);
  assert.equal(key("fetch", "ArrowLeft"), undefined);
  assert.equal(key("test", "Home"), "fetch");
  assert.equal(key("fetch", "End"), "docs");
  assert.equal(key("fetch", "a"), null);
  assert.deepEqual(dependents(lay, "fetch"), ["lint", "test"]);
});

test("a node out of view is centred; one in view does not move the view", () => {
  const view = { scrollLeft: 0, scrollTop: 0, clientWidth: 400, clientHeight: 200 };
  assert.deepEqual(scrollToShow({ x: 12, y: 12 }, view), { scrollLeft: 0, scrollTop: 0 });
  assert.deepEqual(scrollToShow({ x: 1000, y: 12 }, view), { scrollLeft: 1000 - (400 - NODE_W) / 2, scrollTop: 0 });
  assert.deepEqual(scrollToShow({ x: 12, y: 500 }, view), { scrollLeft: 0, scrollTop: 500 - (200 - NODE_H) / 2 });
});

test("a long step name is cut to fit its node", () => {
  assert.equal(nodeName("short"), "short");
  assert.equal(nodeName("a".repeat(19)), "a".repeat(19));
  assert.equal(nodeName("integration-tests-on-arm64"), "integration-tests-…");
});
