// Drives the operator's console in headless Chromium (Debian's chromium, through
// playwright-core) the way an operator would, and reports what it saw as JSON.
//
//   node console.js http://127.0.0.1:PORT TOKEN SESSION_KEY SCREENSHOT_DIR
//
// Exits non-zero on the first step that does not behave; prints
// {"console_errors": [...], "ops": [...]} otherwise.
"use strict";
const { chromium } = require("playwright-core");

const [base, token, sessionKey, shots] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

(async () => {
  const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    page.on("pageerror", (e) => errors.push(String(e)));
    const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
    const text = (sel) => page.locator(sel).innerText();
    // Polls an element's text (page.waitForFunction would evaluate a string, which the
    // console's Content-Security-Policy rightly forbids).
    const waitText = async (sel, ok, what) => {
      const until = Date.now() + 15000;
      for (;;) {
        const t = await text(sel);
        if (ok(t)) return t;
        if (Date.now() > until) throw new Error(what + ": " + sel + " is " + JSON.stringify(t));
        await page.waitForTimeout(100);
      }
    };

    await page.goto(base + "/console/");
    await page.locator("#login-form").waitFor({ state: "visible" });
    await shot("01-login");
    await page.fill("#token", token);
    await page.click("#login-btn");
    await page.locator("#nav").waitFor({ state: "visible" });

    // The dashboard's numbers change under load: two readings of ops/s, both above zero
    // and different.
    const ops = [];
    const deadline = Date.now() + 30000;
    while (ops.length < 2 && Date.now() < deadline) {
      const t = await text("#ops");
      const n = parseFloat(t.replace(/[^0-9.]/g, ""));
      if (n > 0 && (ops.length === 0 || t !== ops[ops.length - 1])) ops.push(t);
      await page.waitForTimeout(250);
    }
    if (ops.length < 2) throw new Error("the dashboard's ops/s never changed under load: " + JSON.stringify(ops));
    await shot("02-dashboard");

    // A migration step with its confirmation, then one-click step back.
    await page.click("nav button[data-page=migration]");
    await page.locator("#mig").waitFor({ state: "visible" });
    const before = await text("#mig-stage");
    await page.selectOption("#stage-select", "shadow");
    await page.fill("#percent-input", "50");
    await page.click("#mig-apply");
    await page.locator("#confirm").waitFor({ state: "visible" });
    const confirmText = await text("#confirm-text");
    if (!confirmText.includes("to shadow at 50%") || !confirmText.includes("compared")) {
      throw new Error("the confirmation does not say what the step changes: " + confirmText);
    }
    await shot("03-migration-confirm");
    await page.click("#confirm-yes");
    await waitText("#mig-stage", (t) => t === "shadow", "stage after the change");
    await waitText("#mig-percent", (t) => t === "50", "percent after the change");
    await shot("04-migration-shadow");
    await page.click("#mig-back");
    await waitText("#mig-stage", (t) => t === before, "stage after stepping back");
    await shot("05-migration-stepped-back");

    // Look a session up (no value shown) and log it out.
    await page.click("nav button[data-page=sessions]");
    await page.fill("#session-key", sessionKey);
    await page.click("#session-lookup");
    await page.locator("#session-logout").waitFor({ state: "visible" });
    const found = await text("#session-result");
    if (!found.includes("string") || found.includes("secret-session-data")) {
      throw new Error("the lookup shows the wrong thing: " + found);
    }
    await shot("06-session");
    await page.click("#session-logout");
    await page.locator("#confirm").waitFor({ state: "visible" });
    await page.click("#confirm-yes");
    await waitText("#session-message", (t) => t === "Logged out.", "logout message");

    // Every change is in the audit log.
    await page.click("nav button[data-page=audit]");
    await waitText("#audit", (t) => t.includes("session logout"), "audit log");
    const audit = await text("#audit");
    if (!audit.includes("shadow 50%") || !audit.includes("token:")) throw new Error("audit: " + audit);
    await shot("07-audit");
    for (const p of ["upstream", "persistence", "slowlog", "dashboard"]) {
      await page.click(`nav button[data-page=${p}]`);
      await page.waitForTimeout(300);
    }
    await shot("08-after");
    await page.click("#logout");
    await page.locator("#login-form").waitFor({ state: "visible" });
    console.log(JSON.stringify({ console_errors: errors, ops }));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(1);
});
