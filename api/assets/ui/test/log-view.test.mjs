// The virtual log view's arithmetic: which lines are in the page for a
// scroll position, where a line is, when the view follows new lines; and
// the text handling behind it (chunks into lines, search, highlights).

import assert from "node:assert/strict";
import test from "node:test";

import {
  LINE_H, OVERSCAN, atBottom, centreOn, logHeight, markPieces, matchRanges, nextMatch, rowsOffset, searchPatterns, splitLines, topLine, visibleLines,
} from "../log-view.js";

test("the line height matches the stylesheet's --line-h", async () => {
  const { readFile } = await import("node:fs/promises");
  const css = await readFile(new URL("../app.css", import.meta.url), "utf8");
  assert.match(css, new RegExp(`--line-h: ${LINE_H}px`));
});

test("at the top, the lines in view and the overscan below are rendered", () => {
  // 900 px of view: 50 lines, and 30 more below.
  assert.deepEqual(visibleLines(0, 900, 50_000), [0, 50 + OVERSCAN]);
});

test("in the middle, the overscan goes both ways", () => {
  const top = 25_000 * LINE_H;
  const [first, last] = visibleLines(top, 900, 50_000);
  assert.equal(first, 25_000 - OVERSCAN);
  assert.equal(last, 25_000 + 50 + OVERSCAN);
  assert.equal(rowsOffset(first), first * LINE_H);
});

test("a part-scrolled line counts as in view", () => {
  assert.deepEqual(visibleLines(LINE_H * 100 + 5, 100, 1000), [100 - OVERSCAN, Math.ceil((LINE_H * 100 + 105) / LINE_H) + OVERSCAN]);
});

test("the window never runs past the log's ends", () => {
  assert.deepEqual(visibleLines(0, 900, 10), [0, 10]);
  assert.deepEqual(visibleLines(0, 900, 0), [0, 0]);
  const [first, last] = visibleLines(49_990 * LINE_H, 900, 50_000);
  assert.equal(last, 50_000);
  assert.equal(first, 49_990 - OVERSCAN);
});

test("however long the log, at most a screen and two overscans are rendered", () => {
  for (const top of [0, 1, 17, 18 * 1234 + 7, 18 * 49_000]) {
    const [first, last] = visibleLines(top, 900, 50_000);
    assert.ok(last - first <= Math.ceil(900 / LINE_H) + 1 + 2 * OVERSCAN, `${top}: ${first}..${last}`);
  }
});

test("the log is as tall as its lines", () => {
  assert.equal(logHeight(50_000), 900_000);
  assert.equal(topLine(LINE_H * 42 + LINE_H - 1), 42);
});

test("within a line of the end counts as at the end", () => {
  const height = logHeight(100);
  assert.ok(atBottom(height - 500, 500, height));
  assert.ok(atBottom(height - 500 - LINE_H, 500, height));
  assert.ok(!atBottom(height - 500 - LINE_H - 1, 500, height));
  assert.ok(atBottom(0, 500, 300), "a log shorter than the view");
});

test("a linked line is put in the middle of the view, or the top for the first lines", () => {
  assert.equal(centreOn(1000, 600), 999 * LINE_H - 300);
  assert.equal(centreOn(1, 600), 0);
  assert.equal(centreOn(10, 600), 0);
});

test("chunks become lines; an unterminated tail waits for the next chunk", () => {
  let { lines, partial } = splitLines("", "one\ntwo\nthr");
  assert.deepEqual(lines, ["one", "two"]);
  assert.equal(partial, "thr");
  ({ lines, partial } = splitLines(partial, "ee\n"));
  assert.deepEqual(lines, ["three"]);
  assert.equal(partial, "");
  ({ lines, partial } = splitLines("", "\n\n"));
  assert.deepEqual(lines, ["", ""]);
});

test("search is literal and case-insensitive", () => {
  assert.equal(searchPatterns(""), null);
  const { find, findAll } = searchPatterns("a.b (c)");
  assert.ok(find.test("x A.B (C) y"));
  assert.ok(!find.test("aXb (c)"));
  assert.deepEqual(matchRanges("a.b (c) and A.B (C)", findAll), [[0, 7], [12, 19]]);
});

test("marks cut a text run where the line's matches fall", () => {
  const hits = [[2, 5], [8, 10]];
  // The run "cdefghij" starts at offset 2 of its line "abcdefghij".
  assert.deepEqual(markPieces("cdefghij", 2, hits), [
    { text: "cde", mark: true },
    { text: "fgh", mark: false },
    { text: "ij", mark: true },
  ]);
  // A match across two runs marks its part of each.
  assert.deepEqual(markPieces("ab", 0, [[1, 3]]), [{ text: "a", mark: false }, { text: "b", mark: true }]);
  assert.deepEqual(markPieces("cd", 2, [[1, 3]]), [{ text: "c", mark: true }, { text: "d", mark: false }]);
  assert.deepEqual(markPieces("plain", 0, []), [{ text: "plain", mark: false }]);
});

test("Enter goes to the first match at or below the top of the view, then on, wrapping", () => {
  const matches = [3, 40, 900];
  assert.equal(nextMatch(matches, -1, 1, 10), 1);
  assert.equal(nextMatch(matches, -1, 1, 1000), 0, "none below: the first");
  assert.equal(nextMatch(matches, -1, -1, 10), 2, "Shift+Enter first: the last");
  assert.equal(nextMatch(matches, 2, 1, 0), 0);
  assert.equal(nextMatch(matches, 0, -1, 0), 2);
  assert.equal(nextMatch([], -1, 1, 0), -1);
});
