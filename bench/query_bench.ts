/**
 * Query speed: one host's packets out of an archive of ≥ 1 GB in ≥ 20 files, through the index
 * (`cutcap serve`, POST /query, the whole answer read) against `tcpdump -r FILE -w /dev/null host X`
 * over the same files one after the other — what an analyst would run without an index. Both take
 * turns within each round (page cache warm after one untimed round), and every figure is the median
 * over the rounds. Two hosts are timed: the busiest IPv4 client (a large answer, ~1.5 % of the
 * archive, where copying the answer dominates) and the median client (a typical investigation, where
 * reading the indexes dominates). Also reports the index size as a share of the pcap bytes.
 *
 * The archive is generated (bench/gen, several seeds so files interleave in time) and replayed with
 * `cutcap --read --byte-cutoff 0 --rotate-size 50MB`, then kept in `dir` and reused by later runs
 * with the same size.
 *
 * Run alone: deno run -A bench/query_bench.ts [--size 1.05GB] [--runs 5] [--dir DIR] [--remove] [--json]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { writeTrafficPcap } from "./gen/mod.ts";
import { countPcapPackets } from "./tcpdump_ref.ts";
import { INDEX_VERSION } from "../src/index/index_format.ts";
import { indexPathFor } from "../src/archive/naming.ts";
import { parseQuery } from "../src/query/parse.ts";
import { freePort } from "../tests/support/process.ts";

/** Options of {@link runQueryBench}. */
export interface QueryBenchOptions {
  /** Least pcap bytes in the archive, default 1.05e9. */
  size?: number;
  /** File rotation size handed to cutcap, default "50MB". */
  rotateSize?: string;
  /** Timed rounds, default 5 (one untimed warm-up round comes first). */
  runs?: number;
  /** Where the archive lives (reused when it was built with the same size), default bench/data/query_archive. */
  dir?: string;
  /** Delete the archive afterwards, default false. */
  remove?: boolean;
  /** Repository root holding main.ts, default the parent of this file's folder. */
  root?: string;
  /** Progress lines go here, default stderr. */
  progress?: (line: string) => void;
}

/** Result of {@link runQueryBench}. */
export interface QueryBenchResult {
  /** Archive: pcap files, their bytes and packets, and the bytes of their indexes. */
  files: number;
  pcapBytes: number;
  packets: number;
  indexBytes: number;
  /** indexBytes / pcapBytes. */
  indexShare: number;
  /** One timing per queried host: the busiest IPv4 client first, then a typical (median) one. */
  queries: HostQueryResult[];
  /** A Community ID lookup of one of each host's flows against that host's query. */
  cidLookups: CidLookupResult[];
  /** The median client hidden in a 64 KiB `host a or host b or …` list, against `host X` alone. */
  hostList?: HostListResult;
}

/** Timing of a 64 KiB list of thousands of hosts (one real) against that host alone. */
export interface HostListResult {
  host: string;
  hosts: number;
  queryBytes: number;
  /** Packets of both answers (equal: the other hosts are not in the archive). */
  packets: number;
  /** Medians of the HTTP queries (request to last byte), timed in turns. */
  listSeconds: number;
  hostSeconds: number;
  listRuns: number[];
  hostRuns: number[];
  /** Seconds to parse the list in this process (median of the rounds). */
  parseSeconds: number;
}

/** Timing of `community-id X` (one flow) against `host H` (every flow of the flow's client). */
export interface CidLookupResult {
  label: string;
  communityId: string;
  host: string;
  cidPackets: number;
  /** Median wall seconds of the HTTP queries, timed in turns. */
  cidSeconds: number;
  hostSeconds: number;
  cidRuns: number[];
  hostRuns: number[];
  /** cidSeconds / hostSeconds (target ≤ 2). */
  ratio: number;
}

/** Timing of `host X` through cutcap and through tcpdump. */
export interface HostQueryResult {
  /** "busiest client" or "median client". */
  label: string;
  host: string;
  answerPackets: number;
  answerBytes: number;
  /**
   * Packets tcpdump's `host X` selects: fewer than answerPackets when the host has VLAN-tagged
   * traffic, which BPF's `host` does not see through and cutcap's flow key does.
   */
  tcpdumpPackets: number;
  /** Median wall seconds of the HTTP query (request to last byte) and its time to first byte. */
  cutcapSeconds: number;
  cutcapFirstByteSeconds: number;
  cutcapRuns: number[];
  /** Median wall seconds of tcpdump over all files, sequentially. */
  tcpdumpSeconds: number;
  tcpdumpRuns: number[];
  /** cutcapSeconds / tcpdumpSeconds (target ≤ 0.05). */
  ratio: number;
}

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const MARKER = "query_bench.json";

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function listPcaps(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (/\.pcap$/.test(e.name) && !e.name.startsWith(".")) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

function sizeOf(path: string): number {
  return Deno.statSync(path).size;
}

interface ArchiveInfo {
  /** Index format the archive was built with (Community ID lookups need format 2's column). */
  indexVersion?: number;
  size: number;
  rotateSize: string;
  /** Busiest and median IPv4 client of the first replay. */
  hosts: [string, string];
}

/** Builds (or finds) the archive; returns the host to query. */
async function ensureArchive(
  dir: string,
  opts: { size: number; rotateSize: string; root: string; progress: (l: string) => void },
): Promise<[string, string]> {
  try {
    const info = JSON.parse(Deno.readTextFileSync(`${dir}/${MARKER}`)) as ArchiveInfo;
    if (
      info.size === opts.size && info.rotateSize === opts.rotateSize && info.hosts?.length === 2 &&
      info.indexVersion === INDEX_VERSION
    ) {
      opts.progress(`query bench: reusing the archive in ${dir}`);
      return info.hosts;
    }
  } catch {
    // No usable archive: build one.
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  const input = `${dir}/.replay.pcap`;
  let built = 0;
  let hosts: [string, string] | undefined;
  for (let seed = 1; built < opts.size; seed++) {
    // About 800 bytes per generated packet; each replay adds ~370 MB starting 0.4 s after the last
    // one's start, so their files overlap in time as several sensors' (or workers') would.
    const truth = await writeTrafficPcap(input, {
      seed: 100 + seed,
      packets: 450_000,
      startTs: 1_790_000_000 + seed * 0.4,
    });
    hosts ??= pickClients(truth.flows.key, truth.flows.kind, truth.flows.packets);
    opts.progress(`query bench: replaying ${(truth.fileBytes / 1e6).toFixed(0)} MB (seed ${seed})`);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `${opts.root}/main.ts`,
        "--read",
        input,
        "--out",
        dir,
        "--listen",
        "off",
        "--byte-cutoff",
        "0",
        "--rotate-size",
        opts.rotateSize,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`Replay failed: ${new TextDecoder().decode(out.stderr).slice(-500)}`);
    }
    built = listPcaps(dir).reduce((sum, f) => sum + sizeOf(f), 0);
  }
  await Deno.remove(input);
  const info: ArchiveInfo = {
    indexVersion: INDEX_VERSION,
    size: opts.size,
    rotateSize: opts.rotateSize,
    hosts: hosts!,
  };
  Deno.writeTextFileSync(`${dir}/${MARKER}`, JSON.stringify(info));
  return hosts!;
}

/** The IPv4 clients (flow end A) with the most packets and with the median number of packets. */
function pickClients(
  keys: Uint32Array,
  kinds: Uint8Array,
  packets: Float64Array,
): [string, string] {
  const perClient = new Map<number, number>();
  for (let f = 0; f < kinds.length; f++) {
    if (kinds[f] !== 4) continue;
    const a = keys[f * 10];
    perClient.set(a, (perClient.get(a) ?? 0) + packets[f]);
  }
  const ranked = [...perClient.entries()].sort((x, y) => y[1] - x[1] || x[0] - y[0]);
  const text = (a: number) => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  return [text(ranked[0][0]), text(ranked[ranked.length >> 1][0])];
}

/** One HTTP query, the whole answer read; seconds to first and last byte, and bytes. */
async function timeQuery(
  url: string,
  query: string,
): Promise<{ seconds: number; firstByte: number; bytes: number; answer: Uint8Array[] }> {
  const t0 = performance.now();
  const response = await fetch(`${url}/query`, { method: "POST", body: query });
  if (!response.ok) throw new Error(`Query failed: ${response.status} ${await response.text()}`);
  const chunks: Uint8Array[] = [];
  let firstByte = -1;
  let bytes = 0;
  for await (const chunk of response.body!) {
    if (firstByte < 0) firstByte = (performance.now() - t0) / 1000;
    chunks.push(chunk);
    bytes += chunk.length;
  }
  return { seconds: (performance.now() - t0) / 1000, firstByte, bytes, answer: chunks };
}

/** tcpdump over every file in turn; seconds. */
async function timeTcpdump(files: string[], filter: string, writeTo: string): Promise<number> {
  const t0 = performance.now();
  for (const [i, file] of files.entries()) {
    const target = writeTo === "/dev/null" ? writeTo : `${writeTo}.${i}`;
    const out = await new Deno.Command("tcpdump", {
      args: ["-r", file, "-w", target, filter],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`tcpdump failed on ${file}: ${new TextDecoder().decode(out.stderr)}`);
    }
  }
  return (performance.now() - t0) / 1000;
}

/** Builds the archive if needed, serves it, and times one host's query against tcpdump. */
export async function runQueryBench(opts: QueryBenchOptions = {}): Promise<QueryBenchResult> {
  const root = opts.root ?? ROOT;
  const dir = opts.dir ?? `${root}/bench/data/query_archive`;
  const size = opts.size ?? 1.05e9;
  const runs = opts.runs ?? 5;
  const progress = opts.progress ?? ((line: string) => console.error(line));
  const hosts = await ensureArchive(dir, {
    size,
    rotateSize: opts.rotateSize ?? "50MB",
    root,
    progress,
  });
  const files = listPcaps(dir);
  const pcapBytes = files.reduce((sum, f) => sum + sizeOf(f), 0);
  const indexBytes = files.reduce((sum, f) => sum + sizeOf(indexPathFor(f)), 0);
  let packets = 0;
  for (const f of files) packets += await countPcapPackets(f);

  const port = freePort();
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}/main.ts`, "serve", "--out", dir, "--listen", `127.0.0.1:${port}`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0;; i++) {
      try {
        const r = await fetch(`${url}/healthz`);
        await r.body?.cancel();
        if (r.ok) break;
      } catch {
        if (i > 300) throw new Error("cutcap serve did not start within 30 s");
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const queries: HostQueryResult[] = [];
    for (const [i, host] of hosts.entries()) {
      const label = i === 0 ? "busiest client" : "median client";
      queries.push(await timeHost(url, files, { host, label, runs, progress }));
    }
    const cidLookups: CidLookupResult[] = [];
    for (const [i, host] of hosts.entries()) {
      const label = i === 0 ? "busiest client" : "median client";
      cidLookups.push(await timeCidLookup(url, { host, label, runs, progress }));
    }
    const hostList = await timeHostList(url, { host: hosts[1], runs, progress });
    return {
      files: files.length,
      pcapBytes,
      packets,
      indexBytes,
      indexShare: indexBytes / pcapBytes,
      queries,
      cidLookups,
      hostList,
    };
  } finally {
    server.kill("SIGTERM");
    await server.status;
    if (opts.remove) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Times `host X` through the server and through tcpdump, taking turns, after one untimed round. */
async function timeHost(
  url: string,
  files: string[],
  opts: { host: string; label: string; runs: number; progress: (line: string) => void },
): Promise<HostQueryResult> {
  const query = `host ${opts.host}`;
  // Untimed round: warms the page cache and counts what each side selects.
  const first = await timeQuery(url, query);
  const answerPath = await Deno.makeTempFile({ prefix: "cutcap-qbench-", suffix: ".pcap" });
  const tcpdumpOut = await Deno.makeTempFile({ prefix: "cutcap-qbench-td-" });
  let answerPackets = 0;
  let tcpdumpPackets = 0;
  try {
    const answer = new Uint8Array(first.bytes);
    let at = 0;
    for (const c of first.answer) {
      answer.set(c, at);
      at += c.length;
    }
    Deno.writeFileSync(answerPath, answer);
    answerPackets = await countPcapPackets(answerPath);
    await timeTcpdump(files, query, tcpdumpOut);
    for (let i = 0; i < files.length; i++) {
      tcpdumpPackets += await countPcapPackets(`${tcpdumpOut}.${i}`);
      await Deno.remove(`${tcpdumpOut}.${i}`);
    }
  } finally {
    await Deno.remove(answerPath).catch(() => {});
    await Deno.remove(tcpdumpOut).catch(() => {});
  }
  opts.progress(
    `query bench: ${opts.label} "${query}": ${answerPackets} packets (tcpdump ${tcpdumpPackets})`,
  );
  const cutcapRuns: number[] = [];
  const firstBytes: number[] = [];
  const tcpdumpRuns: number[] = [];
  for (let r = 0; r < opts.runs; r++) {
    const q = await timeQuery(url, query);
    cutcapRuns.push(q.seconds);
    firstBytes.push(q.firstByte);
    tcpdumpRuns.push(await timeTcpdump(files, query, "/dev/null"));
    opts.progress(
      `query bench: ${opts.label} round ${r + 1}/${opts.runs}: cutcap ${q.seconds.toFixed(3)} s, ` +
        `tcpdump ${tcpdumpRuns[r].toFixed(3)} s`,
    );
  }
  const cutcapSeconds = median(cutcapRuns);
  const tcpdumpSeconds = median(tcpdumpRuns);
  return {
    label: opts.label,
    host: opts.host,
    answerPackets,
    answerBytes: first.bytes,
    tcpdumpPackets,
    cutcapSeconds,
    cutcapFirstByteSeconds: median(firstBytes),
    cutcapRuns,
    tcpdumpSeconds,
    tcpdumpRuns,
    ratio: cutcapSeconds / tcpdumpSeconds,
  };
}

/**
 * Times `community-id X` for the host's first flow against `host H`, in turns after one untimed
 * round: both scan every flow key of every file, the lookup comparing the index's 4-byte Community
 * ID prefixes and hashing only the candidates.
 */
async function timeCidLookup(
  url: string,
  opts: { host: string; label: string; runs: number; progress: (line: string) => void },
): Promise<CidLookupResult> {
  const hostQuery = `host ${opts.host}`;
  const res = await fetch(`${url}/flows?limit=1&q=${encodeURIComponent(`${hostQuery} and tcp`)}`);
  const [flow] = await res.json() as { communityId: string }[];
  if (flow === undefined || flow.communityId === "") {
    throw new Error(`No TCP flow of ${opts.host} to look up by Community ID`);
  }
  const cidQuery = `community-id ${flow.communityId}`;
  const first = await timeQuery(url, cidQuery);
  await timeQuery(url, hostQuery);
  const cidRuns: number[] = [];
  const hostRuns: number[] = [];
  for (let r = 0; r < opts.runs; r++) {
    cidRuns.push((await timeQuery(url, cidQuery)).seconds);
    hostRuns.push((await timeQuery(url, hostQuery)).seconds);
    opts.progress(
      `query bench: ${opts.label} Community ID round ${r + 1}/${opts.runs}: ` +
        `${cidRuns[r].toFixed(3)} s, host ${hostRuns[r].toFixed(3)} s`,
    );
  }
  const cidSeconds = median(cidRuns);
  const hostSeconds = median(hostRuns);
  return {
    label: opts.label,
    communityId: flow.communityId,
    host: opts.host,
    cidPackets: await answerPackets(first.answer),
    cidSeconds,
    hostSeconds,
    cidRuns,
    hostRuns,
    ratio: cidSeconds / hostSeconds,
  };
}

/**
 * Times `host X` hidden among thousands of hosts of 10.0.0.0/8 (which the generated traffic never
 * uses) in a query of at most 64 KiB, against `host X` alone, taking turns after an untimed round.
 */
async function timeHostList(
  url: string,
  opts: { host: string; runs: number; progress: (line: string) => void },
): Promise<HostListResult> {
  const hosts = [`host ${opts.host}`];
  for (let i = 0; hosts.join(" or ").length < 65_000; i++) {
    hosts.splice((i * 7919) % hosts.length, 0, `host 10.${(i >> 8) & 255}.${i & 255}.${i % 251}`);
  }
  const list = hosts.join(" or ");
  const single = `host ${opts.host}`;
  const first = await timeQuery(url, list);
  const alone = await timeQuery(url, single);
  if (first.bytes !== alone.bytes) {
    throw new Error(
      `The host list answered ${first.bytes} bytes, host ${opts.host} ${alone.bytes}`,
    );
  }
  const listRuns: number[] = [];
  const hostRuns: number[] = [];
  const parseRuns: number[] = [];
  for (let r = 0; r < opts.runs; r++) {
    listRuns.push((await timeQuery(url, list)).seconds);
    hostRuns.push((await timeQuery(url, single)).seconds);
    const t0 = performance.now();
    parseQuery(list);
    parseRuns.push((performance.now() - t0) / 1000);
    opts.progress(
      `query bench: ${hosts.length}-host list round ${r + 1}/${opts.runs}: ` +
        `${listRuns[r].toFixed(3)} s, host alone ${hostRuns[r].toFixed(3)} s`,
    );
  }
  return {
    host: opts.host,
    hosts: hosts.length,
    queryBytes: list.length,
    packets: await answerPackets(first.answer),
    listSeconds: median(listRuns),
    hostSeconds: median(hostRuns),
    listRuns,
    hostRuns,
    parseSeconds: median(parseRuns),
  };
}

/** Packets in a pcap answer held as chunks. */
async function answerPackets(chunks: Uint8Array[]): Promise<number> {
  const path = await Deno.makeTempFile({ prefix: "cutcap-qbench-cid-", suffix: ".pcap" });
  try {
    const file = await Deno.open(path, { write: true });
    try {
      for (const c of chunks) {
        for (let at = 0; at < c.length;) at += await file.write(c.subarray(at));
      }
    } finally {
      file.close();
    }
    return await countPcapPackets(path);
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** The result as the lines the CLI prints. */
export function formatQueryBench(r: QueryBenchResult): string {
  const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
  const lines = [
    `archive: ${r.files} files, ${(r.pcapBytes / 1e9).toFixed(2)} GB pcap, ${r.packets} packets`,
    `index: ${(r.indexBytes / 1e6).toFixed(1)} MB = ${pct(r.indexShare)} of the pcap bytes`,
  ];
  for (const q of r.queries) {
    lines.push(
      `${q.label}: host ${q.host} -> ${q.answerPackets} packets, ` +
        `${(q.answerBytes / 1e6).toFixed(1)} MB (tcpdump's host ${q.host}: ${q.tcpdumpPackets}; ` +
        `its "host" does not look inside VLAN tags, cutcap's does)`,
      `  cutcap (HTTP, median of ${q.cutcapRuns.length}): ${q.cutcapSeconds.toFixed(3)} s, ` +
        `first byte ${(q.cutcapFirstByteSeconds * 1000).toFixed(1)} ms`,
      `  tcpdump -r over all files (median): ${q.tcpdumpSeconds.toFixed(3)} s`,
      `  ratio cutcap/tcpdump: ${q.ratio.toFixed(4)} (1/${(1 / q.ratio).toFixed(1)}; ` +
        `target <= 1/20)`,
    );
  }
  for (const c of r.cidLookups) {
    lines.push(
      `${c.label}: community-id ${c.communityId} (a flow of ${c.host}, ${c.cidPackets} packets) ` +
        `${c.cidSeconds.toFixed(3)} s against host ${c.host} ` +
        `${c.hostSeconds.toFixed(3)} s (HTTP, medians of ${c.cidRuns.length} in turns): ratio ` +
        `${c.ratio.toFixed(2)} (target <= 2)`,
    );
  }
  const l = r.hostList;
  if (l !== undefined) {
    lines.push(
      `${l.hosts}-host list (${(l.queryBytes / 1024).toFixed(1)} KiB, host ${l.host} among ` +
        `hosts absent from the archive) -> ${l.packets} packets: ${l.listSeconds.toFixed(3)} s ` +
        `against host ${l.host} alone ${l.hostSeconds.toFixed(3)} s (HTTP, medians of ` +
        `${l.listRuns.length} in turns); parsing it ${(l.parseSeconds * 1000).toFixed(1)} ms ` +
        `(target: well under 1 s)`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      size: { type: "string", default: "1.05e9" },
      runs: { type: "string", default: "5" },
      dir: { type: "string" },
      remove: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const size = Number(values.size.replace(/GB$/i, "e9").replace(/MB$/i, "e6"));
  if (!Number.isFinite(size) || size <= 0) {
    throw new Error(`Invalid --size "${values.size}": expected bytes, e.g. 1.1GB or 500MB`);
  }
  const result = await runQueryBench({
    size,
    runs: Number(values.runs),
    dir: values.dir,
    remove: values.remove,
  });
  console.log(values.json ? JSON.stringify(result, null, 2) : formatQueryBench(result));
}
