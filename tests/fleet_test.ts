/**
 * `cutcap fleet` over three sensors (`cutcap serve` on archives made by `cutcap --read` replays of
 * generated traffic with overlapping time and shared hosts, exported to ClickHouse), on one
 * ClickHouse server and on a two-shard cluster with Distributed tables:
 * - for 22 queries of both dialects, fleet /query is the time-ordered union of each sensor's own
 *   answer, packet for packet (tcpdump reads both), and fleet /flows the union of their /flows;
 * - /status lists the sensors; `cutcap query/flows --server` work against the coordinator;
 * - retention on a sensor: fleet answers stop naming its deleted files;
 * - a sensor killed: the answer holds the others' packets exactly and names it (header, CLI
 *   stderr); `partial=false` makes it a 502; failing in the middle of an answer, the others'
 *   packets are still all there and the answer ends with an error (partial=false: a 502).
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { TABLES } from "../src/export/schema.ts";
import { parseQuery } from "../src/query/parse.ts";
import type { Query } from "../src/query/ast.ts";
import { Catalog } from "../src/archive/catalog.ts";
import { cutcap, type OraclePacket, parseTcpdumpHex, run } from "./support/oracle.ts";
import { assertSamePackets, tsToUs } from "./support/query_server.ts";
import {
  exportReplayArgs,
  startClickHouse,
  startCluster,
  TEST_CLUSTER,
} from "./support/clickhouse.ts";
import { freePort, type ServerProcess, startServe, startServer } from "./support/process.ts";

const T0 = 1_800_000_000;
const SENSORS = ["s1", "s2", "s3"];

/** A fleet query and the query each sensor is asked for its own answer (null: none). */
interface Case {
  fleet: string;
  own?: Record<string, string | null>;
}

const iso = (offset: number) => new Date((T0 + offset) * 1000).toISOString();

const CASES: Case[] = [
  { fleet: "host 198.19.0.1" },
  { fleet: "ip=198.19.0.2" },
  { fleet: "host 2001:db8:100::1" },
  { fleet: "net 198.19.0.0/24 and port 443" },
  { fleet: "ip=198.19.0.0/24 port=443" },
  { fleet: "udp port 53" },
  { fleet: "icmp" },
  { fleet: "icmp6" },
  { fleet: "ip6 and tcp" },
  { fleet: "not vlan 0 and udp" },
  { fleet: "proto=17 vlan=0" },
  { fleet: "portrange 400-500 and ip" },
  { fleet: "ip=198.18.0.0-198.18.3.255" },
  { fleet: "net 198.18.0.0 mask 255.255.252.0 and tcp" },
  { fleet: `host 198.19.0.1 and after ${iso(2)} and before ${iso(4.5)}` },
  { fleet: `ip=2001:db8:100::2 and after ${iso(5)}` },
  { fleet: `(host 198.19.0.1 or host 198.19.0.2) and not port 443` },
  { fleet: "ip=198.19.0.1|ip=2001:db8:100::2 proto=6" },
  { fleet: "sensor s2 and host 198.19.0.1", own: { s1: null, s2: "host 198.19.0.1", s3: null } },
  { fleet: "sensor=s1|sensor=s3 port=53", own: { s1: "port=53", s2: null, s3: "port=53" } },
  { fleet: "not tcp and not udp" },
  { fleet: `ip proto 6 and not (after ${iso(1)} and before ${iso(6)})` },
  // Terms on the flow records (Community ID, cut, totals, L2) answered from their columns.
  { fleet: "cut and tcp" },
  { fleet: "packets >= 10 and not cut" },
  { fleet: "arp or bytes > 100KB" },
  { fleet: "ether proto 0x0806 and not ether host ff:ff:ff:ff:ff:ff" },
];

/** One sensor's setup. */
interface Sensor {
  name: string;
  out: string;
  port: number;
  serve?: ServerProcess;
}

Deno.test({
  name:
    "fleet: one API over three sensors, answered from ClickHouse (single server and two shards)",
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  assert.ok(CASES.length >= 20);
  const work = await Deno.makeTempDir({ prefix: "cutcap-fleet-" });
  const single = await startClickHouse();
  const cluster = await startCluster();
  const fleets: ServerProcess[] = [];
  const sensors: Sensor[] = SENSORS.map((name) => ({
    name,
    out: `${work}/${name}`,
    port: freePort(),
  }));
  try {
    // The two-shard set-up exactly as README.md shows it.
    for (const server of cluster) {
      for (const statement of readmeClusterSql()) await server.sql(statement);
    }
    // Overlapping time, shared servers (198.19.0.x, 2001:db8:100::x), different clients.
    const inputs = await Promise.all(sensors.map(async (s, i) => {
      const path = `${work}/${s.name}.pcap`;
      await writeTrafficPcap(path, {
        seed: 61 + i,
        packets: 6_000,
        rate: 1500,
        startTs: T0 + i * 0.37,
        ipv6Share: 0.3,
        vlanShare: 0.2,
      });
      return path;
    }));
    // Each sensor's archive, exported to the single server; the same replay again exported to the
    // cluster (its rows name the same files: names come from packet times).
    // s2 cuts flows after 12 packets, so its records have cut points and totals above the stored.
    const cutoff = (i: number) => i === 1 ? ["--packet-cutoff", "12"] : [];
    await Promise.all(sensors.map((s, i) => replay(inputs[i], s.out, single.url, s, cutoff(i))));
    await Promise.all(
      sensors.map((s, i) => replay(inputs[i], `${s.out}-cluster`, cluster[0].url, s, cutoff(i))),
    );
    for (const s of sensors) s.serve = await startServe(s.out, [], { port: s.port });
    fleets.push(await startFleet(single.url), await startFleet(cluster[0].url));
    const shardRows = await Promise.all(
      cluster.map((c) => c.sql(`SELECT count() FROM ${TABLES.flows}_local`)),
    );
    assert.ok(shardRows.every((n) => Number(n) > 0), `both shards hold rows: ${shardRows}`);

    const own = new Map<string, OraclePacket[]>();
    await t.step("/query = time-ordered union of each sensor's own answer (tcpdump)", async () => {
      for (const c of CASES) {
        const expected = await unionOfSensors(sensors, c, work);
        own.set(c.fleet, expected);
        for (const [f, fleet] of fleets.entries()) {
          const answer = await fetchPcap(`${fleet.url}/query`, c.fleet, `${work}/fleet.pcap`);
          assert.equal(answer.status, 200, answer.text);
          assert.equal(answer.partial, null, `${c.fleet}: nothing missing`);
          assertSamePackets(await tcpdump(`${work}/fleet.pcap`), expected, `${c.fleet} (#${f})`);
        }
      }
      const sizes = CASES.map((c) => own.get(c.fleet)!.length);
      for (const c of ["cut and tcp", "packets >= 10 and not cut", "arp or bytes > 100KB"]) {
        assert.ok(own.get(c)!.length > 0, `${c} selects packets`);
      }
      assert.ok(sizes.filter((n) => n > 0).length >= 20, `non-empty answers: ${sizes}`);
    });

    await t.step("/flows = union of the sensors' /flows", async () => {
      for (const c of CASES) {
        const expected = await sensorFlows(sensors, c);
        const timed = /after|before/.test(c.fleet);
        for (const fleet of fleets) {
          const got = await getJson<FlowJson[]>(
            `${fleet.url}/flows?q=${encodeURIComponent(c.fleet)}`,
          );
          if (!timed) {
            assert.deepEqual(sortRecords(got), sortRecords(expected), c.fleet);
            continue;
          }
          // Time terms: a flow straddling a bound is reported whole by the fleet and cut by the
          // sensor; every flow inside the bounds is the same, and no flow is missing.
          const bounds = timeTerms(parseQuery(c.fleet));
          const ids = new Set(got.map(identity));
          for (const r of expected) assert.ok(ids.has(identity(r)), `${c.fleet}: ${identity(r)}`);
          const exact = new Set(expected.map((r) => JSON.stringify(sortKeys(r))));
          const straddles = (r: FlowJson) => bounds.some((at) => r.first < at && r.last >= at);
          for (const r of got.filter((r) => !straddles(r))) {
            assert.ok(exact.has(JSON.stringify(sortKeys(r))), `${c.fleet}: ${identity(r)}`);
          }
        }
      }
    });

    await t.step("/status lists the sensors; the CLI works against the coordinator", async () => {
      const big = await fetch(`${fleets[0].url}/query`, {
        method: "POST",
        body: "x".repeat(70_000),
      });
      assert.equal(big.status, 413, "a query body over 64 KiB");
      await big.body?.cancel();
      const bad = await fetch(`${fleets[0].url}/flows?q=${encodeURIComponent("port 99999")}`);
      assert.equal(bad.status, 400);
      assert.match(await bad.text(), /Invalid port 99999/);
      for (const fleet of fleets) {
        const status = await getJson<{ sensors: { name: string; reachable: boolean }[] }>(
          `${fleet.url}/status`,
        );
        assert.deepEqual(status.sensors.map((s) => [s.name, s.reachable]), [
          ["s1", true],
          ["s2", true],
          ["s3", true],
        ]);
      }
      const query = CASES[0].fleet;
      const cli = await cutcap([
        "query",
        "--server",
        fleets[1].url,
        "-w",
        `${work}/cli.pcap`,
        query,
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      assertSamePackets(await tcpdump(`${work}/cli.pcap`), own.get(query)!, "cutcap query");
      const flows = await cutcap(["flows", "--json", "--server", fleets[0].url, "sensor s3 icmp"]);
      assert.equal(flows.code, 0, flows.stderr);
      const lines = flows.stdout.trim().split("\n").map((l) => JSON.parse(l) as FlowJson);
      assert.ok(lines.length > 0 && lines.every((r) => r.sensor === "s3" && r.proto === 1));
      const table = await cutcap(["flows", "--server", fleets[0].url, "sensor s3 icmp"]);
      assert.match(table.stdout, /^sensor +first +proto/);
      assert.equal(
        table.stdout.trim().split("\n").filter((l) => l.startsWith("s3 ")).length,
        lines.length,
      );
      const read = await cutcap([
        "read",
        "--server",
        fleets[1].url,
        "sensor s3 icmp",
        "-nn",
        "-tt",
      ]);
      assert.equal(read.code, 0, read.stderr);
      const icmp = await ownAnswer(sensors[2], "icmp", `${work}/own-icmp.pcap`);
      assert.deepEqual(
        read.stdout.trim().split("\n").map((l) => l.split(" ")[0]),
        icmp.map((p) => p.ts),
        "cutcap read through the fleet",
      );
    });

    await t.step("retention on a sensor: fleet answers stop naming its deleted files", async () => {
      const s4: Sensor = { name: "s4", out: `${work}/s4`, port: freePort() };
      await replay(inputs[0], s4.out, single.url, s4, ["--max-bytes", "1500KB"]);
      const kept = new Set(Catalog.open(s4.out).entries().map((e) => e.path));
      const deleted = Number(
        await single.sql(`SELECT count() FROM ${TABLES.deleted} WHERE sensor = 's4'`),
      );
      assert.ok(deleted > 0 && kept.size > 0, `retention deleted ${deleted}, kept ${kept.size}`);
      const named = await getJson<FlowJson[]>(`${fleets[0].url}/flows?q=sensor%20s4`);
      const files = new Set(named.map((r) => r.file));
      assert.deepEqual([...files].sort(), [...kept].sort());
    });

    await t.step(
      "link types differ: the answer is pcapng (tshark), or pcap naming the odd one",
      async () => {
        // s5 captured raw IP (LINKTYPE_RAW): one DNS query, older than the rest.
        const s5: Sensor = { name: "s5", out: `${work}/s5`, port: freePort() };
        const raw = new URL("./corpus/tcpdump/LINKTYPE_RAW_ipv4.pcap", import.meta.url).pathname;
        await replay(raw, s5.out, single.url, s5);
        s5.serve = await startServe(s5.out, [], { port: s5.port });
        try {
          const own = "udp port 53";
          const query = `${own} and not sensor s4`;
          const expected: string[] = [];
          for (const s of [...sensors, s5]) {
            const link = s === s5 ? "raw" : "eth";
            for (const p of await ownAnswer(s, own, `${work}/own-${s.name}.pcap`)) {
              expected.push(`${tsToUs(p.ts)} ${p.hex.length / 2} ${link}`);
            }
          }
          expected.sort();
          const response = await fetch(`${fleets[0].url}/query`, { method: "POST", body: query });
          assert.equal(response.headers.get("content-type"), "application/x-pcapng");
          await Deno.writeFile(
            `${work}/mixed.pcapng`,
            new Uint8Array(await response.arrayBuffer()),
          );
          const fields = await run("tshark", [
            ...["-r", `${work}/mixed.pcapng`, "-T", "fields", "-E", "separator=/s"],
            ...["-e", "frame.time_epoch", "-e", "frame.cap_len", "-e", "frame.protocols"],
          ]);
          const got = fields.trim().split("\n").map((line) => {
            const [epoch, caplen, protocols] = line.split(" ");
            return `${tsToUs(epoch.slice(0, epoch.indexOf(".") + 7))} ${caplen} ${
              protocols.split(":")[0]
            }`;
          });
          assert.equal(got.length, expected.length);
          assert.deepEqual([...got].sort(), expected);
          assert.deepEqual(
            got.map((l) => Number(l.split(" ")[0])),
            [...got.map((l) => Number(l.split(" ")[0]))].sort((a, b) => a - b),
            "time order",
          );
          const pcap = await fetchPcap(
            `${fleets[0].url}/query?format=pcap`,
            query,
            `${work}/one.pcap`,
          );
          assert.match(pcap.partial ?? "", /sensor s5 answers with another link type/);
        } finally {
          await s5.serve.stop();
        }
      },
    );

    await t.step("a sensor down: the others' packets exactly, the missing one named", async () => {
      const c = CASES[0];
      const s2 = sensors[1];
      s2.serve!.kill("SIGKILL");
      await s2.serve!.exited;
      const others = mergeOwn(
        await Promise.all(
          [sensors[0], sensors[2]].map((s) => ownAnswer(s, c.fleet, `${work}/own-${s.name}.pcap`)),
        ),
      );
      for (const fleet of fleets) {
        const answer = await fetchPcap(`${fleet.url}/query`, c.fleet, `${work}/partial.pcap`);
        assert.equal(answer.status, 200);
        assert.match(answer.partial ?? "", /sensor s2 unreachable/);
        assertSamePackets(await tcpdump(`${work}/partial.pcap`), others, "partial answer");
        const strict = await fetchPcap(
          `${fleet.url}/query?partial=false`,
          c.fleet,
          `${work}/strict.pcap`,
        );
        assert.equal(strict.status, 502);
        assert.match(strict.text, /partial=false.*sensor s2/);
      }
      const cli = await cutcap([
        "query",
        "--server",
        fleets[0].url,
        "-w",
        `${work}/c.pcap`,
        c.fleet,
      ]);
      assert.equal(cli.code, 0);
      assert.match(cli.stderr, /Partial answer: sensor s2 unreachable/);
      s2.serve = await startServe(s2.out, [], { port: s2.port });
    });

    await t.step("a sensor failing in the middle of an answer", async () => {
      // s3 is replaced (its latest heartbeat) by a stand-in that sends half of s3's real answer
      // and then drops the connection, as a sensor killed mid-answer does; deterministic, unlike
      // killing a process whose answer may already sit whole in socket buffers.
      const everything = "ip or not ip";
      // Every packet of s1-s3 (s4 and s5 have no server now).
      const fleetEverything = "not sensor s4 and not sensor s5";
      const answers = await Promise.all(
        sensors.map((s) => ownAnswer(s, everything, `${work}/all-${s.name}.pcap`)),
      );
      const s3 = await Deno.readFile(`${work}/all-s3.pcap`);
      const half = s3.subarray(0, Math.floor(s3.length / 2));
      const standIn = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () =>
          new Response(
            new ReadableStream({
              start(controller) {
                controller.enqueue(half);
                setTimeout(() => controller.error(new Error("killed")), 100);
              },
            }),
          ),
      );
      try {
        await single.sql(
          `INSERT INTO ${TABLES.sensors} (sensor, url, at, backlog_files, last_file) VALUES ` +
            `('s3', 'http://127.0.0.1:${standIn.addr.port}', now() + 3600, 0, '')`,
        );
        const response = await fetch(`${fleets[0].url}/query`, {
          method: "POST",
          body: everything,
        });
        assert.equal(response.status, 200);
        const reader = response.body!.getReader();
        const chunks: Uint8Array[] = [];
        let failed = false;
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            chunks.push(value);
          }
        } catch {
          failed = true;
        }
        assert.ok(failed, "the answer ends with an error, so the client knows it is incomplete");
        const got = await tcpdumpBytes(concat(chunks), work);
        const counts = new Map<string, number>();
        for (const p of got) counts.set(p.ts + p.hex, (counts.get(p.ts + p.hex) ?? 0) + 1);
        for (const p of [...answers[0], ...answers[1]]) {
          const n = counts.get(p.ts + p.hex) ?? 0;
          assert.ok(n > 0, `s1/s2 packet ${p.ts} in the answer`);
          counts.set(p.ts + p.hex, n - 1);
        }
        const rest = [...counts.values()].reduce((a, b) => a + b, 0);
        assert.ok(
          rest > 0 && rest < answers[2].length,
          `part of s3's ${answers[2].length}: ${rest}`,
        );
        const strict = await fetchPcap(
          `${fleets[0].url}/query?partial=false`,
          fleetEverything,
          `${work}/strict.pcap`,
        );
        assert.equal(strict.status, 502);
        assert.match(strict.text, /partial=false.*sensor s3 failed during the answer/);
      } finally {
        await standIn.shutdown();
      }
    });
  } finally {
    for (const f of fleets) await f.stop();
    for (const s of sensors) await s.serve?.stop();
    await single.remove();
    for (const c of cluster) await c.remove();
    await Deno.remove(work, { recursive: true });
  }
});

async function replay(
  input: string,
  out: string,
  clickhouse: string,
  sensor: Sensor,
  extra: string[] = [],
): Promise<void> {
  const result = await cutcap(
    exportReplayArgs(input, out, clickhouse, sensor.name, [
      "--advertise-url",
      `http://127.0.0.1:${sensor.port}`,
      ...extra,
    ]),
  );
  assert.equal(result.code, 0, result.stderr);
}

/** README's "Two shards" statements, for the test cluster (README's database: cutcap). */
function readmeClusterSql(): string[] {
  const readme = Deno.readTextFileSync(new URL("../README.md", import.meta.url));
  const block = readme.split("### Two shards")[1].split("```sql\n")[1].split("```")[0];
  return block.replaceAll("Distributed(cutcap,", `Distributed(${TEST_CLUSTER},`).split(";")
    .map((statement) => statement.trim()).filter((statement) => statement !== "");
}

function startFleet(clickhouse: string): Promise<ServerProcess> {
  return startServer(["fleet", "--clickhouse", clickhouse]);
}

/** The query a sensor answers for a case (null: the case names other sensors only). */
function ownQuery(c: Case, sensor: string): string | null {
  return c.own === undefined ? c.fleet : c.own[sensor];
}

async function ownAnswer(s: Sensor, query: string, path: string): Promise<OraclePacket[]> {
  const answer = await fetchPcap(`${s.serve!.url}/query`, query, path);
  assert.equal(answer.status, 200, answer.text);
  return await tcpdump(path);
}

/** Each sensor's own answer, merged by time (ties in sensor order, as the fleet does). */
async function unionOfSensors(
  sensors: Sensor[],
  c: Case,
  work: string,
): Promise<OraclePacket[]> {
  const answers: OraclePacket[][] = [];
  for (const s of sensors) {
    const query = ownQuery(c, s.name);
    answers.push(query === null ? [] : await ownAnswer(s, query, `${work}/own.pcap`));
  }
  return mergeOwn(answers);
}

function mergeOwn(answers: OraclePacket[][]): OraclePacket[] {
  const all = answers.flatMap((packets, rank) =>
    packets.map((p, i) => ({ p, us: tsToUs(p.ts), rank, i }))
  );
  all.sort((a, b) => a.us - b.us || a.rank - b.rank || a.i - b.i);
  return all.map((x) => x.p);
}

interface FlowJson {
  sensor?: string;
  file: string;
  first: number;
  last: number;
  proto: number;
  [field: string]: unknown;
}

async function sensorFlows(sensors: Sensor[], c: Case): Promise<FlowJson[]> {
  const all: FlowJson[] = [];
  for (const s of sensors) {
    const query = ownQuery(c, s.name);
    if (query === null) continue;
    const records = await getJson<FlowJson[]>(
      `${s.serve!.url}/flows?q=${encodeURIComponent(query)}`,
    );
    all.push(...records.map((r) => ({ ...r, sensor: s.name })));
  }
  return all;
}

/** The times of a query's time terms (a flow across one is cut by the sensor's /flows). */
function timeTerms(q: Query): number[] {
  if (q.type === "and" || q.type === "or") return q.children.flatMap(timeTerms);
  if (q.type === "not") return timeTerms(q.child);
  return q.type === "time" ? [q.at] : [];
}

function sortKeys(r: FlowJson): Record<string, unknown> {
  return Object.fromEntries(Object.keys(r).sort().map((k) => [k, r[k]]));
}

function sortRecords(records: FlowJson[]): string[] {
  return records.map((r) => JSON.stringify(sortKeys(r))).sort();
}

function identity(r: FlowJson): string {
  return [r.sensor, r.file, r.kind, r.src, r.dst, r.srcPort, r.dstPort, r.proto, r.vlan].join(" ");
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return JSON.parse(text) as T;
}

/** POSTs a query; the pcap goes to `path`; the status, the partial header and an error text. */
async function fetchPcap(
  url: string,
  query: string,
  path: string,
): Promise<{ status: number; partial: string | null; text: string }> {
  const response = await fetch(url, { method: "POST", body: query });
  const partial = response.headers.get("x-cutcap-partial");
  if (!response.ok) return { status: response.status, partial, text: await response.text() };
  await Deno.writeFile(path, new Uint8Array(await response.arrayBuffer()));
  return { status: response.status, partial, text: "" };
}

async function tcpdump(path: string): Promise<OraclePacket[]> {
  return parseTcpdumpHex(await run("tcpdump", ["-r", path, "-tt", "-nn", "-xx", "-K"]));
}

/** tcpdump over a pcap prefix (an answer cut mid-record reads up to the cut). */
async function tcpdumpBytes(bytes: Uint8Array, work: string): Promise<OraclePacket[]> {
  const path = `${work}/cut.pcap`;
  await Deno.writeFile(path, bytes);
  return parseTcpdumpHex(
    await run("tcpdump", ["-r", path, "-tt", "-nn", "-xx", "-K"], undefined, {
      allowFailure: true,
    }),
  );
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
