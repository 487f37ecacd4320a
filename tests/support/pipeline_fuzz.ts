/**
 * Whole-pipeline fuzzing: mutated corpus frames go through the capture worker's own per-packet
 * pipeline (src/worker/pipeline.ts: decodePacket → FlowTable.observe → Cutoff.allows →
 * RotatingOutput.write → IndexBuilder.record) with the cutoffs off, so every frame must come back unchanged.
 * The frames come from a seeded generator: running it again with the same seed gives the same
 * frames, so the check after writing needs no copy of a million frames in memory.
 *
 * Used by tests/fuzz_pipeline_test.ts (through bench/fuzz.ts in a child process, so a hang becomes
 * a failure) and by `deno task fuzz` for long runs.
 */
import { indexPathFor } from "../../src/archive/naming.ts";
import { readFileIndex } from "../../src/index/index_reader.ts";
import { DLT_EN10MB, DLT_RAW } from "../../src/packet/mod.ts";
import { type Compression, PcapReader } from "../../src/pcap/mod.ts";
import { Counter, COUNTER_SLOTS } from "../../src/worker/counters.ts";
import { CapturePipeline, type PacketView } from "../../src/worker/pipeline.ts";
import { CORPUS_DIR } from "./corpus.ts";

const CORPUS = CORPUS_DIR;
/** Largest caplen the output keeps whole (MAX_CAPLEN): frames are never longer than this. */
const SNAPLEN = 262144;
/** Frames between two looks at the open file's flow count (the worker's batch). */
const BATCH = 4096;
/** Frames between two changes of the link type the output file is written with. */
const GROUP_FRAMES = 20_000;

/** One corpus or synthetic frame and the link type it was captured with. */
export interface Seed {
  linkType: number;
  bytes: Uint8Array;
}

/** Frames of the corpus's classic pcap files, by link type (a small reader of its own). */
function corpusSeeds(): Map<number, Seed[]> {
  const byType = new Map<number, Seed[]>();
  for (const entry of [...Deno.readDirSync(CORPUS)].sort((a, b) => a.name < b.name ? -1 : 1)) {
    if (!entry.name.endsWith(".pcap")) continue;
    const data = Deno.readFileSync(CORPUS + entry.name);
    if (data.length < 24) continue;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const magic = view.getUint32(0, true);
    let le: boolean;
    if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) le = true;
    else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) le = false;
    else continue;
    const linkType = view.getUint32(20, le) & 0x03ffffff;
    const list = byType.get(linkType) ?? [];
    for (let p = 24; p + 16 <= data.length;) {
      const caplen = view.getUint32(p + 8, le);
      if (caplen > 0x40000 || p + 16 + caplen > data.length) break;
      list.push({ linkType, bytes: data.slice(p + 16, p + 16 + caplen) });
      p += 16 + caplen;
    }
    if (list.length > 0) byType.set(linkType, list);
  }
  return byType;
}

const MAC_PAIR = [2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa];
// deno-fmt-ignore
const IPV4_TCP = [
  0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
  0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x20, 0, 0, 0, 0, 0,
];

function ipv6Header(next: number, plen: number): number[] {
  const h = [0x60, 0, 0, 0, (plen >> 8) & 0xff, plen & 0xff, next, 64];
  for (let i = 0; i < 32; i++) h.push(i === 0 || i === 16 ? 0x20 : i % 16 === 15 ? i : 0);
  return h;
}

/** Frames nesting far deeper than real ones: VLAN and MPLS stacks, IPv6 extension chains. */
export function deepNestedSeeds(): Seed[] {
  const seeds: Seed[] = [];
  const eth = (body: number[]): Seed => ({
    linkType: DLT_EN10MB,
    bytes: Uint8Array.from([...MAC_PAIR, ...body]),
  });
  for (const depth of [3, 40, 3000]) {
    const tags: number[] = [0x81, 0x00];
    for (let i = 0; i < depth; i++) {
      const tpid = i + 1 === depth ? 0x0800 : [0x8100, 0x88a8, 0x9100][i % 3];
      tags.push(0, (i + 1) & 0xff, tpid >> 8, tpid & 0xff);
    }
    seeds.push(eth([...tags, ...IPV4_TCP]));
  }
  for (const depth of [2, 50, 4000]) {
    const labels: number[] = [0x88, 0x47];
    for (let i = 0; i < depth; i++) labels.push(0, 1, i + 1 === depth ? 0x11 : 0x10, 64);
    seeds.push(eth([...labels, ...IPV4_TCP]));
    seeds.push(eth(labels.map((b, i) => (i >= 2 && (i - 2) % 4 === 2 ? 0x10 : b))));
  }
  for (const depth of [4, 17, 2000]) {
    const chain: number[] = [];
    for (let i = 0; i < depth; i++) {
      chain.push(i + 1 === depth ? 6 : [0, 43, 60, 51][i % 4], 0, 0, 0, 0, 0, 0, 0);
    }
    const payload = [...chain, ...IPV4_TCP.slice(20)];
    seeds.push(eth([0x86, 0xdd, ...ipv6Header(60, payload.length), ...payload]));
    seeds.push({ linkType: DLT_RAW, bytes: Uint8Array.from([...ipv6Header(0, 0), ...payload]) });
  }
  return seeds;
}

const LIES = [0x00, 0x01, 0x05, 0x0f, 0x10, 0x40, 0x45, 0x60, 0x7f, 0x80, 0xfe, 0xff];

/** How a frame was mutated, for the summary. */
export const MUTATIONS = [
  "bitflip",
  "lie",
  "truncate",
  "byte+truncate",
  "extend",
  "none",
] as const;

/**
 * Deterministic source of mutated frames. `next()` fills `data[offset, offset + caplen)` and the
 * record fields; the same seed always yields the same sequence.
 */
export class FrameSource implements PacketView {
  /** Buffer holding the current frame (long-lived; overwritten by the next call). */
  readonly data = new Uint8Array(1 << 18);
  offset = 0;
  caplen = 0;
  /** Length on the wire the capture claims; may be a lie (smaller than caplen, or huge). */
  wireLen = 0;
  tsSec = 0;
  /** Microseconds. */
  tsFrac = 0;
  readonly nanosecond = false;
  /** Link type of the output file this frame belongs to. */
  linkType = DLT_EN10MB;
  /** Index of the mutation applied (see MUTATIONS). */
  mutation = 0;
  /** Number of frames produced so far. */
  produced = 0;
  /** Link types of the corpus groups. */
  readonly linkTypes: number[];
  #groups: Seed[][];
  #groupOfFrame: number[];
  #deep: Seed[];
  #group: Seed[] = [];
  #state: number;
  #clock = 1_700_000_000;

  constructor(seed: number, corpus: { groups: Map<number, Seed[]>; deep: Seed[] }) {
    this.#state = seed >>> 0 || 1;
    this.linkTypes = [...corpus.groups.keys()].sort((a, b) => a - b);
    this.#groups = this.linkTypes.map((t) => corpus.groups.get(t)!);
    this.#groupOfFrame = this.#groups.flatMap((list, g) => list.map(() => g));
    this.#deep = corpus.deep;
  }

  /** Loads the corpus once; share it between sources. */
  static loadCorpus(): { groups: Map<number, Seed[]>; deep: Seed[]; frames: number } {
    const groups = corpusSeeds();
    let frames = 0;
    for (const list of groups.values()) frames += list.length;
    return { groups, deep: deepNestedSeeds(), frames };
  }

  #rand(): number {
    let s = this.#state;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.#state = s;
    return s >>> 0;
  }

  #below(n: number): number {
    return this.#rand() % n;
  }

  /** Produces the next frame. */
  next(): void {
    if (this.produced % GROUP_FRAMES === 0) {
      // A new output link type: mostly the group's own, sometimes another (link-type confusion).
      // Groups weighted by their frame count: mostly Ethernet, like the corpus.
      const g = this.#groupOfFrame[this.#below(this.#groupOfFrame.length)];
      this.#group = this.#groups[g];
      this.linkType = this.#below(10) === 0
        ? this.linkTypes[this.#below(this.linkTypes.length)]
        : this.linkTypes[g];
    }
    this.produced++;
    const deepFits = this.linkType === DLT_EN10MB || this.linkType === DLT_RAW;
    const seed = deepFits && this.#below(100) === 0
      ? this.#deep[this.#below(this.#deep.length)]
      : this.#group[this.#below(this.#group.length)];
    const work = this.data;
    const offset = this.#below(64);
    const len = seed.bytes.length;
    work.set(seed.bytes, offset);
    let caplen = len;
    const how = this.#below(12);
    let mutation: number;
    if (how <= 3) {
      mutation = 0; // bit flips, biased towards the headers
      for (let n = 1 + this.#below(4); n > 0; n--) {
        const at = this.#below(Math.min(len, this.#below(2) === 0 ? 80 : len) || 1);
        work[offset + at] ^= 1 << this.#below(8);
      }
    } else if (how <= 6) {
      mutation = 1; // length-field and type lies
      for (let n = 1 + this.#below(2); n > 0; n--) {
        work[offset + this.#below(Math.min(len, 96) || 1)] = LIES[this.#below(LIES.length)];
      }
    } else if (how === 7) {
      mutation = 2;
      caplen = this.#below(len + 1);
    } else if (how === 8) {
      mutation = 3;
      work[offset + this.#below(Math.min(len, 96) || 1)] = this.#rand() & 0xff;
      caplen = this.#below(len + 1);
    } else if (how === 9) {
      mutation = 4; // trailing garbage: the frame is longer than its headers say
      const extra = 1 + this.#below(64);
      for (let i = 0; i < extra; i++) work[offset + len + i] = this.#rand() & 0xff;
      caplen = len + extra;
    } else {
      mutation = 5;
    }
    this.mutation = mutation;
    this.offset = offset;
    this.caplen = caplen;
    // Wire length: usually the seed's, sometimes smaller than what was captured, sometimes huge.
    const w = this.#below(20);
    this.wireLen = w === 0
      ? this.#below(caplen + 1)
      : w === 1
      ? 0xffffffff - this.#below(1000)
      : len;
    // Time: mostly forward, sometimes back, sometimes at the ends of the 32-bit range.
    const t = this.#below(1000);
    if (t === 0) this.tsSec = 0;
    else if (t === 1) this.tsSec = 0xffffffff;
    else {
      if (t === 2) this.#clock -= this.#below(3600);
      else this.#clock += this.#below(3);
      this.tsSec = this.#clock;
    }
    this.tsFrac = this.#below(1_000_000);
  }

  /** The frame is already where it stays until the next call. */
  settle(): void {}
}

/** Options of `runPipelineFuzz`. */
export interface PipelineFuzzOptions {
  /** Frames to push through the pipeline. */
  frames: number;
  /** Generator seed. */
  seed: number;
  /** Output directory (created). */
  outDir: string;
  /** Frames per compression, cycling none → gzip → zstd; default all `none`. */
  compressions?: Compression[];
  /** Rotate by size (bytes); default 32 MiB. */
  rotateSize?: number;
  /**
   * Flow table size of each compression's pipeline (small values exercise eviction); default
   * 16384: a third of a million frames makes about 41,000 flows.
   */
  maxFlows?: number;
  /** Progress callback, every million frames. */
  progress?: (frames: number) => void;
}

/** One output file in the order it was written. */
export interface FuzzFile {
  path: string;
  /** Number (0-based) of the first frame it holds. */
  firstFrame: number;
  packets: number;
  linkType: number;
  compress: Compression;
}

/** What a run did and what it lost. */
export interface PipelineFuzzSummary {
  frames: number;
  seed: number;
  /** Frames the cutoff refused (must be 0: cutoffs are off). */
  refused: number;
  /** Frames RotatingOutput.write dropped (must be 0 on a healthy disk). */
  dropped: number;
  /** Frames indexed. */
  indexed: number;
  /** Frames read back that differ from what went in (data, lengths or time). */
  mismatches: number;
  /** Frames read back in all. */
  readBack: number;
  /** Index packet counts that disagree with their pcap file. */
  indexMismatches: number;
  /** First few differences, for the failure message. */
  firstMismatches: string[];
  files: FuzzFile[];
  bytesWritten: number;
  mutations: Record<string, number>;
  flowsEvicted: number;
  writeSeconds: number;
  verifySeconds: number;
}

/**
 * Runs `frames` mutated frames through the pipeline into `outDir`, then reads every file back with
 * PcapReader and compares it, frame by frame, with a second run of the generator.
 */
export function runPipelineFuzz(options: PipelineFuzzOptions): PipelineFuzzSummary {
  const corpus = FrameSource.loadCorpus();
  const compressions = options.compressions ?? ["none"];
  const source = new FrameSource(options.seed, corpus);
  const files: FuzzFile[] = [];
  const mutations = new Float64Array(MUTATIONS.length);
  let refused = 0;
  let dropped = 0;
  let indexed = 0;
  let flowsEvicted = 0;
  let bytesWritten = 0;
  let firstFrame = 0;
  const segment = Math.ceil(options.frames / compressions.length);
  const started = performance.now();
  // One pipeline per compression (an output's compression is fixed), with the cutoffs off.
  for (let c = 0; c < compressions.length; c++) {
    const compress = compressions[c];
    const counters = new Float64Array(COUNTER_SLOTS);
    const pipeline = new CapturePipeline({
      maxFlows: options.maxFlows ?? 16384,
      flowTimeout: 300,
      byteCutoff: 0,
      packetCutoff: 0,
      largeFlowThreshold: 0,
      live: false,
      counters,
      output: {
        outDir: options.outDir,
        iface: `fuzz-${compress}`,
        worker: 0,
        linkType: DLT_EN10MB,
        snaplen: SNAPLEN,
        compress,
        rotateSize: options.rotateSize ?? 32 * 1024 * 1024,
        onFinalized: (file) => {
          files.push({
            path: file.path,
            firstFrame,
            packets: file.packets,
            linkType: file.linkType,
            compress: file.compress,
          });
          firstFrame += file.packets;
          bytesWritten += file.bytesOnDisk;
        },
      },
    });
    const end = Math.min(options.frames, (c + 1) * segment);
    while (source.produced < end) {
      source.next();
      if (source.linkType !== pipeline.linkType) pipeline.setFormat(source.linkType, SNAPLEN);
      mutations[source.mutation]++;
      pipeline.handle(source);
      // Between batches, as the worker does.
      if (source.produced % BATCH === 0) pipeline.rotateIfManyFlows();
      if (options.progress && source.produced % 1_000_000 === 0) {
        options.progress(source.produced);
      }
    }
    pipeline.close();
    // Every frame the pipeline saw was refused by the cutoff, dropped by the output or indexed.
    const seen = pipeline.packetsSeen;
    const written = counters[Counter.PacketsWritten];
    dropped += pipeline.output.droppedPackets;
    indexed += written;
    refused += seen - written - pipeline.output.droppedPackets;
    flowsEvicted += pipeline.flows.evicted;
  }
  const writeSeconds = (performance.now() - started) / 1000;
  const verifyStarted = performance.now();
  const check = verify(files, options.seed, corpus);
  return {
    frames: options.frames,
    seed: options.seed,
    refused,
    dropped,
    indexed,
    ...check,
    files,
    bytesWritten,
    mutations: Object.fromEntries(MUTATIONS.map((name, i) => [name, mutations[i]])),
    flowsEvicted,
    writeSeconds,
    verifySeconds: (performance.now() - verifyStarted) / 1000,
  };
}

/** Reads every file back in write order and compares it with the regenerated frames. */
function verify(
  files: FuzzFile[],
  seed: number,
  corpus: { groups: Map<number, Seed[]>; deep: Seed[] },
): Pick<
  PipelineFuzzSummary,
  "mismatches" | "readBack" | "indexMismatches" | "firstMismatches"
> {
  const source = new FrameSource(seed, corpus);
  const firstMismatches: string[] = [];
  let mismatches = 0;
  let readBack = 0;
  let indexMismatches = 0;
  const note = (text: string) => {
    mismatches++;
    if (firstMismatches.length < 5) firstMismatches.push(text);
  };
  for (const file of files) {
    const reader = new PcapReader(file.path);
    try {
      if (reader.linkType !== file.linkType) note(`${file.path}: link type ${reader.linkType}`);
      for (let i = 0; i < file.packets; i++) {
        source.next();
        if (!reader.next()) {
          note(`${file.path}: ended after ${i} of ${file.packets} records: ${reader.damage}`);
          break;
        }
        readBack++;
        const wire = source.wireLen; // kept as read, even below caplen (as tcpdump -w keeps it)
        if (
          reader.caplen !== source.caplen || reader.len !== wire ||
          reader.tsSec !== source.tsSec || reader.tsFrac !== source.tsFrac ||
          !sameBytes(reader.data, reader.dataOffset, source.data, source.offset, source.caplen)
        ) {
          note(
            `frame ${source.produced - 1} in ${file.path} record ${i + 1}: got caplen ` +
              `${reader.caplen} len ${reader.len} ts ${reader.tsSec}.${reader.tsFrac}, expected ` +
              `${source.caplen} ${wire} ${source.tsSec}.${source.tsFrac}`,
          );
        }
      }
      if (reader.next()) note(`${file.path}: more records than the ${file.packets} written`);
    } finally {
      reader.close();
    }
    const idx = readFileIndex(indexPathFor(file.path));
    if (idx.header.packetCount !== file.packets) indexMismatches++;
  }
  return { mismatches, readBack, indexMismatches, firstMismatches };
}

function sameBytes(a: Uint8Array, ao: number, b: Uint8Array, bo: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

/** The frames `firstFrame .. firstFrame + count` of a seed's sequence: time and bytes as tcpdump
 * prints them, and the lengths written. */
export function expectedFrames(
  seed: number,
  firstFrame: number,
  count: number,
): { ts: string; hex: string; caplen: number; wireLen: number }[] {
  const source = new FrameSource(seed, FrameSource.loadCorpus());
  const out: { ts: string; hex: string; caplen: number; wireLen: number }[] = [];
  for (let i = 0; i < firstFrame + count; i++) {
    source.next();
    if (i < firstFrame) continue;
    let hex = "";
    for (let j = 0; j < source.caplen; j++) {
      hex += source.data[source.offset + j].toString(16).padStart(2, "0");
    }
    out.push({
      ts: `${source.tsSec}.${String(source.tsFrac).padStart(6, "0")}`,
      hex,
      caplen: source.caplen,
      wireLen: source.wireLen, // kept as read, even below caplen
    });
  }
  return out;
}
