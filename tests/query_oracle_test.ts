/**
 * Query answers against an independent oracle. An archive of many files is built the way a sensor
 * builds it: three offline replays of generated traffic (IPv4, IPv6, 802.1Q and QinQ tags, TCP, UDP,
 * ICMP, ICMPv6, ARP) into the same --out, one uncompressed, one gzip, one zstd, rotated by size, their
 * times interleaved; plus two files that tcpdump wrote (one capture split by flow, TCP and the rest, as
 * a fanout splits it between workers) placed in the archive as workers 1 and 2 of interface "tap" and
 * indexed with `cutcap index`. An offline replay always runs one worker, and a live capture with
 * several would need a network namespace and make the test slower and root-only; the split copies
 * give the catalog files of several workers over the same time span, which is what the merge sees.
 *
 * `cutcap serve` answers each query over HTTP (POST /query); tcpdump reads every file with the
 * equivalent BPF filter (queryToBpf), the query's time bounds are applied to tcpdump's -tt times,
 * and the per-file answers are concatenated in catalog order and stable-sorted by timestamp. The two
 * must be equal packet for packet, bytes and timestamps, in order.
 */
import assert from "node:assert/strict";
import { parseQuery } from "../src/query/parse.ts";
import { queryToBpf } from "../src/query/match.ts";
import type { Query, TimePredicate } from "../src/query/ast.ts";
import { generateTrafficBytes, type TrafficTruth } from "../bench/gen/mod.ts";
import { cutcap, run, tcpdumpPackets } from "./support/oracle.ts";
import {
  assertSamePackets,
  firstPacketUs,
  oraclePackets,
  plainCopies,
  postQuery,
  replayIntoArchive,
  tsToUs,
} from "./support/query_server.ts";
import { type ServerProcess, startServe } from "./support/process.ts";
import { archivePathFor } from "./support/archive_craft.ts";

/** Start of the traffic: ten minutes ago, so `after N ago` and `last=` cut through the data. */
const T0 = Math.floor(Date.now() / 1000) - 600;
const PACKETS = 4000;
const TRAFFIC = { packets: PACKETS, vlanShare: 0.25, qinqShare: 0.2, ipv6Share: 0.3, snaplen: 160 };

/** RFC 3339 text of a time in microseconds, in UTC or at a fixed offset (minutes east of UTC). */
function rfc3339(us: number, offsetMinutes = 0): string {
  const local = new Date(Math.floor(us / 1000) + offsetMinutes * 60_000).toISOString();
  const micros = String(us % 1_000_000).padStart(6, "0");
  if (offsetMinutes === 0) return `${local.slice(0, 19)}.${micros}Z`;
  const sign = offsetMinutes > 0 ? "+" : "-";
  const abs = Math.abs(offsetMinutes);
  const zone = `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${
    String(abs % 60).padStart(2, "0")
  }`;
  return `${local.slice(0, 19)}.${micros}${zone}`;
}

/** Time predicates that are top-level conjuncts: the ones queryToBpf leaves to the caller. */
function topLevelTimes(q: Query): TimePredicate[] {
  if (q.type === "time") return [q];
  if (q.type === "and") return q.children.flatMap(topLevelTimes);
  return [];
}

/** Whether a packet at `us` passes every time predicate (microsecond-exact for RFC 3339 bounds). */
function timeKeep(times: TimePredicate[]): (us: number) => boolean {
  const bounds = times.map((t) => ({ op: t.op, at: Math.round(t.at * 1e6) }));
  return (us) => bounds.every((b) => b.op === "after" ? us >= b.at : us < b.at);
}

/** Most frequent value of `pick` over flows, weighted by packets (ignoring `skip`). */
function busiest(
  truths: TrafficTruth[],
  pick: (t: TrafficTruth, flow: number) => string | null,
): string {
  const counts = new Map<string, number>();
  for (const t of truths) {
    for (let f = 0; f < t.flows.count; f++) {
      const v = pick(t, f);
      if (v !== null) counts.set(v, (counts.get(v) ?? 0) + t.flows.packets[f]);
    }
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
}

function v4(word: number): string {
  return `${word >>> 24}.${(word >>> 16) & 255}.${(word >>> 8) & 255}.${word & 255}`;
}

let work = "";
let out = "";
let server: ServerProcess | undefined;
let files: string[] = [];
let truths: TrafficTruth[] = [];

async function setUp(): Promise<void> {
  work = await Deno.makeTempDir({ prefix: "cutcap-qoracle-" });
  out = `${work}/archive`;
  truths = await replayIntoArchive(out, [
    { traffic: { ...TRAFFIC, seed: 11, startTs: T0 }, compress: "none", rotateSize: "128KiB" },
    {
      traffic: { ...TRAFFIC, seed: 12, startTs: T0 + 0.37 },
      compress: "gzip",
      // Compressed files now land near their size on disk: smaller, for as many files as plain.
      rotateSize: "40KiB",
    },
    {
      traffic: { ...TRAFFIC, seed: 13, startTs: T0 + 1.13 },
      compress: "zstd",
      rotateSize: "40KiB",
    },
  ], { workDir: work });
  // A capture tcpdump wrote, split by flow between two "workers" of interface tap.
  const { pcap, truth } = generateTrafficBytes({ ...TRAFFIC, seed: 14, startTs: T0 + 0.71 });
  truths.push(truth);
  await Deno.writeFile(`${work}/tap.pcap`, pcap);
  for (const [worker, filter] of [[1, "tcp"], [2, "not tcp"]] as const) {
    const written = `${work}/tap_w${worker}.pcap`;
    await run("tcpdump", ["-r", `${work}/tap.pcap`, "-w", written, filter]);
    const target = `${out}/${archivePathFor(await firstPacketUs(written), "tap", worker)}`;
    await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
    await Deno.rename(written, target);
    const indexed = await cutcap(["index", target]);
    assert.equal(indexed.code, 0, indexed.stderr);
  }
  files = await plainCopies(out, work);
  server = await startServe(out);
}

async function tearDown(): Promise<void> {
  if (server) assert.equal(await server.stop(), 0, "serve exits cleanly on SIGTERM");
  if (work) await Deno.remove(work, { recursive: true });
}

Deno.test("query answers equal tcpdump's over a multi-file, multi-compression archive", async (t) => {
  await setUp();
  try {
    assert.ok(files.length >= 12, `the archive has many files (${files.length})`);
    const all = await oraclePackets(files, "");
    assert.equal(all.length, 4 * PACKETS, "every packet went into the archive");

    const serverV4 = "198.19.0.1";
    const serverV6 = "2001:db8:100::1";
    const clientV4 = busiest(truths, (tr, f) => {
      const k = f * 10;
      return tr.flows.kind[f] === 4 && tr.flows.proto[f] !== 1 ? v4(tr.flows.key[k]) : null;
    });
    const vlan = busiest(
      truths,
      (tr, f) => tr.flows.vlan[f] !== 0 ? String(tr.flows.vlan[f]) : null,
    );
    // Exact packet times as bounds: `after` must include its packet, `before` exclude its own.
    const tA = tsToUs(all[Math.floor(all.length * 0.3)].ts);
    const tB = tsToUs(all[Math.floor(all.length * 0.7)].ts);
    const cut = () => String(Math.round(Date.now() / 1000 - (T0 + 8)));

    const queries: (() => string)[] = [
      () => `host ${serverV4}`,
      () => `host ${clientV4}`,
      () => `host ${serverV6}`,
      () => "net 198.18.128.0/17",
      () => "net 2001:db8:1::/48",
      () => "net 198.19.0.0 mask 255.255.255.0",
      () => "port 53",
      () => "ip proto 17",
      () => "tcp",
      () => "udp and ip6",
      () => "icmp",
      () => "icmp6",
      () => `vlan ${vlan}`,
      () => "vlan 0 and ip6",
      () => `after ${rfc3339(tA)} and before ${rfc3339(tB)}`,
      () => `tcp and after ${rfc3339(tA, 120)}`,
      () => `udp before ${rfc3339(tB, -330)}`,
      () => `tcp and after ${cut()}s ago`,
      () => `before ${cut()}s ago and port 443`,
      () => "ip=198.18.0.5-198.18.3.77",
      () => "ip=2001:db8:1::10-2001:db8:1::2ff",
      () => "port=443",
      () => "proto=udp",
      () => `last=${cut()}s`,
      () => "port=80|port=443",
      () => `ip=${serverV4} port=443`,
      () => `ip=${serverV4} port=80|port=443 proto=tcp`,
      () => "(tcp or udp) and not port 443",
      () => `host ${serverV4} or host ${serverV6}`,
      () => "not (tcp or udp or icmp)",
      () => "portrange 50000-50999 && !ip6",
      () => `net 198.19.0.0/16 and (port 53 || icmp) and after ${rfc3339(tA)}`,
      // stenographer's meanings (issue 13): host bits masked, `ip proto N` for IPv4 and IPv6 (the
      // tcpdump equivalent is `ip proto N or ip6 proto N`), IPv4-mapped IPv6 = the IPv4 host.
      () => "net 198.18.131.77/17",
      () => "net 198.19.0.9 mask 255.255.255.0",
      () => "net 2001:db8:1::77/48",
      () => "ip proto 58",
      () => "ip proto 17 and ip6",
      () => `host ::ffff:${serverV4}`,
      () => `net ::ffff:198.18.0.0/113`,
    ];
    let nonEmpty = 0;
    for (const [i, make] of queries.entries()) {
      const text = make();
      await t.step(text, async () => {
        const sentAt = Date.now() / 1000;
        const answer = `${work}/answer${i}.pcap`;
        const { status, text: error } = await postQuery(server!.url, text, answer);
        const receivedAt = Date.now() / 1000;
        assert.equal(status, 200, error);
        const got = await tcpdumpPackets(answer);
        const early = parseQuery(text, { now: sentAt });
        const late = parseQuery(text, { now: receivedAt });
        const filter = queryToBpf(early, { vlanTags: true });
        assert.notEqual(filter, null, "the query has a tcpdump equivalent");
        const keepEarly = timeKeep(topLevelTimes(early));
        const keepLate = timeKeep(topLevelTimes(late));
        // A relative time ("N ago", last=) is resolved when the server parses it, somewhere between
        // sending and receiving: packets whose verdict differs across that window may go either way.
        const candidates = await oraclePackets(
          files,
          filter!,
          (us) => keepEarly(us) || keepLate(us),
        );
        const returned = new Set(got.map((p) => p.ts + p.hex));
        let undecided = 0;
        const expected = candidates.filter((p) => {
          const us = tsToUs(p.ts);
          if (keepEarly(us) === keepLate(us)) return true;
          undecided++;
          return returned.has(p.ts + p.hex);
        });
        assert.ok(
          undecided <= candidates.length / 4,
          `few packets near a relative bound (${undecided} of ${candidates.length})`,
        );
        assertSamePackets(got, expected, text);
        if (expected.length > 0) nonEmpty++;
      });
    }
    assert.ok(nonEmpty >= queries.length - 1, `queries select something (${nonEmpty})`);

    await t.step("a 64 KiB list of thousands of hosts", async () => {
      // Real hosts of the archive hidden among thousands in 10.0.0.0/8, which the traffic never
      // uses (tcpdump confirms): tcpdump's selection of the real hosts alone is the answer.
      const real = new Set<string>();
      for (const tr of truths) {
        for (let f = 0; f < tr.flows.count && real.size < 60; f += 7) {
          if (tr.flows.kind[f] === 4) real.add(v4(tr.flows.key[f * 10]));
        }
      }
      const hosts = [...real].map((h) => `host ${h}`);
      for (let i = 0; hosts.join(" or ").length < 65_000; i++) {
        hosts.splice((i * 7919) % hosts.length, 0, `host 10.${i >> 8 & 255}.${i & 255}.${i % 251}`);
      }
      const text = hosts.join(" or ");
      assert.ok(text.length <= 65_536 && hosts.length > 3000, `${hosts.length} hosts`);
      assert.equal((await oraclePackets(files, "net 10.0.0.0/8")).length, 0);
      const answer = `${work}/answer-hosts.pcap`;
      const { status, text: error } = await postQuery(server!.url, text, answer);
      assert.equal(status, 200, error);
      const realOnly = parseQuery([...real].map((h) => `host ${h}`).join(" or "));
      const filter = queryToBpf(realOnly, { vlanTags: true });
      const expected = await oraclePackets(files, filter!);
      assert.ok(expected.length > 100, `${expected.length} packets`);
      assertSamePackets(await tcpdumpPackets(answer), expected, "host list");
    });
    assert.ok(server!.alive(), "the server is still up");
  } finally {
    await tearDown();
  }
});
