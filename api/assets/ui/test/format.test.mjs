// How times, sizes, commits and digests read on the page.

import assert from "node:assert/strict";
import test from "node:test";

import { ago, duration, repoPath, short, shortDigest, size } from "../format.js";

test("durations: tenths under ten seconds, then seconds, minutes, hours", () => {
  assert.equal(duration(null), "");
  assert.equal(duration(1234), "1.2s");
  assert.equal(duration(12_400), "12s");
  assert.equal(duration(61_000), "1m 1s");
  assert.equal(duration(3_725_000), "1h 2m");
});

test("ages from now", () => {
  const now = 10_000_000_000;
  assert.equal(ago(0, now), "");
  assert.equal(ago(now - 5_000, now), "5s ago");
  assert.equal(ago(now - 120_000, now), "2m ago");
  assert.equal(ago(now - 3 * 3_600_000, now), "3h ago");
  assert.equal(ago(now - 2 * 86_400_000, now), "2d ago");
  assert.equal(ago(now + 5_000, now), "0s ago", "a clock a little ahead");
});

test("sizes in B, KiB, MiB", () => {
  assert.equal(size(999), "999 B");
  assert.equal(size(1536), "1.5 KiB");
  assert.equal(size(3 * 1024 * 1024), "3.0 MiB");
});

test("commits and digests are shortened; repositories become two path segments", () => {
  assert.equal(short("6113728f27ae82c7b1a177c8d03f9e96e0adf246"), "6113728f");
  assert.equal(short(null), "");
  assert.equal(shortDigest("registry:5000/acme/web@sha256:0123456789abcdef0123"), "sha256:0123456789ab");
  assert.equal(repoPath("acme/web app"), "acme/web%20app");
});
