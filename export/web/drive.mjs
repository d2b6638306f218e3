// Drives the demo page in headless Chromium through puppeteer-core (the system
// browser: nothing is downloaded) and prints one JSON object: each run's result and
// the console lines MediaPipe printed while it ran.
//
// node drive.mjs '{"url": ..., "chromium": ..., "userDataDir": ..., "runs": [...]}'
// where each run is {"model": url, "delegate": "GPU"|"CPU", "image": url}.
// Every request that does not go to 127.0.0.1 is blocked (MediaPipe sends usage logs).
// `nodeModules` is the node_modules folder that holds puppeteer-core (`npm ci` at the
// repository root installs it).
import { createRequire } from "node:module";

const task = JSON.parse(process.argv[2]);
const require = createRequire(task.nodeModules + "/");
const puppeteer = require("puppeteer-core");
const browser = await puppeteer.launch({
  executablePath: task.chromium,
  headless: true,
  userDataDir: task.userDataDir,
  args: [
    "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--enable-webgl",
  ],
});
const output = { runs: [], blocked: [], pageErrors: [] };
let current = null;
const loose = [];
try {
  const page = await browser.newPage();
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.hostname === "127.0.0.1" || url.protocol === "data:" || url.protocol === "blob:") {
      request.continue();
    } else {
      output.blocked.push(request.url());
      request.abort();
    }
  });
  page.on("console", (message) => (current ? current.console : loose).push(message.text()));
  page.on("pageerror", (error) => output.pageErrors.push(String(error)));
  await page.goto(task.url, { waitUntil: "load" });
  await page.waitForFunction("window.deconvnet !== undefined", { timeout: 120000 });
  for (const run of task.runs) {
    current = { ...run, console: [] };
    try {
      const result = await page.evaluate((r) => window.deconvnet.segment(r), run);
      Object.assign(current, result);
    } catch (error) {
      current.error = String(error);
    }
    output.runs.push(current);
    current = null;
  }
} finally {
  output.console = loose;
  await browser.close();
}
process.stdout.write(JSON.stringify(output));
