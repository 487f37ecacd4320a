/**
 * `GET /flows` and `cutcap flows`: the flow records of matching files, for analysts who want the
 * connection list before the packets. One record per flow per file; counts are of stored packets.
 */
import type { Catalog } from "../index/catalog.ts";
import { sharedIndexCache } from "./index_cache.ts";
import { indexPathFor } from "../index/index_format.ts";
import type { FileIndex } from "../index/index_reader.ts";
import { describeKey, type KeyDescription } from "../packet/describe.ts";
import { KEY_WORDS } from "../packet/packet_info.ts";
import type { Query } from "./ast.ts";
import { flowTruth, packetMatches, timeBounds, Truth } from "./match.ts";
import { indexTime } from "./select.ts";

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

/** Yields the flows that have at least one packet matching `q`, file by file in time order. */
export function* matchingFlows(catalog: Catalog, q: Query, limit: number): Generator<FlowRecord> {
  const bounds = timeBounds(q);
  let count = 0;
  for (const entry of catalog.files({ from: bounds.from, to: bounds.to })) {
    const index = sharedIndexCache.get(indexPathFor(`${catalog.outDir}/${entry.path}`));
    for (const record of fileFlows(index, entry.path, q)) {
      yield record;
      if (++count >= limit) return;
    }
  }
}

/**
 * The flow records of one file's index: those with a packet matching `q`, or every flow whole
 * when `q` is undefined (what the ClickHouse exporter sends).
 */
export function* fileFlows(
  index: FileIndex,
  path: string,
  q: Query | undefined,
): Generator<FlowRecord> {
  for (let flow = 0; flow < index.header.flowCount; flow++) {
    const keyAt = flow * KEY_WORDS;
    const truth = q === undefined
      ? Truth.True
      : flowTruth(q, index.keys, keyAt, index.firstTs[flow], index.lastTs[flow]);
    if (truth === Truth.False) continue;
    const record = flowRecord(index.keys.subarray(keyAt, keyAt + KEY_WORDS), path);
    const start = index.pktStart[flow];
    for (let p = start; p < start + index.pktCount[flow]; p++) {
      const ts = indexTime(index.times, p);
      if (truth !== Truth.True && !packetMatches(q!, index.keys, keyAt, ts)) continue;
      record.first = Math.min(record.first, ts);
      record.last = Math.max(record.last, ts);
      record.packets++;
    }
    if (record.packets === 0) continue;
    record.bytes = truth === Truth.True
      ? index.bytes[flow]
      : Math.round(index.bytes[flow] * record.packets / index.pktCount[flow]);
    yield record;
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
