// A long-lived Node process that runs deployer's JavaScript requests one after another:
// `run` (an artifact over .npy inputs, in Node or Chromium) and `page` (the demo page
// check). It keeps one Chromium for all of them, so a build launches a browser once per
// worker instead of once per run.
//   node server.mjs FD    requests: JSON lines on stdin; replies: JSON lines on file descriptor FD
// Libraries print to stdout and stderr as they like: replies never share a stream with them.
import { writeSync } from "node:fs";
import { createInterface } from "node:readline";
import { runArtifact, launchChromium } from "./run.mjs";
import { checkPage } from "./page_check.mjs";

const replies = Number(process.argv[2]);
let chromium = null;
const browser = async () => {
  if (!chromium || !chromium.isConnected()) chromium = await launchChromium();
  return chromium;
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const request = JSON.parse(line);
  let reply;
  try {
    const value = request.op === "page" ? await checkPage(request, await browser()) : await runArtifact(request, browser);
    reply = { ok: true, value: value ?? null };
  } catch (e) {
    reply = { ok: false, error: String(e && e.stack ? e.stack : e) };
  }
  writeSync(replies, JSON.stringify(reply) + "\n");
}
if (chromium) await chromium.close();
