// The log, rendered virtually: only the lines in view (and a margin) are in
// the page, so fifty thousand lines cost what fifty do. Lines keep their
// ANSI state from the lines before them, as in a terminal. The arithmetic
// is log-view.js's, the colours ansi.js's; this keeps the page in step.

import { classesOf, segments, shown, styleOf } from "./ansi.js";
import { h } from "./dom.js";
import {
  atBottom, centreOn, logHeight, markPieces, matchRanges, nextMatch, rowsOffset, searchPatterns, splitLines, topLine, visibleLines,
} from "./log-view.js";

export class LogView {
  /** `linkFor(n)` is the address of line `n` (1-based). */
  constructor(linkFor) {
    this.linkFor = linkFor;
    this.lines = []; // raw text, without the newline
    this.starts = []; // ANSI state at a line's start, where not plain
    this.state = {};
    this.partial = ""; // a chunk's unterminated tail
    this.target = null;
    this.query = "";
    this.find = null;
    this.findAll = null;
    this.matches = [];
    this.at = -1;
    this.follow = false;
    this.spacer = h("div", { class: "log-spacer" });
    this.rowsEl = h("div", { class: "log-rows" });
    this.empty = h("div", { class: "log-empty" }, "No output yet.");
    this.el = h("div", { class: "log", tabindex: "0", role: "log", "aria-label": "Step log", "aria-live": "off" }, this.empty, this.spacer);
    this.spacer.append(this.rowsEl);
    this.el.addEventListener("scroll", () => {
      this.follow = this.atBottom();
      this.schedule();
    });
    this.pending = false;
    this.shown = [-1, -1];
  }

  atBottom() {
    return atBottom(this.el.scrollTop, this.el.clientHeight, this.el.scrollHeight);
  }

  add(text) {
    if (!text) return;
    const wasBottom = this.follow;
    const { lines, partial } = splitLines(this.partial, text);
    this.partial = partial;
    for (const line of lines) {
      if (Object.keys(this.state).length) this.starts[this.lines.length] = this.state;
      this.lines.push(line);
      if (line.includes("\x1b")) this.state = segments(line, this.state).end;
      if (this.find && this.find.test(shown(line))) this.matches.push(this.lines.length - 1);
    }
    this.spacer.style.height = `${logHeight(this.lines.length)}px`;
    this.empty.hidden = this.lines.length > 0;
    // A linked line is scrolled to once, when it arrives; after that the
    // reader scrolls where they like.
    if (this.target && !this.revealed && this.target <= this.lines.length) this.reveal(this.target, false);
    else if (wasBottom) this.el.scrollTop = this.el.scrollHeight;
    this.schedule();
  }

  finish() {
    if (this.partial) this.add("\n");
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  render(force = false) {
    const [first, last] = visibleLines(this.el.scrollTop, this.el.clientHeight, this.lines.length);
    if (!force && first === this.shown[0] && last === this.shown[1]) return;
    this.shown = [first, last];
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.append(this.row(i));
    this.rowsEl.style.transform = `translateY(${rowsOffset(first)}px)`;
    this.rowsEl.replaceChildren(frag);
    if (this.onRender) this.onRender(last - first);
  }

  row(i) {
    const n = i + 1;
    const tx = h("span", { class: "tx" });
    const { parts } = segments(this.lines[i], this.starts[i] || {});
    const hits = this.findAll ? matchRanges(parts.map((p) => p.text).join(""), this.findAll) : [];
    const current = i === this.matches[this.at];
    let offset = 0;
    for (const part of parts) {
      const cls = classesOf(part.state);
      const style = styleOf(part.state);
      const span = cls || style ? h("span", { class: cls || undefined }) : null;
      if (span && style) span.style.cssText = style;
      const into = span || tx;
      for (const piece of markPieces(part.text, offset, hits)) {
        into.append(piece.mark ? h("mark", { class: current ? "current" : undefined }, piece.text) : piece.text);
      }
      offset += part.text.length;
      if (span) tx.append(span);
    }
    return h(
      "div",
      { class: n === this.target ? "line target" : "line", id: `L${n}` },
      h("a", { class: "ln", href: this.linkFor(n), "aria-label": `Line ${n}`, tabindex: "-1" }, String(n)),
      tx,
    );
  }

  /** Scrolls a line (1-based) into the middle of the view. */
  reveal(n, mark = true) {
    if (mark) this.target = n;
    this.revealed = true;
    this.follow = false; // the reader asked for this line, not the end
    this.el.scrollTop = centreOn(n, this.el.clientHeight);
    this.render(true);
  }

  /** Searches what is shown (escapes and overwritten text excluded), case-insensitively. */
  search(query) {
    this.query = query;
    const patterns = searchPatterns(query);
    this.find = patterns && patterns.find;
    this.findAll = patterns && patterns.findAll;
    this.matches = [];
    this.at = -1;
    if (this.find) this.lines.forEach((l, i) => this.find.test(shown(l)) && this.matches.push(i));
    this.render(true);
    return this.matches.length;
  }

  /** Moves to the next (`dir` 1) or previous (-1) match: its number and line. */
  step(dir) {
    if (!this.matches.length) return null;
    this.at = nextMatch(this.matches, this.at, dir, topLine(this.el.scrollTop));
    const line = this.matches[this.at] + 1;
    this.el.scrollTop = centreOn(line, this.el.clientHeight);
    this.render(true);
    return { index: this.at + 1, line };
  }
}
