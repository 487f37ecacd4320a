/**
 * The planner's per-file step: from a file's index, the packets a query selects — flows first (key
 * predicates are exact per flow), then, only where time predicates leave a flow undecided, packet by packet.
 */
import type { FileIndex } from "../index/index_reader.ts";
import { KEY_WORDS } from "../packet/packet_info.ts";
import type { Query } from "./ast.ts";
import { type FlowRecordRef, flowTruth, packetMatches, Truth } from "./match.ts";

/** Selected packets of one file, in time order. */
export interface FileSelection {
  /**
   * Record offsets in the uncompressed stream: ascending (file order) when the file's times never
   * go back, else sorted by packet time (ties in file order).
   */
  offsets: Float64Array;
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
  for (let flow = 0; flow < flowCount; flow++) {
    const keyAt = flow * KEY_WORDS;
    rec.flow = flow;
    const truth = flowTruth(q, index.keys, keyAt, index.firstTs[flow], index.lastTs[flow], rec);
    if (truth === Truth.False) continue;
    const start = index.pktStart[flow];
    const end = start + index.pktCount[flow];
    for (let p = start; p < end; p++) {
      if (
        truth === Truth.True || packetMatches(q, index.keys, keyAt, indexTime(index.times, p), rec)
      ) {
        chosen.push(p);
      }
    }
  }
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
