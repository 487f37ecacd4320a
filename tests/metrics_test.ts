/**
 * /metrics: the exposition passes `promtool check metrics` (format and lint), every value equals what
 * the workers' shared counters, the catalog and the query log hold, and a real Prometheus scraping
 * the server reads the same numbers.
 */
import assert from "node:assert/strict";
import { createApp } from "../src/server/app.ts";
import { recordQuery } from "../src/server/metrics.ts";
import { Counter } from "../src/worker/counters.ts";
import { FLOW_SIZE_SUM } from "../src/flow/size_histogram.ts";
import { diskSpace } from "../src/archive/retention.ts";
import { VERSION } from "../src/version.ts";
import { fakeEntry, type FakeSensor, fakeSensor, parseExposition } from "./support/fake_sensor.ts";
import { queryPrometheus, startPrometheus, waitForSeries } from "./support/prometheus.ts";

/** Metric name → counter slot, written out here rather than imported, as the contract to check. */
const COUNTERS: [string, Counter][] = [
  ["cutcap_packets_seen_total", Counter.PacketsSeen],
  ["cutcap_bytes_seen_total", Counter.BytesSeen],
  ["cutcap_packets_written_total", Counter.PacketsWritten],
  ["cutcap_bytes_written_total", Counter.BytesWritten],
  ["cutcap_flows_started_total", Counter.FlowsStarted],
  ["cutcap_pcap_received_total", Counter.PcapReceived],
  ["cutcap_pcap_dropped_total", Counter.PcapDropped],
  ["cutcap_pcap_ifdropped_total", Counter.PcapIfDropped],
  ["cutcap_output_files_total", Counter.FilesWritten],
  ["cutcap_output_bytes_total", Counter.FileBytesWritten],
  ["cutcap_rotations_total", Counter.Rotations],
  ["cutcap_write_errors_total", Counter.WriteErrors],
  ["cutcap_index_build_seconds_total", Counter.IndexBuildSeconds],
  ["cutcap_large_flows_total", Counter.LargeFlows],
  ["cutcap_flows_active", Counter.FlowsActive],
  ["cutcap_index_lag_seconds", Counter.IndexLagSeconds],
  ["cutcap_worker_capturing", Counter.Capturing],
];

/** Flow sizes per bucket (not cumulative) for the test workers: 15 buckets then overflow. */
const FLOW_COUNTS = [5, 3, 0, 7, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 4];

/** Fills every worker's counters with distinct values: slot s of worker w holds 1000*(w+1) + s. */
function fill(sensor: FakeSensor): void {
  sensor.workerList.forEach((w, n) => {
    for (let s = 0; s < Counter.FlowSizeBuckets; s++) w.slots[s] = 1000 * (n + 1) + s;
    w.slots[Counter.IndexBuildSeconds] = 1.25 * (n + 1);
    w.slots[Counter.Capturing] = 1;
    FLOW_COUNTS.forEach((count, i) => w.slots[Counter.FlowSizeBuckets + i] = count * (n + 1));
    w.slots[Counter.FlowSizeBuckets + FLOW_SIZE_SUM] = 123456789 * (n + 1);
  });
}

async function scrape(sensor: FakeSensor): Promise<{ text: string; type: string | null }> {
  const response = await createApp(sensor).request("/metrics");
  assert.equal(response.status, 200);
  return { text: await response.text(), type: response.headers.get("content-type") };
}

async function promtool(text: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, output: (decode(out.stdout) + decode(out.stderr)).trim() };
}

Deno.test("/metrics passes promtool check metrics without lint findings", async () => {
  const sensor = fakeSensor();
  fill(sensor);
  sensor.workerList[2].label = 'we"ird\\name';
  recordQuery("ok", 0.2, 1000);
  recordQuery("bad request", 0.001, 0);
  const { text, type } = await scrape(sensor);
  assert.equal(type, "text/plain; version=0.0.4; charset=utf-8");
  const result = await promtool(text);
  assert.equal(result.output, "", result.output);
  assert.equal(result.code, 0);
  Deno.removeSync(sensor.outDir, { recursive: true });
});

Deno.test("/metrics values equal the workers' shared counters, read at scrape time", async () => {
  const sensor = fakeSensor();
  const app = createApp(sensor);
  fill(sensor);
  let values = parseExposition(await (await app.request("/metrics")).text());
  sensor.workerList.forEach((w, n) => {
    const labels = `interface="${w.label}",worker="${w.index}"`;
    for (const [name, slot] of COUNTERS) {
      assert.equal(values.get(`${name}{${labels}}`), w.slots[slot], `${name} ${labels}`);
    }
    assert.equal(
      values.get(`cutcap_flows_removed_total{${labels},reason="idle"}`),
      1000 * (n + 1) + 6,
    );
    assert.equal(
      values.get(`cutcap_flows_removed_total{${labels},reason="closed"}`),
      1000 * (n + 1) + 7,
    );
    assert.equal(
      values.get(`cutcap_flows_removed_total{${labels},reason="evicted"}`),
      1000 * (n + 1) + 8,
    );
    assert.equal(values.get(`cutcap_worker_ready{${labels}}`), 1);

    const bounds = Array.from({ length: 15 }, (_, i) => String(1024 * 4 ** i));
    let cumulative = 0;
    bounds.forEach((le, i) => {
      cumulative += FLOW_COUNTS[i] * (n + 1);
      assert.equal(
        values.get(`cutcap_flow_size_bytes_bucket{${labels},le="${le}"}`),
        cumulative,
        le,
      );
    });
    const all = FLOW_COUNTS.reduce((a, b) => a + b) * (n + 1);
    assert.equal(values.get(`cutcap_flow_size_bytes_bucket{${labels},le="+Inf"}`), all);
    assert.equal(values.get(`cutcap_flow_size_bytes_count{${labels}}`), all);
    assert.equal(values.get(`cutcap_flow_size_bytes_sum{${labels}}`), 123456789 * (n + 1));
  });

  // Nothing is cached between scrapes: a worker's next counter update shows at once.
  sensor.workerList[0].slots[Counter.PacketsSeen] += 42;
  sensor.workerList[1].done = true;
  values = parseExposition(await (await app.request("/metrics")).text());
  assert.equal(values.get(`cutcap_packets_seen_total{interface="eth0",worker="0"}`), 1000 + 42);
  assert.equal(values.get(`cutcap_worker_ready{interface="eth0",worker="1"}`), 0);
  Deno.removeSync(sensor.outDir, { recursive: true });
});

Deno.test("/metrics reports archive, disk, retention, queries and build info", async () => {
  const sensor = fakeSensor();
  const now = Date.now() / 1000;
  const app = createApp(sensor);
  let values = parseExposition(await (await app.request("/metrics")).text());
  assert.equal(values.get("cutcap_archive_files"), 0);
  assert.equal(values.has("cutcap_oldest_packet_age_seconds"), false, "absent while empty");

  const catalog = sensor.catalog();
  catalog.add(fakeEntry("1970/01/01/empty.pcap", 0, 0, 124));
  catalog.add(fakeEntry("2024/06/01/a.pcap", now - 7200, now - 3600, 5000));
  catalog.add(fakeEntry("2024/06/01/b.pcap", now - 3600, now, 7000));
  sensor.retentionStats = { deletedFiles: 3, deletedBytes: 98765 };
  const before = parseExposition(await (await app.request("/metrics")).text());
  recordQuery("ok", 0.03, 4096);
  recordQuery("ok", 7, 1 << 20);
  recordQuery("rejected", 0, 0);
  values = parseExposition(await (await app.request("/metrics")).text());

  assert.equal(values.get("cutcap_archive_files"), 3);
  assert.equal(values.get("cutcap_archive_bytes"), 12124);
  const age = values.get("cutcap_oldest_packet_age_seconds")!;
  assert.ok(Math.abs(age - 7200) < 5, `oldest age ${age}`);
  assert.equal(values.get("cutcap_retention_deleted_files_total"), 3);
  assert.equal(values.get("cutcap_retention_deleted_bytes_total"), 98765);
  const disk = diskSpace(sensor.outDir);
  assert.equal(values.get("cutcap_disk_size_bytes"), disk.size);
  assert.ok(Math.abs(values.get("cutcap_disk_free_bytes")! - disk.free) < 64 * 2 ** 20);

  const delta = (key: string) => values.get(key)! - (before.get(key) ?? 0);
  assert.equal(delta(`cutcap_queries_total{outcome="ok"}`), 2);
  assert.equal(delta(`cutcap_queries_total{outcome="rejected"}`), 1);
  assert.equal(delta("cutcap_query_bytes_total"), 4096 + (1 << 20));
  assert.equal(delta(`cutcap_query_duration_seconds_bucket{le="0.025"}`), 1, "0 s is in the first");
  assert.equal(delta(`cutcap_query_duration_seconds_bucket{le="0.05"}`), 2);
  assert.equal(delta(`cutcap_query_duration_seconds_bucket{le="5"}`), 2);
  assert.equal(delta(`cutcap_query_duration_seconds_bucket{le="10"}`), 3);
  assert.equal(delta(`cutcap_query_duration_seconds_bucket{le="+Inf"}`), 3);
  assert.equal(delta("cutcap_query_duration_seconds_count"), 3);
  assert.ok(Math.abs(delta("cutcap_query_duration_seconds_sum") - 7.03) < 1e-9);

  const info = `cutcap_build_info{version="${VERSION}",deno="${Deno.version.deno}",` +
    `libpcap="libpcap version 1.10.3 (with TPACKET_V3)"}`;
  assert.equal(values.get(info), 1);
  assert.ok((values.get("process_resident_memory_bytes") ?? 0) > 0, "default process metrics");
  Deno.removeSync(sensor.outDir, { recursive: true });
});

Deno.test("a serve-mode sensor (no workers) exports archive metrics and no worker series", async () => {
  const sensor = fakeSensor({ workers: [] });
  const { text } = await scrape(sensor);
  assert.equal((await promtool(text)).code, 0);
  assert.equal(/^cutcap_packets_seen_total\{/m.test(text), false);
  assert.match(text, /^cutcap_archive_files 0$/m);
  Deno.removeSync(sensor.outDir, { recursive: true });
});

Deno.test({
  name: "Prometheus scrapes /metrics and reads the counters' values",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const sensor = fakeSensor();
    fill(sensor);
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      createApp(sensor).fetch,
    );
    const prometheus = await startPrometheus(`127.0.0.1:${server.addr.port}`);
    try {
      const seen = await waitForSeries(prometheus.url, "cutcap_packets_seen_total");
      const byWorker = new Map(
        seen.map((s) => [`${s.metric.interface}/${s.metric.worker}`, s.value]),
      );
      assert.deepEqual(
        Object.fromEntries(byWorker),
        { "eth0/0": 1000, "eth0/1": 2000, "eth1/0": 3000 },
      );
      const buckets = await queryPrometheus(
        prometheus.url,
        'cutcap_flow_size_bytes_bucket{interface="eth0",worker="0",le="65536"}',
      );
      assert.deepEqual(buckets.map((b) => b.value), [5 + 3 + 0 + 7]);
      const up = await queryPrometheus(prometheus.url, 'up{job="cutcap"}');
      assert.deepEqual(up.map((s) => s.value), [1]);
    } finally {
      await prometheus.stop();
      await server.shutdown();
      Deno.removeSync(sensor.outDir, { recursive: true });
    }
  },
});
