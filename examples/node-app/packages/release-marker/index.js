"use strict";
// The release and commit a process serves: the `.slipway-release` marker (JSON) Slipway writes into every
// release directory. Outside a deployment there is none: the release is "dev" and the commit null.
const fs = require("node:fs");
const path = require("node:path");

function readRelease(directory) {
  let marker;
  try {
    marker = JSON.parse(fs.readFileSync(path.join(directory, ".slipway-release"), "utf8"));
  } catch {
    return { release: "dev", commit: null };
  }
  return { release: marker.release ?? null, commit: marker.commit ?? null };
}

module.exports = { readRelease };
