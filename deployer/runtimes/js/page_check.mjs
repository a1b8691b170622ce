// Open a built demo page in headless Chromium, run every model on each sample image,
// collect the detections the page drew and save a screenshot.
//   node page_check.mjs --page DIR --screenshot FILE --out FILE.json
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { serve, launchChromium, parseArgs } from "./run.mjs";

export async function checkPage({ page: pageDir, screenshot, out }, browser) {
  const server = await serve({ "/": pageDir });
  const page = await browser.newPage({ viewport: { width: 900, height: 800 } });
  try {
    const errors = [];
    page.on("pageerror", e => errors.push(String(e)));
    page.on("console", m => m.type() === "error" && errors.push(m.text()));
    await page.goto(`http://127.0.0.1:${server.address().port}/index.html`);
    await page.waitForFunction(() => window.deployerDemo && (window.deployerDemo.ready || window.deployerDemo.error),
                               null, { timeout: 60000 });
    const state = await page.evaluate(() => ({ error: window.deployerDemo.error, config: window.deployerDemo.config }));
    if (state.error) throw new Error(`page failed to start: ${state.error}; ${errors.join("; ")}`);
    const results = [];
    for (let m = 0; m < state.config.models.length; m++) {
      await page.evaluate(i => window.deployerDemo.selectModel(i), m);
      for (const sample of state.config.samples) {
        const r = await page.evaluate(s => window.deployerDemo.detect(s), sample);
        results.push({ model: r.model, sample, ms: r.ms, detections: r.detections.map(d => ({ box: d.box, label: d.label, score: d.score })) });
      }
    }
    // Leave the first model's first sample on screen for the screenshot.
    await page.evaluate(() => window.deployerDemo.selectModel(0));
    await page.evaluate(s => window.deployerDemo.detect(s), state.config.samples[0]);
    // The measured time changes from run to run: leave it out of the picture, so the same
    // build gives the same screenshot bytes (SHA256SUMS compares builds).
    await page.evaluate(() => {
      const status = document.getElementById("status");
      if (status) status.textContent = status.textContent.replace(/ in [0-9.]+ ms/, "");
    });
    await page.screenshot({ path: screenshot, fullPage: true });
    writeFileSync(out, JSON.stringify({ results, errors, browser: browser.version() }));
  } finally {
    await page.close();
    server.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const browser = await launchChromium();
  try {
    await checkPage(parseArgs(process.argv.slice(2)), browser);
  } finally {
    await browser.close();
  }
}
