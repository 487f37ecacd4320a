/**
 * `GET /flows` and `cutcap flows`: the flow records of matching files, for analysts who want the
 * connection list before the packets. One record per flow per file; counts are of stored packets.
 */
import type { Catalog } from "../index/catalog.ts";
import { sharedIndexCache } from "./index_cache.ts";
import { errorText, nextTurn } from "./execute.ts";
import type { FileIndex } from "../index/index_reader.ts";
import { indexPathFor } from "../index/index_format.ts";
import { describeKey, type KeyDescription } from "../packet/describe.ts";
import { KEY_WORDS } from "../packet/packet_info.ts";
import type { Query } from "./ast.ts";
import { flowTagView, flowTruth, packetMatches, timeBounds, Truth } from "./match.ts";
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

/** Flows examined between two looks at the clock. */
const FLOWS_PER_CHECK = 2048;
/** Longest stretch of synchronous scanning before the event loop gets a turn, ms. */
const SLICE_MS = 10;

/** What a flow scan met besides records. */
export interface FlowScanReport {
  /** Records produced. */
  records: number;
  /** The limit cut the answer short. */
  limited: boolean;
  /** Files skipped (index vanished or unreadable), with the reason. */
  skipped: { file: string; reason: string }[];
}

/**
 * Yields the flows that have at least one packet matching `q`, file by file in time order, at most
 * `limit`. Indexes are read asynchronously and the scan gives the event loop a turn between files
 * and at least every `SLICE_MS` of work, so a scan over millions of flows never stalls the server. A
 * file whose index is gone (retention) or unreadable is skipped and listed in `report`.
 */
export async function* matchingFlows(
  catalog: Catalog,
  q: Query,
  limit: number,
  report: FlowScanReport = { records: 0, limited: false, skipped: [] },
): AsyncGenerator<FlowRecord> {
  const bounds = timeBounds(q);
  let sliceStart = performance.now();
  for (const entry of catalog.files({ from: bounds.from, to: bounds.to })) {
    let index: FileIndex;
    try {
      index = await sharedIndexCache.load(indexPathFor(`${catalog.outDir}/${entry.path}`));
    } catch (error) {
      report.skipped.push({ file: entry.path, reason: errorText(error) });
      continue;
    }
    sliceStart = performance.now();
    for (let flow = 0; flow < index.header.flowCount; flow++) {
      if (flow % FLOWS_PER_CHECK === 0 && performance.now() - sliceStart > SLICE_MS) {
        await nextTurn();
        sliceStart = performance.now();
      }
      const record = flowMatch(index, q, flow, entry.path);
      if (record === null) continue;
      if (report.records >= limit) {
        report.limited = true;
        return;
      }
      report.records++;
      yield record;
    }
    await nextTurn();
  }
}

/** The record of `flow` restricted to its packets matching `q`; null when none does. */
function flowMatch(index: FileIndex, q: Query, flow: number, file: string): FlowRecord | null {
  const keyAt = flow * KEY_WORDS;
  const tags = flowTagView(index, flow, { tags: index.tags, start: 0, count: 0 });
  const truth = flowTruth(q, index.keys, keyAt, index.firstTs[flow], index.lastTs[flow], tags);
  if (truth === Truth.False) return null;
  const record = flowRecord(index.keys.subarray(keyAt, keyAt + KEY_WORDS), file);
  const start = index.pktStart[flow];
  for (let p = start; p < start + index.pktCount[flow]; p++) {
    const ts = indexTime(index.times, p);
    if (truth !== Truth.True && !packetMatches(q, index.keys, keyAt, ts, tags)) continue;
    record.first = Math.min(record.first, ts);
    record.last = Math.max(record.last, ts);
    record.packets++;
  }
  if (record.packets === 0) return null;
  record.bytes = truth === Truth.True
    ? index.bytes[flow]
    : Math.round(index.bytes[flow] * record.packets / index.pktCount[flow]);
  return record;
}

/** How `flowRecordStream` writes records. */
export type FlowFormat = "json" | "ndjson";

/** Bytes of encoded records per stream chunk. */
const FLOW_CHUNK = 64 * 1024;

/**
 * The records of `matchingFlows` as a byte stream: a JSON array, or one JSON object per line. Pulled
 * (back-pressure: nothing is scanned while the client does not read) in chunks of about 64 KiB;
 * `onFinish` runs once, when the stream ends, fails or is cancelled.
 */
export function flowRecordStream(
  catalog: Catalog,
  q: Query,
  options: {
    limit: number;
    format: FlowFormat;
    onFinish?: (
      report: FlowScanReport,
      outcome: "complete" | "limited" | "cancelled" | "error",
    ) => void;
  },
): ReadableStream<Uint8Array> {
  const report: FlowScanReport = { records: 0, limited: false, skipped: [] };
  const records = matchingFlows(catalog, q, options.limit, report);
  const encoder = new TextEncoder();
  const json = options.format === "json";
  let opened = false;
  let finished = false;
  const finish = (outcome: "complete" | "limited" | "cancelled" | "error") => {
    if (finished) return;
    finished = true;
    options.onFinish?.(report, outcome);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        let text = json && !opened ? "[" : "";
        opened = true;
        while (text.length < FLOW_CHUNK) {
          const next = await records.next();
          if (next.done) {
            text += json ? "]\n" : "";
            controller.enqueue(encoder.encode(text));
            controller.close();
            finish(report.limited ? "limited" : "complete");
            return;
          }
          const line = JSON.stringify(next.value);
          text += json ? (report.records > 1 ? "," + line : line) : line + "\n";
        }
        controller.enqueue(encoder.encode(text));
      } catch (error) {
        finish("error");
        controller.error(error);
      }
    },
    async cancel() {
      finish("cancelled");
      await records.return(undefined);
    },
  }, { highWaterMark: 0 });
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
