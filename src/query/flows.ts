/**
 * `GET /flows` and `cutcap flows`: the flow records of matching files, for analysts who want the
 * connection list before the packets. One record per flow per file: stored packets and bytes,
 * and what the cutoff hid (totals seen by the end of the file, cut point, how the flow ended).
 */
import type { Catalog } from "../index/catalog.ts";
import { sharedIndexCache } from "./index_cache.ts";
import { indexPathFor } from "../index/index_format.ts";
import { describeKey, etherTypeName, type KeyDescription } from "../packet/describe.ts";
import { communityId } from "../flow/community_id.ts";
import { FLOW_END_NAMES } from "../flow/flow_table.ts";
import type { FileIndex } from "../index/index_reader.ts";
import { KEY_WORDS } from "../packet/packet_info.ts";
import type { Query } from "./ast.ts";
import { type FlowRecordRef, flowTruth, packetMatches, timeBounds, Truth } from "./match.ts";
import { indexTime } from "./select.ts";

/**
 * One flow as `/flows` reports it. `src` is the sender of the flow's first packet (for every kind
 * of flow; in indexes of format 1, which do not say, the end with the smaller address).
 */
export interface FlowRecord extends KeyDescription {
  /** Community ID v1 with the server's (or the request's) seed; "" for non-IP flows. */
  communityId: string;
  /** L2 flows: the EtherType's name (arp, lldp, stp, ...) or 0x hex; "" for IP flows. */
  etherTypeName: string;
  /** First and last stored packet (Unix seconds). */
  first: number;
  last: number;
  /** Stored packets and their wire bytes in this file that match the query. */
  packets: number;
  bytes: number;
  /** Packets and bytes the flow had seen (stored or not) by the end of this file. */
  totalPackets: number;
  totalBytes: number;
  /** Whether the cutoff refused a packet of the flow, and the first one's number (1-based; 0). */
  cut: boolean;
  cutPacket: number;
  /** How the flow ended by then: open, fin, rst, idle, evicted, shutdown, or unknown. */
  end: string;
  /** Archive-relative path of the file holding them. */
  file: string;
}

/** Options of matchingFlows. */
export interface FlowsOptions {
  /** Seed of the Community IDs shown (default 0). */
  communityIdSeed?: number;
}

/** Yields the flows that have at least one packet matching `q`, file by file in time order. */
export function* matchingFlows(
  catalog: Catalog,
  q: Query,
  limit: number,
  opts: FlowsOptions = {},
): Generator<FlowRecord> {
  const bounds = timeBounds(q);
  let count = 0;
  for (const entry of catalog.files({ from: bounds.from, to: bounds.to })) {
    const index = sharedIndexCache.get(indexPathFor(`${catalog.outDir}/${entry.path}`));
    const rec: FlowRecordRef = { index, flow: 0 };
    for (let flow = 0; flow < index.header.flowCount; flow++) {
      const keyAt = flow * KEY_WORDS;
      rec.flow = flow;
      const truth = flowTruth(q, index.keys, keyAt, index.firstTs[flow], index.lastTs[flow], rec);
      if (truth === Truth.False) continue;
      const record = flowRecord(index, flow, entry.path, opts.communityIdSeed ?? 0);
      const start = index.pktStart[flow];
      for (let p = start; p < start + index.pktCount[flow]; p++) {
        const ts = indexTime(index.times, p);
        if (truth !== Truth.True && !packetMatches(q, index.keys, keyAt, ts, rec)) continue;
        record.first = Math.min(record.first, ts);
        record.last = Math.max(record.last, ts);
        record.packets++;
      }
      if (record.packets === 0) continue;
      record.bytes = truth === Truth.True ? index.bytes[flow] : Math.round(
        index.bytes[flow] * record.packets / index.pktCount[flow],
      );
      yield record;
      if (++count >= limit) return;
    }
  }
}

/** Flow `flow` of `index` as a record, its stored counts still to be added by the caller. */
export function flowRecord(index: FileIndex, flow: number, file: string, seed: number): FlowRecord {
  const key = index.keys.subarray(flow * KEY_WORDS, (flow + 1) * KEY_WORDS);
  const reversed = (index.flowState[flow] & 1) === 1;
  const d = describeKey(key);
  if (reversed) {
    [d.src, d.dst, d.srcPort, d.dstPort] = [d.dst, d.src, d.dstPort, d.srcPort];
  }
  return {
    ...d,
    communityId: communityId(key, 0, reversed, seed),
    etherTypeName: d.kind === "l2" ? etherTypeName(d.etherType) : "",
    first: Infinity,
    last: -Infinity,
    packets: 0,
    bytes: 0,
    totalPackets: index.totalPackets[flow],
    totalBytes: index.totalBytes[flow],
    cut: index.cutPacket[flow] !== 0,
    cutPacket: index.cutPacket[flow],
    end: FLOW_END_NAMES[(index.flowState[flow] >>> 1) & 7] ?? "unknown",
    file,
  };
}

/** Formats flow records as the aligned table `cutcap flows` prints. */
export function formatFlowTable(records: readonly FlowRecord[]): string {
  const rows = records.map((r) => {
    const l2 = r.kind === "l2";
    return [
      new Date(r.first * 1000).toISOString(),
      l2 ? r.etherTypeName : String(r.proto),
      !l2 && r.srcPort ? `${bracket(r.src)}:${r.srcPort}` : r.src,
      !l2 && r.dstPort ? `${bracket(r.dst)}:${r.dstPort}` : r.dst,
      r.vlan ? String(r.vlan) : "",
      String(r.packets),
      String(r.bytes),
      `${(r.last - r.first).toFixed(3)}s`,
      String(r.totalPackets),
      String(r.totalBytes),
      r.cut ? String(r.cutPacket) : "",
      r.end,
      r.communityId,
    ];
  });
  const header = [
    "first",
    "proto",
    "src",
    "dst",
    "vlan",
    "packets",
    "bytes",
    "duration",
    "seen_packets",
    "seen_bytes",
    "cut_at",
    "end",
    "community_id",
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows].map((r) =>
    r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd()
  )
    .join("\n");
}

function bracket(address: string): string {
  return address.includes(":") && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(address)
    ? `[${address}]`
    : address;
}
