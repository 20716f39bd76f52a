// Building the page: elements from plain values (text is always text,
// never HTML), and the few pieces every page uses.

import { ago, when } from "./format.js";
import { statusClass, statusLabel, statusSymbol } from "./status.js";

// Tables turn into cards at phone width (display: block), which makes
// some browsers forget they are tables; explicit roles keep them one.
const TABLE_ROLES = { table: "table", thead: "rowgroup", tbody: "rowgroup", tr: "row", th: "columnheader", td: "cell" };

/** Builds an element; strings become text nodes, never HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  if (TABLE_ROLES[tag]) el.setAttribute("role", TABLE_ROLES[tag]);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
/** An SVG element with attributes. */
export function s(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

/** Says `text` to screen readers (the page's live region). */
export function announce(text) {
  const el = document.getElementById("announce");
  el.textContent = "";
  // A fresh text node is announced even when the text repeats.
  requestAnimationFrame(() => (el.textContent = text));
}

/** A time, as "3m ago" (ticking pages update it through `data-ms`). */
export const timeEl = (ms) => h("time", { datetime: new Date(ms).toISOString(), title: when(ms), dataset: { ms: String(ms) } }, ago(ms));

/** A status as a coloured badge with its symbol and word. */
export const badge = (status) => h("span", { class: `badge ${statusClass(status)}` }, `${statusSymbol(status)} ${statusLabel(status)}`);

