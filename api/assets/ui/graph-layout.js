// Pure: where a pipeline's steps go in its graph, and which step the arrow
// keys move to. Columns by longest path from a root (a step sits right of
// everything it needs); within a column, rows ordered near their needs so
// edges cross less. No DOM.

export const NODE_W = 168, NODE_H = 34, GAP_X = 56, GAP_Y = 12, PAD = 12;

/**
 * `steps` are `{ name }` in the pipeline's order, `edges` `[step, need]`
 * pairs. Returns `columns` (names by column), `needs` (name → names it
 * needs), and each name's `level` (column) and `row`. Needs of unknown
 * steps are ignored; a cycle does not loop.
 */
export function layout(steps, edges) {
  const needs = new Map(steps.map((st) => [st.name, []]));
  for (const [step, need] of edges) if (needs.has(step) && needs.has(need)) needs.get(step).push(need);
  const level = new Map();
  const visit = (name, seen = new Set()) => {
    if (level.has(name)) return level.get(name);
    if (seen.has(name)) return 0;
    seen.add(name);
    const l = needs.get(name).reduce((m, n) => Math.max(m, visit(n, seen) + 1), 0);
    level.set(name, l);
    return l;
  };
  steps.forEach((st) => visit(st.name));
  const columns = [];
  for (const st of steps) (columns[level.get(st.name)] ||= []).push(st.name);
  const row = new Map();
  columns.forEach((col, c) => {
    if (c > 0) {
      const weight = (n) => {
        const ns = needs.get(n);
        return ns.length ? ns.reduce((a, x) => a + row.get(x), 0) / ns.length : 0;
      };
      col.sort((a, b) => weight(a) - weight(b));
    }
    col.forEach((n, i) => row.set(n, i));
  });
  return { columns, needs, level, row };
}

/** The drawing's size in px. */
export function extent({ columns }) {
  const rows = Math.max(1, ...columns.map((c) => c.length));
  return {
    width: PAD * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * GAP_X,
    height: PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y,
  };
}

/** A step's node's top-left corner. */
export const position = ({ level, row }, name) => ({ x: PAD + level.get(name) * (NODE_W + GAP_X), y: PAD + row.get(name) * (NODE_H + GAP_Y) });

/** The curve from the right edge of the node at `a` to the left edge of the one at `b`. */
export function edgePath(a, b) {
  const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mx = (x1 + x2) / 2;
  return `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
}

/** The steps that need `name`. */
export const dependents = ({ needs }, name) => [...needs].filter(([, ns]) => ns.includes(name)).map(([n]) => n);

/**
 * Where a key moves from `name`: up and down within a column, left to the
 * first step it needs, right to the first step that needs it, Home and End
 * to the pipeline's first and last step. `undefined`/`null` when nowhere.
 */
export function neighbour(lay, steps, name, key) {
  const col = lay.columns[lay.level.get(name)];
  const i = lay.row.get(name);
  if (key === "ArrowUp") return col[i - 1];
  if (key === "ArrowDown") return col[i + 1];
  if (key === "ArrowLeft") return lay.needs.get(name)[0];
  if (key === "ArrowRight") return dependents(lay, name)[0];
  if (key === "Home") return steps[0] && steps[0].name;
  if (key === "End") return steps.length && steps[steps.length - 1].name;
  return null;
}

/**
 * The scroll position that brings a node at `at` into a scrolled box
 * `view` ({ scrollLeft, scrollTop, clientWidth, clientHeight }), centring
 * it on an axis only where it is not already wholly in view.
 */
export function scrollToShow(at, view) {
  let { scrollLeft, scrollTop } = view;
  if (at.x < scrollLeft || at.x + NODE_W > scrollLeft + view.clientWidth) scrollLeft = at.x - (view.clientWidth - NODE_W) / 2;
  if (at.y < scrollTop || at.y + NODE_H > scrollTop + view.clientHeight) scrollTop = at.y - (view.clientHeight - NODE_H) / 2;
  return { scrollLeft, scrollTop };
}

/** A step's name as it fits in its node. */
export const nodeName = (name) => (name.length > 19 ? name.slice(0, 18) + "…" : name);
