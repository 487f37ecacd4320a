/**
 * Single-thread harness of the capture worker's per-packet pipeline (src/worker/pipeline.ts, the
 * shipped one): libpcap offline read → decode → flow table → cutoff → pcap writer → index, in the
 * main thread so that it can be profiled (`--v8-flags=--prof`), which a Worker cannot easily be.
 * `--stage all` (the default) runs CapturePipeline.handle per packet; the other stages stop part
 * way (read only, up to decode, up to the flow table and cutoff, up to the writer without the
 * index) to show what each step costs.
 *
 * Run: deno run -A bench/pipeline.ts FILE [--stage read|decode|flow|write|all] [--compress none|gzip|zstd]
 *   [--byte-cutoff N] [--repeat N] [--source libpcap|direct|memory|ring]
 * Prints packets/s per repeat and the median.
 */
import { parseArgs } from "node:util";
import { loadLibpcap, PcapHandle } from "../ffi/libpcap.ts";
import { Cutoff, FlowTable } from "../src/flow/mod.ts";
import { decodePacket } from "../src/packet/mod.ts";
import { PacketInfo } from "../src/packet/packet_info.ts";
import type { Compression } from "../src/pcap/mod.ts";
import { BlockCompressor, RotatingOutput, type RotatingOutputOptions } from "../src/store/mod.ts";
import { COUNTER_SLOTS } from "../src/worker/counters.ts";
import { CapturePipeline, type PacketView } from "../src/worker/pipeline.ts";

/** What the pipeline reads packets from: a libpcap handle, or the harness's in-memory reader. */
export type PacketSource = PacketView & { next(): number };

/**
 * Reads a little-endian pcap held in memory, without libpcap: isolates the pipeline's cost from
 * file reading. `live` hands out packets where they lie in the file (offsets vary per packet, as
 * in a live capture's ring); otherwise each is copied to offset 0 of one buffer, as libpcap's
 * offline reader does.
 */
export class MemorySource implements PacketSource {
  data: Uint8Array;
  offset = 0;
  caplen = 0;
  wireLen = 0;
  tsSec = 0;
  tsFrac = 0;
  readonly nanosecond: boolean;
  readonly #file: Uint8Array;
  readonly #words: DataView;
  readonly #live: boolean;
  #pos = 24;

  constructor(file: Uint8Array, live: boolean) {
    this.#file = file;
    this.#words = new DataView(file.buffer, file.byteOffset, file.byteLength);
    this.#live = live;
    this.nanosecond = this.#words.getUint32(0, true) === 0xa1b23c4d;
    this.data = live ? file : new Uint8Array(262144);
  }

  next(): number {
    const p = this.#pos;
    if (p + 16 > this.#file.length) return -2;
    const w = this.#words;
    this.tsSec = w.getUint32(p, true);
    this.tsFrac = w.getUint32(p + 4, true);
    const caplen = w.getUint32(p + 8, true);
    this.caplen = caplen;
    this.wireLen = w.getUint32(p + 12, true);
    if (this.#live) this.offset = p + 16;
    else this.data.set(this.#file.subarray(p + 16, p + 16 + caplen));
    this.#pos = p + 16 + caplen;
    return 1;
  }

  /** The packet is already where it stays until the next call. */
  settle(): void {}
}

/** How far down the pipeline each packet goes. */
export type Stage = "read" | "decode" | "flow" | "write" | "all";

/** Options of {@link runPipeline}. */
export interface PipelineOptions {
  stage?: Stage;
  compress?: Compression;
  byteCutoff?: number;
  /** Output directory (created; files are left there), default a new temporary directory. */
  outDir?: string;
  /** Read packets from this in-memory file instead of libpcap (see MemorySource). */
  memory?: Uint8Array;
  /** With `memory`: packets at varying offsets, as from a live ring. */
  live?: boolean;
  /** libpcap source: OfflineOptions.direct. */
  direct?: boolean;
  /** As a capture worker does: compress on a helper thread, write plain blocks through AIO. */
  parallel?: boolean;
}

/** What one pass over the file did. */
export interface PipelineResult {
  packets: number;
  stored: number;
  /** Wall time of the loop (packets in), without closing the output. */
  seconds: number;
  /** CPU time (user + system) of this thread during the loop. */
  cpuSeconds: number;
  /** Wall time of closing the output (last block, fsync, index, rename). */
  closeSeconds: number;
  packetsPerSecond: number;
}

/** User + system CPU seconds of the calling thread, from /proc/thread-self/stat. */
export function threadCpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/thread-self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name; clock ticks of 1/100 s.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs the pipeline once over `file`, up to `opts.stage`. */
export function runPipeline(file: string, opts: PipelineOptions = {}): PipelineResult {
  const stage = opts.stage ?? "all";
  loadLibpcap();
  const outDir = opts.outDir ?? Deno.makeTempDirSync({ prefix: "cutcap-pipeline-" });
  const pcap = opts.memory === undefined
    ? PcapHandle.openOffline(file, { direct: opts.direct })
    : undefined;
  const handle: PacketSource = pcap ?? new MemorySource(opts.memory!, opts.live ?? false);
  const compressed = (opts.compress ?? "none") !== "none";
  const compressor = opts.parallel === true && compressed ? BlockCompressor.start() : null;
  const output: Omit<RotatingOutputOptions, "beforeRename"> = {
    outDir,
    iface: "bench",
    worker: 0,
    linkType: pcap?.linkType() ?? 1,
    snaplen: pcap?.snaplen() ?? 262144,
    compress: opts.compress ?? "none",
    compressor,
    aioPlainWrites: opts.parallel ?? false,
  };
  const c0 = threadCpuSeconds();
  const t0 = performance.now();
  const run = stage === "all"
    ? runWhole(handle, output, opts.byteCutoff ?? 65536)
    : runStages(handle, output, opts.byteCutoff ?? 65536, stage);
  const t1 = performance.now();
  const cpuSeconds = threadCpuSeconds() - c0;
  run.close();
  compressor?.close();
  pcap?.close();
  const seconds = (t1 - t0) / 1000;
  const closeSeconds = (performance.now() - t1) / 1000;
  if (opts.outDir === undefined) Deno.removeSync(outDir, { recursive: true });
  return {
    packets: run.packets,
    stored: run.stored,
    seconds,
    cpuSeconds,
    closeSeconds,
    packetsPerSecond: run.packets / seconds,
  };
}

/** What one loop did, and how to finish its output. */
interface LoopResult {
  packets: number;
  stored: number;
  close(): void;
}

/** Every packet through the shipped pipeline, configured as `cutcap capture`'s defaults. */
function runWhole(
  handle: PacketSource,
  output: Omit<RotatingOutputOptions, "beforeRename">,
  byteCutoff: number,
): LoopResult {
  const counters = new Float64Array(COUNTER_SLOTS);
  const pipeline = new CapturePipeline({
    maxFlows: 1_000_000,
    flowTimeout: 300,
    byteCutoff,
    packetCutoff: 0,
    largeFlowThreshold: 1 << 30,
    live: false,
    counters,
    output,
  });
  while (handle.next() === 1) pipeline.handle(handle);
  return {
    packets: pipeline.packetsSeen,
    stored: pipeline.output.packets + pipeline.output.droppedPackets,
    close: () => pipeline.close(),
  };
}

/** The first steps of the pipeline only, up to `stage`, to show what each costs. */
function runStages(
  handle: PacketSource,
  output: Omit<RotatingOutputOptions, "beforeRename">,
  byteCutoff: number,
  stage: Exclude<Stage, "all">,
): LoopResult {
  const flows = new FlowTable({ maxFlows: 1_000_000, flowTimeout: 300 });
  const cutoff = new Cutoff({ bytes: byteCutoff });
  const info = new PacketInfo();
  const writer = new RotatingOutput(output);
  const doDecode = stage !== "read";
  const doFlow = doDecode && stage !== "decode";
  const doWrite = doFlow && stage !== "flow";
  let packets = 0;
  let stored = 0;
  while (handle.next() === 1) {
    packets++;
    if (!doDecode) continue;
    decodePacket(output.linkType, handle.data, handle.offset, handle.caplen, info);
    if (!doFlow) continue;
    const ts = handle.tsSec + handle.tsFrac * (handle.nanosecond ? 1e-9 : 1e-6);
    flows.observe(info.key, ts, handle.wireLen, info.tcpFlags);
    if (!cutoff.allows(flows.packetsBefore, flows.bytesBefore)) continue;
    stored++;
    if (!doWrite) continue;
    handle.settle();
    writer.write(
      handle.data,
      handle.offset,
      handle.caplen,
      handle.wireLen,
      handle.tsSec,
      handle.tsFrac,
    );
  }
  return {
    packets,
    stored,
    close: () => {
      writer.close();
      flows.expireAll();
    },
  };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      stage: { type: "string", default: "all" },
      compress: { type: "string", default: "none" },
      "byte-cutoff": { type: "string", default: "65536" },
      repeat: { type: "string", default: "3" },
      source: { type: "string", default: "libpcap" },
      parallel: { type: "boolean", default: false },
    },
  });
  const file = positionals[0];
  if (file === undefined) throw new Error("Missing FILE: expected a pcap file to read");
  const memory = values.source === "libpcap" || values.source === "direct"
    ? undefined
    : Deno.readFileSync(file);
  const rates: number[] = [];
  const cpuRates: number[] = [];
  for (let r = 0; r < Number(values.repeat); r++) {
    const res = runPipeline(file, {
      stage: values.stage as Stage,
      compress: values.compress as Compression,
      byteCutoff: Number(values["byte-cutoff"]),
      memory,
      live: values.source === "ring",
      direct: values.source === "direct",
      parallel: values.parallel,
    });
    rates.push(res.packetsPerSecond);
    cpuRates.push(res.packets / res.cpuSeconds);
    console.log(
      `${values.stage} ${values.compress}: ${res.packets} packets, ${res.stored} stored, ` +
        `loop ${res.seconds.toFixed(3)} s (cpu ${res.cpuSeconds.toFixed(2)} s), ` +
        `close ${res.closeSeconds.toFixed(3)} s, ${(res.packetsPerSecond / 1e3).toFixed(0)} kpps`,
    );
  }
  rates.sort((a, b) => a - b);
  cpuRates.sort((a, b) => a - b);
  console.log(
    `median ${(rates[rates.length >> 1] / 1e3).toFixed(0)} kpps wall, ` +
      `${(cpuRates[cpuRates.length >> 1] / 1e3).toFixed(0)} kpps per cpu second`,
  );
}
