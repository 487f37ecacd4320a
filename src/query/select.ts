/**
 * The planner's per-file step: from a file's index, the packets a query selects — flows first (key
 * predicates are exact per flow), then, only where time predicates leave a flow undecided, packet by packet.
 * `vlan`/`mpls` over a flow whose packets carry different inner tags or labels leave some packets
 * undecided even then: those are selected with their flow number, for the reader to decide from
 * the stored frame (execute.ts).
 */
import type { FileIndex } from "../index/index_reader.ts";
import { KEY_WORDS, PacketInfo } from "../packet/packet_info.ts";
import { decodePacket } from "../packet/mod.ts";
import type { Query } from "./ast.ts";
import { type FlowRecordRef, flowTruth, packetMatches, Truth, usesExtraTags } from "./match.ts";

/** Selected packets of one file, in time order. */
export interface FileSelection {
  /**
   * Record offsets in the uncompressed stream: ascending (file order) when the file's times never
   * go back, else sorted by packet time (ties in file order).
   */
  offsets: Float64Array;
  /**
   * Present when some selected packets still depend on their frame's inner VLAN tags or MPLS
   * labels: per offset, the packet's number in the index and its flow's, or -1 for both when
   * the packet is certain.
   */
  check?: { packet: Int32Array; flow: Int32Array };
}

/**
 * A packet's time from the index, snapped to the microsecond. The index keeps times as microsecond
 * offsets from the file's first packet, and `t0 + us * 1e-6` is often one ulp off the double that an
 * RFC 3339 bound parses to (integer microseconds / 1e6), which flips `after`/`before` for a packet
 * exactly at the bound. Rounding restores that double (a double near 2e9 s cannot hold finer times).
 */
export function indexTime(times: Float64Array, p: number): number {
  return Math.round(times[p] * 1e6) / 1e6;
}

/** Selects the packets of `index` that match `q`. */
export function selectPackets(index: FileIndex, q: Query): FileSelection {
  const flowCount = index.header.flowCount;
  const chosen: number[] = [];
  const rec: FlowRecordRef = { index, flow: 0 };
  const tagged = index.tags.length > 0 && usesExtraTags(q);
  /** Per packet of the index: its flow when the frame must decide it, else -1 (made when needed). */
  let undecided: Int32Array | null = null;
  for (let flow = 0; flow < flowCount; flow++) {
    const keyAt = flow * KEY_WORDS;
    rec.flow = flow;
    const truth = flowTruth(q, index.keys, keyAt, index.firstTs[flow], index.lastTs[flow], rec);
    if (truth === Truth.False) continue;
    const start = index.pktStart[flow];
    const end = start + index.pktCount[flow];
    for (let p = start; p < end; p++) {
      if (truth === Truth.True) {
        chosen.push(p);
      } else if (!tagged) {
        if (packetMatches(q, index.keys, keyAt, indexTime(index.times, p), rec)) chosen.push(p);
      } else {
        const t = indexTime(index.times, p);
        const packetTruth = flowTruth(q, index.keys, keyAt, t, t, rec);
        if (packetTruth === Truth.False) continue;
        chosen.push(p);
        if (packetTruth === Truth.Unknown) {
          undecided ??= new Int32Array(index.offsets.length).fill(-1);
          undecided[p] = flow;
        }
      }
    }
  }
  if (undecided !== null) return withChecks(index, chosen, undecided);
  if (!timesGoBack(index)) {
    const offsets = new Float64Array(chosen.length);
    for (let i = 0; i < chosen.length; i++) offsets[i] = index.offsets[chosen[i]];
    return { offsets: offsets.sort() };
  }
  // Rare: a file whose times go back is read in time order, ties in file order.
  const { times, offsets } = index;
  chosen.sort((a, b) => times[a] - times[b] || offsets[a] - offsets[b]);
  return { offsets: Float64Array.from(chosen, (p) => offsets[p]) };
}

/** The selection of `chosen` packets in reading order, some still `undecided` (their flow, or -1). */
function withChecks(index: FileIndex, chosen: number[], undecided: Int32Array): FileSelection {
  const { times, offsets } = index;
  if (timesGoBack(index)) chosen.sort((a, b) => times[a] - times[b] || offsets[a] - offsets[b]);
  else chosen.sort((a, b) => offsets[a] - offsets[b]);
  const n = chosen.length;
  const selection = {
    offsets: new Float64Array(n),
    check: { packet: new Int32Array(n), flow: new Int32Array(n) },
  };
  for (let i = 0; i < n; i++) {
    const p = chosen[i];
    selection.offsets[i] = offsets[p];
    const flow = undecided[p];
    selection.check.flow[i] = flow;
    selection.check.packet[i] = flow < 0 ? -1 : p;
  }
  return selection;
}

/**
 * For a selection with checks: whether its `i`-th packet, whose record `bytes[at..]` (16-byte
 * header, then the frame) was just read, matches — decoding the frame's inner VLAN ids and MPLS
 * labels into one reused PacketInfo only for undecided packets (no allocation per packet).
 */
export function frameDecider(
  index: FileIndex,
  q: Query,
  check: { packet: Int32Array; flow: Int32Array },
): (i: number, bytes: Uint8Array, at: number, caplen: number) => boolean {
  const info = new PacketInfo();
  const rec: FlowRecordRef = { index, flow: 0 };
  const linkType = index.header.linkType;
  return (i, bytes, at, caplen) => {
    const flow = check.flow[i];
    if (flow < 0) return true;
    decodePacket(linkType, bytes, at + 16, caplen, info);
    rec.flow = flow;
    const ts = indexTime(index.times, check.packet[i]);
    return packetMatches(q, index.keys, flow * KEY_WORDS, ts, rec, info);
  };
}

const unorderedOld = new WeakMap<FileIndex, boolean>();

/**
 * True when some packet of the file is earlier than one before it. Written in the index since the
 * flag exists; an older index is checked once (its packets in file order) and remembered.
 */
export function timesGoBack(index: FileIndex): boolean {
  const order = index.header.timeOrder;
  if (order !== "unknown") return order === "unordered";
  let known = unorderedOld.get(index);
  if (known === undefined) {
    const n = index.offsets.length;
    const byOffset = new Uint32Array(n);
    for (let p = 0; p < n; p++) byOffset[p] = p;
    byOffset.sort((a, b) => index.offsets[a] - index.offsets[b]);
    known = false;
    for (let i = 1; i < n && !known; i++) {
      known = index.times[byOffset[i]] < index.times[byOffset[i - 1]];
    }
    unorderedOld.set(index, known);
  }
  return known;
}
