// check-dashboard.js - test-dashboard.sh's browser half: opens clusterd's
// dashboard in Debian's chromium (headless, through puppeteer-core) and
// checks what a person would see.
//
//   node check-dashboard.js URL NODES GPID READY_FILE [TIMEOUT_MS]
//
// 1. the page loads and, within the time, shows NODES node cards, every
//    one "alive" with a load plot, and job GPID in the jobs table;
// 2. then it writes READY_FILE (the shell migrates GPID now) and waits for
//    a migration of GPID to appear in "Recent migrations";
// 3. all along, no console error, no uncaught exception, no failed or
//    non-2xx request.
// Prints one JSON line {"ok": bool, "steps": [...], "errors": [...]} and
// exits 0 only when everything held.
"use strict";
const fs = require("fs");
const puppeteer = require("puppeteer-core");

const [url, nodesArg, gpid, readyFile, timeoutArg] = process.argv.slice(2);
const want = Number(nodesArg);
const timeout = Number(timeoutArg || 40000);
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";

async function main() {
  const result = { ok: false, steps: [], errors: [] };
  const browser = await puppeteer.launch({
    executablePath: browserPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--no-default-browser-check"],
  });
  try {
    const page = await browser.newPage();
    page.on("console", m => { if (m.type() === "error") result.errors.push("console: " + m.text()); });
    page.on("pageerror", e => result.errors.push("exception: " + e.message));
    page.on("requestfailed", r => result.errors.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));
    page.on("response", r => { if (r.status() >= 400) result.errors.push(`HTTP ${r.status()}: ${r.url()}`); });

    const resp = await page.goto(url, { waitUntil: "load", timeout });
    result.steps.push(`loaded ${url}: HTTP ${resp.status()}`);

    await page.waitForFunction((n, g) => {
      const cards = [...document.querySelectorAll("#nodes .node")];
      return cards.length === n &&
        cards.every(c => c.querySelector(".state").textContent === "alive" && c.querySelector("canvas.load")) &&
        document.querySelector(`#jobs tr[data-gpid="${g}"]`) !== null;
    }, { timeout, polling: 200 }, want, gpid);
    const ids = await page.$$eval("#nodes .node", cs => cs.map(c => Number(c.dataset.nodeId)));
    result.steps.push(`nodes shown: ${ids.join(",")}; job ${gpid} listed`);
    const from = await page.$eval(`#jobs tr[data-gpid="${gpid}"] td:nth-child(2)`, td => td.textContent);

    fs.writeFileSync(readyFile, "ready\n");
    await page.waitForSelector(`#migrations li.migration[data-gpid="${gpid}"]`, { timeout });
    const text = await page.$eval(`#migrations li.migration[data-gpid="${gpid}"]`, li => li.textContent);
    result.steps.push(`migration shown: ${text}`);
    if (!text.includes(`from node ${from} to node`))
      result.errors.push(`the migration does not say it left node ${from}: ${text}`);
    result.ok = result.errors.length === 0;
  } catch (e) {
    result.errors.push("failed: " + e.message);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

main().catch(e => { console.log(JSON.stringify({ ok: false, errors: [String(e)] })); process.exit(1); });
