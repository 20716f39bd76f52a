// The pipeline graph as SVG: a node per step, coloured and marked by its
// status, clickable and keyboard-navigable. Where things go is
// graph-layout.js's business; this draws it.

import { s } from "./dom.js";
import { duration } from "./format.js";
import { NODE_H, NODE_W, edgePath, extent, layout, neighbour, nodeName, position, scrollToShow } from "./graph-layout.js";
import { statusClass, statusLabel, statusSymbol } from "./status.js";

/**
 * Draws `run`'s steps; `onPick(name)` when one is chosen. Returns the
 * `svg`, `paint(step)` to show a step's new status, and `select(name)`.
 */
export function drawGraph(run, onPick) {
  const lay = layout(run.steps, run.edges);
  const { width, height } = extent(lay);
  const svg = s("svg", {
    class: "graph",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "group",
    "aria-label": `Pipeline graph: ${run.steps.length} steps. Arrow keys move between steps: up and down within a stage, left to what a step needs, right to what needs it.`,
  });
  const at = (n) => position(lay, n);
  const edges = s("g");
  for (const [step, ns] of lay.needs) {
    const b = at(step);
    for (const n of ns) edges.append(s("path", { class: "edge", d: edgePath(at(n), b) }));
  }
  svg.append(edges);
  const nodes = new Map();
  for (const st of run.steps) {
    const { x, y } = at(st.name);
    // One node is in the tab order (roving tabindex); arrows move within.
    const g = s("g", { class: "node", transform: `translate(${x},${y})`, tabindex: st === run.steps[0] ? "0" : "-1", role: "button", "data-step": st.name });
    const title = s("title");
    const label = s("text", { x: 10, y: 21 });
    g.append(s("rect", { width: NODE_W, height: NODE_H, rx: 6 }), label, title);
    g.addEventListener("click", () => onPick(st.name));
    g.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        onPick(st.name);
        return;
      }
      const next = neighbour(lay, run.steps, st.name, ev.key);
      if (next) {
        ev.preventDefault();
        focusNode(next);
      }
    });
    nodes.set(st.name, { g, label, title });
    svg.append(g);
  }
  const paint = (st) => {
    const n = nodes.get(st.name);
    if (!n) return;
    n.g.setAttribute("class", `node ${statusClass(st.status)}${n.g.classList.contains("selected") ? " selected" : ""}`);
    n.g.dataset.status = st.status;
    n.label.textContent = `${statusSymbol(st.status)} ${nodeName(st.name)}`;
    const took = st.duration_ms !== undefined && st.duration_ms !== null ? `, ${duration(st.duration_ms)}` : "";
    n.title.textContent = `${st.name}: ${statusLabel(st.status)}${took}`;
    n.g.setAttribute("aria-label", `Step ${st.name}: ${statusLabel(st.status)}${took}. Show its log.`);
  };
  run.steps.forEach(paint);
  const focusNode = (name) => {
    for (const [n, { g }] of nodes) g.setAttribute("tabindex", n === name ? "0" : "-1");
    const node = nodes.get(name);
    if (node) {
      scrollTo(name);
      node.g.focus();
    }
  };
  // A wide graph scrolls; bring a step into view.
  const scrollTo = (name) => {
    const wrap = svg.parentElement;
    if (wrap && lay.level.has(name)) {
      const to = scrollToShow(at(name), wrap);
      if (to.scrollLeft !== wrap.scrollLeft) wrap.scrollLeft = to.scrollLeft;
      if (to.scrollTop !== wrap.scrollTop) wrap.scrollTop = to.scrollTop;
    }
  };
  const select = (name) => {
    for (const [n, { g }] of nodes) {
      g.classList.toggle("selected", n === name);
      g.setAttribute("aria-current", n === name ? "true" : "false");
      g.setAttribute("tabindex", n === name ? "0" : "-1");
    }
    scrollTo(name);
  };
  return { svg, paint, select };
}
