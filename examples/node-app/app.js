"use strict";
// Greetings: a small Node HTTP app for the guide docs/ship-node.md, on node's own http module.
//
// createServer() is what server.js listens with. /health names the release it serves, read from the marker
// Slipway writes into every release directory (the service runs in the release it started on), so the
// deployment's check can ask each server whether it serves the release just deployed.
const http = require("node:http");
const { readRelease } = require("release-marker");

function greet(name) {
  return `hello, ${name || "world"}`;
}

function createServer({ release = readRelease(process.cwd()) } = {}) {
  return http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (req.method === "GET" && url.pathname === "/health") {
      return send(res, 200, { status: "ok", ...release });
    }
    if (req.method === "GET" && url.pathname === "/") {
      return send(res, 200, { message: greet(url.searchParams.get("name")) });
    }
    return send(res, 404, { error: `no route for ${req.method} ${url.pathname}` });
  });
}

function send(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body) + "\n");
}

module.exports = { createServer, greet };
