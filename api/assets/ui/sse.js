// Pure: the text format of Server-Sent Events, read chunk by chunk as they
// arrive. No DOM, no network.

export class EventStreamParser {
  constructor() {
    this.buf = "";
    this.heldCR = false;
  }

  /**
   * Takes the next decoded chunk; returns the events it completed, in
   * order, as `{ name, id, data }` (`id` null when the event has none;
   * `data` the data lines joined by "\n", or null when it has none).
   */
  push(chunk) {
    // Lines may end in CRLF, LF or CR; a CR at a chunk's end may be
    // half of a CRLF, so it waits for the next chunk.
    let buf = this.buf + (this.heldCR ? "\r" : "") + chunk;
    this.heldCR = buf.endsWith("\r");
    if (this.heldCR) buf = buf.slice(0, -1);
    buf = buf.replace(/\r\n?/g, "\n");
    const events = [];
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      events.push(parseBlock(buf.slice(0, cut)));
      buf = buf.slice(cut + 2);
    }
    this.buf = buf;
    return events;
  }
}

function parseBlock(block) {
  let name = "message", id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = val;
    else if (field === "id") id = val;
    else if (field === "data") data.push(val);
  }
  return { name, id, data: data.length ? data.join("\n") : null };
}
