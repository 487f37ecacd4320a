/**
 * Memory with 1,000,000 concurrent flows: generates a capture of 1M distinct UDP flows (two
 * packets each, all within 2 s of packet time), replays it through `cutcap --read` with a long
 * flow timeout and reports the process's peak RSS (/usr/bin/time) and the most flows its stats
 * lines showed at once: once as a sensor runs by default, listening on loopback (HTTP server,
 * query routes and prom-client loaded), and once with `--listen off`. Also measures the flow table alone in this process (RSS before and after
 * filling it), to show what the table itself costs.
 *
 * Run alone: deno run -A bench/memory.ts [--flows N]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { FlowTable } from "../src/flow/mod.ts";
import { IndexBuilder } from "../src/index/index_builder.ts";
import { indexPathFor } from "../src/archive/naming.ts";
import { timedRun } from "./offline.ts";

/** Result of {@link runMemoryBench}. */
export interface MemoryBenchResult {
  flows: number;
  packets: number;
  /** Peak RSS of the whole cutcap process (main thread, worker, everything), listening, KiB. */
  cutcapPeakRssKb: number;
  /** The same with `--listen off`, KiB. */
  cutcapPeakRssKbNoListen: number;
  /** Most active flows one stats line reported. */
  maxActiveFlows: number;
  /** RSS growth of this process while a FlowTable took `flows` flows, KiB. */
  tableRssKb: number;
  /** What the table says it uses (FlowTable.memoryBytes), bytes. */
  tableBytes: number;
  /** Writing the index of a file holding every flow of a full table, stored (a packet each). */
  storedIndex: IndexWrite;
  /** The same when every flow was cut off before and sent in the file unstored (records without
   * packets). */
  unstoredIndex: IndexWrite;
}

/** One index write of the builder alone (bench/memory.ts indexWrite). */
export interface IndexWrite {
  /** Wall milliseconds of IndexBuilder.write plus reset (other work may run on the machine). */
  ms: number;
  /** RSS growth of this process across the write, KiB. */
  rssKb: number;
}

/** Options of {@link runMemoryBench}. */
export interface MemoryBenchOptions {
  /** Distinct flows, default 1,000,000. */
  flows?: number;
  /** Directory for the capture and output, default a new temporary directory. */
  workDir?: string;
  /** Repository root holding main.ts, default the parent of this file's folder. */
  root?: string;
  progress?: (line: string) => void;
}

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const FRAME = 60;

/**
 * Writes a pcap of `flows` distinct IPv4/UDP flows 198.18.x.y:port → 198.19.255.1:5000, every
 * flow sending one 60-byte frame in a first pass and one in a second, 1 µs apart.
 */
export function writeManyFlowsPcap(path: string, flows: number): number {
  const packets = flows * 2;
  const file = Deno.openSync(path, { write: true, create: true, truncate: true });
  try {
    const chunk = new Uint8Array(24 + 65536 * (16 + FRAME));
    const dv = new DataView(chunk.buffer);
    dv.setUint32(0, 0xa1b2c3d4, true);
    dv.setUint16(4, 2, true);
    dv.setUint16(6, 4, true);
    dv.setUint32(16, 262144, true);
    dv.setUint32(20, 1, true);
    let used = 24;
    const flush = (): void => {
      let off = 0;
      while (off < used) off += file.writeSync(chunk.subarray(off, used));
      used = 0;
    };
    for (let p = 0; p < packets; p++) {
      if (used + 16 + FRAME > chunk.length) flush();
      const flow = p % flows;
      const us = 1_700_000_000_000_000 / 1000 + p; // µs since the epoch
      dv.setUint32(used, Math.floor(us / 1e6), true);
      dv.setUint32(used + 4, us % 1e6, true);
      dv.setUint32(used + 8, FRAME, true);
      dv.setUint32(used + 12, FRAME, true);
      const f = used + 16;
      chunk.fill(0, f, f + FRAME);
      // Ethernet: dst 02:00:00:00:00:02, src 02:00:00:00:00:01, IPv4.
      chunk[f] = 2;
      chunk[f + 5] = 2;
      chunk[f + 6] = 2;
      chunk[f + 11] = 1;
      dv.setUint16(f + 12, 0x0800);
      // IPv4: 46 bytes, TTL 64, UDP, 198.18.0.0 + flow / 16 → 198.19.255.1.
      chunk[f + 14] = 0x45;
      dv.setUint16(f + 16, 46);
      chunk[f + 22] = 64;
      chunk[f + 23] = 17;
      dv.setUint32(f + 26, (0xc6120000 + Math.floor(flow / 16)) >>> 0);
      dv.setUint32(f + 30, 0xc613ff01);
      dv.setUint16(f + 24, ipChecksum(chunk, f + 14));
      // UDP: source port 1024 + flow % 16, destination 5000, 26 bytes.
      dv.setUint16(f + 34, 1024 + (flow % 16));
      dv.setUint16(f + 36, 5000);
      dv.setUint16(f + 38, 26);
      used += 16 + FRAME;
    }
    flush();
  } finally {
    file.close();
  }
  return packets;
}

function ipChecksum(b: Uint8Array, at: number): number {
  let sum = 0;
  for (let i = at; i < at + 20; i += 2) sum += (b[i] << 8) | b[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function rssKb(): number {
  const m = /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m === null ? 0 : Number(m[1]);
}

/** The flow table alone: RSS growth while it takes `flows` distinct keys. */
function tableOnly(flows: number): { rssKb: number; bytes: number } {
  const before = rssKb();
  const table = new FlowTable({ maxFlows: Math.max(flows, 1_000_000), flowTimeout: 3600 });
  const key = new Uint32Array(10);
  key[4] = 0xc613ff01;
  key[9] = (4 << 28) | (17 << 16);
  for (let i = 0; i < flows; i++) {
    key[0] = 0xc6120000 + Math.floor(i / 16);
    key[8] = ((1024 + (i % 16)) << 16) | 5000;
    table.observe(key, 1_700_000_000 + i * 1e-6, FRAME, 0);
  }
  const grown = rssKb() - before;
  if (table.active !== flows) {
    throw new Error(`Flow table holds ${table.active} flows: expected ${flows}`);
  }
  return { rssKb: grown, bytes: table.memoryBytes };
}

/**
 * The index builder alone: a full table of `flows` flows, each sent one stored packet in a first
 * file; in the second file each sends one more, stored (`unstored` false) or refused by the cutoff
 * (true: every flow gets a record without packets). Measures the second file's write.
 */
function indexWrite(flows: number, unstored: boolean, dir: string): IndexWrite {
  const table = new FlowTable({ maxFlows: flows, initialCapacity: flows, flowTimeout: 3600 });
  const builder = IndexBuilder.forFlowTable(table, { spillDir: dir });
  const key = new Uint32Array(10);
  key[4] = 0xc613ff01;
  key[9] = (4 << 28) | (17 << 16);
  const meta = {
    pcapName: "x.pcap",
    linkType: 1,
    snaplen: 262144,
    nanosecond: false,
    compress: "none" as const,
    iface: "bench",
    worker: 0,
  };
  try {
    let result: IndexWrite = { ms: 0, rssKb: 0 };
    for (let file = 0; file < 2; file++) {
      for (let i = 0; i < flows; i++) {
        key[0] = 0xc6120000 + Math.floor(i / 16);
        key[8] = ((1024 + (i % 16)) << 16) | 5000;
        const ts = 1_700_000_000 + file + i * 1e-7;
        const id = table.observe(key, ts, FRAME, 0);
        if (file === 1 && unstored) table.markCut(id, 2);
        else builder.record(id, ts, 24 + i * (16 + FRAME), FRAME);
      }
      const before = rssKb();
      const started = performance.now();
      builder.write(indexPathFor(`${dir}/x.pcap`), meta);
      builder.reset();
      result = { ms: performance.now() - started, rssKb: rssKb() - before };
    }
    return result;
  } finally {
    builder.close();
  }
}

/** Generates the capture, runs cutcap on it and measures the table alone; see the module comment. */
export async function runMemoryBench(opts: MemoryBenchOptions = {}): Promise<MemoryBenchResult> {
  const flows = opts.flows ?? 1_000_000;
  const root = opts.root ?? ROOT;
  const progress = opts.progress ?? ((line: string) => console.error(line));
  const ownDir = opts.workDir === undefined;
  const work = opts.workDir ?? await Deno.makeTempDir({ prefix: "cutcap-bench-memory-" });
  try {
    const pcap = `${work}/flows_${flows}.pcap`;
    progress(`memory: writing ${flows} flows to ${pcap}`);
    const packets = writeManyFlowsPcap(pcap, flows);
    const out = `${work}/out`;
    const replay = async (listen: string) => {
      progress(`memory: cutcap --read --listen ${listen}`);
      const run = await timedRun("deno", [
        ...["run", "-A", `${root}/main.ts`, "--read", pcap, "--out", out, "--listen", listen],
        ...["--workers", "1", "--flow-timeout", "1h", "--max-flows", String(Math.max(flows, 16))],
        ...["--stats-interval", "0.2s"],
      ], root);
      await Deno.remove(out, { recursive: true }).catch(() => {});
      return run;
    };
    const run = await replay("127.0.0.1:0");
    const quiet = await replay("off");
    const table = tableOnly(flows);
    progress("memory: index builder, stored and unstored records");
    const storedIndex = indexWrite(flows, false, work);
    const unstoredIndex = indexWrite(flows, true, work);
    return {
      storedIndex,
      unstoredIndex,
      flows,
      packets,
      cutcapPeakRssKb: run.peakRssKb,
      cutcapPeakRssKbNoListen: quiet.peakRssKb,
      maxActiveFlows: run.maxActiveFlows,
      tableRssKb: table.rssKb,
      tableBytes: table.bytes,
    };
  } finally {
    if (ownDir) await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** KiB as "N MB (M MiB)", MB being 10^6 bytes. */
export function megabytes(kib: number): string {
  return `${(kib * 1024 / 1e6).toFixed(0)} MB (${(kib / 1024).toFixed(0)} MiB)`;
}

/** The result as markdown. */
export function memoryMarkdown(r: MemoryBenchResult): string {
  return [
    `| measure | value |`,
    `|---|---|`,
    `| flows in the capture (2 packets each) | ${r.flows} |`,
    `| most active flows in one stats line | ${r.maxActiveFlows} |`,
    `| cutcap --read peak RSS, whole process, listening on loopback | ${
      megabytes(r.cutcapPeakRssKb)
    } |`,
    `| the same with --listen off | ${megabytes(r.cutcapPeakRssKbNoListen)} |`,
    `| flow table alone: RSS growth for ${r.flows} flows | ${megabytes(r.tableRssKb)} |`,
    `| flow table alone: FlowTable.memoryBytes | ${megabytes(r.tableBytes / 1024)} |`,
    `| index builder alone: writing an index of ${r.flows} flows with a stored packet each | ${
      r.storedIndex.ms.toFixed(0)
    } ms, RSS +${megabytes(r.storedIndex.rssKb)} |`,
    `| the same, every flow cut off earlier and unstored (records without packets) | ${
      r.unstoredIndex.ms.toFixed(0)
    } ms (${(r.unstoredIndex.ms / r.storedIndex.ms).toFixed(2)}x), RSS +${
      megabytes(r.unstoredIndex.rssKb)
    } |`,
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { flows: { type: "string", default: "1000000" } },
  });
  console.log(memoryMarkdown(await runMemoryBench({ flows: Number(values.flows) })));
}
