/**
 * The planner's per-file step: from a file's index, the packets a query selects — flows first (key
 * predicates are exact per flow), then, only where time predicates leave a flow undecided, packet by packet.
 */
import type { FileIndex } from "../index/index_reader.ts";
import { KEY_WORDS } from "../packet/packet_info.ts";
import type { Query } from "./ast.ts";
import { type FlowRecordRef, flowTruth, packetMatches, Truth } from "./match.ts";

/** Selected packets of one file, in file order. */
export interface FileSelection {
  /** Record offsets in the uncompressed stream, ascending. */
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
        chosen.push(index.offsets[p]);
      }
    }
  }
  const offsets = Float64Array.from(chosen);
  offsets.sort();
  return { offsets };
}
