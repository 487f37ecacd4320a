/**
 * The analyst's page in a real browser (Debian's Chromium through puppeteer-core) against a live
 * sensor capturing in a namespace on an interface whose name is markup: a search typed and run with
 * Enter shows the rows of `/flows`, the histogram adds up to the count, the URL reproduces the page,
 * a malformed query shows the server's message at its position without any request to `/query`,
 * Download saves `/query`'s bytes, markup in names stays text, and a plain `chromium --dump-dom`
 * sees the table. Then token login/logout against `cutcap serve` on the same archive. Screenshots go
 * to test-output/web/. Needs root (namespace, capture) and /usr/bin/chromium.
 */
import assert from "node:assert/strict";
import type { Page } from "puppeteer-core";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import type { FlowRecord } from "../src/query/flows.ts";
import { rootTest } from "./support/netns.ts";
import { pcapRecordCount } from "./support/web.ts";
import {
  download,
  dumpDom,
  launchBrowser,
  requireChromium,
  screenshots,
  shownRows,
  shownTotals,
  type TestBrowser,
  watchDialogs,
  watchErrors,
} from "./support/browser.ts";
import { freePort, sh, sleep, startCutcap, startServe } from "./support/process.ts";

/** The table's rows without the sensor column (a sensor has none). */
async function shownRowsIp(page: Page): Promise<{ src: string; dst: string; packets: number }[]> {
  return (await shownRows(page)).map(({ src, dst, packets }) => ({ src, dst, packets }));
}

const PACKETS = 3000;
const QUERY = "tcp or udp";

async function flows(base: string, q: string, init: RequestInit = {}): Promise<FlowRecord[]> {
  const r = await fetch(`${base}/flows?q=${encodeURIComponent(q)}`, init);
  assert.equal(r.status, 200);
  return await r.json();
}

/** Waits until the archive holds every replayed packet (files rotate every second). */
async function waitForArchive(base: string, packets: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const stored = (await flows(base, "after 2000-01-01")).reduce((s, f) => s + f.packets, 0);
    if (stored >= packets) return;
    if (Date.now() > deadline) throw new Error(`archive holds ${stored} of ${packets} packets`);
    await sleep(250);
  }
}

rootTest(
  "the page in Chromium against a live sensor: search, histogram, shareable URL, validation, download, escaping",
  async ({ dir, veth }) => {
    // An interface name that is markup: it must show as text on the status view.
    const odd = `<b>${Deno.pid}`;
    await sh("ip", ["link", "set", veth!.outside, "down"]);
    await sh("ip", ["link", "set", veth!.outside, "name", odd]);
    await sh("ip", ["link", "set", odd, "up"]);
    const input = `${dir}/in.pcap`;
    await writeTrafficPcap(input, { seed: 1515, packets: PACKETS, rate: 2000 });
    const port = freePort();
    const base = `http://127.0.0.1:${port}`;
    const sensor = startCutcap([
      "-i",
      odd,
      "--out",
      `${dir}/out`,
      "--listen",
      `127.0.0.1:${port}`,
      "--byte-cutoff",
      "0",
      "--rotate-interval",
      "1s",
    ]);
    let browser: TestBrowser | undefined;
    try {
      await sensor.waitFor(/Capturing on/, 20_000);
      assert.equal(await veth!.replay(input, { pps: 1000 }), PACKETS);
      await waitForArchive(base, PACKETS);
      browser = await launchBrowser();
      const page = await browser.browser.newPage();
      const dialogs = watchDialogs(page);
      const errors = watchErrors(page);
      const requests: string[] = [];
      page.on("request", (r) => requests.push(r.url()));
      await page.setViewport({ width: 1280, height: 800 });

      // Type a query, press Enter: rows equal /flows, histogram total equals the count.
      await page.goto(`${base}/`, { waitUntil: "networkidle0" });
      await page.type("#q", QUERY);
      await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
      const expected = (await flows(base, QUERY)).sort((a, b) => a.first - b.first);
      const rows = await shownRowsIp(page);
      assert.equal(rows.length, Math.min(50, expected.length));
      assert.deepEqual(
        rows,
        expected.slice(0, 50).map((f) => ({ src: f.src, dst: f.dst, packets: f.packets })),
      );
      const packets = expected.reduce((s, f) => s + f.packets, 0);
      assert.deepEqual(
        await shownTotals(page),
        { flows: expected.length, packets, histogram: packets },
        "histogram total = count of matching packets",
      );
      await screenshots(page, "search");

      // The URL reproduces the page.
      const shared = page.url();
      assert.equal(shared, `${base}/?q=tcp+or+udp`);
      const again = await browser.browser.newPage();
      await again.goto(shared, { waitUntil: "networkidle0" });
      assert.deepEqual(await shownRowsIp(again), rows);
      await again.close();

      // Brushing narrows the time range: by mouse (drag across the middle third) and by keyboard
      // (arrows pick buckets, Shift widens, Enter); the narrowed page counts what /flows counts.
      const box = await page.$eval("#hist", (svg) => {
        const r = svg.getBoundingClientRect();
        return { x: r.x, y: r.y, width: r.width, height: r.height };
      });
      await page.mouse.move(box.x + box.width / 3, box.y + box.height / 2);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2, { steps: 5 });
      await Promise.all([page.waitForNavigation(), page.mouse.up()]);
      await checkNarrowed(page, base);
      await page.goto(shared, { waitUntil: "networkidle0" });
      await page.focus("#to");
      await page.keyboard.press("Tab"); // the histogram is the next stop after the time fields
      assert.equal(await page.evaluate("document.activeElement.id"), "hist");
      for (const key of ["ArrowRight", "ArrowRight"] as const) await page.keyboard.press(key);
      await page.keyboard.down("Shift");
      for (let i = 0; i < 3; i++) await page.keyboard.press("ArrowRight");
      await page.keyboard.up("Shift");
      await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
      await checkNarrowed(page, base);
      await page.goto(shared, { waitUntil: "networkidle0" });

      // Download: the saved file's bytes are /query's answer for the same query.
      const saved = await download(page, "#download", `${dir}/downloads`);
      const answer = new Uint8Array(
        await (await fetch(`${base}/query?q=${encodeURIComponent(QUERY)}`)).arrayBuffer(),
      );
      assert.ok(answer.length > 24 + PACKETS * 16);
      assert.deepEqual(saved, answer, "downloaded bytes = /query");

      // The command line beside it, run as shown (cutcap from this checkout): tcpdump prints every
      // packet of the same answer.
      const command = await page.$eval("#copy", (b) => b.getAttribute("data-copy") ?? "");
      assert.equal(command, `cutcap read --server ${base} 'tcp or udp'`);
      const main = new URL("../main.ts", import.meta.url).pathname;
      const printed = await sh("sh", [
        "-c",
        `${command.replace(/^cutcap /, `${Deno.execPath()} run -A ${main} `)} -nn -q 2>/dev/null`,
      ]);
      assert.equal(printed.trim().split("\n").length, pcapRecordCount(answer));

      // A malformed query: the server's message at its position, nothing sent to /query.
      await page.goto(`${base}/`, { waitUntil: "networkidle0" });
      requests.length = 0;
      const bad = "host 198.18.0.1 and port 65555 <img src=x onerror=alert(1)>";
      await page.type("#q", bad);
      await page.waitForSelector("#q-error:not([hidden]) mark");
      const shown = await page.$eval("#q-error", (e) => ({
        message: e.querySelector(".message")?.textContent,
        mark: e.querySelector("mark")?.textContent,
        before: e.querySelector("mark")?.previousSibling?.textContent,
        html: e.innerHTML,
      }));
      assert.equal(shown.message, "Invalid port 65555 at position 25: expected 0-65535");
      assert.equal(shown.mark, "6");
      assert.equal(shown.before, "host 198.18.0.1 and port ");
      assert.doesNotMatch(shown.html, /<img/);
      await page.keyboard.press("Enter");
      await sleep(500);
      assert.equal(page.url(), `${base}/`, "Enter on an invalid query does not search");
      assert.ok(requests.some((u) => u.includes("/api/validate?q=")), "validated by the server");
      assert.deepEqual(requests.filter((u) => new URL(u).pathname === "/query"), []);
      await screenshots(page, "invalid");

      // The status view: the interface's markup name as text, running configuration, sparklines.
      await page.goto(`${base}/?view=status`, { waitUntil: "networkidle0" });
      const status = await page.$eval("#status", (s) => ({
        text: s.textContent ?? "",
        bold: s.querySelectorAll("b").length,
      }));
      assert.ok(status.text.includes(odd), "interface name shown as text");
      assert.equal(status.bold, 0, "no markup from the interface name");
      assert.match(status.text, /Rotation\s*every 1s or 1\.0 GiB/);
      assert.match(status.text, /Newest queryable packet\s*\d+s ago/);
      const spark = await page.$eval(
        "#sparklines tr:nth-child(2) td:nth-child(2) svg",
        (svg) => ({
          label: svg.getAttribute("aria-label") ?? "",
          points: svg.querySelector("polyline")?.getAttribute("points")?.split(" ").length ?? 0,
        }),
      );
      assert.match(spark.label, /peak [1-9]/, "the packet rate sparkline saw the replay");
      assert.ok(spark.points >= 3, `samples every 2 s: ${spark.points}`);
      await screenshots(page, "status");
      assert.deepEqual(dialogs, [], "no script from data ever ran");
      assert.deepEqual(errors, [], "no console error, no CSP refusal");
      // The browser enforces the policy: an inline script put into the page does not run.
      await page.evaluate(
        `document.body.append(Object.assign(document.createElement("script"), { textContent: "window.ran = 1" }))`,
      );
      assert.equal(await page.evaluate("window.ran"), undefined, "inline script refused");
      assert.match(errors.join("\n"), /Content Security Policy/);

      // chromium --dump-dom with the search in the URL shows the flows table.
      const dom = await dumpDom(`${base}/?q=${encodeURIComponent(QUERY)}`);
      assert.match(dom, /<table id="flows">/);
      assert.equal([...dom.matchAll(/<tr><td>/g)].length, rows.length);
    } finally {
      await browser?.close();
      sensor.kill("SIGTERM");
      await sensor.exited;
    }
  },
  { veth: "wb", ignore: !requireChromium("the page's browser test") },
);

/** The page now searches QUERY between its URL's from and to, and counts what /flows counts. */
async function checkNarrowed(page: Page, base: string): Promise<void> {
  const url = new URL(page.url());
  const [from, to] = [url.searchParams.get("from"), url.searchParams.get("to")];
  // As instants: "…:10Z" sorts after "…:10.550Z" as text.
  assert.ok(from && to && Date.parse(from) < Date.parse(to), `narrowed: ${url}`);
  assert.equal(url.searchParams.get("q"), QUERY);
  const within = await flows(base, `(${QUERY}) and after ${from} and before ${to}`);
  assert.ok(within.length > 0, `flows between ${from} and ${to}`);
  const shown = await page.$eval(
    "#count [data-flows]",
    (e) => Number(e.getAttribute("data-flows")),
  );
  assert.equal(shown, within.length);
}

rootTest(
  "with --token-file the page asks for the token, refuses a wrong one, works after login, logs out",
  async ({ dir }) => {
    const input = `${dir}/in.pcap`;
    await writeTrafficPcap(input, { seed: 1516, packets: 500, rate: 1000 });
    const replay = startCutcap(["--read", input, "--out", `${dir}/out`, "--listen", "off"]);
    assert.equal((await replay.exited).code, 0);
    Deno.writeTextFileSync(`${dir}/token`, "page-secret\n");
    const server = await startServe(`${dir}/out`, [
      "--token-file",
      `${dir}/token`,
      "--open-metrics", // startServe waits for /healthz
    ]);
    let browser: TestBrowser | undefined;
    try {
      browser = await launchBrowser();
      const page = await browser.browser.newPage();
      await page.setViewport({ width: 1280, height: 800 });
      await page.goto(`${server.url}/?q=udp`, { waitUntil: "networkidle0" });
      assert.ok(await page.$("form#login"), "the page asks for the token");
      await page.type("#token", "wrong");
      await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
      assert.match(await page.$eval(".error", (e) => e.textContent ?? ""), /Wrong token/);
      assert.equal((await page.cookies()).length, 0);
      await screenshots(page, "login");

      await page.type("#token", "page-secret");
      await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
      assert.equal(page.url(), `${server.url}/?q=udp`);
      const expected = await flows(server.url, "udp", {
        headers: { Authorization: "Bearer page-secret" },
      });
      assert.equal((await shownRowsIp(page)).length, Math.min(50, expected.length));
      const [cookie] = await page.cookies();
      assert.equal(cookie.name, "cutcap_session");
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.sameSite, "Strict");
      assert.ok(cookie.expires > Date.now() / 1000 + 3600, "the cookie expires, hours from now");
      assert.equal(await page.evaluate("document.cookie"), "", "scripts cannot read it");

      await Promise.all([page.waitForNavigation(), page.click("form.logout button")]);
      assert.ok(await page.$("form#login"), "logged out: the login form again");
      await page.goto(`${server.url}/?q=udp`, { waitUntil: "networkidle0" });
      assert.ok(await page.$("form#login"), "the old session is gone");
      assert.equal(await page.$("#flows"), null);
    } finally {
      await browser?.close();
      await server.stop();
    }
  },
  { ignore: !requireChromium("the page's login test") },
);
