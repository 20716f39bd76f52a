// What the Secrets page sends and offers.

import assert from "node:assert/strict";
import test from "node:test";

import { managesSecrets, manageable, onlyFor, secretBody, secretQuery, words } from "../secret-form.js";

test("comma-separated words, trimmed, empty ones dropped", () => {
  assert.deepEqual(words(""), []);
  assert.deepEqual(words(undefined), []);
  assert.deepEqual(words(" main, release/* ,,"), ["main", "release/*"]);
});

test("a PUT body: server-wide without repo, environment only with a repo", () => {
  const fields = { name: " DEPLOY_KEY ", value: " kept as typed ", events: "push, tag", branches: "", tags: "v*" };
  assert.deepEqual(secretBody({ ...fields, environment: "prod" }), {
    name: "DEPLOY_KEY",
    value: " kept as typed ",
    events: ["push", "tag"],
    branches: [],
    tags: ["v*"],
  });
  const repo = secretBody({ ...fields, repo: "acme/web" });
  assert.equal(repo.repo, "acme/web");
  assert.ok(!("environment" in repo));
  assert.equal(secretBody({ ...fields, repo: "acme/web", environment: " prod " }).environment, "prod");
});

test("a DELETE query names the secret and its scope, encoded", () => {
  assert.equal(secretQuery({ name: "A", repo: null, environment: null }), "name=A");
  assert.equal(secretQuery({ name: "A", repo: "acme/web", environment: "prod&x" }), "name=A&repo=acme%2Fweb&environment=prod%26x");
});

test("a secret's limits", () => {
  assert.equal(onlyFor({ events: [], branches: [], tags: [] }), "every run");
  assert.equal(onlyFor({ events: ["push"], branches: ["main", "release/*"], tags: ["v*"] }), "events: push; branches: main, release/*; tags: v*");
});

test("the repositories a token may manage", () => {
  const repos = [{ name: "acme/web" }, { name: "acme/api" }];
  assert.deepEqual(manageable(repos, { scope: "admin", maintains: [] }), repos);
  assert.deepEqual(manageable(repos, { scope: "write", maintains: ["ACME/api"] }), [{ name: "acme/api" }]);
  assert.deepEqual(manageable(repos, { scope: "write" }), []);
  assert.deepEqual(manageable(repos, null), []);
  assert.equal(managesSecrets({ scope: "admin" }), true);
  assert.equal(managesSecrets({ scope: "write", maintains: ["acme/web"] }), true);
  assert.equal(managesSecrets({ scope: "write", maintains: [] }), false);
  assert.equal(managesSecrets(null), false);
});
