/**
 * Health and status routes: /healthz, /readyz with its reasons, /status JSON (shape, rates between
 * calls, the files being written), the HTML page, the bearer token and --open-metrics, and query
 * routes mounted through `extra.routes`.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { createApp, readTokenFile } from "../src/server/app.ts";
import { type StatusReport, StatusTracker } from "../src/server/status.ts";
import { Counter } from "../src/worker/counters.ts";
import { outputFileName } from "../src/archive/naming.ts";
import { fakeEntry, type FakeSensor, fakeSensor } from "./support/fake_sensor.ts";

function cleanup(sensor: FakeSensor): void {
  Deno.removeSync(sensor.outDir, { recursive: true });
}

async function get(app: Hono, path: string, headers: Record<string, string> = {}) {
  const response = await app.request(path, { headers });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

Deno.test("/healthz answers while the process lives", async () => {
  const sensor = fakeSensor();
  sensor.workerList[0].done = true;
  const r = await get(createApp(sensor), "/healthz");
  assert.equal(r.status, 200);
  assert.equal(r.text, "ok\n");
  cleanup(sensor);
});

Deno.test("/readyz is 200 when every worker captures and the archive is writable", async () => {
  const sensor = fakeSensor();
  const r = await get(createApp(sensor), "/readyz");
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, "ready\n");
  const left = [...Deno.readDirSync(sensor.outDir)].map((e) => e.name);
  assert.deepEqual(left, [], "the write probe leaves nothing behind");
  cleanup(sensor);
});

Deno.test("/readyz is 503 with one reason per problem", async () => {
  const sensor = fakeSensor();
  const app = createApp(sensor);
  sensor.workerList[1].ready = false;
  let r = await get(app, "/readyz");
  assert.equal(r.status, 503);
  assert.equal(r.text, "Worker eth0/1 is not capturing yet\n");

  sensor.workerList[1].ready = true;
  sensor.workerList[2].done = true;
  sensor.workerList[2].error = "Interface eth1 went down";
  r = await get(app, "/readyz");
  assert.equal(r.status, 503);
  assert.equal(r.text, "Worker eth1/0 stopped: Interface eth1 went down\n");

  sensor.workerList[2].done = false;
  sensor.workerList[0].done = true; // an offline replay that ended
  sensor.workerList[0].ready = false;
  r = await get(app, "/readyz");
  assert.equal(r.text, "Worker eth0/0 stopped\n");

  sensor.workerList = [];
  r = await get(app, "/readyz");
  assert.equal(r.status, 503);
  assert.equal(r.text, "No capture worker has started\n");
  cleanup(sensor);
});

Deno.test("/readyz is 503 when the output directory takes no new file", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "cutcap-server-" });
  try {
    // A regular file where the directory should be: no file can be created in it, even by root.
    const notADir = `${dir}/archive`;
    Deno.writeTextFileSync(notADir, "");
    const sensor = fakeSensor({ outDir: notADir });
    sensor.workerList[1].ready = false;
    const r = await get(createApp(sensor), "/readyz");
    assert.equal(r.status, 503);
    assert.equal(
      r.text,
      `Worker eth0/1 is not capturing yet\nOutput directory ${notADir} is not writable: Not a directory\n`,
    );
    const missing = fakeSensor({ outDir: `${dir}/gone` });
    const m = await get(createApp(missing), "/readyz");
    assert.equal(m.status, 503);
    assert.match(
      m.text,
      /^Output directory .*\/gone is not writable: No such file or directory\n$/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("/readyz for serve: ready when the archive is readable", async () => {
  const sensor = fakeSensor({ workers: [] });
  assert.equal(sensor.capturing, false);
  let r = await get(createApp(sensor), "/readyz");
  assert.equal(r.status, 200, r.text);
  const gone = fakeSensor({ workers: [], outDir: `${sensor.outDir}/missing` });
  r = await get(createApp(gone), "/readyz");
  assert.equal(r.status, 503);
  assert.equal(
    r.text,
    `Archive ${sensor.outDir}/missing is not readable: No such file or directory\n`,
  );
  cleanup(sensor);
});

Deno.test("/status JSON has interfaces, workers, disk, archive and retention", async () => {
  const sensor = fakeSensor();
  const now = Date.now() / 1000;
  const w = sensor.workerList;
  w[0].slots[Counter.PacketsSeen] = 1000;
  w[0].slots[Counter.PacketsWritten] = 250;
  w[0].slots[Counter.FlowsActive] = 12;
  w[1].slots[Counter.FlowsActive] = 30;
  w[2].slots[Counter.FlowsActive] = 1;
  w[1].slots[Counter.PcapDropped] = 7;
  w[0].slots[Counter.LastPacketTs] = now - 1;
  sensor.catalog().add(fakeEntry("2024/06/01/a.pcap", now - 600, now - 300, 4000));
  sensor.catalog().add(fakeEntry("2024/06/01/b.pcap", now - 300, now - 10, 6000));
  // The file worker eth0/0 is writing, named as rotation names it.
  const name = outputFileName(Math.floor(now - 5), 0, {
    iface: "eth0",
    worker: 0,
    compress: "gzip",
  });
  const slash = name.lastIndexOf("/");
  const tmp = `${name.slice(0, slash)}/.${name.slice(slash + 1)}.tmp`;
  Deno.mkdirSync(`${sensor.outDir}/${name.slice(0, slash)}`, { recursive: true });
  Deno.writeFileSync(`${sensor.outDir}/${tmp}`, new Uint8Array(777));
  w[0].openFile = tmp; // as the worker reports it

  const r = await get(createApp(sensor), "/status");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
  const s = JSON.parse(r.text) as StatusReport;
  assert.deepEqual(Object.keys(s).sort(), [
    "activeFlows",
    "archive",
    "capturing",
    "disk",
    "interfaces",
    "notReady",
    "now",
    "outDir",
    "ready",
    "retention",
    "startedAt",
    "uptimeSeconds",
    "version",
    "workers",
  ]);
  assert.equal(s.ready, true);
  assert.equal(s.activeFlows, 43);
  assert.deepEqual(s.interfaces.map((i) => [i.name, i.workers, i.activeFlows, i.pcapDropped]), [
    ["eth0", 2, 42, 7],
    ["eth1", 1, 1, 0],
  ]);
  assert.equal(s.workers.length, 3);
  assert.equal(s.workers[0].packetsSeen, 1000);
  assert.equal(s.workers[0].rates.outputPercent, 25);
  // The first report's rates run from the start (100 s before the fake sensor's first report).
  const { intervalSeconds, packetsPerSecond } = s.workers[0].rates;
  assert.ok(intervalSeconds >= 100 && intervalSeconds < 130, `${intervalSeconds} s`);
  assert.ok(Math.abs(packetsPerSecond - 1000 / intervalSeconds) <= 0.001, `${packetsPerSecond}/s`);
  assert.deepEqual(s.workers[0].currentFile, {
    path: tmp,
    bytes: 777,
    packets: null,
    flushedAt: null,
  });
  assert.equal(s.workers[1].currentFile, null);
  assert.equal(s.archive.files, 2);
  assert.equal(s.archive.bytes, 10000);
  assert.ok(Math.abs(s.archive.oldestPacketAgeSeconds! - 600) < 5);
  assert.ok(Math.abs(s.archive.newestPacketTs! - (now - 10)) < 1e-3);
  assert.ok(s.disk !== null && s.disk.freeBytes <= s.disk.sizeBytes);
  assert.equal(s.disk.sizeBytes, await dfSizeBytes(sensor.outDir), "size as df reports it");
  assert.deepEqual(s.retention, { deletedFiles: 0, deletedBytes: 0 });
  cleanup(sensor);
});

Deno.test("StatusTracker computes rates between two reports", () => {
  const sensor = fakeSensor({ workers: [["eth0", 0]] });
  let clock = sensor.startedAt + 10;
  const tracker = new StatusTracker(sensor, { disk: () => undefined, now: () => clock });
  const c = sensor.workerList[0].slots;
  c[Counter.PacketsSeen] = 100;
  c[Counter.BytesSeen] = 10_000;
  let s = tracker.report();
  assert.equal(s.workers[0].rates.packetsPerSecond, 10, "first report: average since start");
  assert.equal(s.disk, null);

  clock += 2;
  c[Counter.PacketsSeen] += 1000;
  c[Counter.BytesSeen] += 64_000;
  c[Counter.PacketsWritten] += 100;
  c[Counter.PcapDropped] += 6;
  c[Counter.PcapIfDropped] += 4;
  s = tracker.report();
  assert.deepEqual(s.workers[0].rates, {
    intervalSeconds: 2,
    packetsPerSecond: 500,
    bytesPerSecond: 32_000,
    writtenPacketsPerSecond: 50,
    writtenBytesPerSecond: 0,
    dropsPerSecond: 5,
    outputPercent: 10,
  });
  assert.deepEqual(s.interfaces[0].rates, s.workers[0].rates);

  // A report right after reuses the rates rather than dividing by almost nothing.
  clock += 0.01;
  c[Counter.PacketsSeen] += 1;
  assert.equal(tracker.report().workers[0].rates.packetsPerSecond, 500);
  cleanup(sensor);
});

Deno.test("the status view is a self-contained HTML page that escapes what it shows", async () => {
  const sensor = fakeSensor();
  sensor.workerList[2].label = "<img src=x>";
  sensor.workerList[1].ready = false;
  const r = await get(createApp(sensor), "/?view=status");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(
    r.headers.get("content-security-policy") ?? "",
    /default-src 'none'; script-src 'self'/,
  );
  assert.match(r.text, /^<!doctype html>/);
  assert.ok(r.text.includes("eth0") && r.text.includes("&lt;img src=x&gt;"));
  assert.ok(!r.text.includes("<img"), "no raw markup from labels");
  assert.ok(r.text.includes("Worker eth0/1 is not capturing yet"));
  assert.doesNotMatch(r.text, /(src|href)="(https?:)?\/\//, "no external assets");
  assert.doesNotMatch(
    r.text,
    /<script>|<script [^>]*>[^<]|<style|style=/,
    "no inline script or style",
  );
  cleanup(sensor);
});

Deno.test("a token guards every route; --open-metrics opens /metrics and health", async () => {
  const sensor = fakeSensor();
  const routes = new Hono();
  routes.get("/query", (c) => c.text("pcap\n"));
  const guarded = createApp(sensor, { token: "s3cret", routes });
  for (const path of ["/metrics", "/healthz", "/readyz", "/status", "/", "/query"]) {
    const denied = await get(guarded, path);
    assert.equal(denied.status, 401, path);
    assert.equal(denied.headers.get("www-authenticate"), "Bearer");
    assert.equal((await get(guarded, path, { Authorization: "Bearer s3cre" })).status, 401);
    assert.equal((await get(guarded, path, { Authorization: "Bearer s3cret" })).status, 200, path);
  }
  assert.equal((await get(guarded, "/query", { Authorization: "Bearer s3cret" })).text, "pcap\n");

  const open = createApp(sensor, { token: "s3cret", openMetrics: true, routes });
  for (const path of ["/metrics", "/healthz", "/readyz"]) {
    assert.equal((await get(open, path)).status, 200, path);
  }
  for (const path of ["/status", "/", "/query"]) assert.equal((await get(open, path)).status, 401);

  const noToken = createApp(sensor, { routes });
  assert.equal((await get(noToken, "/query")).text, "pcap\n");

  const file = `${sensor.outDir}/token`;
  Deno.writeTextFileSync(file, "  s3cret \n# comment\n");
  assert.equal(readTokenFile(file), "s3cret");
  Deno.writeTextFileSync(file, "\n");
  assert.throws(() => readTokenFile(file), /Token file .* is empty: expected a token/);
  // A header could never carry it (hono's bearerAuth takes RFC 6750 b64token only): refused at start.
  Deno.writeTextFileSync(file, "pass word!\n");
  assert.throws(() => readTokenFile(file), /holds characters a bearer token cannot have/);
  Deno.writeTextFileSync(file, "Zm9v+/bar_~.-==\n");
  assert.equal(readTokenFile(file), "Zm9v+/bar_~.-==");
  cleanup(sensor);
});

/** Size in bytes of the file system holding `path`, as df reports it. */
async function dfSizeBytes(path: string): Promise<number> {
  const out = await new Deno.Command("df", { args: ["-B1", "--output=size", path] }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return Number(new TextDecoder().decode(out.stdout).trim().split("\n")[1]);
}
