/**
 * Seeded traffic generator: writes a pcap of realistic, heavy-tailed, interleaved flows and returns
 * its ground truth; computes which packets a flow cutoff must keep.
 *
 * CLI:
 *   deno run -A bench/gen/mod.ts --seed 1 --packets 2000000 --out F.pcap [--truth F.json]
 *     [--nanosecond] [--snaplen N] [--flows N] [--ipv6-share X] [--vlan-share X] [--qinq-share X]
 *     [--non-ip-share X] [--start-ts S] [--rate PPS] [--max-idle S] [--idle-gap-every N]
 *     [--idle-gap S] [--final-ack]
 */

import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import {
  generateTraffic,
  type TrafficFlows,
  type TrafficOptions,
  type TrafficTruth,
  TRUTH_KEY_WORDS,
  TruthKind,
} from "./traffic.ts";

export {
  type ChunkSink,
  FlowApp,
  generateTraffic,
  type TrafficFlows,
  type TrafficOptions,
  type TrafficTruth,
  TRUTH_KEY_WORDS,
  TruthKind,
} from "./traffic.ts";
export { Prng } from "./prng.ts";

/** Writes the generated pcap to `path` (created or truncated) and returns its ground truth. */
export async function writeTrafficPcap(path: string, opts: TrafficOptions): Promise<TrafficTruth> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    // Synchronous writes: the generator produces faster than an async round trip per chunk.
    return generateTraffic(opts, (chunk) => {
      let off = 0;
      while (off < chunk.length) off += file.writeSync(chunk.subarray(off));
    });
  } finally {
    file.close();
  }
}

/** The generated pcap in memory with its truth; meant for small captures in tests. */
export interface TrafficBytes {
  pcap: Uint8Array<ArrayBuffer>;
  truth: TrafficTruth;
}

/** Generates the capture into memory (keep `packets` modest: the whole file is held). */
export function generateTrafficBytes(opts: TrafficOptions): TrafficBytes {
  const parts: Uint8Array[] = [];
  const truth = generateTraffic(opts, (chunk) => parts.push(chunk.slice()));
  const pcap = new Uint8Array(truth.fileBytes);
  let off = 0;
  for (const part of parts) {
    pcap.set(part, off);
    off += part.length;
  }
  return { pcap, truth };
}

/** Flow cutoff limits; 0 or absent means unlimited. */
export interface CutoffOptions {
  packetCutoff?: number;
  byteCutoff?: number;
  /**
   * Seconds: when a flow was silent strictly longer than this, its counters start again from 0
   * (as if the flow table expired it). Absent = never; only matters with idleGapEvery.
   */
  idleTimeout?: number;
}

/**
 * Which packets a flow cutoff keeps (1 = stored). A flow counts every one of its packets, both
 * directions, by wire length (`frameLens`, default truth.wireLen); a packet is stored iff the
 * flow's packet count before it < packetCutoff and its byte count before it < byteCutoff.
 */
export function expectedCutoff(
  truth: TrafficTruth,
  cutoff: CutoffOptions,
  frameLens?: ArrayLike<number>,
): Uint8Array {
  const pc = cutoff.packetCutoff ?? 0;
  const bc = cutoff.byteCutoff ?? 0;
  if (pc < 0 || bc < 0) {
    throw new Error(`Invalid cutoff ${pc} packets / ${bc} bytes: expected >= 0`);
  }
  const lens = frameLens ?? truth.wireLen;
  if (lens.length !== truth.packets) {
    throw new Error(`Invalid frameLens: expected ${truth.packets} lengths, found ${lens.length}`);
  }
  const timeoutUs = cutoff.idleTimeout === undefined ? Infinity : cutoff.idleTimeout * 1e6;
  const count = truth.flows.count;
  const pk = new Float64Array(count);
  const by = new Float64Array(count);
  const last = new Float64Array(count).fill(-Infinity);
  const out = new Uint8Array(truth.packets);
  const flowOf = truth.flowOfPacket;
  const ts = truth.tsUs;
  for (let p = 0; p < truth.packets; p++) {
    const f = flowOf[p];
    if (ts[p] - last[f] > timeoutUs) {
      pk[f] = 0;
      by[f] = 0;
    }
    last[f] = ts[p];
    out[p] = (pc === 0 || pk[f] < pc) && (bc === 0 || by[f] < bc) ? 1 : 0;
    pk[f] += 1;
    by[f] += lens[p];
  }
  return out;
}

const PROTO_NAMES: Record<number, string> = { 6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6" };

function ipText(key: Uint32Array, k: number, v6: boolean): string {
  if (!v6) {
    const a = key[k];
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  const groups: string[] = [];
  for (let w = 0; w < 4; w++) {
    groups.push((key[k + w] >>> 16).toString(16), (key[k + w] & 0xffff).toString(16));
  }
  // Compress the longest zero run, as inet_ntop does.
  let best = -1;
  let bestLen = 1;
  for (let g = 0; g < 8;) {
    if (groups[g] !== "0") {
      g++;
      continue;
    }
    let e = g;
    while (e < 8 && groups[e] === "0") e++;
    if (e - g > bestLen) {
      best = g;
      bestLen = e - g;
    }
    g = e;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

function macText(key: Uint32Array, k: number): string {
  const b = [
    key[k] >>> 24,
    (key[k] >>> 16) & 255,
    (key[k] >>> 8) & 255,
    key[k] & 255,
    key[k + 1] >>> 24,
    (key[k + 1] >>> 16) & 255,
  ];
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** A flow's key as text, e.g. `tcp 198.18.0.7:40001 > 198.19.0.1:443 vlan 20` (initiator first). */
export function flowKeyText(truth: TrafficTruth, flow: number): string {
  const fl = truth.flows;
  if (flow < 0 || flow >= fl.count) {
    throw new Error(`Invalid flow ${flow}: expected 0..${fl.count - 1}`);
  }
  const k = flow * TRUTH_KEY_WORDS;
  const key = fl.key;
  const vlan = fl.vlan[flow] === 0 ? "" : ` vlan ${fl.vlan[flow]}`;
  const inner = fl.innerVlan[flow] === 0 ? "" : `/${fl.innerVlan[flow]}`;
  if (fl.kind[flow] === TruthKind.L2) {
    const type = (key[k + 8] & 0xffff).toString(16).padStart(4, "0");
    return `ether 0x${type} ${macText(key, k)} > ${macText(key, k + 4)}${vlan}${inner}`;
  }
  const v6 = fl.kind[flow] === TruthKind.Ipv6;
  const proto = PROTO_NAMES[fl.proto[flow]] ?? `proto ${fl.proto[flow]}`;
  const a = ipText(key, k, v6);
  const b = ipText(key, k + 4, v6);
  const ports = key[k + 8];
  if (ports === 0) return `${proto} ${a} > ${b}${vlan}${inner}`;
  const sep = v6 ? "." : ":";
  return `${proto} ${a}${sep}${ports >>> 16} > ${b}${sep}${ports & 0xffff}${vlan}${inner}`;
}

type TypedArray = Float64Array | Int32Array | Uint8Array | Uint16Array | Uint32Array;

function b64(a: TypedArray): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
}

function unb64<T extends TypedArray>(text: unknown, make: (bytes: ArrayBuffer) => T): T {
  if (typeof text !== "string") throw new Error(`Invalid truth file: expected base64 text`);
  const buf = Buffer.from(text, "base64");
  // Copy into a fresh, aligned buffer (Buffer pools may be misaligned).
  const bytes = new Uint8Array(buf.length);
  bytes.set(buf);
  return make(bytes.buffer);
}

const TRUTH_FORMAT = "cutcap-gen-truth/1";

/**
 * Writes the truth as JSON: scalars plus every typed array as base64 of its little-endian bytes,
 * and `topFlows`, the 20 largest flows by bytes as text, for people.
 */
export async function writeTruthJson(path: string, truth: TrafficTruth): Promise<void> {
  const fl = truth.flows;
  const order = Array.from({ length: fl.count }, (_, i) => i).sort((x, y) =>
    fl.bytes[y] - fl.bytes[x]
  );
  const doc = {
    format: TRUTH_FORMAT,
    packets: truth.packets,
    totalBytes: truth.totalBytes,
    fileBytes: truth.fileBytes,
    linkType: truth.linkType,
    snaplen: truth.snaplen,
    nanosecond: truth.nanosecond,
    flowCount: fl.count,
    topFlows: order.slice(0, 20).map((f) => ({
      flow: f,
      key: flowKeyText(truth, f),
      packets: fl.packets[f],
      bytes: fl.bytes[f],
    })),
    flowOfPacket: b64(truth.flowOfPacket),
    wireLen: b64(truth.wireLen),
    tsUs: b64(truth.tsUs),
    flows: {
      packets: b64(fl.packets),
      bytes: b64(fl.bytes),
      firstPacket: b64(fl.firstPacket),
      lastPacket: b64(fl.lastPacket),
      kind: b64(fl.kind),
      proto: b64(fl.proto),
      vlan: b64(fl.vlan),
      innerVlan: b64(fl.innerVlan),
      app: b64(fl.app),
      idleGapAfter: b64(fl.idleGapAfter),
      key: b64(fl.key),
    },
  };
  await Deno.writeTextFile(path, JSON.stringify(doc));
}

/** Reads a truth written by writeTruthJson (or the CLI's --truth). */
export async function readTruthJson(path: string): Promise<TrafficTruth> {
  const doc = JSON.parse(await Deno.readTextFile(path));
  if (doc?.format !== TRUTH_FORMAT) {
    throw new Error(
      `Invalid truth file ${path}: expected format ${TRUTH_FORMAT}, found ${doc?.format}`,
    );
  }
  const f = doc.flows;
  const flows: TrafficFlows = {
    count: doc.flowCount,
    packets: unb64(f.packets, (b) => new Float64Array(b)),
    bytes: unb64(f.bytes, (b) => new Float64Array(b)),
    firstPacket: unb64(f.firstPacket, (b) => new Int32Array(b)),
    lastPacket: unb64(f.lastPacket, (b) => new Int32Array(b)),
    kind: unb64(f.kind, (b) => new Uint8Array(b)),
    proto: unb64(f.proto, (b) => new Uint8Array(b)),
    vlan: unb64(f.vlan, (b) => new Uint16Array(b)),
    innerVlan: unb64(f.innerVlan, (b) => new Uint16Array(b)),
    app: unb64(f.app, (b) => new Uint8Array(b)),
    idleGapAfter: unb64(f.idleGapAfter, (b) => new Int32Array(b)),
    key: unb64(f.key, (b) => new Uint32Array(b)),
  };
  return {
    packets: doc.packets,
    flowOfPacket: unb64(doc.flowOfPacket, (b) => new Int32Array(b)),
    wireLen: unb64(doc.wireLen, (b) => new Uint16Array(b)),
    tsUs: unb64(doc.tsUs, (b) => new Float64Array(b)),
    flows,
    totalBytes: doc.totalBytes,
    fileBytes: doc.fileBytes,
    linkType: 1,
    snaplen: doc.snaplen,
    nanosecond: doc.nanosecond,
  };
}

function num(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const v = Number(value);
  if (value.trim() === "" || !Number.isFinite(v)) {
    throw new Error(`Invalid --${name} ${value}: expected a number`);
  }
  return v;
}

async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      seed: { type: "string", default: "1" },
      packets: { type: "string" },
      out: { type: "string" },
      truth: { type: "string" },
      nanosecond: { type: "boolean", default: false },
      snaplen: { type: "string" },
      flows: { type: "string" },
      "ipv6-share": { type: "string" },
      "vlan-share": { type: "string" },
      "qinq-share": { type: "string" },
      "non-ip-share": { type: "string" },
      "start-ts": { type: "string" },
      rate: { type: "string" },
      "max-idle": { type: "string" },
      "idle-gap-every": { type: "string" },
      "idle-gap": { type: "string" },
      "final-ack": { type: "boolean", default: false },
    },
  });
  if (values.packets === undefined || values.out === undefined) {
    throw new Error("Missing option: expected --packets N and --out FILE.pcap");
  }
  const opts: TrafficOptions = {
    seed: num(values.seed, "seed") ?? 1,
    packets: num(values.packets, "packets") ?? 0,
    nanosecond: values.nanosecond,
    snaplen: num(values.snaplen, "snaplen"),
    flows: num(values.flows, "flows"),
    ipv6Share: num(values["ipv6-share"], "ipv6-share"),
    vlanShare: num(values["vlan-share"], "vlan-share"),
    qinqShare: num(values["qinq-share"], "qinq-share"),
    nonIpShare: num(values["non-ip-share"], "non-ip-share"),
    startTs: num(values["start-ts"], "start-ts"),
    rate: num(values.rate, "rate"),
    maxIdle: num(values["max-idle"], "max-idle"),
    idleGapEvery: num(values["idle-gap-every"], "idle-gap-every"),
    idleGap: num(values["idle-gap"], "idle-gap"),
    finalAck: values["final-ack"],
  };
  const t0 = performance.now();
  const truth = await writeTrafficPcap(values.out, opts);
  const genMs = performance.now() - t0;
  if (values.truth !== undefined) await writeTruthJson(values.truth, truth);
  const span = (truth.tsUs[truth.packets - 1] - truth.tsUs[0]) / 1e6;
  console.log(
    `${values.out}: ${truth.packets} packets, ${truth.flows.count} flows, ` +
      `${truth.totalBytes} wire bytes, ${truth.fileBytes} file bytes, ` +
      `${span.toFixed(3)} s of traffic, generated in ${(genMs / 1000).toFixed(2)} s`,
  );
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    Deno.exit(2);
  }
}
