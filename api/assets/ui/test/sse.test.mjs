// Server-Sent Events as they arrive: in chunks cut anywhere, with any of
// the three line endings.

import assert from "node:assert/strict";
import test from "node:test";

import { EventStreamParser } from "../sse.js";

const all = (...chunks) => {
  const p = new EventStreamParser();
  return chunks.flatMap((c) => p.push(c));
};

test("an event's name, id and data", () => {
  assert.deepEqual(all('event: run\nid: 7\ndata: {"a":1}\n\n'), [{ name: "run", id: "7", data: '{"a":1}' }]);
});

test("without a name it is a message; without data, data is null", () => {
  assert.deepEqual(all("data: x\n\nevent: end\n\n"), [
    { name: "message", id: null, data: "x" },
    { name: "end", id: null, data: null },
  ]);
});

test("data lines join with newlines; comments are skipped; one leading space is dropped", () => {
  assert.deepEqual(all(": keep-alive\ndata:a\ndata:  b\n\n"), [{ name: "message", id: null, data: "a\n b" }]);
});

test("an event cut across chunks waits until it is whole", () => {
  const p = new EventStreamParser();
  assert.deepEqual(p.push("event: log\nda"), []);
  assert.deepEqual(p.push("ta: 1\n"), []);
  assert.deepEqual(p.push("\nevent: log\ndata: 2\n\n"), [
    { name: "log", id: null, data: "1" },
    { name: "log", id: null, data: "2" },
  ]);
});

test("CRLF and CR end lines too, even with a CRLF cut between chunks", () => {
  assert.deepEqual(all("data: a\r\n\r\ndata: b\r\rdata: c\n\n"), [
    { name: "message", id: null, data: "a" },
    { name: "message", id: null, data: "b" },
    { name: "message", id: null, data: "c" },
  ]);
  // A CR at a chunk's end is held: with the LF after it, one line end.
  assert.deepEqual(all("data: a\r", "\n\r", "\n"), [{ name: "message", id: null, data: "a" }]);
});
