/**
 * Fuzzes decodePacket with mutated corpus frames (bit flips, truncation, length-field lies, link-type
 * confusion) and synthetic deep nesting (VLAN, MPLS, IPv6 extension headers): it must never throw,
 * never read past caplen, always produce a well-formed key, and stay fast.
 */
import assert from "node:assert/strict";
import {
  decodePacket,
  DLT_EN10MB,
  DLT_IPV4,
  DLT_IPV6,
  DLT_LINUX_SLL,
  DLT_LINUX_SLL2,
  DLT_LOOP,
  DLT_NULL,
  DLT_RAW,
  FlowKind,
  KEY_WORDS,
  LINKTYPE_RAW,
  PacketInfo,
} from "../src/packet/mod.ts";
import { CORPUS_DIR } from "./support/corpus.ts";
import { deepNestedSeeds, type Seed } from "./support/pipeline_fuzz.ts";

const CORPUS = CORPUS_DIR;
const ITERATIONS = 3_000_000;
const SEED = 0x5eed1234;

const LINK_TYPES = [
  DLT_EN10MB,
  DLT_LINUX_SLL,
  DLT_LINUX_SLL2,
  DLT_RAW,
  LINKTYPE_RAW,
  DLT_NULL,
  DLT_LOOP,
  DLT_IPV4,
  DLT_IPV6,
  105, // an undecoded link type
];

/** Frames of the classic pcap files of the corpus whose link type we decode (tiny local reader). */
function corpusSeeds(): Seed[] {
  const seeds: Seed[] = [];
  for (const e of Deno.readDirSync(CORPUS)) {
    if (!e.name.endsWith(".pcap")) continue;
    const data = Deno.readFileSync(CORPUS + e.name);
    if (data.length < 24) continue;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const magic = view.getUint32(0, true);
    let le: boolean;
    if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) le = true;
    else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) le = false;
    else continue;
    const linkType = view.getUint32(20, le) & 0x03ffffff;
    if (!LINK_TYPES.includes(linkType) || linkType === 105) continue;
    for (let p = 24; p + 16 <= data.length;) {
      const caplen = view.getUint32(p + 8, le);
      if (caplen > 0x40000 || p + 16 + caplen > data.length) break;
      seeds.push({ linkType, bytes: data.slice(p + 16, p + 16 + caplen) });
      p += 16 + caplen;
    }
  }
  return seeds;
}

/** The pipeline fuzzer's deep VLAN/MPLS/IPv6 frames, plus a frame the decoder must not loop on. */
function deepSeeds(): Seed[] {
  // LLC/SNAP → VLAN → 802.3 length → SNAP ... must not loop or recurse.
  const snapLoop: number[] = [2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0, 60];
  for (let i = 0; i < 200; i++) snapLoop.push(0xaa, 0xaa, 0x03, 0, 0, 0, 0x81, 0x00, 0, 5, 0, 60);
  return [...deepNestedSeeds(), { linkType: DLT_EN10MB, bytes: Uint8Array.from(snapLoop) }];
}

/**
 * Decodes the frame with the 64 bytes after caplen set to 0x00 and then to 0xff; a decoder that
 * reads past caplen sees different values (lengths, flags, versions) and gives a different key.
 */
function sameWithTails(
  linkType: number,
  work: Uint8Array,
  offset: number,
  caplen: number,
  a: PacketInfo,
  b: PacketInfo,
): boolean {
  work.fill(0x00, offset + caplen, offset + caplen + 64);
  decodePacket(linkType, work, offset, caplen, a);
  work.fill(0xff, offset + caplen, offset + caplen + 64);
  decodePacket(linkType, work, offset, caplen, b);
  for (let i = 0; i < KEY_WORDS; i++) if (a.key[i] !== b.key[i]) return false;
  return a.tcpFlags === b.tcpFlags && a.laterFragment === b.laterFragment;
}

/** xorshift32: deterministic, cheap, good enough to pick mutations. */
let state = SEED;
function rand(): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return state >>> 0;
}
function below(n: number): number {
  return rand() % n;
}

const LIES = [0x00, 0x01, 0x05, 0x0f, 0x10, 0x40, 0x45, 0x60, 0x7f, 0x80, 0xfe, 0xff];

Deno.test("fuzz: 3M mutated frames never throw, never overread, always give a sane key", () => {
  const seeds = corpusSeeds();
  const deep = deepSeeds();
  assert.ok(seeds.length > 2000, `corpus seeds: ${seeds.length}`);
  const work = new Uint8Array(1 << 17);
  const info = new PacketInfo();
  const again = new PacketInfo();
  const kinds = new Set<number>([FlowKind.Opaque, FlowKind.L2, FlowKind.Ipv4, FlowKind.Ipv6]);
  const seen = new Map<number, number>();
  let overreadChecks = 0;
  const started = performance.now();
  for (let it = 0; it < ITERATIONS; it++) {
    const seed = below(100) === 0 ? deep[below(deep.length)] : seeds[below(seeds.length)];
    const offset = below(64);
    const len = seed.bytes.length;
    work.set(seed.bytes, offset);
    let caplen = len;
    const how = below(8);
    if (how <= 2) {
      // Bit flips, biased towards the headers.
      for (let n = 1 + below(4); n > 0; n--) {
        const at = below(Math.min(len, below(2) === 0 ? 80 : len) || 1);
        work[offset + at] ^= 1 << below(8);
      }
    } else if (how <= 4) {
      // Length-field and type lies: overwrite one or two header bytes with a telling value.
      for (let n = 1 + below(2); n > 0; n--) {
        work[offset + below(Math.min(len, 96) || 1)] = LIES[below(LIES.length)];
      }
    } else if (how === 5) {
      caplen = below(len + 1);
    } else if (how === 6) {
      work[offset + below(Math.min(len, 96) || 1)] = rand() & 0xff;
      caplen = below(len + 1);
    }
    const linkType = below(10) === 0 ? LINK_TYPES[below(LINK_TYPES.length)] : seed.linkType;
    // Whatever follows the frame is garbage the decoder must not look at.
    work[offset + caplen] = 0x45;
    work[offset + caplen + 1] = 0x86;
    try {
      decodePacket(linkType, work, offset, caplen, info);
    } catch (e) {
      throw new Error(
        `Decoding threw at iteration ${it} (link type ${linkType}, caplen ${caplen}): ${e}`,
      );
    }
    const key = info.key;
    const kind = info.kind;
    if (!kinds.has(kind) || key[9] >>> 28 !== kind) {
      throw new Error(`Bad kind at iteration ${it}: ${kind}, meta ${key[9].toString(16)}`);
    }
    seen.set(kind, (seen.get(kind) ?? 0) + 1);
    if (info.srcPort < 0 || info.srcPort > 0xffff || info.dstPort < 0 || info.dstPort > 0xffff) {
      throw new Error(`Bad ports at iteration ${it}: ${info.srcPort} ${info.dstPort}`);
    }
    if (info.vlan < 0 || info.vlan > 0xfff || info.ipProto < 0 || info.ipProto > 0xff) {
      throw new Error(`Bad vlan/proto at iteration ${it}: ${info.vlan} ${info.ipProto}`);
    }
    if (kind === FlowKind.Ipv4 || kind === FlowKind.Ipv6) {
      if (key[8] !== ((info.srcPort << 16) | info.dstPort) >>> 0) {
        throw new Error(`Ports word at ${it}`);
      }
      if (info.laterFragment && key[8] !== 0) throw new Error(`Fragment with ports at ${it}`);
      if (kind === FlowKind.Ipv4 && (key[1] | key[2] | key[3] | key[5] | key[6] | key[7]) !== 0) {
        throw new Error(`IPv4 key with IPv6 words at ${it}`);
      }
    } else if (kind === FlowKind.L2) {
      if (key[8] >>> 16 !== (key[8] & 0xffff)) throw new Error(`L2 type halves differ at ${it}`);
    } else {
      for (let i = 0; i < KEY_WORDS; i++) {
        if (key[i] !== 0) throw new Error(`Opaque key not zero at ${it}`);
      }
    }
    if ((it & 7) === 0) {
      // Overread check: the result must not depend on the bytes past caplen.
      overreadChecks++;
      if (!sameWithTails(linkType, work, offset, caplen, info, again)) {
        throw new Error(`Result depends on bytes past caplen at iteration ${it}`);
      }
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const rate = Math.round(ITERATIONS / seconds);
  const kindsSeen = [...seen].map(([k, n]) => `kind${k}=${n}`).join(" ");
  console.log(
    `fuzz: ${ITERATIONS} frames (${seeds.length} corpus + ${deep.length} deep seeds) in ${
      seconds.toFixed(2)
    } s, ` +
      `${rate} frames/s incl. mutation; ${overreadChecks} overread checks; ${kindsSeen}`,
  );
  assert.ok(seconds < 20, `took ${seconds} s`);
  for (const k of kinds) assert.ok((seen.get(k) ?? 0) > 1000, `kind ${k} rarely produced`);
});

Deno.test("fuzz: every corpus and deep frame cut at every length reads nothing past caplen", () => {
  const seeds = [...corpusSeeds(), ...deepSeeds()];
  const work = new Uint8Array(1 << 17);
  const a = new PacketInfo();
  const b = new PacketInfo();
  let frames = 0;
  const started = performance.now();
  for (const seed of seeds) {
    work.set(seed.bytes, 3);
    // Deep seeds are long and uniform: their first 512 lengths cover every header boundary kind.
    const max = Math.min(seed.bytes.length, 512);
    for (let caplen = 0; caplen <= max; caplen++) {
      if (caplen > 0) work[3 + caplen - 1] = seed.bytes[caplen - 1];
      frames++;
      if (!sameWithTails(seed.linkType, work, 3, caplen, a, b)) {
        throw new Error(
          `Read past caplen ${caplen} of a ${seed.bytes.length}-byte frame (link ${seed.linkType})`,
        );
      }
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(`truncation: ${frames} (frame, caplen) pairs in ${seconds.toFixed(2)} s`);
});
