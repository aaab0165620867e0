// The review console in a real headless browser: Debian's Chromium, driven by
// `playwright-core` from npm (installed by `cargo xtask mcp-peers`). Run by
// `tests/browser.rs`, which starts the server and checks the outcome on its side.
//
// usage: node console.mjs BASE_URL [SCREENSHOT_DIR]
//
// Prints one JSON object: what the browser saw at each step. Exit 1 on a step that
// could not be done (a missing button, a page that did not load).
import { pathToFileURL } from "node:url";

// The installed `playwright-core` (an ES module is not found through NODE_PATH).
const { chromium } = await import(pathToFileURL(process.env.AGENTC_PLAYWRIGHT).href);
const [base, screenshots] = process.argv.slice(2);
const executablePath = process.env.AGENTC_CHROMIUM ?? "/usr/bin/chromium";
const seen = { dialogs: 0, console_errors: [], steps: {} };

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // The sandbox needs user namespaces, which a CI container may not grant.
  args: ["--no-sandbox"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  // An alert, confirm or prompt is an injected script that ran.
  page.on("dialog", async (dialog) => {
    seen.dialogs += 1;
    await dialog.dismiss();
  });
  page.on("console", (message) => {
    if (message.type() === "error") seen.console_errors.push(message.text());
  });

  // Sign in as Alice, with the keyboard only.
  await page.goto(`${base}/console`);
  seen.steps.redirected_to = new URL(page.url()).pathname;
  await page.getByLabel("Your token or API key for this server").focus();
  await page.keyboard.type("alice-token-1");
  await page.keyboard.press("Enter");
  await page.waitForURL(`${base}/console/reviews`);

  // Two reviews wait: the hostile one is shown, and nothing in it runs.
  const reviews = page.locator("article.review");
  seen.steps.reviews = await reviews.count();
  const first = reviews.first();
  seen.steps.first_tool = await first.locator("h2 code").first().textContent();
  seen.steps.arguments_text = await first.locator("table.fields").first().innerText();
  seen.steps.injected = await page.evaluate(() => window.__xss === 1);
  seen.steps.script_elements = await page.evaluate(() => document.querySelectorAll("main script").length);
  if (screenshots) {
    await page.screenshot({ path: `${screenshots}/console-review.png`, fullPage: true });
  }

  // Approve the first, and see its engagement complete.
  const approved = await first.locator("dd a").first().textContent();
  await first.getByRole("button", { name: "Approve this call" }).click();
  await page.waitForURL(/done=approved/);
  seen.steps.after_approval = await page.locator("p.message").first().textContent();
  seen.steps.approved_engagement = approved;
  for (let attempt = 0; attempt < 50; attempt += 1) {
    await page.goto(`${base}/console/engagements/${approved}`);
    seen.steps.approved_page = await page.locator("main").innerText();
    if (seen.steps.approved_page.includes("completed")) break;
    await page.waitForTimeout(100);
  }
  await page.goto(`${base}/console/reviews`);

  // Refuse the next, with a reason.
  const next = page.locator("article.review").first();
  const engagement = await next.locator("dd a").first().textContent();
  await next.getByLabel("Reason").fill("the customer never asked for this");
  await next.getByRole("button", { name: "Refuse" }).click();
  await page.waitForURL(/done=refused/);
  seen.steps.after_refusal = await page.locator("p.message").first().textContent();
  seen.steps.left = await page.locator("article.review").count();

  // The refused engagement's page.
  await page.goto(`${base}/console/engagements/${engagement}`);
  seen.steps.refused_engagement = engagement;
  seen.steps.refused_page = await page.locator("main").innerText();
  if (screenshots) {
    await page.screenshot({ path: `${screenshots}/console-engagement.png`, fullPage: true });
  }

  // Bob, in another browser context, sees neither review nor engagement.
  const bob = await browser.newContext();
  const bobPage = await bob.newPage();
  await bobPage.goto(`${base}/console/sign-in`);
  await bobPage.getByLabel("Your token or API key for this server").fill("bob-token-22");
  await bobPage.getByRole("button", { name: "Sign in" }).click();
  await bobPage.waitForURL(`${base}/console/reviews`);
  seen.steps.bob_reviews = await bobPage.locator("main").innerText();
  const response = await bobPage.goto(`${base}/console/engagements/${engagement}`);
  seen.steps.bob_engagement_status = response.status();
  const approvedResponse = await bobPage.goto(`${base}/console/engagements/${approved}`);
  seen.steps.bob_approved_status = approvedResponse.status();
  seen.steps.injected_anywhere = seen.dialogs > 0 || (await page.evaluate(() => window.__xss === 1));
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
