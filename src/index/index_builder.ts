/**
 * Collects the index of one pcap file while the capture worker writes it, then writes the `.idx` file
 * (format in index_format.ts). `record()` runs once per stored packet, so it only writes into
 * long-lived typed arrays that double when full; nothing is allocated per packet.
 */
import { crc32 } from "node:zlib";
import { KEY_WORDS } from "../packet/packet_info.ts";
import {
  type Compression,
  compressionCode,
  HEADER_CRC_AT,
  HEADER_FIXED,
  headerLength,
  INDEX_END_MAGIC,
  INDEX_MAGIC,
  INDEX_VERSION,
  IndexFlag,
  sectionLayout,
  UNKNOWN_WORKER,
} from "./index_format.ts";

/** What the index header says about its pcap file; given to `IndexBuilder.write`. */
export interface IndexMeta {
  /** Final base name of the pcap file (stored for diagnostics, not used to find it). */
  pcapName: string;
  linkType: number;
  snaplen: number;
  /** True when the pcap's timestamps are nanoseconds. */
  nanosecond: boolean;
  compress: Compression;
  /** Block table, 4 numbers per block: compOffset, compLen, uncompOffset, uncompLen. */
  blocks?: Float64Array;
  /** Only this many leading blocks of `blocks` are used (default: all). */
  blockCount?: number;
  iface: string;
  /** Capture worker number; -1 when unknown. */
  worker: number;
  /** Bytes of the pcap file on disk. Default: end of the last block, or `dataSize` for a plain file. */
  pcapSize?: number;
  /** Bytes of the uncompressed pcap stream. Default: end of the last block, else 0 (unknown). */
  dataSize?: number;
  /** Set for a foreign compressed file whose whole stream is one block. */
  wholeStream?: boolean;
}

/**
 * Flows and packets the builder's arrays are sized for at construction. They are plain typed arrays
 * carved out of one large zero-filled allocation per kind, which the kernel backs with pages only
 * where they are written (measured: 5 x 128 MB allocated, RSS unchanged). So memory follows what a
 * file really holds, without the copies and the old-plus-new peak of doubling, and record() keeps
 * the speed of plain typed arrays. Beyond these counts the arrays double.
 */
const RESERVED_FLOWS = 1 << 22;
const RESERVED_PACKETS = 1 << 24;
/** FlowTable ids the id map covers before it doubles. */
const RESERVED_IDS = 1 << 23;
/** Bytes per flow across the per-flow columns (see #allocFlows). */
const FLOW_BYTES = 8 * 4 + KEY_WORDS * 4 + 4 * 2;
/** Bytes per packet across the per-packet columns. */
const PACKET_BYTES = 8 * 2 + 4;
const TWO_POW_32 = 4294967296;
/** Size of the buffer encode() fills and hands to its sink, section by section. */
const ENCODE_CHUNK = 1 << 20;

/** Per-file index under construction; one per open output file, reused via `reset()`. */
export class IndexBuilder {
  // FlowTable id -> per-file flow number + 1 (0 = none). Entries are validated against
  // ffFlowId/ffSerial instead of being cleared, so reset() is O(1) however large the flow table is.
  #idToFile = new Int32Array(RESERVED_IDS);

  #flows = 0;
  #ffFlowId!: Int32Array;
  #ffSerial!: Float64Array;
  #ffKeys!: Uint32Array;
  #ffFirst!: Float64Array;
  #ffLast!: Float64Array;
  #ffBytes!: Float64Array;
  #ffCount!: Uint32Array;

  #packets = 0;
  #pktFlow!: Uint32Array;
  #pktOffset!: Float64Array;
  #pktTs!: Float64Array;

  #firstTs = 0;
  #lastTs = 0;
  #wireBytes = 0;
  #maxOffset = 0;

  constructor() {
    this.#allocFlows(RESERVED_FLOWS, 0);
    this.#allocPackets(RESERVED_PACKETS, 0);
  }

  /** Number of distinct flows recorded since the last reset. */
  get flowCount(): number {
    return this.#flows;
  }

  /** Number of packets recorded since the last reset. */
  get packetCount(): number {
    return this.#packets;
  }

  /** Earliest packet time recorded (0 when empty). */
  get firstTs(): number {
    return this.#firstTs;
  }

  /** Latest packet time recorded (0 when empty). */
  get lastTs(): number {
    return this.#lastTs;
  }

  /**
   * Notes one stored packet. `flowId` is the FlowTable slot and `flowSerial` the number unique to
   * this flow's lifetime (a slot reused by a later flow has a new serial and becomes a new flow
   * here). `key` is the canonical key, copied only when the flow is new to this file.
   * HOT PATH: no allocation except amortized doubling of the arrays.
   */
  record(
    flowId: number,
    flowSerial: number,
    key: Uint32Array,
    tsSec: number,
    recordOffset: number,
    wireLen: number,
  ): void {
    if (flowId >= this.#idToFile.length) this.#growIds(flowId + 1);
    let ff = this.#idToFile[flowId] - 1;
    if (
      ff < 0 || ff >= this.#flows || this.#ffFlowId[ff] !== flowId ||
      this.#ffSerial[ff] !== flowSerial
    ) {
      ff = this.#newFlow(flowId, flowSerial, key, tsSec);
    }
    const first = this.#ffFirst;
    const last = this.#ffLast;
    // Capture time is almost always monotonic, but replayed or merged traffic may step back.
    if (tsSec < first[ff]) first[ff] = tsSec;
    if (tsSec > last[ff]) last[ff] = tsSec;
    this.#ffBytes[ff] += wireLen;
    this.#ffCount[ff]++;

    const p = this.#packets;
    if (p === this.#pktFlow.length) this.#allocPackets(p * 2, p);
    this.#pktFlow[p] = ff;
    this.#pktOffset[p] = recordOffset;
    this.#pktTs[p] = tsSec;
    this.#packets = p + 1;
    if (p === 0) {
      this.#firstTs = tsSec;
      this.#lastTs = tsSec;
    } else if (tsSec > this.#lastTs) {
      this.#lastTs = tsSec;
    } else if (tsSec < this.#firstTs) {
      this.#firstTs = tsSec;
    }
    this.#wireBytes += wireLen;
    if (recordOffset > this.#maxOffset) this.#maxOffset = recordOffset;
  }

  /** Starts per-file flow number `this.#flows` for a FlowTable id and lifetime; returns it. */
  #newFlow(flowId: number, flowSerial: number, key: Uint32Array, tsSec: number): number {
    const ff = this.#flows;
    if (ff === this.#ffFlowId.length) this.#allocFlows(ff * 2, ff);
    this.#flows = ff + 1;
    this.#idToFile[flowId] = ff + 1;
    this.#ffFlowId[ff] = flowId;
    this.#ffSerial[ff] = flowSerial;
    const keys = this.#ffKeys;
    const k = ff * KEY_WORDS;
    for (let i = 0; i < KEY_WORDS; i++) keys[k + i] = key[i];
    this.#ffFirst[ff] = tsSec;
    this.#ffLast[ff] = tsSec;
    this.#ffBytes[ff] = 0;
    this.#ffCount[ff] = 0;
    return ff;
  }

  /** Forgets everything recorded, keeping the buffers for the next file. */
  reset(): void {
    this.#flows = 0;
    this.#packets = 0;
    this.#firstTs = 0;
    this.#lastTs = 0;
    this.#wireBytes = 0;
    this.#maxOffset = 0;
  }

  /** The index bytes for what was recorded, as `write` would store them. */
  encode(meta: IndexMeta): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    this.#encodeTo(meta, (chunk) => {
      parts.push(chunk.slice());
      total += chunk.length;
    });
    const out = new Uint8Array(total);
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /**
   * Writes the index to `indexPath` durably: a hidden temporary file in the same directory, fsync,
   * rename. Returns the number of bytes written. The file is produced section by section through
   * one 1 MiB buffer, so writing an index of a million flows needs no copy of it in memory.
   */
  write(indexPath: string, meta: IndexMeta): number {
    let written = 0;
    writeFileDurably(indexPath, (sink) => {
      this.#encodeTo(meta, (chunk) => {
        sink(chunk);
        written += chunk.length;
      });
    });
    return written;
  }

  /**
   * Produces the index bytes in order, handing them to `sink` in pieces (the piece is only valid
   * during the call). Only the packet sections are built in memory (scattered into place, 8
   * bytes per packet), not a copy of the whole file; the per-flow columns usually go out as
   * they are.
   */
  #encodeTo(meta: IndexMeta, sink: (chunk: Uint8Array) => void): void {
    const enc = new TextEncoder();
    const iface = enc.encode(meta.iface);
    const name = enc.encode(meta.pcapName);
    if (iface.length > 0xffff || name.length > 0xffff) {
      throw new Error(
        `Invalid index metadata: expected names under 64 KiB, found ${iface.length} and ${name.length} bytes`,
      );
    }
    const blockCount = meta.blocks === undefined
      ? 0
      : meta.blockCount ?? Math.floor(meta.blocks.length / 4);
    if (meta.blocks !== undefined && blockCount * 4 > meta.blocks.length) {
      throw new Error(
        `Invalid block table: expected ${blockCount * 4} numbers, found ${meta.blocks.length}`,
      );
    }
    const F = this.#flows;
    const N = this.#packets;
    const wide = this.#maxOffset >= TWO_POW_32;
    const t0 = this.#firstTs;
    const wideTimes = Math.round((this.#lastTs - t0) * 1e6) >= TWO_POW_32;
    const headerLen = headerLength(iface.length, name.length);
    const lay = sectionLayout(headerLen, {
      flows: F,
      packets: N,
      blocks: blockCount,
      wideOffsets: wide,
      wideTimes,
    });

    let dataSize = meta.dataSize ?? 0;
    let pcapSize = meta.pcapSize ?? 0;
    if (blockCount > 0) {
      const b = meta.blocks as Float64Array;
      const last = (blockCount - 1) * 4;
      if (meta.dataSize === undefined) dataSize = b[last + 2] + b[last + 3];
      if (meta.pcapSize === undefined) pcapSize = b[last] + b[last + 1];
    } else if (meta.pcapSize === undefined && meta.compress === "none") {
      pcapSize = dataSize;
    }

    let flags = meta.nanosecond ? IndexFlag.Nanosecond : 0;
    flags |= compressionCode(meta.compress) << IndexFlag.CompressShift;
    if (wide) flags |= IndexFlag.WideOffsets;
    if (meta.wholeStream) flags |= IndexFlag.WholeStream;
    if (wideTimes) flags |= IndexFlag.WideTimes;

    const header = new Uint8Array(headerLen);
    const dv = new DataView(header.buffer);
    dv.setUint32(0, INDEX_MAGIC, true);
    dv.setUint16(4, INDEX_VERSION, true);
    dv.setUint16(6, headerLen, true);
    dv.setUint32(8, flags, true);
    dv.setUint32(12, meta.linkType >>> 0, true);
    dv.setUint32(16, meta.snaplen >>> 0, true);
    dv.setUint32(20, F, true);
    dv.setUint32(24, N, true);
    dv.setUint32(28, blockCount, true);
    dv.setFloat64(32, this.#firstTs, true);
    dv.setFloat64(40, this.#lastTs, true);
    dv.setFloat64(48, pcapSize, true);
    dv.setFloat64(56, dataSize, true);
    dv.setFloat64(64, this.#wireBytes, true);
    dv.setFloat64(72, lay.total, true);
    dv.setUint32(80, meta.worker < 0 ? UNKNOWN_WORKER : meta.worker, true);
    dv.setUint16(84, iface.length, true);
    dv.setUint16(86, name.length, true);
    header.set(iface, HEADER_FIXED);
    header.set(name, HEADER_FIXED + iface.length);
    const hcrc = crc32(
      header.subarray(HEADER_CRC_AT + 4, headerLen),
      crc32(header.subarray(0, HEADER_CRC_AT)),
    );
    dv.setUint32(HEADER_CRC_AT, hcrc, true);

    // Flow order: by first time, stable on first appearance. Flows are numbered in order of
    // appearance, so with time-ordered packets (nearly always) the order is the identity and
    // the per-flow columns go out as they are, in one copy each.
    const first = this.#ffFirst;
    let sorted = true;
    for (let i = 1; i < F; i++) {
      if (first[i] < first[i - 1]) {
        sorted = false;
        break;
      }
    }
    let order: Uint32Array | null = null;
    if (!sorted) {
      const arr = Array.from({ length: F }, (_, i) => i);
      arr.sort((a, b) => first[a] - first[b] || a - b);
      order = Uint32Array.from(arr);
    }

    const out = new ChunkWriter(sink);
    out.bytes(header);
    const keys = this.#ffKeys;
    const last = this.#ffLast;
    const fbytes = this.#ffBytes;
    const count = this.#ffCount;
    // Where each flow's packets start in the packet sections, by per-file flow number.
    const start = new Uint32Array(F);
    if (order === null) {
      out.bytes(viewBytes(keys, F * KEY_WORDS));
      out.bytes(viewBytes(first, F));
      out.bytes(viewBytes(last, F));
      out.bytes(viewBytes(fbytes, F));
      for (let f = 1; f < F; f++) start[f] = start[f - 1] + count[f - 1];
      out.bytes(viewBytes(start, F));
      out.bytes(viewBytes(count, F));
    } else {
      const o = order;
      const flowKeys = new Uint32Array(F * KEY_WORDS);
      for (let r = 0; r < F; r++) {
        const k = o[r] * KEY_WORDS;
        for (let i = 0; i < KEY_WORDS; i++) flowKeys[r * KEY_WORDS + i] = keys[k + i];
      }
      out.bytes(viewBytes(flowKeys, F * KEY_WORDS));
      const column = new Float64Array(F);
      for (const src of [first, last, fbytes]) {
        for (let r = 0; r < F; r++) column[r] = src[o[r]];
        out.bytes(viewBytes(column, F));
      }
      const starts = new Uint32Array(F);
      const counts = new Uint32Array(F);
      let at = 0;
      for (let r = 0; r < F; r++) {
        const f = o[r];
        start[f] = at;
        starts[r] = at;
        counts[r] = count[f];
        at += count[f];
      }
      out.bytes(viewBytes(starts, F));
      out.bytes(viewBytes(counts, F));
    }
    out.zeros(lay.offsets - out.written);

    // Packets go to their flow's slice, file order within a flow: one pass scattering offsets
    // and times into section-sized arrays, then each array goes out in one copy.
    const offsets = wide ? new Float64Array(N) : new Uint32Array(N);
    const times = wideTimes ? new Float64Array(N) : new Uint32Array(N);
    const pf = this.#pktFlow;
    const po = this.#pktOffset;
    const ts = this.#pktTs;
    for (let p = 0; p < N; p++) {
      const at = start[pf[p]]++;
      offsets[at] = po[p];
      times[at] = wideTimes ? ts[p] : Math.round((ts[p] - t0) * 1e6);
    }
    out.bytes(viewBytes(offsets, N));
    out.zeros(lay.times - out.written);
    out.bytes(viewBytes(times, N));
    out.zeros(lay.blocks - out.written);
    if (blockCount > 0) {
      const b = meta.blocks as Float64Array;
      for (let i = 0; i < blockCount * 4; i++) out.f64(b[i]);
    }
    if (out.written !== lay.trailer) {
      throw new Error(`Index encoding wrote ${out.written} bytes: expected ${lay.trailer}`);
    }
    out.u32(out.crc());
    out.u32(INDEX_END_MAGIC);
    out.flush();
  }

  #growIds(min: number): void {
    let n = this.#idToFile.length * 2;
    while (n < min) n *= 2;
    const a = new Int32Array(n);
    a.set(this.#idToFile);
    this.#idToFile = a;
  }

  /** (Re)allocates the per-flow columns for `capacity` flows, keeping the first `keep`. */
  #allocFlows(capacity: number, keep: number): void {
    const buf = new ArrayBuffer(capacity * FLOW_BYTES);
    let at = 0;
    const take = <T extends { set(a: ArrayLike<number>): void }>(
      make: (b: ArrayBuffer, offset: number, length: number) => T,
      width: number,
      per: number,
      old: ArrayLike<number> | undefined,
    ): T => {
      const view = make(buf, at, capacity * per);
      at += capacity * per * width;
      if (old !== undefined && keep > 0) {
        view.set((old as Float64Array).subarray(0, keep * per));
      }
      return view;
    };
    // f64 columns first: every offset stays a multiple of 8.
    this.#ffSerial = take((b, o, l) => new Float64Array(b, o, l), 8, 1, this.#ffSerial);
    this.#ffFirst = take((b, o, l) => new Float64Array(b, o, l), 8, 1, this.#ffFirst);
    this.#ffLast = take((b, o, l) => new Float64Array(b, o, l), 8, 1, this.#ffLast);
    this.#ffBytes = take((b, o, l) => new Float64Array(b, o, l), 8, 1, this.#ffBytes);
    this.#ffKeys = take((b, o, l) => new Uint32Array(b, o, l), 4, KEY_WORDS, this.#ffKeys);
    this.#ffFlowId = take((b, o, l) => new Int32Array(b, o, l), 4, 1, this.#ffFlowId);
    this.#ffCount = take((b, o, l) => new Uint32Array(b, o, l), 4, 1, this.#ffCount);
  }

  /** (Re)allocates the per-packet columns for `capacity` packets, keeping the first `keep`. */
  #allocPackets(capacity: number, keep: number): void {
    const buf = new ArrayBuffer(capacity * PACKET_BYTES);
    const offset = new Float64Array(buf, 0, capacity);
    const ts = new Float64Array(buf, capacity * 8, capacity);
    const flow = new Uint32Array(buf, capacity * 16, capacity);
    if (keep > 0) {
      offset.set(this.#pktOffset.subarray(0, keep));
      ts.set(this.#pktTs.subarray(0, keep));
      flow.set(this.#pktFlow.subarray(0, keep));
    }
    this.#pktOffset = offset;
    this.#pktTs = ts;
    this.#pktFlow = flow;
  }
}

/** The first `count` elements of a typed array as bytes (little-endian on every host we run on). */
function viewBytes(a: Uint32Array | Float64Array, count: number): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, count * a.BYTES_PER_ELEMENT);
}

/**
 * Little-endian values into a reusable buffer, handed to a sink whenever it fills, with a running
 * CRC-32 of everything written. Values go through typed-array views of the buffer: every index
 * section starts at a multiple of 8 and the buffer's size is one, so a u32 always lands at a
 * multiple of 4 and an f64 at a multiple of 8, and no value straddles two buffers.
 */
class ChunkWriter {
  readonly #sink: (chunk: Uint8Array) => void;
  readonly #buf = new Uint8Array(ENCODE_CHUNK);
  readonly #u32 = new Uint32Array(this.#buf.buffer);
  readonly #f64 = new Float64Array(this.#buf.buffer);
  #used = 0;
  #flushed = 0;
  #crc = 0;

  constructor(sink: (chunk: Uint8Array) => void) {
    this.#sink = sink;
  }

  /** Bytes produced so far (flushed or buffered). */
  get written(): number {
    return this.#flushed + this.#used;
  }

  u32(v: number): void {
    if (this.#used === ENCODE_CHUNK) this.flush();
    this.#u32[this.#used >> 2] = v;
    this.#used += 4;
  }

  f64(v: number): void {
    if (this.#used === ENCODE_CHUNK) this.flush();
    this.#f64[this.#used >> 3] = v;
    this.#used += 8;
  }

  zeros(n: number): void {
    for (let i = 0; i < n; i++) {
      if (this.#used === ENCODE_CHUNK) this.flush();
      this.#buf[this.#used++] = 0;
    }
  }

  bytes(b: Uint8Array): void {
    for (let at = 0; at < b.length;) {
      if (this.#used === ENCODE_CHUNK) this.flush();
      const n = Math.min(b.length - at, ENCODE_CHUNK - this.#used);
      this.#buf.set(b.subarray(at, at + n), this.#used);
      this.#used += n;
      at += n;
    }
  }

  /** CRC-32 of every byte written so far (hands the buffered bytes to the sink). */
  crc(): number {
    this.flush();
    return this.#crc;
  }

  flush(): void {
    if (this.#used === 0) return;
    const chunk = this.#buf.subarray(0, this.#used);
    this.#crc = crc32(chunk, this.#crc);
    this.#sink(chunk);
    this.#flushed += this.#used;
    this.#used = 0;
  }
}

/**
 * Writes `data` to `path` so that after a crash the path holds either the old content or all of the
 * new: hidden temporary name in the same directory, fsync, rename, fsync of the directory. `data`
 * may also be a producer that hands its bytes, in order, to the sink it is given.
 */
export function writeFileDurably(
  path: string,
  data: Uint8Array | ((sink: (chunk: Uint8Array) => void) => void),
): void {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  const tmp = `${dir}/.${path.slice(slash + 1)}.${Deno.pid}.tmp`;
  const f = Deno.openSync(tmp, { write: true, create: true, truncate: true });
  try {
    const writeAll = (chunk: Uint8Array): void => {
      let done = 0;
      while (done < chunk.length) done += f.writeSync(chunk.subarray(done));
    };
    if (typeof data === "function") data(writeAll);
    else writeAll(data);
    f.syncSync();
  } catch (e) {
    f.close();
    try {
      Deno.removeSync(tmp);
    } catch { /* already gone */ }
    throw e;
  }
  f.close();
  Deno.renameSync(tmp, path);
  try {
    const d = Deno.openSync(dir, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}
