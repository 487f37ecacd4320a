/**
 * Pivot from alerts to packets: EVE JSON and Zeek conn.log files (TSV and JSON) written here from
 * the generator's truth (alerts with a Community ID, flow events with a 5-tuple and flow times,
 * some lines broken) → `POST /query/pivot` and `cutcap query --from-eve/--from-zeek` answer exactly
 * the named flows' packets within their windows (tcpdump with each flow's 5-tuple, times kept by
 * the window), broken lines reported by number; a file with no usable line is an error.
 */
import assert from "node:assert/strict";
import { cutcap, tcpdumpPackets } from "./support/oracle.ts";
import { assertSamePackets, oraclePackets, replayIntoArchive } from "./support/query_server.ts";
import type { OraclePacket } from "./support/oracle.ts";
import type { TrafficTruth } from "../bench/gen/mod.ts";
import { referenceId } from "./support/community_id_ref.ts";
import { type ServerProcess, startServe } from "./support/process.ts";

const MARGIN = 0.25;

interface NamedFlow {
  f: number;
  src: string;
  dst: string;
  proto: number;
  sport: number;
  dport: number;
  /** Microseconds of the flow's first, third and last packets. */
  firstUs: number;
  thirdUs: number;
  lastUs: number;
}

let work = "";
let server: ServerProcess | undefined;
let truth: TrafficTruth;
const flows: NamedFlow[] = [];

function address(words: Uint32Array, at: number, v6: boolean): string {
  if (!v6) return [24, 16, 8, 0].map((s) => (words[at] >>> s) & 0xff).join(".");
  const groups: string[] = [];
  for (let i = 0; i < 4; i++) {
    groups.push((words[at + i] >>> 16).toString(16), (words[at + i] & 0xffff).toString(16));
  }
  return groups.join(":");
}

async function setUp(): Promise<ServerProcess> {
  if (server) return server;
  work = await Deno.makeTempDir({ prefix: "cutcap-pivot-" });
  [truth] = await replayIntoArchive(`${work}/out`, [{
    traffic: {
      seed: 77,
      packets: 8000,
      ipv6Share: 0.3,
      vlanShare: 0,
      qinqShare: 0,
      startTs: 1_765_000_000,
    },
    compress: "gzip",
    rotateSize: "500KB",
  }], { workDir: work });
  const t = truth.flows;
  const first = new Map<number, number[]>();
  for (let p = 0; p < truth.packets; p++) {
    const f = truth.flowOfPacket[p];
    const list = first.get(f) ?? [];
    list.push(truth.tsUs[p]);
    first.set(f, list);
  }
  for (let f = 0; f < t.count && flows.length < 12; f++) {
    const times = first.get(f)!;
    if (t.kind[f] === 1 || times.length < 6 || f % 5 !== 0) continue;
    const v6 = t.kind[f] === 6;
    const k = f * 10;
    flows.push({
      f,
      src: address(t.key, k, v6),
      dst: address(t.key, k + 4, v6),
      proto: t.proto[f],
      sport: t.key[k + 8] >>> 16,
      dport: t.key[k + 8] & 0xffff,
      firstUs: times[0],
      thirdUs: times[2],
      lastUs: times[times.length - 1],
    });
  }
  assert.ok(flows.some((n) => n.proto === 1 || n.proto === 58), "an ICMP flow among the named");
  server = await startServe(`${work}/out`);
  return server;
}

/** EVE's time format: 2026-11-23T02:00:00.123456+0000. */
function eveTime(us: number): string {
  const iso = new Date(Math.floor(us / 1000)).toISOString().slice(0, 19);
  return `${iso}.${String(us % 1e6).padStart(6, "0")}+0000`;
}

function cidOf(n: NamedFlow): string {
  const ports = n.proto === 1 || n.proto === 58 ? [n.proto === 1 ? 8 : 128, 0] : [n.sport, n.dport];
  return referenceId(0, n.src, n.dst, n.proto, ports[0], ports[1]);
}

function eveProto(p: number): string {
  return p === 6 ? "TCP" : p === 17 ? "UDP" : p === 1 ? "ICMP" : "IPv6-ICMP";
}

/** tcpdump's packets of the named flows, each kept within [fromUs, toUs]. */
async function expected(windows: { n: NamedFlow; fromUs: number; toUs: number }[]) {
  const all: OraclePacket[] = [];
  for (const { n, fromUs, toUs } of windows) {
    const ip = n.src.includes(":") ? "ip6" : "ip";
    const ports = n.proto === 6 || n.proto === 17 ? ` and port ${n.sport} and port ${n.dport}` : "";
    const filter = `${ip} host ${n.src} and ${ip} host ${n.dst} and ${ip} proto ${n.proto}${ports}`;
    const got = await oraclePackets(
      [`${work}/replay0.pcap`],
      filter,
      (us) => us >= fromUs && us < toUs,
    );
    all.push(...got);
  }
  const seen = new Set<string>();
  const unique = all.filter((p) => !seen.has(p.ts + p.hex) && seen.add(p.ts + p.hex));
  return unique.sort((a, b) => Number(a.ts) - Number(b.ts));
}

async function pivot(s: ServerProcess, input: "eve" | "zeek", body: string): Promise<Response> {
  return await fetch(`${s.url}/query/pivot?input=${input}&margin=${MARGIN}`, {
    method: "POST",
    body,
  });
}

async function answerPackets(res: Response): Promise<OraclePacket[]> {
  const path = `${work}/answer.pcap`;
  await Deno.writeFile(path, new Uint8Array(await res.arrayBuffer()));
  return await tcpdumpPackets(path);
}

const M = MARGIN * 1e6;

Deno.test("pivot: EVE alerts (community_id) and flow events (5-tuple, flow times), broken lines by number", async () => {
  const s = await setUp();
  const [alerts, events] = [flows.slice(0, 6), flows.slice(6)];
  const lines = [
    ...alerts.map((n) =>
      JSON.stringify({
        timestamp: eveTime(n.thirdUs),
        event_type: "alert",
        src_ip: n.src,
        dest_ip: n.dst,
        proto: eveProto(n.proto),
        community_id: cidOf(n),
        alert: { signature: "test" },
      })
    ),
    "{not json",
    JSON.stringify({ timestamp: eveTime(flows[0].firstUs), event_type: "alert", proto: "TCP" }),
    ...events.map((n) =>
      JSON.stringify({
        timestamp: eveTime(n.lastUs),
        event_type: "flow",
        src_ip: n.src,
        src_port: n.sport,
        dest_ip: n.dst,
        dest_port: n.dport,
        proto: eveProto(n.proto),
        flow: { start: eveTime(n.firstUs), end: eveTime(n.lastUs) },
      })
    ),
  ];
  const res = await pivot(s, "eve", lines.join("\n") + "\n");
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(res.headers.get("x-cutcap-pivot-flows"), String(flows.length));
  assert.equal(
    res.headers.get("x-cutcap-pivot-skipped"),
    `${alerts.length + 1},${alerts.length + 2}`,
  );
  assert.match(
    res.headers.get("x-cutcap-pivot-problems")!,
    /line 7: not a JSON object; line 8: no usable src_ip/,
  );
  const want = await expected([
    ...alerts.map((n) => ({ n, fromUs: n.thirdUs - M, toUs: n.thirdUs + M })),
    ...events.map((n) => ({ n, fromUs: n.firstUs - M, toUs: n.lastUs + M })),
  ]);
  assert.ok(want.length > 30, `${want.length} packets expected`);
  assertSamePackets(await answerPackets(res), want, "EVE pivot");
});

Deno.test("pivot: Zeek conn.log as TSV (community_id column, some unset) and as JSON", async () => {
  const s = await setUp();
  const zeekProto = (p: number) => (p === 6 ? "tcp" : p === 17 ? "udp" : "icmp");
  const row = (n: NamedFlow, withCid: boolean) => ({
    ts: (n.firstUs / 1e6).toFixed(6),
    uid: `C${n.f}`,
    "id.orig_h": n.src,
    "id.orig_p": n.proto === 1 || n.proto === 58 ? 8 : n.sport,
    "id.resp_h": n.dst,
    "id.resp_p": n.proto === 1 || n.proto === 58 ? 0 : n.dport,
    proto: zeekProto(n.proto),
    duration: ((n.lastUs - n.firstUs) / 1e6).toFixed(6),
    community_id: withCid ? cidOf(n) : "-",
  });
  const fields = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "duration",
    "community_id",
  ];
  const tsv = [
    "#separator \\x09",
    "#set_separator\t,",
    "#path\tconn",
    `#fields\t${fields.join("\t")}`,
    `#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tinterval\tstring`,
    ...flows.map((n, i) =>
      fields.map((f) => String(row(n, i % 2 === 0)[f as keyof ReturnType<typeof row>])).join("\t")
    ),
    "1765000000.0\tCbroken\t198.18.0.1",
    "#close\t2026-11-23-02-00-00",
  ];
  const want = await expected(flows.map((n) => ({ n, fromUs: n.firstUs - M, toUs: n.lastUs + M })));
  const res = await pivot(s, "zeek", tsv.join("\n") + "\n");
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(res.headers.get("x-cutcap-pivot-skipped"), String(6 + flows.length));
  assert.match(res.headers.get("x-cutcap-pivot-problems")!, /fields, the #fields header names 9/);
  assertSamePackets(await answerPackets(res), want, "conn.log TSV pivot");

  const json = flows.map((n, i) => {
    const r: Record<string, unknown> = { ...row(n, i % 2 === 1), ts: n.firstUs / 1e6 };
    if (r.community_id === "-") delete r.community_id;
    r["id.orig_p"] = Number(r["id.orig_p"]);
    r["id.resp_p"] = Number(r["id.resp_p"]);
    r.duration = Number(r.duration);
    return JSON.stringify(r);
  });
  json.splice(
    2,
    0,
    JSON.stringify({ ts: 1, "id.orig_h": "198.18.0.1", "id.resp_h": "198.19.0.1", proto: "gre?" }),
  );
  const fromCli = `${work}/conn.json`;
  await Deno.writeTextFile(fromCli, json.join("\n") + "\n");
  const out = `${work}/cli.pcap`;
  const r = await cutcap([
    "query",
    "--server",
    s.url,
    "--from-zeek",
    fromCli,
    "--margin",
    `${MARGIN}s`,
    "-w",
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`${fromCli} line 3: unknown proto "gre\\?"`));
  assertSamePackets(await tcpdumpPackets(out), want, "conn.log JSON pivot through the CLI");
});

Deno.test("pivot: a file with no usable line is an error; bad options are named", async () => {
  const s = await setUp();
  const res = await pivot(s, "eve", "{}\nnot json\n");
  assert.equal(res.status, 400);
  assert.match(
    await res.text(),
    /^No usable line in the EVE input: expected .*; found line 1: no timestamp or flow.start; line 2: not a JSON object/,
  );
  const bad = await fetch(`${s.url}/query/pivot?input=csv`, { method: "POST", body: "x" });
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /Invalid input "csv": expected eve or zeek/);
  const empty = `${work}/empty.json`;
  await Deno.writeTextFile(empty, "\n");
  const r = await cutcap(["query", "--server", s.url, "--from-eve", empty, "-w", `${work}/x.pcap`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /No usable line in the EVE input/);
  const both = await cutcap(["query", "--server", s.url, "--from-eve", empty, "host 198.18.0.1"]);
  assert.equal(both.code, 2, both.stderr);
  assert.match(both.stderr, /give a query or a file to pivot from, not both/);
});

Deno.test("pivot tests clean up", async () => {
  if (server) assert.equal(await server.stop(), 0);
  if (work) await Deno.remove(work, { recursive: true });
});
