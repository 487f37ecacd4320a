/**
 * `GET /flows` and `cutcap flows`: the flow records of matching files, for analysts who want the
 * connection list before the packets. One record per flow per file; counts are of stored packets.
 */
import type { Catalog } from "../index/catalog.ts";
import { sharedIndexCache } from "./index_cache.ts";
import { indexPathFor } from "../index/index_format.ts";
import { describeKey, type KeyDescription } from "../packet/describe.ts";
import { KEY_WORDS } from "../packet/packet_info.ts";
import type { Query } from "./ast.ts";
import { flowTruth, packetMatches, timeBounds, Truth } from "./match.ts";
import { indexTime } from "./select.ts";
import { type ExtraInput, wantedInputs } from "./open_files.ts";

/** One flow as `/flows` reports it. */
export interface FlowRecord extends KeyDescription {
  /** First and last stored packet (Unix seconds). */
  first: number;
  last: number;
  /** Stored packets and their wire bytes in this file that match the query. */
  packets: number;
  bytes: number;
  /** Archive-relative path of the file holding them. */
  file: string;
}

/**
 * Yields the flows that have at least one packet matching `q`, file by file in time order;
 * `extra` files (open files, see open_files.ts) count unless the catalog lists them by now.
 */
export function* matchingFlows(
  catalog: Catalog,
  q: Query,
  limit: number,
  extra: readonly ExtraInput[] = [],
): Generator<FlowRecord> {
  const bounds = timeBounds(q);
  let count = 0;
  const inputs = [
    ...catalog.files({ from: bounds.from, to: bounds.to }),
    ...wantedInputs(extra, catalog, bounds),
  ].sort((a, b) => a.firstTs - b.firstTs);
  for (const entry of inputs) {
    const index = "index" in entry
      ? entry.index
      : sharedIndexCache.get(indexPathFor(`${catalog.outDir}/${entry.path}`));
    for (let flow = 0; flow < index.header.flowCount; flow++) {
      const keyAt = flow * KEY_WORDS;
      const truth = flowTruth(q, index.keys, keyAt, index.firstTs[flow], index.lastTs[flow]);
      if (truth === Truth.False) continue;
      const record = flowRecord(index.keys.subarray(keyAt, keyAt + KEY_WORDS), entry.path);
      const start = index.pktStart[flow];
      for (let p = start; p < start + index.pktCount[flow]; p++) {
        const ts = indexTime(index.times, p);
        if (truth !== Truth.True && !packetMatches(q, index.keys, keyAt, ts)) continue;
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

function flowRecord(key: Uint32Array, file: string): FlowRecord {
  return { ...describeKey(key), first: Infinity, last: -Infinity, packets: 0, bytes: 0, file };
}

/** Formats flow records as the aligned table `cutcap flows` prints. */
export function formatFlowTable(records: readonly FlowRecord[]): string {
  const rows = records.map((r) => [
    new Date(r.first * 1000).toISOString(),
    String(r.proto),
    r.srcPort ? `${bracket(r.src)}:${r.srcPort}` : r.src,
    r.dstPort ? `${bracket(r.dst)}:${r.dstPort}` : r.dst,
    r.vlan ? String(r.vlan) : "",
    String(r.packets),
    String(r.bytes),
    `${(r.last - r.first).toFixed(3)}s`,
  ]);
  const header = ["first", "proto", "src", "dst", "vlan", "packets", "bytes", "duration"];
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
