// Open a report.html in headless Chromium (the build's own browser, launched as the web
// runtimes launch it) and say what rendered: console and page errors, any request that left
// the file (the report must be self-contained), and per artifact section its charts and overlays.
//   node render_check.mjs REPORT.html SCREENSHOT.png  -> JSON on stdout
import { pathToFileURL } from "node:url";
import { launchChromium } from "../../deployer/runtimes/js/run.mjs";

const [report, screenshot] = process.argv.slice(2);
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
  const errors = [], requests = [];
  page.on("pageerror", e => errors.push(String(e)));
  page.on("console", m => m.type() === "error" && errors.push(m.text()));
  page.on("request", r => { if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) requests.push(r.url()); });
  await page.goto(pathToFileURL(report).href, { waitUntil: "load" });
  const found = await page.evaluate(() => {
    const images = [...document.querySelectorAll("image[id^=sample-]")];
    const sections = [...document.querySelectorAll("section.artifact")].map(s => ({
      id: s.id,
      charts: s.querySelectorAll("svg.chart").length,
      overlays: s.querySelectorAll("figure.ov use").length,
      differ: [...s.querySelectorAll(".pair")].map(p => Number(p.dataset.differ)),
      height: s.getBoundingClientRect().height,
    }));
    return { title: document.title, sections, images: images.length,
             imageHrefs: images.map(i => (i.getAttribute("href") || "").slice(0, 23)),
             tradeOffCharts: document.querySelectorAll("h2 + div.charts svg.chart").length,
             overviewRows: document.querySelectorAll("table tr").length };
  });
  await page.screenshot({ path: screenshot, fullPage: false });
  console.log(JSON.stringify({ ...found, errors, requests }));
} finally {
  await browser.close();
}
