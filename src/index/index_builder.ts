/**
 * Collects the index of one pcap file while the capture worker writes it, then writes the `.idx` file
 * (format in index_format.ts). `record()` runs once per stored packet and only writes into
 * long-lived typed arrays; nothing is allocated per packet.
 *
 * Memory is what bounds a sensor with a million concurrent flows, so the builder keeps little per
 * flow and nothing per packet: per flow, its FlowTable id (4 bytes) and the id's per-file flow
 * number (4 bytes); per packet, an entry in a PacketLog, which lives on disk but for its newest
 * chunk. A flow's key is read from the flow table when the index is written, or copied when the
 * table removes the flow earlier (`forget`, wired to FlowTable.onRemove). The per-flow columns
 * (first and last time, bytes, packet count) and the per-packet sections are computed from the
 * log when the index is written, a bounded range at a time.
 */
import { crc32 } from "node:zlib";
import { KEY_WORDS, type PacketInfo } from "../packet/packet_info.ts";
import {
  type Compression,
  compressionCode,
  ExtraTagKind,
  ExtraTagMarker,
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
import { LOG_CHUNK, type LogChunk, PacketLog } from "./packet_log.ts";
import {
  endOfRemoval,
  type FlowEnd,
  type FlowTable,
  type RemoveReason,
} from "../flow/flow_table.ts";
import { communityIdPrefix } from "../flow/community_id.ts";
import { writeFully } from "../pcap/block_format.ts";
import { createTempFile, dirOf, syncDir } from "../store/pcap_file_writer.ts";
import { TEMP_SUFFIX, writeTempPrefix } from "../archive/naming.ts";

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
  /**
   * The packet whose write rotated the file (it goes to the next file, but the flow table has
   * counted it already): its flow's totals here leave it out. Absent when no packet did.
   */
  inFlight?: { flowId: number; wireLen: number };
}

/**
 * Where the builder reads a flow's canonical key: the capture worker's FlowTable, or a FlowKeyList.
 * The key of an id must stay the same from the id's first `record()` until `forget(id)`.
 */
export interface FlowKeySource {
  /** Copies the key of flow `id` into `out[at .. at + KEY_WORDS)`. */
  copyKey(id: number, out: Uint32Array, at?: number): void;
}

/**
 * A key source that also knows each flow's record (totals, cut point, end, direction): the
 * FlowTable and FlowKeyList. With a plain FlowKeySource the records say what was stored.
 */
export interface FlowRecordSource extends FlowKeySource {
  /** Packets the flow has seen so far, stored or not. */
  packetsOf(id: number): number;
  /** Their wire bytes. */
  bytesOf(id: number): number;
  /** Number (1-based) of the flow's first packet the cutoff refused; 0 when none. */
  cutPacketOf(id: number): number;
  /** Whether the flow's first packet went from end B to end A. */
  firstReversedOf(id: number): boolean;
  /** How the flow has ended so far (FlowEnd.Open while it goes on). */
  endOf(id: number): FlowEnd;
  /** Time of the flow's latest packet, stored or not (flows cut off have records without one). */
  lastTsOf?(id: number): number;
  /** Upper bound (exclusive) of the flow ids in use, for a pass over the cut flows. */
  readonly idLimit?: number;
}

/** Options of {@linkcode IndexBuilder}. */
export interface IndexBuilderOptions {
  /** Directory for the per-packet log's spill file (see PacketLog); none: it stays in memory. */
  spillDir?: string;
  /** Bytes of scratch for writing an index (default 4 MiB); tests make it small to force passes. */
  scratchBytes?: number;
  /** Seed of the Community IDs whose prefixes the index keeps (default 0). */
  communityIdSeed?: number;
}

/**
 * Flows the per-flow arrays are sized for at construction, and FlowTable ids the id map covers.
 * They are carved out of large zero-filled allocations, which the kernel backs with pages only
 * where they are written (measured: 5 x 128 MB allocated, RSS unchanged), so memory follows
 * what a file really holds without the copies and old-plus-new peak of doubling. Beyond these
 * counts the arrays double.
 */
const RESERVED_FLOWS = 1 << 22;
const RESERVED_IDS = 1 << 23;
/**
 * Values computed per pass over the packet log when the index is written: 4 MiB of scratch bounds
 * the memory of writing any index, at one more pass over the log per 512k flows or 1M packets.
 */
const SCRATCH_BYTES = 4 << 20;
const TWO_POW_32 = 4294967296;
/** Values forget() keeps of a removed flow's record: packets, bytes, cut packet, state word. */
const GONE_VALUES = 4;
/** Most distinct inner tags and labels kept per flow and file (a flow showing more is odd). */
const MAX_TAGS_PER_FLOW = 32;
/** What a per-file flow showed of inner VLAN tags and MPLS labels. */
interface FlowTags {
  /** Distinct entries (ExtraTagKind << 24 | id), in order of first appearance. */
  entries: number[];
  /** Packets noted with any. */
  tagged: number;
  /** Some tagged packet carried other entries than another one. */
  mixed: boolean;
  /** Some entry was not kept (more than MAX_TAGS_PER_FLOW). */
  incomplete: boolean;
  /** The marker's value (ExtraTagMarker bits), settled when the flow sections are written. */
  marker: number;
}

/** Size of the buffer encode() fills and hands to its sink, section by section (256 KiB). */
const ENCODE_CHUNK = 1 << 18;

/** A per-flow column computed from the packet log. */
const enum FlowColumn {
  First,
  Last,
  Bytes,
}

/** Where the flows' packets go in the packet sections, from IndexBuilder's #writeFlows. */
interface FlowLayout {
  /** By per-file flow number: the position of the flow's first packet in the packet sections. */
  start: Uint32Array;
  /** Per-file flow numbers in output order; null when it is the identity. */
  order: Uint32Array | null;
}

/** Per-file index under construction; one per open output file, reused via `reset()`. */
export class IndexBuilder {
  readonly #keys: FlowKeySource;
  /** The same source when it knows flow records, else null. */
  readonly #records: FlowRecordSource | null;
  readonly #log: PacketLog;

  // FlowTable id -> per-file flow number + 1 (0 = none). Set by a flow's first packet in the
  // file, cleared by forget() and reset().
  #idToFile = new Int32Array(RESERVED_IDS);
  // FlowTable id -> packets the flow had seen at the end of the previous file, for flows cut off
  // by then (0 otherwise): a cut flow that has seen more since was active in this file although
  // none of its packets is in it, and gets a record without packets. Written at each reset() for
  // the cut flows only (and cleared by forget()), so pages are backed only for their ids.
  #cutBase = new Float64Array(RESERVED_IDS);

  #flows = 0;
  // Per-file flow number -> FlowTable id, or -1 once forgotten: its key is then in #ffKeys and
  // its record in #ffGone (GONE_VALUES per flow: packets, bytes, cut packet, state word).
  #ffFlowId!: Int32Array;
  #ffKeys!: Uint32Array;
  #ffGone!: Float64Array;
  // Per-file flow number -> time of the latest packet of a flow with no stored packet in the
  // file (written for those only: their first and last times in the flow sections).
  #ffSeen!: Float64Array;
  /** Per-file flows without a stored packet (cut flows that went on), see #cutBase. */
  #unstoredFlows = 0;
  readonly #cidSeed: number;

  #firstTs = 0;
  #lastTs = 0;
  #wireBytes = 0;
  #maxOffset = 0;
  /** Packet times never went back: per-file flows are then in order of first time already. */
  #monotonic = true;
  #empty = true;
  /** Per-file flow number -> its inner VLAN ids and MPLS labels. */
  readonly #extraTags = new Map<number, FlowTags>();
  #extraTagTotal = 0;
  #scratch: ArrayBuffer | null = null;
  readonly #scratchLimit: number;

  constructor(keys: FlowKeySource, opts: IndexBuilderOptions = {}) {
    this.#keys = keys;
    this.#records = "packetsOf" in keys ? keys as FlowRecordSource : null;
    this.#log = new PacketLog({ spillDir: opts.spillDir });
    this.#scratchLimit = Math.max(8, opts.scratchBytes ?? SCRATCH_BYTES);
    this.#cidSeed = opts.communityIdSeed ?? 0;
    this.#allocFlows(RESERVED_FLOWS, 0);
  }

  /**
   * A builder for a capture worker: keys come from `table`, which tells it of every removal
   * through its onRemove hook (taken over here, so no caller can forget to wire it).
   */
  static forFlowTable(table: FlowTable, opts: IndexBuilderOptions = {}): IndexBuilder {
    const builder = new IndexBuilder(table, opts);
    table.onRemove = (id, reason) => builder.forget(id, reason);
    return builder;
  }

  /** Number of distinct flows recorded since the last reset. */
  get flowCount(): number {
    return this.#flows;
  }

  /** Number of packets recorded since the last reset. */
  get packetCount(): number {
    return this.#log.length;
  }

  /** Earliest packet time recorded (0 when empty). */
  get firstTs(): number {
    return this.#firstTs;
  }

  /** Latest packet time recorded (0 when empty). */
  get lastTs(): number {
    return this.#lastTs;
  }

  /** Chunks of per-packet entries the log has moved to its spill file (for tests and benchmarks). */
  get spilledChunks(): number {
    return this.#log.spilledChunks;
  }

  /**
   * Notes one stored packet of flow `flowId` (the FlowTable id; a later flow may reuse the id
   * once the table has removed this one and called `forget`).
   * HOT PATH: no allocation but a log chunk's spill.
   */
  record(flowId: number, tsSec: number, recordOffset: number, wireLen: number): void {
    if (flowId >= this.#idToFile.length) this.#growIds(flowId + 1);
    let ff = this.#idToFile[flowId] - 1;
    if (ff < 0) ff = this.#newFlow(flowId);
    const log = this.#log;
    if (log.used === LOG_CHUNK) log.flushChunk();
    const i = log.used++;
    const c = log.current;
    c.flow[i] = ff;
    c.offset[i] = recordOffset;
    c.ts[i] = tsSec;
    c.wire[i] = wireLen;
    if (this.#empty) {
      this.#empty = false;
      this.#firstTs = tsSec;
      this.#lastTs = tsSec;
    } else if (tsSec >= this.#lastTs) {
      this.#lastTs = tsSec;
    } else {
      // Replayed or merged traffic may step back in time.
      this.#monotonic = false;
      if (tsSec < this.#firstTs) this.#firstTs = tsSec;
    }
    this.#wireBytes += wireLen;
    if (recordOffset > this.#maxOffset) this.#maxOffset = recordOffset;
  }

  /**
   * Notes the inner VLAN tags and MPLS labels of the packet just recorded for `flowId` (call it
   * after record(), only for packets that have any: the common untagged packet costs nothing).
   * Allocates only when the flow shows a tag or label it had not shown in this file.
   */
  noteTags(flowId: number, info: PacketInfo): void {
    const ff = this.#idToFile[flowId] - 1;
    if (ff < 0) return;
    let tags = this.#extraTags.get(ff);
    if (tags === undefined) {
      tags = { entries: [], tagged: 0, mixed: false, incomplete: false, marker: 0 };
      this.#extraTags.set(ff, tags);
      this.#extraTagTotal++; // the marker
    }
    const known = tags.entries.length;
    for (let i = 0; i < info.innerVlanCount; i++) {
      this.#addTag(tags, (ExtraTagKind.Vlan << 24) | info.innerVlans[i]);
    }
    for (let i = 0; i < info.mplsCount; i++) {
      this.#addTag(tags, (ExtraTagKind.Mpls << 24) | info.mplsLabels[i]);
    }
    // A new entry after the first packet: earlier packets lacked it; else this one may lack some.
    if (tags.tagged > 0 && !tags.mixed) {
      tags.mixed = tags.entries.length !== known || !carriesAll(info, tags.entries);
    }
    tags.tagged++;
  }

  #addTag(tags: FlowTags, entry: number): void {
    const list = tags.entries;
    if (list.includes(entry)) return;
    if (list.length >= MAX_TAGS_PER_FLOW) {
      tags.incomplete = true;
      return;
    }
    list.push(entry);
    this.#extraTagTotal++;
  }

  /** Settles each tagged flow's marker once its packet count in the file (`counts[ff]`) is known. */
  #settleTagMarkers(counts: Uint32Array): void {
    for (const [ff, tags] of this.#extraTags) {
      const uniform = !tags.mixed && !tags.incomplete && tags.tagged === counts[ff];
      tags.marker = (uniform ? ExtraTagMarker.Uniform : 0) |
        (tags.incomplete ? ExtraTagMarker.Incomplete : 0);
    }
  }

  /**
   * The flow table is removing flow `flowId`: keeps its key if the flow is in this file, and
   * frees the id for the next flow that gets it. forFlowTable() wires it to FlowTable.onRemove.
   */
  forget(flowId: number, reason?: RemoveReason): void {
    const src = this.#records;
    if (flowId >= this.#idToFile.length) {
      // Never recorded nor counted at a reset: only a cut flow may need a record here.
      if (src === null || src.cutPacketOf(flowId) === 0) return;
      this.#growIds(flowId + 1);
    }
    let ff = this.#idToFile[flowId] - 1;
    if (ff < 0 && src !== null && this.#wentOnUnstored(flowId, src)) {
      ff = this.#newUnstored(flowId, src);
    }
    // Only cut flows have a base: writing 0 over the 0 of every other flow would back the pages
    // of the reserved array for every id (8 MB more resident for a million flows).
    if (this.#cutBase[flowId] !== 0) this.#cutBase[flowId] = 0;
    if (ff < 0) return;
    this.#keys.copyKey(flowId, this.#ffKeys, ff * KEY_WORDS);
    if (src !== null) this.#keepRecord(ff, flowId, src, reason);
    this.#ffFlowId[ff] = -1;
    this.#idToFile[flowId] = 0;
  }

  /** Keeps what the records section says of per-file flow `ff`, whose id is being removed. */
  #keepRecord(
    ff: number,
    flowId: number,
    src: FlowRecordSource,
    reason: RemoveReason | undefined,
  ): void {
    const end = src.endOf(flowId);
    const gone = this.#ffGone;
    const at = ff * GONE_VALUES;
    gone[at] = src.packetsOf(flowId);
    gone[at + 1] = src.bytesOf(flowId);
    gone[at + 2] = src.cutPacketOf(flowId);
    gone[at + 3] = stateWord(
      src.firstReversedOf(flowId),
      reason === undefined ? end : endOfRemoval(reason, end),
    );
  }

  /** Whether flow `id`, cut off, has seen packets since the previous file ended (none stored). */
  #wentOnUnstored(id: number, src: FlowRecordSource): boolean {
    return src.cutPacketOf(id) !== 0 && src.packetsOf(id) > this.#cutBase[id];
  }

  /** Starts a per-file flow without stored packets for cut flow `id`; returns its number. */
  #newUnstored(id: number, src: FlowRecordSource): number {
    const ff = this.#newFlow(id);
    this.#ffSeen[ff] = src.lastTsOf?.(id) ?? 0;
    this.#unstoredFlows++;
    return ff;
  }

  /**
   * Gives a record to every cut flow that went on in this file with none of its packets stored
   * (a pass over the flow table's ids when the index is written, never per packet).
   */
  #addUnstoredFlows(): void {
    const src = this.#records;
    const limit = src?.idLimit ?? 0;
    if (src === null) return;
    if (limit > this.#idToFile.length) this.#growIds(limit);
    for (let id = 0; id < limit; id++) {
      if (this.#idToFile[id] === 0 && this.#wentOnUnstored(id, src)) this.#newUnstored(id, src);
    }
  }

  /** Notes what each cut flow has seen by the end of this file (see #cutBase). */
  #noteCutBases(): void {
    const src = this.#records;
    const limit = src?.idLimit ?? 0;
    if (src === null) return;
    if (limit > this.#idToFile.length) this.#growIds(limit);
    for (let id = 0; id < limit; id++) {
      if (src.cutPacketOf(id) !== 0) this.#cutBase[id] = src.packetsOf(id);
    }
  }

  /** Starts per-file flow number `this.#flows` for a FlowTable id; returns it. */
  #newFlow(flowId: number): number {
    const ff = this.#flows;
    if (ff === this.#ffFlowId.length) this.#allocFlows(ff * 2, ff);
    this.#flows = ff + 1;
    this.#idToFile[flowId] = ff + 1;
    this.#ffFlowId[ff] = flowId;
    return ff;
  }

  /** Forgets everything recorded, keeping the buffers for the next file. */
  reset(): void {
    this.#noteCutBases();
    this.#unstoredFlows = 0;
    const ids = this.#ffFlowId;
    for (let ff = 0; ff < this.#flows; ff++) {
      if (ids[ff] >= 0) this.#idToFile[ids[ff]] = 0;
    }
    this.#flows = 0;
    this.#log.reset();
    this.#extraTags.clear();
    this.#extraTagTotal = 0;
    this.#firstTs = 0;
    this.#lastTs = 0;
    this.#wireBytes = 0;
    this.#maxOffset = 0;
    this.#monotonic = true;
    this.#empty = true;
  }

  /** Releases the packet log's spill file; the builder is not used afterwards. */
  close(): void {
    this.#log.close();
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
   * one 256 KiB buffer, so writing an index of a million flows needs no copy of it in memory.
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

  /** Produces the index bytes in order, handing them to `sink` in pieces valid during the call. */
  #encodeTo(meta: IndexMeta, sink: (chunk: Uint8Array) => void): void {
    this.#addUnstoredFlows();
    const wide = this.#maxOffset >= TWO_POW_32;
    const wideTimes = Math.round((this.#lastTs - this.#firstTs) * 1e6) >= TWO_POW_32;
    const header = this.#header(meta, wide, wideTimes);
    const lay = header.layout;
    const out = new ChunkWriter(sink);
    out.bytes(header.bytes);
    let order: Uint32Array | null = null;
    try {
      const flows = this.#writeFlows(out);
      order = flows.order;
      out.zeros(lay.offsets - out.written);
      this.#writePackets(out, flows, { times: false, wide });
      out.zeros(lay.times - out.written);
      this.#writePackets(out, flows, { times: true, wide: wideTimes });
    } finally {
      this.#restoreIdMap();
    }
    out.zeros(lay.blocks - out.written);
    const b = header.blocks;
    for (let i = 0; i < header.blockCount * 4; i++) out.f64(b[i]);
    this.#writeRecords(out, order, meta.inFlight);
    if (this.#extraTagTotal > 0) this.#writeExtraTags(out, order);
    if (out.written !== lay.trailer) {
      throw new Error(`Index encoding wrote ${out.written} bytes: expected ${lay.trailer}`);
    }
    out.u32(out.crc());
    out.u32(INDEX_END_MAGIC);
    out.flush();
  }

  /** The extra-tags section (index_format.ts), flows in output order. */
  #writeExtraTags(out: ChunkWriter, order: Uint32Array | null): void {
    const F = this.#flows;
    const ffAt = (r: number) => order === null ? r : order[r];
    out.u32(this.#extraTagTotal);
    out.u32(0);
    // Each tagged flow: its entries, then its marker.
    const countOf = (r: number) => {
      const tags = this.#extraTags.get(ffAt(r));
      return tags === undefined ? 0 : tags.entries.length + 1;
    };
    let at = 0;
    for (let r = 0; r < F; r++) {
      out.u32(at);
      at += countOf(r);
    }
    for (let r = 0; r < F; r++) out.u32(countOf(r));
    for (let r = 0; r < F; r++) {
      const tags = this.#extraTags.get(ffAt(r));
      if (tags === undefined) continue;
      for (const entry of tags.entries) out.u32(entry);
      out.u32((ExtraTagKind.Marker << 24) | tags.marker);
    }
    if (this.#extraTagTotal % 2 === 1) out.u32(0);
  }

  /** The index header for what was recorded, and the section layout it announces. */
  #header(meta: IndexMeta, wide: boolean, wideTimes: boolean): {
    bytes: Uint8Array;
    layout: ReturnType<typeof sectionLayout>;
    blocks: Float64Array;
    blockCount: number;
  } {
    const enc = new TextEncoder();
    const iface = enc.encode(meta.iface);
    const name = enc.encode(meta.pcapName);
    if (iface.length > 0xffff || name.length > 0xffff) {
      throw new Error(
        `Invalid index metadata: expected names under 64 KiB, found ${iface.length} and ${name.length} bytes`,
      );
    }
    const blocks = meta.blocks ?? new Float64Array(0);
    const blockCount = meta.blockCount ?? Math.floor(blocks.length / 4);
    if (blockCount * 4 > blocks.length) {
      throw new Error(
        `Invalid block table: expected ${blockCount * 4} numbers, found ${blocks.length}`,
      );
    }
    const F = this.#flows;
    const N = this.#log.length;
    const headerLen = headerLength(iface.length, name.length);
    const layout = sectionLayout(headerLen, {
      flows: F,
      packets: N,
      blocks: blockCount,
      wideOffsets: wide,
      wideTimes,
      extraTags: this.#extraTagTotal > 0 ? this.#extraTagTotal : undefined,
    });

    let dataSize = meta.dataSize ?? 0;
    let pcapSize = meta.pcapSize ?? 0;
    if (blockCount > 0) {
      const last = (blockCount - 1) * 4;
      if (meta.dataSize === undefined) dataSize = blocks[last + 2] + blocks[last + 3];
      if (meta.pcapSize === undefined) pcapSize = blocks[last] + blocks[last + 1];
    } else if (meta.pcapSize === undefined && meta.compress === "none") {
      pcapSize = dataSize;
    }

    let flags = meta.nanosecond ? IndexFlag.Nanosecond : 0;
    flags |= compressionCode(meta.compress) << IndexFlag.CompressShift;
    if (wide) flags |= IndexFlag.WideOffsets;
    if (meta.wholeStream) flags |= IndexFlag.WholeStream;
    if (wideTimes) flags |= IndexFlag.WideTimes;
    flags |= IndexFlag.TimeOrderKnown | (this.#monotonic ? 0 : IndexFlag.TimesGoBack);
    if (this.#extraTagTotal > 0) flags |= IndexFlag.ExtraTags;

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
    dv.setFloat64(72, layout.total, true);
    dv.setUint32(80, meta.worker < 0 ? UNKNOWN_WORKER : meta.worker, true);
    dv.setUint16(84, iface.length, true);
    dv.setUint16(86, name.length, true);
    dv.setUint16(88, this.#cidSeed, true);
    header.set(iface, HEADER_FIXED);
    header.set(name, HEADER_FIXED + iface.length);
    const hcrc = crc32(
      header.subarray(HEADER_CRC_AT + 4, headerLen),
      crc32(header.subarray(0, HEADER_CRC_AT)),
    );
    dv.setUint32(HEADER_CRC_AT, hcrc, true);
    return { bytes: header, layout, blocks, blockCount };
  }

  /**
   * Writes the flow sections (keys, first, last, bytes, start, count) in order of first time,
   * stable on first appearance; returns each per-file flow's start in the packet sections.
   * Flows are numbered in order of appearance, so with time-ordered packets (nearly always) the
   * order is the identity and each column is computed a scratch-sized range of flows at a time.
   * Otherwise the columns are computed whole and permuted.
   */
  #writeFlows(out: ChunkWriter): FlowLayout {
    const F = this.#flows;
    const start = this.#countsArray();
    const key = new Uint32Array(KEY_WORDS);
    // Whole columns when they fit in the scratch (most files) or when the flows must be
    // reordered: then one pass over the log gives the counts and all three columns.
    let columns: Float64Array[] | null = null;
    const inOrder = this.#monotonic && this.#unstoredFlows === 0;
    if (!inOrder || F * 24 <= this.#scratchLimit) {
      const buf = F * 24 <= this.#scratchLimit
        ? this.#scratchBuffer(F * 24)
        : new ArrayBuffer(F * 24);
      columns = [0, 1, 2].map((c) => new Float64Array(buf, c * F * 8, F));
    }
    this.#flowPass(0, F, columns ?? [], start);
    const order = inOrder || columns === null ? null : this.#orderByFirst(columns[0], start);
    for (let r = 0; r < F; r++) {
      this.#keyOf(order === null ? r : order[r], key);
      out.words(key);
    }
    for (const c of [FlowColumn.First, FlowColumn.Last, FlowColumn.Bytes]) {
      if (columns !== null) {
        const column = columns[c];
        if (order === null) out.bytes(viewBytes(column, F));
        else for (let r = 0; r < F; r++) out.f64(column[order[r]]);
        continue;
      }
      // Flows in order, too many for whole columns: a scratch-sized range per pass.
      const scratch = this.#scratchF64(F);
      for (let lo = 0; lo < F; lo += scratch.length) {
        const n = Math.min(scratch.length, F - lo);
        const only: (Float64Array | null)[] = [null, null, null];
        only[c] = scratch.subarray(0, n);
        this.#flowPass(lo, n, only, null);
        out.bytes(viewBytes(scratch, n));
      }
    }
    this.#settleTagMarkers(start);
    // Counts -> starts in output order, then each count as the distance to the next start.
    let at = 0;
    for (let r = 0; r < F; r++) {
      const ff = order === null ? r : order[r];
      out.u32(at);
      const count = start[ff];
      start[ff] = at;
      at += count;
    }
    for (let r = 0; r < F; r++) {
      const ff = order === null ? r : order[r];
      const next = r + 1 === F ? at : start[order === null ? r + 1 : order[r + 1]];
      out.u32(next - start[ff]);
    }
    return { start, order };
  }

  /**
   * Per-file flows in order of first time (`counts`: packets per flow). With time-ordered packets
   * only the flows without stored packets are out of place: they are sorted alone and merged in,
   * rather than sorting every flow (an index of 1M such flows: written in 0.6 s instead of 2.2 s).
   */
  #orderByFirst(first: Float64Array, counts: Uint32Array): Uint32Array {
    if (!this.#monotonic) return orderByFirst(first);
    const F = this.#flows;
    const unstored: number[] = [];
    for (let ff = 0; ff < F; ff++) if (counts[ff] === 0) unstored.push(ff);
    unstored.sort((a, b) => first[a] - first[b] || a - b);
    const order = new Uint32Array(F);
    let r = 0;
    let u = 0;
    for (let ff = 0; ff < F; ff++) {
      if (counts[ff] === 0) continue;
      for (; u < unstored.length; u++) {
        const x = unstored[u];
        if (first[x] > first[ff] || (first[x] === first[ff] && x > ff)) break;
        order[r++] = x;
      }
      order[r++] = ff;
    }
    for (; u < unstored.length; u++) order[r++] = unstored[u];
    return order;
  }

  /** Copies the canonical key of per-file flow `ff` into `key`. */
  #keyOf(ff: number, key: Uint32Array): void {
    const id = this.#ffFlowId[ff];
    if (id >= 0) this.#keys.copyKey(id, key, 0);
    else key.set(this.#ffKeys.subarray(ff * KEY_WORDS, (ff + 1) * KEY_WORDS));
  }

  /**
   * Writes the flow records section (format 2): totals, cut packet, state, Community ID prefix,
   * column by column in output order. Live flows are read from the key source, forgotten ones
   * from what forget() kept; the Community ID (a SHA-1 per IP flow) is computed here, once per
   * flow and file, never per packet.
   */
  #writeRecords(
    out: ChunkWriter,
    order: Uint32Array | null,
    inFlight: IndexMeta["inFlight"],
  ): void {
    const F = this.#flows;
    const src = this.#records;
    if (src === null) {
      this.#writeStoredRecords(out, order);
      return;
    }
    const ids = this.#ffFlowId;
    const gone = this.#ffGone;
    for (let col = 0; col < 3; col++) {
      for (let r = 0; r < F; r++) {
        const ff = order === null ? r : order[r];
        const id = ids[ff];
        const later = inFlight !== undefined && id === inFlight.flowId;
        if (id < 0) out.f64(gone[ff * GONE_VALUES + col]);
        else if (col === 0) out.f64(src.packetsOf(id) - (later ? 1 : 0));
        else if (col === 1) out.f64(src.bytesOf(id) - (later ? inFlight.wireLen : 0));
        else out.f64(src.cutPacketOf(id));
      }
    }
    const reversed = new Uint8Array(F);
    for (let r = 0; r < F; r++) {
      const ff = order === null ? r : order[r];
      const id = ids[ff];
      const state = id < 0
        ? gone[ff * GONE_VALUES + 3]
        : stateWord(src.firstReversedOf(id), src.endOf(id));
      reversed[r] = state & 1;
      out.u32(state);
    }
    this.#writeCids(out, order, reversed);
  }

  /** Records of a source that knows only keys: the stored counts, no cut, end unknown. */
  #writeStoredRecords(out: ChunkWriter, order: Uint32Array | null): void {
    const F = this.#flows;
    const counts = new Uint32Array(F);
    const bytes = new Float64Array(F);
    this.#flowPass(0, F, [null, null, bytes], counts);
    for (let r = 0; r < F; r++) out.f64(counts[order === null ? r : order[r]]);
    for (let r = 0; r < F; r++) out.f64(bytes[order === null ? r : order[r]]);
    for (let r = 0; r < F; r++) out.f64(0);
    for (let r = 0; r < F; r++) out.u32(0);
    this.#writeCids(out, order, new Uint8Array(F));
  }

  /** The cid column: each flow's Community ID digest prefix (reversed[r]: first packet B→A). */
  #writeCids(out: ChunkWriter, order: Uint32Array | null, reversed: Uint8Array): void {
    const key = new Uint32Array(KEY_WORDS);
    for (let r = 0; r < this.#flows; r++) {
      this.#keyOf(order === null ? r : order[r], key);
      out.u32(communityIdPrefix(key, 0, reversed[r] === 1, this.#cidSeed));
    }
  }

  /**
   * An array for the packets per per-file flow (later their starts). It lives in the id map's
   * memory, which is resident already for a table of that many flows, rather than in a new
   * array: 4 MB less at the peak for a million flows. #restoreIdMap() rebuilds the map.
   */
  #countsArray(): Uint32Array {
    const F = this.#flows;
    return F <= this.#idToFile.length
      ? new Uint32Array(this.#idToFile.buffer, 0, F)
      : new Uint32Array(F);
  }

  /**
   * One pass over the log for per-file flows lo .. lo + n - 1: fills those of `columns`
   * ([first, last, bytes], each null or absent when not wanted) and `counts` that are given.
   */
  #flowPass(
    lo: number,
    n: number,
    columns: (Float64Array | null)[],
    counts: Uint32Array | null,
  ): void {
    const first = columns[FlowColumn.First] ?? null;
    const last = columns[FlowColumn.Last] ?? null;
    const bytes = columns[FlowColumn.Bytes] ?? null;
    first?.fill(Infinity, 0, n);
    last?.fill(-Infinity, 0, n);
    bytes?.fill(0, 0, n);
    counts?.fill(0, 0, n);
    this.#log.forEachChunk((c: LogChunk, entries: number) => {
      const { flow, ts, wire } = c;
      for (let i = 0; i < entries; i++) {
        const k = flow[i] - lo;
        if (k < 0 || k >= n) continue;
        if (counts !== null) counts[k]++;
        if (first !== null && ts[i] < first[k]) first[k] = ts[i];
        if (last !== null && ts[i] > last[k]) last[k] = ts[i];
        if (bytes !== null) bytes[k] += wire[i];
      }
    });
    if (this.#unstoredFlows === 0) return;
    // Flows without a stored packet: both times are the time of their latest packet.
    for (let k = 0; k < n; k++) {
      if (first !== null && first[k] === Infinity) first[k] = this.#ffSeen[lo + k];
      if (last !== null && last[k] === -Infinity) last[k] = this.#ffSeen[lo + k];
    }
  }

  /**
   * Writes one packet section, offsets or times, each flow's packets together in file order:
   * see FlowLayout. The section is built a scratch-sized range of positions per pass over the log;
   * `start` serves as the cursors and is restored after each pass.
   */
  #writePackets(
    out: ChunkWriter,
    layout: FlowLayout,
    what: { times: boolean; wide: boolean },
  ): void {
    const { start, order } = layout;
    const N = this.#log.length;
    const F = this.#flows;
    const t0 = this.#firstTs;
    const scratch = what.wide ? this.#scratchF64(N) : this.#scratchU32(N);
    for (let lo = 0; lo < N; lo += scratch.length) {
      const hi = Math.min(N, lo + scratch.length);
      this.#log.forEachChunk((c: LogChunk, n: number) => {
        const flow = c.flow;
        const value = what.times ? c.ts : c.offset;
        for (let i = 0; i < n; i++) {
          const at = start[flow[i]]++;
          if (at < lo || at >= hi) continue;
          scratch[at - lo] = what.times && !what.wide
            ? Math.round((value[i] - t0) * 1e6)
            : value[i];
        }
      });
      // After a pass each flow's cursor is at the start of the flow after it (in output order):
      // shift them back, last first.
      for (let r = F - 1; r > 0; r--) {
        start[order === null ? r : order[r]] = start[order === null ? r - 1 : order[r - 1]];
      }
      if (F > 0) start[order === null ? 0 : order[0]] = 0;
      out.bytes(viewBytes(scratch, hi - lo));
    }
  }

  /** The scratch buffer as f64s, no more than `need` of them (at least one). */
  #scratchF64(need: number): Float64Array {
    return new Float64Array(this.#scratchBuffer(need * 8));
  }

  #scratchU32(need: number): Uint32Array {
    return new Uint32Array(this.#scratchBuffer(need * 4));
  }

  /** A buffer of at least min(bytes, scratch limit) (rounded up to 8), kept for the next index. */
  #scratchBuffer(bytes: number): ArrayBuffer {
    const size = Math.max(8, Math.min(this.#scratchLimit, Math.ceil(bytes / 8) * 8));
    if (this.#scratch === null || this.#scratch.byteLength < size) {
      this.#scratch = new ArrayBuffer(size);
    }
    return this.#scratch;
  }
  /** Rebuilds the id map after #packetCounts() used its first entries: this file's live flows. */
  #restoreIdMap(): void {
    const F = this.#flows;
    const map = this.#idToFile;
    const ids = this.#ffFlowId;
    map.fill(0, 0, Math.min(F, map.length));
    for (let ff = 0; ff < F; ff++) {
      if (ids[ff] >= 0) map[ids[ff]] = ff + 1;
    }
  }

  #growIds(min: number): void {
    let n = this.#idToFile.length * 2;
    while (n < min) n *= 2;
    const a = new Int32Array(n);
    a.set(this.#idToFile);
    this.#idToFile = a;
    const base = new Float64Array(n);
    base.set(this.#cutBase);
    this.#cutBase = base;
  }

  /** (Re)allocates the per-flow arrays for `capacity` flows, keeping the first `keep`. */
  #allocFlows(capacity: number, keep: number): void {
    const ids = new Int32Array(capacity);
    const keys = new Uint32Array(capacity * KEY_WORDS);
    const gone = new Float64Array(capacity * GONE_VALUES);
    const seen = new Float64Array(capacity);
    if (keep > 0) {
      ids.set(this.#ffFlowId.subarray(0, keep));
      keys.set(this.#ffKeys.subarray(0, keep * KEY_WORDS));
      gone.set(this.#ffGone.subarray(0, keep * GONE_VALUES));
      seen.set(this.#ffSeen.subarray(0, keep));
    }
    this.#ffFlowId = ids;
    this.#ffKeys = keys;
    this.#ffGone = gone;
    this.#ffSeen = seen;
  }
}

/** The records section's state word: bit 0 first packet B→A, bits 1-3 the FlowEnd. */
function stateWord(firstReversed: boolean, end: FlowEnd): number {
  return (firstReversed ? 1 : 0) | (end << 1);
}

/** Per-file flow numbers sorted by first time, stable (ties keep the order of appearance). */
function orderByFirst(first: Float64Array): Uint32Array {
  const order = Uint32Array.from({ length: first.length }, (_, i) => i);
  return order.sort((a, b) => first[a] - first[b] || a - b);
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

  /** Every element of `w` as a u32. */
  words(w: Uint32Array): void {
    for (let i = 0; i < w.length; i++) this.u32(w[i]);
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
  const dir = dirOf(path);
  const { path: tmp, file: f } = createTempFile(dir, writeTempPrefix(path), TEMP_SUFFIX);
  try {
    const writeAll = (chunk: Uint8Array): void => writeFully(f, chunk);
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
    syncDir(dir);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}

/** True when the packet decoded into `info` carries every entry of `entries`. */
function carriesAll(info: PacketInfo, entries: number[]): boolean {
  for (const entry of entries) {
    const value = entry & 0xffffff;
    const kind = entry >>> 24;
    let found = false;
    if (kind === ExtraTagKind.Vlan) {
      for (let i = 0; i < info.innerVlanCount && !found; i++) found = info.innerVlans[i] === value;
    } else {
      for (let i = 0; i < info.mplsCount && !found; i++) found = info.mplsLabels[i] === value;
    }
    if (!found) return false;
  }
  return true;
}
