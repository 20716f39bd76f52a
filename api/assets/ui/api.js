// The page's only way to the server: the public /api/v1 with the token the
// user signed in with (kept in session storage, so it goes when the tab
// does), and its event streams.

import { EventStreamParser } from "./sse.js";

const TOKEN_KEY = "slipway.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Who is signed in, and what their token may do. */
export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  get canWrite() {
    return this.me && this.me.scope !== "read";
  },
  approves(repo, env) {
    return (
      this.canWrite &&
      this.me.approver_of.some((a) => a.repo.toLowerCase() === repo.toLowerCase() && a.environment === env)
    );
  },
};

let signedOut = () => {};

/** What to do once signed out (the router shows the sign-in page, saying `why`). */
export function whenSignedOut(then) {
  signedOut = then;
}

/** Keeps a token the server accepted (as `me`) for this tab. */
export function signIn(token, me) {
  sessionStorage.setItem(TOKEN_KEY, token);
  session.token = token;
  session.me = me;
}

export function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  session.token = null;
  session.me = null;
  signedOut(why);
}

const authorization = (token) => ({ Authorization: `Bearer ${token}` });

/** A JSON request; an error answer throws an ApiError, a 401 signs out. */
export async function api(path, { method = "GET", body, signal, token = session.token } = {}) {
  const headers = authorization(token);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: "http", message: `${res.status} ${res.statusText}` };
    if (res.status === 401 && token === session.token) signOut(err.message);
    throw new ApiError(res.status, err.code, err.message);
  }
  return data;
}

/**
 * A file (an artifact) as a Blob; the token goes with it, as no link can
 * carry it. A failure says `what` failed.
 */
export async function download(path, what) {
  const res = await fetch(`/api/v1${path}`, { headers: authorization(session.token) });
  if (!res.ok) throw new Error(`${what}: ${res.status} ${res.statusText}`);
  return res.blob();
}

/**
 * Follows a Server-Sent Events endpoint with fetch, because EventSource
 * cannot send the Authorization header. Reconnects after a dropped
 * connection with Last-Event-ID, so no event is missed or repeated; stops
 * on `end`, or when `signal` aborts.
 */
export async function follow(path, signal, onEvent, { after = 0, onOpen = null } = {}) {
  let last = after;
  let wait = 1000;
  while (!signal.aborted) {
    let reader = null;
    try {
      const headers = { ...authorization(session.token), Accept: "text/event-stream" };
      if (last) headers["Last-Event-ID"] = String(last);
      const res = await fetch(`/api/v1${path}`, { headers, signal });
      if (res.status === 401) return signOut("your token is no longer accepted");
      // Not found or not allowed will not change by asking again.
      if (res.status === 403 || res.status === 404) return;
      if (!res.ok) throw new Error(`${res.status}`);
      wait = 1000;
      // The server subscribes before it answers: state read now misses nothing.
      if (onOpen) onOpen(last > 0);
      reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new EventStreamParser();
      let busySince = performance.now();
      for (;;) {
        // Reads of data already received resolve without giving the page
        // a frame; a long replay would otherwise paint only at its end.
        // (Hidden tabs get no frames anyway, and throttle timers.)
        if (!document.hidden && performance.now() - busySince > 12) {
          await new Promise((r) => setTimeout(r));
          busySince = performance.now();
        }
        const { value, done } = await reader.read();
        if (done) break;
        for (const ev of parser.push(value)) {
          if (ev.name === "end") return;
          if (ev.data !== null) onEvent(ev.name, JSON.parse(ev.data));
          // Only once handled: a reconnect resends what failed.
          if (ev.id) last = Number(ev.id);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      console.warn(`event stream ${path}:`, e);
    } finally {
      if (reader) reader.cancel().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 15000);
  }
}
