/**
 * Helpers for the query tests: a multi-file archive built by cutcap's own offline replays (plus
 * tcpdump-written files indexed with `cutcap index`) and the tcpdump oracle for a query over the
 * archive's files (the `cutcap serve` process: process.ts).
 */
import { writeTrafficPcap } from "../../bench/gen/mod.ts";
import type { TrafficOptions, TrafficTruth } from "../../bench/gen/mod.ts";
import assert from "node:assert/strict";
import { parseQuery } from "../../src/query/parse.ts";
import { queryToBpf } from "../../src/query/match.ts";
import {
  archiveFiles,
  cutcap,
  fileBytes,
  type OraclePacket,
  parseTcpdumpHex,
  run,
} from "./oracle.ts";

/** One generated capture replayed into the archive. */
export interface ReplaySpec {
  traffic: TrafficOptions;
  compress: "none" | "gzip" | "zstd";
  rotateSize: string;
}

/** Generates each spec's traffic and replays it with `cutcap --read` into `outDir` (no cutoff). */
export async function replayIntoArchive(
  outDir: string,
  specs: ReplaySpec[],
  options: { workDir: string },
): Promise<TrafficTruth[]> {
  const truths: TrafficTruth[] = [];
  for (const [i, spec] of specs.entries()) {
    const input = `${options.workDir}/replay${i}.pcap`;
    truths.push(await writeTrafficPcap(input, spec.traffic));
    const result = await cutcap([
      "--read",
      input,
      "--out",
      outDir,
      "--listen",
      "off",
      "--byte-cutoff",
      "0",
      "--rotate-size",
      spec.rotateSize,
      "--compress",
      spec.compress,
    ]);
    if (result.code !== 0) throw new Error(`replay ${i} failed: ${result.stderr}`);
  }
  return truths;
}

/** Replays capture files with `cutcap --read` into `outDir` (no cutoff, no server) plus `extra`. */
export async function replayFiles(
  inputs: string[],
  outDir: string,
  extra: string[] = [],
): Promise<void> {
  const args = ["--read", ...inputs, "--out", outDir, "--listen", "off", "--byte-cutoff", "0"];
  const result = await cutcap([...args, ...extra]);
  if (result.code !== 0) throw new Error(`replay of ${inputs.join(" ")} failed: ${result.stderr}`);
}

/** First packet time of a pcap in microseconds, as tcpdump prints it. */
export async function firstPacketUs(path: string): Promise<number> {
  const text = await run("tcpdump", ["-r", path, "-tt", "-nn", "-c", "1"]);
  return tsToUs(text.split(" ")[0]);
}

/** tcpdump's `-tt` time (`1700000000.123456`) -> integer microseconds. */
export function tsToUs(ts: string): number {
  const [sec, frac] = ts.split(".");
  return Number(sec) * 1_000_000 + Number((frac ?? "").padEnd(6, "0").slice(0, 6));
}

/**
 * The archive's files in the query's merge order (first packet time, as the catalog sorts), each
 * decompressed once by zcat/zstdcat into `workDir` so the oracle's tcpdump runs read plain pcap.
 */
export async function plainCopies(outDir: string, workDir: string): Promise<string[]> {
  const withTimes: { path: string; first: number; name: string }[] = [];
  for (const [i, file] of archiveFiles(outDir).entries()) {
    const path = `${workDir}/plain${i}.pcap`;
    await Deno.writeFile(path, await fileBytes(file));
    withTimes.push({ path, first: await firstPacketUs(path), name: file });
  }
  withTimes.sort((a, b) => a.first - b.first || (a.name < b.name ? -1 : 1));
  return withTimes.map((f) => f.path);
}

/** Time bounds in microseconds applied to tcpdump's timestamps: from <= ts < to. */
export interface UsBounds {
  from: number;
  to: number;
}

/**
 * The oracle: tcpdump with `filter` on every file, each file's packets kept when `keep` says so,
 * concatenated in file order and stable-sorted by exact timestamp. With `firstPerFile` only the
 * answer's first that many packets are right (`keep` must then accept everything).
 */
export async function oraclePackets(
  files: string[],
  filter: string,
  keep: (tsUs: number) => boolean = () => true,
  options: { firstPerFile?: number } = {},
): Promise<OraclePacket[]> {
  const all: { p: OraclePacket; us: number }[] = [];
  for (const file of files) {
    // The first N packets of a merge come from the first N of each file: `-c N` saves reading the rest.
    const args = ["-r", file, "-tt", "-nn", "-xx", "-K"];
    if (options.firstPerFile !== undefined) args.push("-c", String(options.firstPerFile));
    if (filter !== "") args.push(filter);
    for (const p of parseTcpdumpHex(await run("tcpdump", args))) {
      const us = tsToUs(p.ts);
      if (keep(us)) all.push({ p, us });
    }
  }
  // Array.prototype.sort is stable.
  all.sort((a, b) => a.us - b.us);
  return all.map((x) => x.p);
}

/** The tcpdump filter equivalent to a query without time predicates (VLAN tags seen through). */
export function bpfFor(query: string): string {
  const filter = queryToBpf(parseQuery(query), { vlanTags: true });
  if (filter === null) throw new Error(`Query ${query} has no tcpdump equivalent`);
  return filter;
}

/** Fails with the first difference instead of a diff of thousands of packets. */
export function assertSamePackets(
  actual: OraclePacket[],
  expected: OraclePacket[],
  label: string,
): void {
  const n = Math.min(actual.length, expected.length);
  for (let i = 0; i < n; i++) {
    if (actual[i].ts !== expected[i].ts || actual[i].hex !== expected[i].hex) {
      assert.fail(
        `${label}: packet ${i} differs: cutcap ${actual[i].ts} ${actual[i].hex.slice(0, 80)}..., ` +
          `tcpdump ${expected[i].ts} ${expected[i].hex.slice(0, 80)}... ` +
          `(${actual.length} vs ${expected.length} packets)`,
      );
    }
  }
  assert.equal(actual.length, expected.length, `${label}: packet count`);
}

/**
 * POSTs a query; saves the pcap answer to `path` and checks, with tcpdump, that it is in time
 * order; returns the response status and its text on error.
 */
export async function postQuery(
  url: string,
  query: string,
  path: string,
  params = "",
): Promise<{ status: number; text: string }> {
  const response = await fetch(`${url}/query${params}`, { method: "POST", body: query });
  if (!response.ok) return { status: response.status, text: await response.text() };
  await Deno.writeFile(path, new Uint8Array(await response.arrayBuffer()));
  await assertAnswerInTimeOrder(path, query);
  return { status: response.status, text: "" };
}

/**
 * Reads an answer file with tcpdump (pcap) or tshark (pcapng: libpcap reads only one link type
 * per file) and checks that its times never go back.
 */
export async function assertAnswerInTimeOrder(path: string, label: string): Promise<void> {
  const head = new Uint8Array(4);
  const file = await Deno.open(path);
  const n = await file.read(head);
  file.close();
  if (n !== 4) return; // an empty answer
  const pcapng = new DataView(head.buffer).getUint32(0, true) === 0x0a0d0d0a;
  const times = pcapng
    ? (await run("tshark", ["-r", path, "-T", "fields", "-e", "frame.time_epoch"]))
      .split("\n").filter((l) => l !== "")
    : parseTcpdumpHex(
      await run("tcpdump", ["-r", path, "-tt", "-nn", "--time-stamp-precision=nano"]),
    ).map((p) => p.ts).filter((ts) => /^\d/.test(ts));
  for (let i = 1; i < times.length; i++) {
    if (nanos(times[i]) < nanos(times[i - 1])) {
      assert.fail(`${label}: packet ${i} at ${times[i]} comes after ${times[i - 1]}`);
    }
  }
}

/** tcpdump's `-tt` time at nanosecond precision as a BigInt of nanoseconds. */
function nanos(ts: string): bigint {
  const [sec, frac] = ts.split(".");
  return BigInt(sec) * 1_000_000_000n + BigInt((frac ?? "").padEnd(9, "0").slice(0, 9));
}

/** Value of one sample of a Prometheus text exposition, 0 when absent. */
export async function metricValue(url: string, sample: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  for (const line of text.split("\n")) {
    if (line.startsWith(sample + " ")) return Number(line.slice(sample.length + 1));
  }
  return 0;
}
