/**
 * Offline throughput: `cutcap --read FILE` (one worker, byte cutoff, uncompressed, gzip, zstd)
 * against `tcpdump -r FILE -w /dev/null` and `tcpdump -r FILE -w OUT`, in the same run. The
 * variants take turns within each round, so a busy neighbour slows all of them alike, and every
 * figure is the median over the rounds.
 *
 * Run alone: deno run -A bench/offline.ts FILE [--runs N] [--byte-cutoff N]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { countPcapPackets } from "./tcpdump_ref.ts";

/** One measured command. */
export interface CommandRun {
  /** Wall time in seconds, from spawn to exit. */
  seconds: number;
  /** Peak resident set size in KiB (/usr/bin/time %M). */
  peakRssKb: number;
  /** Packets cutcap stored (sum of its `moved ... packets=N` log lines); 0 for tcpdump. */
  stored: number;
  /** Bytes written to the output (all files, indexes included); 0 when not measured. */
  outBytes: number;
  /** Most active flows one of cutcap's stats lines reported (`flows=N`), 0 when none. */
  maxActiveFlows: number;
}

/** The medians of one variant over all rounds. */
export interface VariantResult {
  name: string;
  runs: CommandRun[];
  /** Median wall seconds. */
  seconds: number;
  packetsPerSecond: number;
  bitsPerSecond: number;
  peakRssKb: number;
  /** Stored / seen packets (cutcap only). */
  storedShare: number;
  /** This variant's packet rate / tcpdump's read-only rate, both medians of the same run. */
  ratioToTcpdump: number;
  /** The same ratio within each round (tcpdump's read-only run of that round), lowest and highest. */
  ratioRange: [number, number];
  /**
   * Packet rate without cutcap's fixed cost (process and worker start-up, shutdown): packets /
   * (median wall - median wall on a 100-packet file). Not measured for tcpdump.
   */
  inProcessPacketsPerSecond: number;
  outBytes: number;
}

/** Options of {@link runOfflineBench}. */
export interface OfflineBenchOptions {
  /** Rounds (each variant once per round), default 5; one untimed warm-up round comes first. */
  runs?: number;
  /** Byte cutoff, default 65536. */
  byteCutoff?: number;
  /** Compressions of cutcap to time, default none, gzip, zstd. */
  compressions?: ("none" | "gzip" | "zstd")[];
  /** Directory for outputs (emptied between runs), default a new temporary directory. */
  workDir?: string;
  /** Repository root holding main.ts, default the parent of this file's folder. */
  root?: string;
  /** Progress lines go here, default stderr. */
  progress?: (line: string) => void;
}

/** Result of {@link runOfflineBench}. */
export interface OfflineBenchResult {
  file: string;
  fileBytes: number;
  packets: number;
  /** Sum of the pcap `len` fields × 8, for bits/s. */
  wireBits: number;
  byteCutoff: number;
  /** Median wall time of cutcap on a 100-packet file: its fixed cost. */
  fixedSeconds: number;
  variants: VariantResult[];
}

const TIME_BIN = "/usr/bin/time";
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function dirBytes(path: string): number {
  let total = 0;
  for (const entry of Deno.readDirSync(path)) {
    const p = `${path}/${entry.name}`;
    if (entry.isDirectory) total += dirBytes(p);
    else if (entry.isFile) total += Deno.statSync(p).size;
  }
  return total;
}

/** Runs a command under /usr/bin/time; stderr is kept for cutcap's `moved` lines. */
export async function timedRun(cmd: string, args: string[], cwd?: string): Promise<CommandRun> {
  const report = await Deno.makeTempFile({ prefix: "cutcap-bench-time-" });
  try {
    const t0 = performance.now();
    const out = await new Deno.Command(TIME_BIN, {
      args: ["-f", "%M", "-o", report, cmd, ...args],
      cwd,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    const seconds = (performance.now() - t0) / 1000;
    const stderr = new TextDecoder().decode(out.stderr);
    if (!out.success) {
      throw new Error(
        `Command failed: expected exit 0 from ${cmd} ${args.join(" ")}, found ${out.code}: ` +
          stderr.slice(-500),
      );
    }
    const words = (await Deno.readTextFile(report)).trim().split(/\s+/);
    const rss = Number(words[words.length - 1]);
    let stored = 0;
    for (const m of stderr.matchAll(/ moved \S+ packets=(\d+)/g)) stored += Number(m[1]);
    let maxActiveFlows = 0;
    for (const m of stderr.matchAll(/ flows=(\d+)/g)) {
      maxActiveFlows = Math.max(maxActiveFlows, Number(m[1]));
    }
    return {
      seconds,
      peakRssKb: Number.isFinite(rss) ? rss : 0,
      stored,
      outBytes: 0,
      maxActiveFlows,
    };
  } finally {
    await Deno.remove(report).catch(() => {});
  }
}

/** Sum of the wire lengths of a little-endian or big-endian pcap file's records, in bits. */
export async function wireBits(path: string): Promise<number> {
  const file = await Deno.open(path);
  try {
    const buf = new Uint8Array(16 << 20);
    let have = 0;
    let pos = 0;
    let le = true;
    let first = true;
    let bits = 0;
    for (;;) {
      buf.copyWithin(0, pos, have);
      have -= pos;
      pos = 0;
      const n = await file.read(buf.subarray(have));
      if (n === null) break;
      have += n;
      const dv = new DataView(buf.buffer, 0, have);
      if (first) {
        const magic = dv.getUint32(0, true);
        le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
        pos = 24;
        first = false;
      }
      while (have - pos >= 16) {
        const caplen = dv.getUint32(pos + 8, le);
        if (have - pos < 16 + caplen) break;
        bits += dv.getUint32(pos + 12, le) * 8;
        pos += 16 + caplen;
      }
    }
    return bits;
  } finally {
    file.close();
  }
}

/** Generates the 100-packet file used to measure cutcap's fixed cost. */
async function tinyFile(dir: string, root: string): Promise<string> {
  const path = `${dir}/tiny.pcap`;
  const { writeTrafficPcap } = await import("./gen/mod.ts");
  await writeTrafficPcap(path, { seed: 7, packets: 100 });
  void root;
  return path;
}

/**
 * Times tcpdump and cutcap on `file` (see the module comment) and returns medians and ratios.
 */
export async function runOfflineBench(
  file: string,
  opts: OfflineBenchOptions = {},
): Promise<OfflineBenchResult> {
  const runs = opts.runs ?? 5;
  const byteCutoff = opts.byteCutoff ?? 65536;
  const compressions = opts.compressions ?? ["none", "gzip", "zstd"];
  const root = opts.root ?? ROOT;
  const progress = opts.progress ?? ((line: string) => console.error(line));
  const ownDir = opts.workDir === undefined;
  const work = opts.workDir ?? await Deno.makeTempDir({ prefix: "cutcap-bench-offline-" });
  const fileBytes = (await Deno.stat(file)).size;
  progress(`offline: counting ${file}`);
  const packets = await countPcapPackets(file);
  const bits = await wireBits(file);
  const tiny = await tinyFile(work, root);
  const out = `${work}/out`;
  const tcpdumpOut = `${work}/tcpdump.pcap`;

  const cutcapArgs = (input: string, compress: string): string[] => [
    ...["run", "-A", `${root}/main.ts`, "--read", input, "--out", out],
    ...["--byte-cutoff", String(byteCutoff), "--listen", "off", "--stats-interval", "0"],
    ...["--workers", "1", "--compress", compress],
  ];
  const clean = async (): Promise<void> => {
    await Deno.remove(out, { recursive: true }).catch(() => {});
    await Deno.remove(tcpdumpOut).catch(() => {});
  };
  type Variant = { name: string; run: () => Promise<CommandRun> };
  const cutcapVariant = (input: string, compress: string, name: string): Variant => ({
    name,
    run: async () => {
      await clean();
      const r = await timedRun("deno", cutcapArgs(input, compress), root);
      r.outBytes = dirBytes(out);
      return r;
    },
  });
  const variants: Variant[] = [
    {
      name: "tcpdump -w /dev/null",
      run: () => timedRun("tcpdump", ["-r", file, "-w", "/dev/null"]),
    },
    {
      name: "tcpdump -w FILE",
      run: async () => {
        await clean();
        const r = await timedRun("tcpdump", ["-r", file, "-w", tcpdumpOut]);
        r.outBytes = (await Deno.stat(tcpdumpOut)).size;
        return r;
      },
    },
    ...compressions.map((c) => cutcapVariant(file, c, `cutcap ${c}`)),
    cutcapVariant(tiny, "none", "cutcap fixed cost"),
  ];
  const results = new Map<string, CommandRun[]>(variants.map((v) => [v.name, []]));
  try {
    for (let round = 0; round <= runs; round++) {
      for (const v of variants) {
        const r = await v.run();
        if (round > 0) results.get(v.name)!.push(r);
      }
      progress(
        round === 0 ? "offline: warm-up round done" : `offline: round ${round}/${runs} done`,
      );
    }
  } finally {
    await clean();
    if (ownDir) await Deno.remove(work, { recursive: true }).catch(() => {});
  }

  const fixedSeconds = median(results.get("cutcap fixed cost")!.map((r) => r.seconds));
  const nullSeconds = median(results.get("tcpdump -w /dev/null")!.map((r) => r.seconds));
  const tcpdumpRate = packets / nullSeconds;
  const nullRuns = results.get("tcpdump -w /dev/null")!.map((r) => r.seconds);
  const summary: VariantResult[] = [];
  for (const v of variants) {
    if (v.name === "cutcap fixed cost") continue;
    const rs = results.get(v.name)!;
    const seconds = median(rs.map((r) => r.seconds));
    const isCutcap = v.name.startsWith("cutcap");
    summary.push({
      name: v.name,
      runs: rs,
      seconds,
      packetsPerSecond: packets / seconds,
      bitsPerSecond: bits / seconds,
      peakRssKb: Math.max(...rs.map((r) => r.peakRssKb)),
      storedShare: isCutcap ? median(rs.map((r) => r.stored)) / packets : 1,
      ratioToTcpdump: packets / seconds / tcpdumpRate,
      ratioRange: [
        Math.min(...rs.map((r, i) => nullRuns[i] / r.seconds)),
        Math.max(...rs.map((r, i) => nullRuns[i] / r.seconds)),
      ],
      inProcessPacketsPerSecond: isCutcap && seconds > fixedSeconds
        ? packets / (seconds - fixedSeconds)
        : 0,
      outBytes: median(rs.map((r) => r.outBytes)),
    });
  }
  return { file, fileBytes, packets, wireBits: bits, byteCutoff, fixedSeconds, variants: summary };
}

/** The result as a markdown table. */
export function offlineMarkdown(r: OfflineBenchResult): string {
  const lines = [
    `Input: ${r.file.slice(r.file.lastIndexOf("/") + 1)}, ${r.packets} packets, ` +
    `${(r.fileBytes / 1e6).toFixed(0)} MB; byte cutoff ${r.byteCutoff}; one worker. ` +
    `cutcap's fixed cost (100-packet file, start to exit): ${r.fixedSeconds.toFixed(2)} s.`,
    "",
    "| variant | wall s (median) | packets/s | bits/s | stored | output MB | peak RSS MB | vs tcpdump read-only | same, per round | in-process packets/s |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const v of r.variants) {
    lines.push(
      `| ${v.name} | ${v.seconds.toFixed(2)} | ${fmtRate(v.packetsPerSecond)} | ${
        fmtRate(v.bitsPerSecond)
      } | ${v.name.startsWith("cutcap") ? `${(v.storedShare * 100).toFixed(1)}%` : "-"} | ${
        v.outBytes > 0 ? (v.outBytes / 1e6).toFixed(0) : "-"
      } | ${(v.peakRssKb / 1024).toFixed(0)} | ${v.ratioToTcpdump.toFixed(2)} | ${
        v.ratioRange[0].toFixed(2)
      }-${v.ratioRange[1].toFixed(2)} | ${
        v.inProcessPacketsPerSecond > 0 ? fmtRate(v.inProcessPacketsPerSecond) : "-"
      } |`,
    );
  }
  return lines.join("\n");
}

/** 1234567 → "1.23 M". */
export function fmtRate(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(2)} G`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)} k`;
  return value.toFixed(0);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      runs: { type: "string", default: "5" },
      "byte-cutoff": { type: "string", default: "65536" },
      compress: { type: "string", default: "none,gzip,zstd" },
    },
  });
  const file = positionals[0];
  if (file === undefined) throw new Error("Missing FILE: expected a pcap file to read");
  const result = await runOfflineBench(file, {
    runs: Number(values.runs),
    byteCutoff: Number(values["byte-cutoff"]),
    compressions: values.compress.split(",") as ("none" | "gzip" | "zstd")[],
  });
  console.log(offlineMarkdown(result));
}
