// Drives the bee chat web app in headless chromium (playwright-core):
// a streamed reply appears, thumbs-up is acknowledged, a prompt blocked by the
// policy shows the notice, the language switch works, and a phone-sized
// screen has no horizontal overflow. Usage: node webapp.cjs URL CHROMIUM
"use strict";
const { chromium } = require("playwright-core");

const [url, exe] = process.argv.slice(2);

function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
  console.log("ok - " + what);
}

(async () => {
  const browser = await chromium.launch({ executablePath: exe, headless: true, args: ["--no-sandbox"] });
  let failed = false;
  try {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 }, locale: "zh-CN" });
    const problems = [];
    // The blocked prompt's 400 is expected; the browser logs every failed fetch.
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of 400/.test(m.text())) problems.push(m.text());
    });
    page.on("pageerror", (e) => problems.push(String(e)));
    await page.goto(url);
    check((await page.textContent("#send")) === "发送", "Chinese UI by default for zh-CN");

    await page.fill("#input", "你好");
    await page.click("#send");
    await page.waitForSelector(".msg.assistant .tools:not([hidden])", { timeout: 60000 });
    const reply = await page.textContent(".msg.assistant .text");
    check(reply.length > 0, "a streamed reply appeared (" + reply.length + " chars)");
    check(await page.isEnabled("#regen"), "regenerate is enabled after a reply");
    check(!(await page.isVisible(".msg.user .tools")), "no feedback buttons on the user's message");
    check(!(await page.isVisible(".msg.assistant .corr")), "the correction box waits for a thumbs-down");

    // regenerate replaces the reply; stop ends a running one and keeps it marked
    await page.click("#regen");
    await page.waitForSelector(".msg.assistant .tools:not([hidden])", { timeout: 60000 });
    check((await page.locator(".msg.assistant").count()) === 1, "regenerate replaced the reply");
    // Hold the next request for 3 s, so the reply is still running when stop is
    // clicked: the server can finish a tiny model's reply within milliseconds.
    await page.route("**/v1/chat/completions", async (route) => {
      await new Promise((r) => setTimeout(r, 3000));
      await route.continue().catch(() => {}); // the page aborted it: nothing to continue
    }, { times: 1 });
    await page.click("#regen");
    await page.waitForSelector(".msg.assistant.streaming");
    await page.click("#stop");
    await page.waitForSelector(".msg.assistant .flag", { timeout: 30000 });
    check((await page.textContent(".msg.assistant .flag")) === "已停止", "stop ends the stream");
    check(await page.isEnabled("#send"), "send is enabled again after stop");
    await page.click("#regen");
    await page.waitForSelector(".msg.assistant .tools:not([hidden])", { timeout: 60000 });

    await page.click(".msg.assistant .down");
    await page.waitForSelector(".msg.assistant .corr", { state: "visible" });
    check(true, "thumbs-down opens the correction box");
    await page.click(".msg.assistant .up");
    await page.waitForFunction(() => document.querySelector(".msg.assistant .fbstate").textContent !== "");
    check((await page.textContent(".msg.assistant .fbstate")) === "已记录，谢谢", "thumbs-up acknowledged");

    await page.fill("#input", "请问哪里出售炸药");
    await page.click("#send");
    await page.waitForSelector("#notice:not([hidden])", { timeout: 30000 });
    check((await page.textContent("#notice")).includes("内容安全策略"), "blocked prompt shows the policy notice");
    check((await page.locator(".msg.user.blocked").count()) === 1, "the blocked message is marked");

    await page.click("#lang");
    check((await page.textContent("#send")) === "Send", "language switch to English");

    if (process.env.E2E_SCREENSHOT) await page.screenshot({ path: process.env.E2E_SCREENSHOT, fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, "no horizontal overflow at 390 px");
    check(problems.length === 0, "no console errors or CSP violations" + (problems.length ? ": " + problems.join(" | ") : ""));
  } catch (e) {
    console.error(e.message || e);
    failed = true;
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
})();
