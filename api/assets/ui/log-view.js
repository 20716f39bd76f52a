// Pure: the arithmetic of the virtual log view. Every line is LINE_H px
// tall, so which lines a scroll position shows, where a line is, and
// whether the reader is at the end are sums, not measurements; only the
// lines in view (and OVERSCAN either side) are ever in the page. Also the
// log's text handling that needs no page: chunks into lines, search. No DOM.

export const LINE_H = 18; // px; must match --line-h in app.css
export const OVERSCAN = 30; // log lines rendered above and below the viewport

/** The lines to render, `[first, last)` (0-based), for a scroll position. */
export function visibleLines(scrollTop, clientHeight, count) {
  const first = Math.max(0, Math.floor(scrollTop / LINE_H) - OVERSCAN);
  const last = Math.min(count, Math.ceil((scrollTop + clientHeight) / LINE_H) + OVERSCAN);
  return [first, last];
}

/** How far down the rendered rows sit, in px. */
export const rowsOffset = (first) => first * LINE_H;

/** The height of the whole log, in px. */
export const logHeight = (count) => count * LINE_H;

/** The first line (0-based) at the top of the view. */
export const topLine = (scrollTop) => Math.floor(scrollTop / LINE_H);

/** Whether the view shows the end (within a line): new lines then follow. */
export const atBottom = (scrollTop, clientHeight, scrollHeight) => scrollTop + clientHeight >= scrollHeight - LINE_H;

/** The scroll position that puts line `n` (1-based) in the middle of the view. */
export const centreOn = (n, clientHeight) => Math.max(0, (n - 1) * LINE_H - clientHeight / 2);

/**
 * Splits a chunk of the log into whole lines; an unterminated tail waits
 * as `partial` for the next chunk.
 */
export function splitLines(partial, text) {
  const lines = (partial + text).split("\n");
  return { lines, partial: lines.pop() };
}

/** Case-insensitive patterns for `query`, taken literally; null for "". */
export function searchPatterns(query) {
  if (!query) return null;
  const escaped = query.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return { find: new RegExp(escaped, "i"), findAll: new RegExp(escaped, "gi") };
}

/** Where `findAll` matches in `text`: `[start, end)` pairs. */
export const matchRanges = (text, findAll) => [...text.matchAll(findAll)].map((m) => [m.index, m.index + m[0].length]);

/**
 * A run of text that starts at `offset` in its line, cut into pieces
 * marked or not by the line's `hits`: `[{ text, mark }]`.
 */
export function markPieces(text, offset, hits) {
  const out = [];
  let pos = 0;
  for (const [a, b] of hits) {
    const s0 = Math.max(a - offset, pos), s1 = Math.min(b - offset, text.length);
    if (s1 <= s0) continue;
    if (s0 > pos) out.push({ text: text.slice(pos, s0), mark: false });
    out.push({ text: text.slice(s0, s1), mark: true });
    pos = s1;
  }
  if (pos < text.length) out.push({ text: text.slice(pos), mark: false });
  return out;
}

/**
 * The next match to show (an index into `matches`, the 0-based lines that
 * match, in order) after match `at` going `dir` (+1 or -1), wrapping. The
 * first move (`at` < 0) goes forward from the line at the top of the view,
 * or back from the end.
 */
export function nextMatch(matches, at, dir, fromLine) {
  if (!matches.length) return -1;
  if (at < 0) return dir > 0 ? Math.max(0, matches.findIndex((m) => m >= fromLine)) : matches.length - 1;
  return (at + dir + matches.length) % matches.length;
}
