// Pure: ANSI escape sequences in log lines, turned into text runs with the
// CSS classes (and, for 256-colour and true-colour codes, the inline
// colours) that show them. A line starts in the state the line before it
// left, as in a terminal. No DOM.

/** SGR state → CSS classes; other escape sequences are dropped. */
export function sgr(state, params) {
  const codes = params === "" ? [0] : params.split(";").map(Number);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) state = {};
    else if (c === 1) state = { ...state, b: 1 };
    else if (c === 2) state = { ...state, d: 1 };
    else if (c === 3) state = { ...state, i: 1 };
    else if (c === 4) state = { ...state, u: 1 };
    else if (c === 22) state = { ...state, b: 0, d: 0 };
    else if (c === 23) state = { ...state, i: 0 };
    else if (c === 24) state = { ...state, u: 0 };
    else if (c >= 30 && c <= 37) state = { ...state, f: c - 30, fx: null };
    else if (c >= 90 && c <= 97) state = { ...state, f: c - 90 + 8, fx: null };
    else if (c === 39) state = { ...state, f: null, fx: null };
    else if (c >= 40 && c <= 47) state = { ...state, bg: c - 40, bx: null };
    else if (c >= 100 && c <= 107) state = { ...state, bg: (c - 100) % 8, bx: null };
    else if (c === 49) state = { ...state, bg: null, bx: null };
    else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
      const n = codes[i + 2];
      const css = xterm(n);
      state = c === 38 ? (n < 16 ? { ...state, f: n, fx: null } : { ...state, f: null, fx: css }) : { ...state, bg: n < 8 ? n : null, bx: n < 8 ? null : css };
      i += 2;
    } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
      const css = `rgb(${codes[i + 2] | 0},${codes[i + 3] | 0},${codes[i + 4] | 0})`;
      state = c === 38 ? { ...state, f: null, fx: css } : { ...state, bg: null, bx: css };
      i += 4;
    }
  }
  return state;
}

/** A colour of xterm's 256 (16 and up: the 6x6x6 cube, then greys) as CSS. */
export function xterm(n) {
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16, steps = [0, 95, 135, 175, 215, 255];
  return `rgb(${steps[Math.floor(i / 36) % 6]},${steps[Math.floor(i / 6) % 6]},${steps[i % 6]})`;
}

const ESC = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][A-Za-z0-9]|\x1b./g;

/**
 * A line's text runs with their ANSI state, escapes removed: `parts` of
 * `{ text, state }`, and the state at the line's `end` (where the next line
 * starts).
 */
export function segments(raw, state) {
  // A carriage return redraws the line in a terminal: keep what came last.
  // Colours set before the CR still apply to what follows it.
  const line = raw.replace(/\r+$/, "");
  const cut = line.lastIndexOf("\r") + 1;
  const out = [];
  const emit = (from, to) => {
    from = Math.max(from, cut);
    if (to > from) out.push({ text: line.slice(from, to), state });
  };
  let last = 0, m;
  ESC.lastIndex = 0;
  while ((m = ESC.exec(line))) {
    emit(last, m.index);
    if (m[2] === "m") state = sgr(state, m[1]);
    last = ESC.lastIndex;
  }
  emit(last, line.length);
  return { parts: out, end: state };
}

/** A line's text as shown: escapes removed, text a CR overwrote dropped. */
export function shown(raw) {
  return raw.includes("\x1b") || raw.includes("\r") ? segments(raw, {}).parts.map((p) => p.text).join("") : raw;
}

/** The classes of a state (`a-b f1`); "" when plain. */
export function classesOf(st) {
  const c = [];
  if (st.b) c.push("a-b");
  if (st.d) c.push("a-d");
  if (st.i) c.push("a-i");
  if (st.u) c.push("a-u");
  if (st.f !== null && st.f !== undefined) c.push(`f${st.f}`);
  if (st.bg !== null && st.bg !== undefined) c.push(`b${st.bg}`);
  return c.join(" ");
}

/** The inline style of a state's colours that no class has; "" if none. */
export function styleOf(st) {
  return [st.fx && `color:${st.fx}`, st.bx && `background:${st.bx}`].filter(Boolean).join(";");
}
