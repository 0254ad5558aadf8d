"use strict";
// The service Slipway runs on each server (deploy.services.web): listens on HOST:PORT, which the service's
// env and port give it. SIGTERM, the process manager's stop signal, is a graceful stop: no new connection
// is accepted, the requests in flight are answered, idle keep-alive connections are closed, then it exits.
const { createServer } = require("./app");

const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT || 3000);
const server = createServer();

server.listen(port, host, () => {
  console.log(`node-app listening on http://${host}:${port}`);
});

process.on("SIGTERM", () => {
  console.log("SIGTERM: finishing the requests in flight");
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
