/**
 * Reads `.idx` files (format in index_format.ts). `readFileIndex` verifies the whole-file checksum and
 * maps the sections as typed arrays; `readIndexHeader` reads only the header, for catalogs.
 */
import { crc32 } from "node:zlib";
import { KEY_WORDS } from "../packet/packet_info.ts";
import {
  type Compression,
  compressionFromCode,
  HEADER_CRC_AT,
  HEADER_FIXED,
  INDEX_END_MAGIC,
  INDEX_MAGIC,
  INDEX_VERSION,
  INDEX_VERSION_MIN,
  IndexFlag,
  sectionLayout,
  TRAILER_LEN,
  UNKNOWN_WORKER,
} from "./index_format.ts";

/** The header of an index file. */
export interface FileIndexHeader {
  version: number;
  linkType: number;
  snaplen: number;
  nanosecond: boolean;
  compress: Compression;
  /** The block table is one block covering a whole foreign compressed stream. */
  wholeStream: boolean;
  flowCount: number;
  packetCount: number;
  blockCount: number;
  firstTs: number;
  lastTs: number;
  /** Bytes of the pcap file on disk when indexed (0 when unknown). */
  pcapSize: number;
  /** Bytes of the uncompressed pcap stream (0 when unknown). */
  dataSize: number;
  /** Sum of wire lengths of the indexed packets. */
  wireBytes: number;
  /** Bytes of the index file itself. */
  indexSize: number;
  /** Capture worker number, -1 when unknown. */
  worker: number;
  iface: string;
  /** Base name of the pcap file the index was written for. */
  pcapName: string;
  /** Seed of the records' Community ID prefixes (version 2; 0 in version 1). */
  cidSeed: number;
  /**
   * Whether packet times never go back in file order: "ordered", "unordered" (some packet is
   * earlier than one before it), or "unknown" (an index written before this was recorded).
   */
  timeOrder: "ordered" | "unordered" | "unknown";
}

/** A whole index: header plus the sections as typed arrays (flow i's packets are pktStart[i]..). */
export interface FileIndex {
  header: FileIndexHeader;
  /** flowCount × KEY_WORDS canonical keys. */
  keys: Uint32Array;
  firstTs: Float64Array;
  lastTs: Float64Array;
  /** Packets per flow (the same array as `pktCount`). */
  packets: Uint32Array;
  /** Wire bytes per flow. */
  bytes: Float64Array;
  pktStart: Uint32Array;
  pktCount: Uint32Array;
  /** Record offset in the uncompressed pcap stream, per packet, grouped by flow. */
  offsets: Float64Array;
  /** Timestamp in seconds per packet (±0.5 µs, see index_format.ts), grouped like `offsets`. */
  times: Float64Array;
  /** blockCount × 4: compOffset, compLen, uncompOffset, uncompLen. */
  blocks: Float64Array;
  /** Flow records (index_format.ts; a version 1 index gets the stored counts, no cut, unknown
   * end): packets and bytes seen by the end of the file, first refused packet (0 = not cut). */
  totalPackets: Float64Array;
  totalBytes: Float64Array;
  cutPacket: Float64Array;
  /** Bit 0: first packet went B→A; bits 1-3: FlowEnd. */
  flowState: Uint32Array;
  /** First 4 Community ID digest bytes per flow with seed `header.cidSeed`; null in version 1. */
  cidPrefix: Uint32Array | null;
  /**
   * Per flow, its inner VLAN ids and MPLS labels: entries tagStart[i] .. + tagCount[i] of `tags`
   * (ExtraTagKind << 24 | value). Empty arrays when the index has none (or predates them).
   */
  tagStart: Uint32Array;
  tagCount: Uint32Array;
  tags: Uint32Array;
}

function damaged(path: string, why: string): Error {
  return new Error(`Index ${path} is damaged: ${why}`);
}

/** Options of `readIndexHeader`. */
export interface ReadHeaderOptions {
  /**
   * Accept a header whose file is shorter or longer than it says (a torn index), e.g. to keep its
   * interface and worker when rebuilding it. The header checksum is still checked.
   */
  ignoreLength?: boolean;
}

/** Parses and checks a header from the first bytes of an index; `fileSize` is the index's length. */
function parseHeader(
  path: string,
  buf: Uint8Array,
  fileSize: number,
  ignoreLength = false,
): FileIndexHeader {
  if (buf.length < HEADER_FIXED) {
    throw damaged(path, `expected at least ${HEADER_FIXED} bytes, found ${buf.length}`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = dv.getUint32(0, true);
  if (magic !== INDEX_MAGIC) {
    throw new Error(
      `File ${path} is not a cutcap index: expected magic "CCIX", found 0x${
        magic.toString(16).padStart(8, "0")
      }`,
    );
  }
  const version = dv.getUint16(4, true);
  if (version < INDEX_VERSION_MIN || version > INDEX_VERSION) {
    throw new Error(
      `Index ${path} has version ${version}: expected ${INDEX_VERSION_MIN}-${INDEX_VERSION} (an index written by a newer cutcap; upgrade, or delete it to rebuild it from its pcap)`,
    );
  }
  const headerLen = dv.getUint16(6, true);
  if (headerLen < HEADER_FIXED || headerLen > buf.length) {
    throw damaged(path, `header length ${headerLen} out of range (file has ${buf.length} bytes)`);
  }
  const crc = crc32(
    buf.subarray(HEADER_CRC_AT + 4, headerLen),
    crc32(buf.subarray(0, HEADER_CRC_AT)),
  );
  if (crc !== dv.getUint32(HEADER_CRC_AT, true)) throw damaged(path, "header checksum mismatch");
  const indexSize = dv.getFloat64(72, true);
  if (indexSize !== fileSize && !ignoreLength) {
    throw damaged(path, `expected ${indexSize} bytes, found ${fileSize} (truncated or torn)`);
  }
  const flags = dv.getUint32(8, true);
  const ifaceLen = dv.getUint16(84, true);
  const nameLen = dv.getUint16(86, true);
  if (HEADER_FIXED + ifaceLen + nameLen > headerLen) {
    throw damaged(path, "header strings overflow the header");
  }
  const firstTs = dv.getFloat64(32, true);
  const lastTs = dv.getFloat64(40, true);
  if (dv.getUint32(24, true) > 0 && !possibleTimeRange(firstTs, lastTs)) {
    throw damaged(path, `impossible time range ${firstTs} to ${lastTs}: expected pcap seconds`);
  }
  const dec = new TextDecoder();
  const worker = dv.getUint32(80, true);
  return {
    version,
    linkType: dv.getUint32(12, true),
    snaplen: dv.getUint32(16, true),
    nanosecond: (flags & IndexFlag.Nanosecond) !== 0,
    compress: compressionFromCode((flags & IndexFlag.CompressMask) >> IndexFlag.CompressShift),
    wholeStream: (flags & IndexFlag.WholeStream) !== 0,
    flowCount: dv.getUint32(20, true),
    packetCount: dv.getUint32(24, true),
    blockCount: dv.getUint32(28, true),
    firstTs,
    lastTs,
    pcapSize: dv.getFloat64(48, true),
    dataSize: dv.getFloat64(56, true),
    wireBytes: dv.getFloat64(64, true),
    indexSize,
    worker: worker === UNKNOWN_WORKER ? -1 : worker,
    iface: dec.decode(buf.subarray(HEADER_FIXED, HEADER_FIXED + ifaceLen)),
    pcapName: dec.decode(buf.subarray(HEADER_FIXED + ifaceLen, HEADER_FIXED + ifaceLen + nameLen)),
    cidSeed: version >= 2 ? dv.getUint16(88, true) : 0,
    timeOrder: (flags & IndexFlag.TimeOrderKnown) === 0
      ? "unknown"
      : (flags & IndexFlag.TimesGoBack) === 0
      ? "ordered"
      : "unordered",
  };
}

/** Times a pcap can hold: unsigned 32-bit seconds (1970 to 2106), first not after last. */
function possibleTimeRange(first: number, last: number): boolean {
  return first >= 0 && last < 2 ** 32 + 1 && first <= last;
}

function headerLenOf(buf: Uint8Array): number {
  return buf[6] | (buf[7] << 8);
}

/**
 * Reads only the header of an index (and checks the header checksum and the file length, which
 * catches torn and truncated files; bit rot inside the sections is caught by `readFileIndex`).
 */
export function readIndexHeader(path: string, opts: ReadHeaderOptions = {}): FileIndexHeader {
  const f = Deno.openSync(path, { read: true });
  try {
    const size = f.statSync().size;
    let buf = new Uint8Array(Math.min(size, 512));
    let got = readFully(f, buf, 0);
    buf = buf.subarray(0, got);
    if (got >= HEADER_FIXED) {
      const hl = headerLenOf(buf);
      if (hl > got && hl <= size) {
        const big = new Uint8Array(hl);
        big.set(buf);
        got += readFully(f, big, got);
        buf = big.subarray(0, got);
      }
    }
    return parseHeader(path, buf, size, opts.ignoreLength === true);
  } finally {
    f.close();
  }
}

function readFully(f: Deno.FsFile, buf: Uint8Array, from: number): number {
  let at = from;
  while (at < buf.length) {
    const n = f.readSync(buf.subarray(at));
    if (n === null || n === 0) break;
    at += n;
  }
  return at - from;
}

/** Reads a whole index and verifies its checksum. */
export function readFileIndex(path: string): FileIndex {
  return decodeFileIndex(path, Deno.readFileSync(path));
}

/** Decodes index bytes already in memory; `path` is only used in error messages. */
export function decodeFileIndex(path: string, bytes: Uint8Array, bodyCrc?: number): FileIndex {
  // Own, 8-aligned copy so that the sections can be mapped as typed arrays.
  const buf = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const header = parseHeader(path, buf, buf.length);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < headerLenOf(buf) + TRAILER_LEN) throw damaged(path, "no room for the trailer");
  const trailer = buf.length - TRAILER_LEN;
  if (dv.getUint32(trailer + 4, true) !== INDEX_END_MAGIC) throw damaged(path, "end magic missing");
  if ((bodyCrc ?? crc32(buf.subarray(0, trailer))) !== dv.getUint32(trailer, true)) {
    throw damaged(path, "checksum mismatch");
  }
  const flags = dv.getUint32(8, true);
  const wide = (flags & IndexFlag.WideOffsets) !== 0;
  const wideTimes = (flags & IndexFlag.WideTimes) !== 0;
  const F = header.flowCount;
  const N = header.packetCount;
  const counts = {
    flows: F,
    packets: N,
    blocks: header.blockCount,
    wideOffsets: wide,
    wideTimes,
    version: header.version,
  };
  let lay = sectionLayout(headerLenOf(buf), counts);
  let extraTags = 0;
  if ((flags & IndexFlag.ExtraTags) !== 0) {
    if (lay.extraTags + 8 > trailer) throw damaged(path, "extra-tags section missing");
    extraTags = dv.getUint32(lay.extraTags, true);
    lay = sectionLayout(headerLenOf(buf), { ...counts, extraTags });
  }
  if (lay.total !== buf.length) {
    throw damaged(path, `counts need ${lay.total} bytes, file has ${buf.length}`);
  }
  const ab = buf.buffer;
  const o = buf.byteOffset;
  const pktCount = new Uint32Array(ab, o + lay.pktCount, F);
  let offsets: Float64Array;
  if (wide) {
    offsets = new Float64Array(ab, o + lay.offsets, N);
  } else {
    offsets = new Float64Array(N);
    offsets.set(new Uint32Array(ab, o + lay.offsets, N));
  }
  let times: Float64Array;
  if (wideTimes) {
    times = new Float64Array(ab, o + lay.times, N);
  } else {
    times = new Float64Array(N);
    const us = new Uint32Array(ab, o + lay.times, N);
    const t0 = header.firstTs;
    for (let i = 0; i < N; i++) times[i] = t0 + us[i] * 1e-6;
  }
  const idx: FileIndex = {
    header,
    keys: new Uint32Array(ab, o + lay.keys, F * KEY_WORDS),
    firstTs: new Float64Array(ab, o + lay.firstTs, F),
    lastTs: new Float64Array(ab, o + lay.lastTs, F),
    packets: pktCount,
    bytes: new Float64Array(ab, o + lay.bytes, F),
    pktStart: new Uint32Array(ab, o + lay.pktStart, F),
    pktCount,
    offsets,
    times,
    blocks: new Float64Array(ab, o + lay.blocks, header.blockCount * 4),
    ...flowRecords(header.version, ab, o, lay, pktCount),
    tagStart: new Uint32Array(extraTags === 0 ? 0 : F),
    tagCount: new Uint32Array(extraTags === 0 ? 0 : F),
    tags: new Uint32Array(0),
  };
  if (extraTags > 0) {
    const at = lay.extraTags + 8;
    idx.tagStart = new Uint32Array(ab, o + at, F);
    idx.tagCount = new Uint32Array(ab, o + at + F * 4, F);
    idx.tags = new Uint32Array(ab, o + at + F * 8, extraTags);
    for (let i = 0; i < F; i++) {
      if (idx.tagStart[i] + idx.tagCount[i] > extraTags) {
        throw damaged(path, `flow ${i} extra tags exceed ${extraTags}`);
      }
    }
  }
  // A consistent checksum over inconsistent content means a writer bug, not bit rot; say so early
  // rather than letting a query read past the packet section.
  for (let i = 0; i < F; i++) {
    if (idx.pktStart[i] + pktCount[i] > N) {
      throw damaged(path, `flow ${i} packets ${idx.pktStart[i]}+${pktCount[i]} exceed ${N}`);
    }
  }
  return idx;
}

/** The flow records section's columns, or for a version 1 index what stands in for them. */
function flowRecords(
  version: number,
  ab: ArrayBufferLike,
  o: number,
  lay: ReturnType<typeof sectionLayout>,
  pktCount: Uint32Array,
): Pick<FileIndex, "totalPackets" | "totalBytes" | "cutPacket" | "flowState" | "cidPrefix"> {
  const F = pktCount.length;
  if (version < 2) {
    return {
      totalPackets: Float64Array.from(pktCount),
      totalBytes: new Float64Array(ab, o + lay.bytes, F),
      cutPacket: new Float64Array(F),
      flowState: new Uint32Array(F),
      cidPrefix: null,
    };
  }
  return {
    totalPackets: new Float64Array(ab, o + lay.totPackets, F),
    totalBytes: new Float64Array(ab, o + lay.totBytes, F),
    cutPacket: new Float64Array(ab, o + lay.cutPacket, F),
    flowState: new Uint32Array(ab, o + lay.state, F),
    cidPrefix: new Uint32Array(ab, o + lay.cid, F),
  };
}

/** The block of a block table holding an offset (the table's format is the pcap module's). */
export { findBlock } from "../pcap/block_format.ts";
