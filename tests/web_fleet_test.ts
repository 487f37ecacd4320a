/**
 * The analyst's page on `cutcap fleet`, in Chromium: two sensors (`cutcap serve` on archives
 * exported to a test ClickHouse; sensor names cannot hold markup, --sensor-name refuses it) behind
 * a coordinator. A typed query shows
 * the rows of the coordinator's `/flows` with their sensor, the histogram adds up to the count,
 * `sensor NAME` validates, Download saves the coordinator's `/query` bytes, and the status view
 * lists the sensors. Screenshots go to test-output/web/.
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { cutcap } from "./support/oracle.ts";
import { exportReplayArgs, startClickHouse } from "./support/clickhouse.ts";
import {
  download,
  launchBrowser,
  requireChromium,
  screenshots,
  shownRows,
  shownTotals,
  type TestBrowser,
  watchDialogs,
  watchErrors,
} from "./support/browser.ts";
import { freePort, type ServerProcess, startServe, startServer } from "./support/process.ts";

const SENSORS = ["east", "west"];
const QUERY = "tcp or udp";

Deno.test({
  name:
    "the page on cutcap fleet: sensor column, totals, histogram, sensor terms, download, status",
  sanitizeResources: false,
  sanitizeOps: false,
  ignore: !requireChromium("the fleet page's browser test"),
}, async () => {
  const work = await Deno.makeTempDir({ prefix: "cutcap-fleet-page-" });
  const clickhouse = await startClickHouse();
  const servers: ServerProcess[] = [];
  let browser: TestBrowser | undefined;
  try {
    for (const [i, name] of SENSORS.entries()) {
      const input = `${work}/${i}.pcap`;
      await writeTrafficPcap(input, {
        seed: 150 + i,
        packets: 1500,
        rate: 500,
        startTs: 1_800_000_000 + i,
      });
      const port = freePort();
      const result = await cutcap(
        exportReplayArgs(input, `${work}/out${i}`, clickhouse.url, name, [
          "--advertise-url",
          `http://127.0.0.1:${port}`,
        ]),
      );
      assert.equal(result.code, 0, result.stderr);
      servers.push(await startServe(`${work}/out${i}`, [], { port: port }));
    }
    const fleet = await startServer(["fleet", "--clickhouse", clickhouse.url]);
    servers.push(fleet);
    const base = fleet.url;
    const expected =
      (await (await fetch(`${base}/flows?q=${encodeURIComponent(QUERY)}`)).json() as {
        sensor: string;
        src: string;
        dst: string;
        packets: number;
        first: number;
      }[]).sort((a, b) => a.first - b.first || (a.sensor < b.sensor ? -1 : 1));
    assert.deepEqual([...new Set(expected.map((f) => f.sensor))].sort(), [...SENSORS].sort());

    browser = await launchBrowser();
    const page = await browser.browser.newPage();
    const dialogs = watchDialogs(page);
    const errors = watchErrors(page);
    await page.setViewport({ width: 1280, height: 800 });
    await page.goto(`${base}/`, { waitUntil: "networkidle0" });
    await page.type("#q", QUERY);
    await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
    const rows = await shownRows(page);
    assert.deepEqual(
      rows,
      expected.slice(0, 50).map((f) => ({
        sensor: f.sensor,
        src: f.src,
        dst: f.dst,
        packets: f.packets,
      })),
    );
    const packets = expected.reduce((s, f) => s + f.packets, 0);
    assert.deepEqual(
      await shownTotals(page),
      { flows: expected.length, packets, histogram: packets },
      "histogram total = count",
    );
    await screenshots(page, "fleet-search");

    // Download = the coordinator's /query for the same text.
    const saved = await download(page, "#download", `${work}/downloads`);
    const answer = new Uint8Array(
      await (await fetch(`${base}/query?q=${encodeURIComponent(QUERY)}`)).arrayBuffer(),
    );
    assert.ok(answer.length > 24);
    assert.deepEqual(saved, answer);

    // `sensor NAME` is a term here: it validates and narrows.
    const v =
      await (await fetch(`${base}/api/validate?q=${encodeURIComponent("sensor east and tcp")}`))
        .json();
    assert.deepEqual(v, { ok: true });
    await page.goto(`${base}/?q=${encodeURIComponent("sensor east")}`, {
      waitUntil: "networkidle0",
    });
    const east = expected.filter((f) => f.sensor === "east").length;
    assert.ok(east > 0);
    assert.equal(
      await page.$eval("#count [data-flows]", (e) => Number(e.getAttribute("data-flows"))),
      (await (await fetch(`${base}/flows?q=sensor%20east`)).json()).length,
    );

    // The status view lists the sensors, names as text.
    await page.goto(`${base}/?view=status`, { waitUntil: "networkidle0" });
    const status = await page.$eval("#status", (s) => s.textContent ?? "");
    for (const name of SENSORS) assert.ok(status.includes(name), name);
    assert.match(status, /Reachable/);
    await screenshots(page, "fleet-status");
    assert.deepEqual(dialogs, []);
    assert.deepEqual(errors, [], "no console error, no CSP refusal");
  } finally {
    await browser?.close();
    for (const s of servers) await s.stop();
    await clickhouse.remove();
    await Deno.remove(work, { recursive: true });
  }
});
