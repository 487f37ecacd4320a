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

const INITIAL_FLOWS = 1024;
const INITIAL_PACKETS = 16384;
const TWO_POW_32 = 4294967296;

/** Per-file index under construction; one per open output file, reused via `reset()`. */
export class IndexBuilder {
  // FlowTable id -> per-file flow number. Entries are validated against ffFlowId/ffSerial instead
  // of being cleared, so reset() is O(1) however large the flow table is.
  #idToFile = new Int32Array(INITIAL_FLOWS).fill(-1);

  #flows = 0;
  #ffFlowId = new Int32Array(INITIAL_FLOWS);
  #ffSerial = new Float64Array(INITIAL_FLOWS);
  #ffKeys = new Uint32Array(INITIAL_FLOWS * KEY_WORDS);
  #ffFirst = new Float64Array(INITIAL_FLOWS);
  #ffLast = new Float64Array(INITIAL_FLOWS);
  #ffBytes = new Float64Array(INITIAL_FLOWS);
  #ffCount = new Uint32Array(INITIAL_FLOWS);

  #packets = 0;
  #pktFlow = new Uint32Array(INITIAL_PACKETS);
  #pktOffset = new Float64Array(INITIAL_PACKETS);
  #pktTs = new Float64Array(INITIAL_PACKETS);

  #firstTs = 0;
  #lastTs = 0;
  #wireBytes = 0;
  #maxOffset = 0;

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
    let ff = this.#idToFile[flowId];
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
    if (p === this.#pktFlow.length) this.#growPackets();
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
    if (ff === this.#ffFlowId.length) this.#growFlows();
    this.#flows = ff + 1;
    this.#idToFile[flowId] = ff;
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
    const buf = new Uint8Array(lay.total);
    const dv = new DataView(buf.buffer);

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
    buf.set(iface, HEADER_FIXED);
    buf.set(name, HEADER_FIXED + iface.length);
    const hcrc = crc32(
      buf.subarray(HEADER_CRC_AT + 4, headerLen),
      crc32(buf.subarray(0, HEADER_CRC_AT)),
    );
    dv.setUint32(HEADER_CRC_AT, hcrc, true);

    // Flow order: by first time, stable on first appearance.
    const order = new Uint32Array(F);
    for (let i = 0; i < F; i++) order[i] = i;
    const first = this.#ffFirst;
    let sorted = true;
    for (let i = 1; i < F; i++) {
      if (first[i] < first[i - 1]) {
        sorted = false;
        break;
      }
    }
    if (!sorted) {
      const arr = Array.from(order);
      arr.sort((a, b) => first[a] - first[b] || a - b);
      order.set(arr);
    }
    const rank = new Uint32Array(F); // per-file flow number -> position in the sorted table

    const keys = new Uint32Array(buf.buffer, lay.keys, F * KEY_WORDS);
    const firstTs = new Float64Array(buf.buffer, lay.firstTs, F);
    const lastTs = new Float64Array(buf.buffer, lay.lastTs, F);
    const bytes = new Float64Array(buf.buffer, lay.bytes, F);
    const pktStart = new Uint32Array(buf.buffer, lay.pktStart, F);
    const pktCount = new Uint32Array(buf.buffer, lay.pktCount, F);
    let start = 0;
    for (let r = 0; r < F; r++) {
      const ff = order[r];
      rank[ff] = r;
      keys.set(this.#ffKeys.subarray(ff * KEY_WORDS, ff * KEY_WORDS + KEY_WORDS), r * KEY_WORDS);
      firstTs[r] = first[ff];
      lastTs[r] = this.#ffLast[ff];
      bytes[r] = this.#ffBytes[ff];
      pktStart[r] = start;
      pktCount[r] = this.#ffCount[ff];
      start += this.#ffCount[ff];
    }

    // Scatter packets into their flow's slice; file order within a flow is kept.
    const fill = pktStart.slice();
    const offs = wide
      ? new Float64Array(buf.buffer, lay.offsets, N)
      : new Uint32Array(buf.buffer, lay.offsets, N);
    const ts = this.#pktTs;
    const pf = this.#pktFlow;
    const po = this.#pktOffset;
    if (wideTimes) {
      const times = new Float64Array(buf.buffer, lay.times, N);
      for (let p = 0; p < N; p++) {
        const at = fill[rank[pf[p]]]++;
        offs[at] = po[p];
        times[at] = ts[p];
      }
    } else {
      const times = new Uint32Array(buf.buffer, lay.times, N);
      for (let p = 0; p < N; p++) {
        const at = fill[rank[pf[p]]]++;
        offs[at] = po[p];
        times[at] = Math.round((ts[p] - t0) * 1e6);
      }
    }
    if (blockCount > 0) {
      new Float64Array(buf.buffer, lay.blocks, blockCount * 4).set(
        (meta.blocks as Float64Array).subarray(0, blockCount * 4),
      );
    }
    dv.setUint32(lay.trailer, crc32(buf.subarray(0, lay.trailer)), true);
    dv.setUint32(lay.trailer + 4, INDEX_END_MAGIC, true);
    return buf;
  }

  /**
   * Writes the index to `indexPath` durably: a hidden temporary file in the same directory, fsync,
   * rename. Returns the number of bytes written.
   */
  write(indexPath: string, meta: IndexMeta): number {
    const buf = this.encode(meta);
    writeFileDurably(indexPath, buf);
    return buf.length;
  }

  #growIds(min: number): void {
    let n = this.#idToFile.length * 2;
    while (n < min) n *= 2;
    const a = new Int32Array(n).fill(-1);
    a.set(this.#idToFile);
    this.#idToFile = a;
  }

  #growFlows(): void {
    const n = this.#ffFlowId.length * 2;
    this.#ffFlowId = growI32(this.#ffFlowId, n);
    this.#ffSerial = growF64(this.#ffSerial, n);
    const k = new Uint32Array(n * KEY_WORDS);
    k.set(this.#ffKeys);
    this.#ffKeys = k;
    this.#ffFirst = growF64(this.#ffFirst, n);
    this.#ffLast = growF64(this.#ffLast, n);
    this.#ffBytes = growF64(this.#ffBytes, n);
    const c = new Uint32Array(n);
    c.set(this.#ffCount);
    this.#ffCount = c;
  }

  #growPackets(): void {
    const n = this.#pktFlow.length * 2;
    const f = new Uint32Array(n);
    f.set(this.#pktFlow);
    this.#pktFlow = f;
    this.#pktOffset = growF64(this.#pktOffset, n);
    this.#pktTs = growF64(this.#pktTs, n);
  }
}

function growI32(a: Int32Array, n: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(n);
  b.set(a);
  return b;
}

function growF64(a: Float64Array, n: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(n);
  b.set(a);
  return b;
}

/**
 * Writes `data` to `path` so that after a crash the path holds either the old content or all of the
 * new: hidden temporary name in the same directory, fsync, rename, fsync of the directory.
 */
export function writeFileDurably(path: string, data: Uint8Array): void {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  const tmp = `${dir}/.${path.slice(slash + 1)}.${Deno.pid}.tmp`;
  const f = Deno.openSync(tmp, { write: true, create: true, truncate: true });
  try {
    let done = 0;
    while (done < data.length) done += f.writeSync(data.subarray(done));
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
