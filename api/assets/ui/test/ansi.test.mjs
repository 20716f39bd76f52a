// ANSI escapes in log lines: colours and styles to classes, state carried
// across lines as a terminal carries it, everything else dropped.

import assert from "node:assert/strict";
import test from "node:test";

import { classesOf, segments, sgr, shown, styleOf, xterm } from "../ansi.js";

const ESC = "\x1b";
/** A line's parts as [text, classes] pairs. */
const look = (line, state = {}) => segments(line, state).parts.map((p) => [p.text, classesOf(p.state)]);

test("plain text is one uncoloured part", () => {
  assert.deepEqual(look("hello world"), [["hello world", ""]]);
});

test("the eight colours, bright colours and backgrounds become classes", () => {
  assert.deepEqual(look(`${ESC}[32mok${ESC}[0m done`), [["ok", "f2"], [" done", ""]]);
  assert.deepEqual(look(`${ESC}[1;31mone warning${ESC}[0m`), [["one warning", "a-b f1"]]);
  assert.deepEqual(look(`${ESC}[91mbright${ESC}[39m plain`), [["bright", "f9"], [" plain", ""]]);
  assert.deepEqual(look(`${ESC}[44;37mon blue`), [["on blue", "f7 b4"]]);
  assert.deepEqual(look(`${ESC}[104mbright blue ground`), [["bright blue ground", "b4"]]);
  assert.deepEqual(look(`${ESC}[2;3;4mdim italic underlined`), [["dim italic underlined", "a-d a-i a-u"]]);
});

test("resets end one attribute or all", () => {
  assert.deepEqual(look(`${ESC}[1;3mA${ESC}[22mB${ESC}[23mC`), [["A", "a-b a-i"], ["B", "a-i"], ["C", ""]]);
  assert.deepEqual(look(`${ESC}[4;42mA${ESC}[24;49mB`), [["A", "a-u b2"], ["B", ""]]);
  // An empty SGR is a reset, as `ESC[0m` is.
  assert.deepEqual(look(`${ESC}[31mA${ESC}[mB`), [["A", "f1"], ["B", ""]]);
});

test("a colour set on one line carries to the next until reset", () => {
  const first = segments(`${ESC}[33mwarning: starts here`, {});
  assert.equal(classesOf(first.end), "f3");
  const second = segments("and goes on", first.end);
  assert.deepEqual(second.parts.map((p) => [p.text, classesOf(p.state)]), [["and goes on", "f3"]]);
  const third = segments(`still${ESC}[0m over`, second.end);
  assert.deepEqual(third.parts.map((p) => [p.text, classesOf(p.state)]), [["still", "f3"], [" over", ""]]);
  assert.deepEqual(third.end, {});
});

test("256 colours: the first 16 are classes, the rest inline colours", () => {
  assert.deepEqual(look(`${ESC}[38;5;2mA`), [["A", "f2"]]);
  assert.deepEqual(look(`${ESC}[38;5;12mA`), [["A", "f12"]]);
  const cube = segments(`${ESC}[38;5;196mred`, {}).parts[0].state;
  assert.equal(classesOf(cube), "");
  assert.equal(styleOf(cube), "color:rgb(255,0,0)");
  const ground = segments(`${ESC}[48;5;3mA${ESC}[48;5;240mB`, {}).parts;
  assert.equal(classesOf(ground[0].state), "b3");
  assert.equal(styleOf(ground[1].state), "background:rgb(88,88,88)");
});

test("true colour becomes an inline colour, and a later class colour replaces it", () => {
  const parts = segments(`${ESC}[38;2;10;20;30mA${ESC}[48;2;1;2;3mB${ESC}[32mC`, {}).parts;
  assert.equal(styleOf(parts[0].state), "color:rgb(10,20,30)");
  assert.equal(styleOf(parts[1].state), "color:rgb(10,20,30);background:rgb(1,2,3)");
  assert.equal(styleOf(parts[2].state), "background:rgb(1,2,3)");
  assert.equal(classesOf(parts[2].state), "f2");
});

test("xterm's palette: the colour cube and the greys", () => {
  assert.equal(xterm(16), "rgb(0,0,0)");
  assert.equal(xterm(21), "rgb(0,0,255)");
  assert.equal(xterm(231), "rgb(255,255,255)");
  assert.equal(xterm(232), "rgb(8,8,8)");
  assert.equal(xterm(255), "rgb(238,238,238)");
});

test("other escape sequences are dropped, not shown", () => {
  // Cursor movement, erase line, charset selection, a lone ESC pair.
  assert.deepEqual(look(`${ESC}[2K${ESC}[1Gtext${ESC}(B more${ESC}=`), [["text", ""], [" more", ""]]);
  assert.deepEqual(look(`${ESC}[?25lhidden cursor`), [["hidden cursor", ""]]);
});

test("a carriage return keeps what was drawn last, with the colours set before it", () => {
  assert.deepEqual(look("progress 10%\rprogress 100%"), [["progress 100%", ""]]);
  assert.deepEqual(look(`${ESC}[32mdownloading\rdone`), [["done", "f2"]]);
  // A CRLF line ending is not a redraw.
  assert.deepEqual(look("windows line\r"), [["windows line", ""]]);
});

test("shown() is the text a reader sees, for search", () => {
  assert.equal(shown("plain"), "plain");
  assert.equal(shown(`${ESC}[1;31mone ${ESC}[0mwarning`), "one warning");
  assert.equal(shown("50%\r100%"), "100%");
});

test("sgr() leaves the state it is given alone", () => {
  const before = { f: 1 };
  const after = sgr(before, "1");
  assert.deepEqual(before, { f: 1 });
  assert.deepEqual(after, { f: 1, b: 1 });
});
