"use strict";
// Unit tests, run by the pipeline's test stage on the built artifact (its node_modules, as shipped) with
// node's own test runner: `node --test`.
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { after, before, test } = require("node:test");

const { createServer, greet } = require("../app");
const { readRelease } = require("release-marker");

let server;
let base;

before(async () => {
  server = createServer({ release: { release: "20260101-000000", commit: "abc123" } });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => new Promise((resolve) => server.close(resolve)));

test("/health names the release it serves", async () => {
  const res = await fetch(`${base}/health`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: "ok", release: "20260101-000000", commit: "abc123" });
});

test("/ greets", async () => {
  assert.deepEqual(await (await fetch(`${base}/?name=ada`)).json(), { message: "hello, ada" });
  assert.equal(greet(""), "hello, world");
});

test("an unknown path is a 404", async () => {
  assert.equal((await fetch(`${base}/nope`)).status, 404);
});

test("the release marker: read when present, dev otherwise", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "node-app-"));
  assert.deepEqual(readRelease(dir), { release: "dev", commit: null });
  fs.writeFileSync(path.join(dir, ".slipway-release"), JSON.stringify({ release: "r1", commit: "c1", extra: 1 }));
  assert.deepEqual(readRelease(dir), { release: "r1", commit: "c1" });
  fs.rmSync(dir, { recursive: true });
});
