// Slipway's web page: plain modules, no build step. It speaks only the
// public /api/v1 with the token the user signs in with, and shows only the
// actions that token may take. Everything live comes from the API's event
// streams.
//
// The modules, from the top: this file starts the page; router.js maps
// addresses to pages/*.js; api.js is the only way to the server (sse.js
// reads its event streams); dom.js builds elements; graph.js and log.js
// draw a run. status.js, format.js, ansi.js, graph-layout.js, log-view.js
// and sse.js touch no DOM, and test/ checks them with `node --test`.

import { signOut, whenSignedOut } from "./api.js";
import { route } from "./router.js";

whenSignedOut(route);
document.getElementById("sign-out").addEventListener("click", () => signOut());
// The skip link must not change the hash: the hash is the page's address.
document.getElementById("skip").addEventListener("click", (ev) => {
  ev.preventDefault();
  document.getElementById("main").focus();
});
window.addEventListener("hashchange", () => route());
route();
