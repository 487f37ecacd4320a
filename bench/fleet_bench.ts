/**
 * Export and fleet: three figures, against a clickhouse-server started for the run (the tests'
 * support module: own config, temp data directory, free ports).
 *
 * 1. Export rate: a generated capture is replayed (`cutcap --read --listen off`, no export) into an
 *    archive; then the shipped Exporter spools every file's flow records (reading the indexes) and
 *    sends them: flow records per second from the first file spooled to the spool drained.
 * 2. Fleet `/flows` latency over ≥ 10 million flow rows, inserted directly by ClickHouse
 *    (`INSERT … SELECT … FROM system.numbers`): a rare host, a busy server with a port, a
 *    one-minute window; `limit=1000`; median of the rounds.
 * 3. Fleet `/query` for one host held by three sensors (`cutcap serve` on three replayed
 *    archives with shared servers and overlapping time) against asking each sensor in turn.
 *
 * Run alone: deno run -A bench/fleet_bench.ts [--quick]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { writeTrafficPcap } from "./gen/mod.ts";
import { Catalog } from "../src/archive/catalog.ts";
import { ClickHouse } from "../src/export/clickhouse.ts";
import { Exporter } from "../src/export/exporter.ts";
import { mergeTreeSchema, TABLES } from "../src/export/schema.ts";
import { startClickHouse, type TestClickHouse } from "../tests/support/clickhouse.ts";
import { freePort, type ServerProcess, startServe, startServer } from "../tests/support/process.ts";

/** Options of {@link runFleetBench}. */
export interface FleetBenchOptions {
  /** Smaller inputs and fewer rounds. */
  quick?: boolean;
  progress?: (line: string) => void;
}

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const T0 = 1_800_000_000;

/** Runs the three measurements; a markdown report. */
export async function runFleetBench(opts: FleetBenchOptions = {}): Promise<string> {
  const progress = opts.progress ?? ((line: string) => console.error(line));
  const quick = opts.quick ?? false;
  const rounds = quick ? 3 : 5;
  const work = await Deno.makeTempDir({ prefix: "cutcap-bench-fleet-" });
  const ch = await startClickHouse();
  const lines: string[] = [];
  try {
    progress("fleet: export rate");
    lines.push(...await exportRate(ch, work, quick));
    progress("fleet: /flows over synthetic rows");
    lines.push(...await flowsLatency(ch, quick ? 2_000_000 : 10_000_000, rounds));
    progress("fleet: /query across three sensors");
    lines.push(...await queryAcrossSensors(ch, work, quick, rounds));
  } finally {
    await ch.remove();
    await Deno.remove(work, { recursive: true });
  }
  return lines.join("\n");
}

async function cutcapRun(args: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`cutcap ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function exportRate(ch: TestClickHouse, work: string, quick: boolean): Promise<string[]> {
  const input = `${work}/export.pcap`;
  const packets = quick ? 200_000 : 1_000_000;
  await writeTrafficPcap(input, { seed: 71, packets, flows: packets / 4 });
  const out = `${work}/export-archive`;
  await cutcapRun(["--read", input, "--out", out, "--listen", "off", "--rotate-interval", "10s"]);
  const database = "bench_export";
  await ch.sql(`CREATE DATABASE ${database}`);
  const exporter = new Exporter({
    clickhouse: new ClickHouse({ url: `http://127.0.0.1:${ch.httpPort}/?database=${database}` }),
    sensor: "bench",
    advertiseUrl: () => "",
    outDir: out,
  });
  const entries = Catalog.open(out).entries();
  const started = performance.now();
  exporter.start();
  for (const e of entries) exporter.fileFinalized(e.path, e);
  if (!await exporter.drain(600_000)) throw new Error("the export did not drain in 10 min");
  const seconds = (performance.now() - started) / 1000;
  await exporter.close();
  const rows = exporter.stats().rowsSent;
  return [
    `- Export: ${rows} flow records of ${entries.length} files (a ${packets}-packet replay) ` +
    `spooled and sent in ${seconds.toFixed(2)} s: **${(rows / seconds).toFixed(0)} records/s**`,
  ];
}

/** Synthetic rows: 3 sensors, 65536 clients in 198.18.0.0/16, 8 servers, one flow per ms. */
export function syntheticInsert(rows: number, offset: number): string {
  // Named columns: the rest (Community ID, totals, cut, end reason) take their defaults.
  return `INSERT INTO ${TABLES.flows} (sensor, iface, worker, file, kind, src, dst, src_port,
    dst_port, proto, vlan, ether_type, a_hi, a_lo, b_hi, b_lo, first_us, last_us, packets, bytes, day)
    SELECT concat('syn', toString(number % 3)) AS sensor, 'read' AS iface, toInt16(0) AS worker,
    concat('2027/01/15/f', toString(intDiv(number, 20000)), '.pcap') AS file, 'ipv4' AS kind,
    IPv4NumToString(toUInt32(3323068416 + number % 65536)) AS src,
    IPv4NumToString(toUInt32(3323133953 + number % 8)) AS dst,
    toUInt16(1024 + number % 60000) AS src_port, toUInt16(if(number % 5 = 0, 53, 443)) AS dst_port,
    toUInt8(if(number % 5 = 0, 17, 6)) AS proto, toUInt16(0) AS vlan, toUInt16(0) AS ether_type,
    bitShiftLeft(toUInt64(3323068416 + number % 65536), 32) AS a_hi, toUInt64(0) AS a_lo,
    bitShiftLeft(toUInt64(3323133953 + number % 8), 32) AS b_hi, toUInt64(0) AS b_lo,
    toInt64(${T0} * 1000000 + number * 1000) AS first_us, first_us + 400000 AS last_us,
    toUInt64(10) AS packets, toUInt64(6000) AS bytes,
    toDate(toDateTime(intDiv(first_us, 1000000))) AS day
    FROM system.numbers LIMIT ${offset}, ${rows}`;
}

async function flowsLatency(ch: TestClickHouse, total: number, rounds: number): Promise<string[]> {
  const database = "bench_flows";
  await ch.sql(`CREATE DATABASE ${database}`);
  const url = `http://127.0.0.1:${ch.httpPort}/?database=${database}`;
  const client = new ClickHouse({ url, timeoutMs: 600_000 });
  for (const statement of mergeTreeSchema()) await client.exec(statement);
  const insertStart = performance.now();
  const chunk = 2_000_000;
  for (let offset = 0; offset < total; offset += chunk) {
    await client.exec(syntheticInsert(Math.min(chunk, total - offset), offset));
  }
  const insertSeconds = (performance.now() - insertStart) / 1000;
  const fleet = await startServer(["fleet", "--clickhouse", url]);
  const window = new Date((T0 + 600) * 1000).toISOString();
  const windowEnd = new Date((T0 + 660) * 1000).toISOString();
  const queries = [
    "host 198.18.3.7",
    "host 198.19.0.2 and port 443",
    `after ${window} and before ${windowEnd}`,
  ];
  const lines = [
    `- Fleet /flows over ${total} synthetic flow rows (inserted in ${
      insertSeconds.toFixed(1)
    } s), ` +
    `limit=1000, median of ${rounds}:`,
    "",
    "| query | rows answered | latency |",
    "|---|---|---|",
  ];
  try {
    for (const q of queries) {
      const times: number[] = [];
      let count = 0;
      for (let r = 0; r <= rounds; r++) {
        const t = performance.now();
        const response = await fetch(`${fleet.url}/flows?limit=1000&q=${encodeURIComponent(q)}`);
        const records = await response.json() as unknown[];
        if (r > 0) times.push(performance.now() - t);
        count = records.length;
      }
      lines.push(`| \`${q}\` | ${count} | ${median(times).toFixed(0)} ms |`);
    }
  } finally {
    await fleet.stop();
  }
  return [...lines, ""];
}

async function queryAcrossSensors(
  ch: TestClickHouse,
  work: string,
  quick: boolean,
  rounds: number,
): Promise<string[]> {
  const database = "bench_query";
  await ch.sql(`CREATE DATABASE ${database}`);
  const url = `http://127.0.0.1:${ch.httpPort}/?database=${database}`;
  const packets = quick ? 100_000 : 400_000;
  const sensors: ServerProcess[] = [];
  let fleet: ServerProcess | undefined;
  try {
    for (let i = 0; i < 3; i++) {
      const input = `${work}/sensor${i}.pcap`;
      await writeTrafficPcap(input, { seed: 81 + i, packets, startTs: T0 + i * 0.3 });
      const out = `${work}/sensor${i}`;
      const port = freePort();
      await cutcapRun([
        ...["--read", input, "--out", out, "--listen", "off", "--rotate-interval", "10s"],
        ...["--export-clickhouse", url, "--sensor-name", `s${i}`],
        ...["--advertise-url", `http://127.0.0.1:${port}`],
      ]);
      sensors.push(await startServe(out, [], { port: port }));
    }
    fleet = await startServer(["fleet", "--clickhouse", url]);
    const host = "host 198.19.0.1";
    const fleetTimes: number[] = [];
    const turnTimes: number[] = [];
    let fleetBytes = 0;
    let turnBytes = 0;
    for (let r = 0; r <= rounds; r++) {
      let t = performance.now();
      fleetBytes = await postBytes(`${fleet.url}/query`, host);
      if (r > 0) fleetTimes.push(performance.now() - t);
      t = performance.now();
      turnBytes = 0;
      for (const s of sensors) turnBytes += await postBytes(`${s.url}/query`, host);
      if (r > 0) turnTimes.push(performance.now() - t);
    }
    const f = median(fleetTimes), s = median(turnTimes);
    return [
      `- Fleet /query \`${host}\` across 3 sensors (${packets} packets each): ` +
      `${(fleetBytes / 1e6).toFixed(1)} MB merged in **${f.toFixed(0)} ms**; asking each sensor ` +
      `in turn (${(turnBytes / 1e6).toFixed(1)} MB, not merged): ${s.toFixed(0)} ms; ratio ` +
      `${(f / s).toFixed(2)} (median of ${rounds})`,
    ];
  } finally {
    await fleet?.stop();
    for (const s of sensors) await s.stop();
  }
}

async function postBytes(url: string, query: string): Promise<number> {
  const response = await fetch(url, { method: "POST", body: query });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return (await response.arrayBuffer()).byteLength;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { quick: { type: "boolean", default: false } },
  });
  console.log(await runFleetBench({ quick: values.quick }));
}
