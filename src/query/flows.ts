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

/** A file being merged: its index and the next flow to look at. */
interface FlowCursor {
  index: FileIndex;
  flow: number;
  path: string;
}

/**
 * Yields the flows that have at least one packet matching `q`, in time order of their first packet
 * across files, workers and interfaces, at most `limit` and, with `maxBytes`, only while their
 * bytes add up to no more than that. Files open in first-packet order only when the merge reaches
 * their first packet (about one per worker at a time); within a file flows are numbered in order of
 * their first packet. Indexes are read asynchronously and the scan gives the event loop a turn
 * between files and at least every `SLICE_MS` of work, so a scan over millions of flows never
 * stalls the server. A file whose index is gone (retention) or unreadable is skipped and listed in
 * `report`.
 */
export async function* matchingFlows(
  catalog: Catalog,
  q: Query,
  limit: number,
  report: FlowScanReport = { records: 0, limited: false, skipped: [] },
  maxBytes = Infinity,
): AsyncGenerator<FlowRecord> {
  const bounds = timeBounds(q);
  const files = [...catalog.files({ from: bounds.from, to: bounds.to })];
  const active: FlowCursor[] = [];
  let opened = 0;
  let bytes = 0;
  let sliceStart = performance.now();
  for (let examined = 0;; examined++) {
    const best = earliest(active);
    const bestTs = best === undefined ? Infinity : best.index.firstTs[best.flow];
    if (opened < files.length && files[opened].firstTs <= bestTs) {
      const entry = files[opened++];
      try {
        const index = await sharedIndexCache.load(indexPathFor(`${catalog.outDir}/${entry.path}`));
        if (index.header.flowCount > 0) active.push({ index, flow: 0, path: entry.path });
      } catch (error) {
        report.skipped.push({ file: entry.path, reason: errorText(error) });
      }
      sliceStart = performance.now();
      continue;
    }
    if (best === undefined) return;
    if (examined % FLOWS_PER_CHECK === 0 && performance.now() - sliceStart > SLICE_MS) {
      await nextTurn();
      sliceStart = performance.now();
    }
    const record = flowMatch(best.index, q, best.flow, best.path);
    if (++best.flow === best.index.header.flowCount) active.splice(active.indexOf(best), 1);
    if (record === null) continue;
    if (report.records >= limit || bytes + record.bytes > maxBytes) {
      report.limited = true;
      return;
    }
    report.records++;
    bytes += record.bytes;
    yield record;
  }
}

/** The cursor whose next flow started first (the earlier file on a tie); a few files at most. */
function earliest(active: FlowCursor[]): FlowCursor | undefined {
  let best: FlowCursor | undefined;
  for (const cursor of active) {
    if (best === undefined || cursor.index.firstTs[cursor.flow] < best.index.firstTs[best.flow]) {
      best = cursor;
    }
  }
  return best;
}

/** Every flow record of one file's index, whole (what the ClickHouse exporter sends). */
export function* fileFlows(index: FileIndex, file: string): Generator<FlowRecord> {
  for (let flow = 0; flow < index.header.flowCount; flow++) {
    const record = flowMatch(index, undefined, flow, file);
    if (record !== null) yield record;
  }
}

/**
 * The record of `flow` restricted to its packets matching `q` (all of them when `q` is
 * undefined); null when none does.
 */
function flowMatch(
  index: FileIndex,
  q: Query | undefined,
  flow: number,
  file: string,
): FlowRecord | null {
  const keyAt = flow * KEY_WORDS;
  const tags = flowTagView(index, flow, { tags: index.tags, start: 0, count: 0 });
  const truth = q === undefined
    ? Truth.True
    : flowTruth(q, index.keys, keyAt, index.firstTs[flow], index.lastTs[flow], tags);
  if (truth === Truth.False) return null;
  const record = flowRecord(index.keys.subarray(keyAt, keyAt + KEY_WORDS), file);
  const start = index.pktStart[flow];
  for (let p = start; p < start + index.pktCount[flow]; p++) {
    const ts = indexTime(index.times, p);
    if (truth !== Truth.True && !packetMatches(q!, index.keys, keyAt, ts, tags)) continue;
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
    /** Stop before the flow whose bytes would take the answer's total over this. */
    maxBytes?: number;
    format: FlowFormat;
    onFinish?: (
      report: FlowScanReport,
      outcome: "complete" | "limited" | "cancelled" | "error",
    ) => void;
  },
): ReadableStream<Uint8Array> {
  const report: FlowScanReport = { records: 0, limited: false, skipped: [] };
  const records = matchingFlows(catalog, q, options.limit, report, options.maxBytes);
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
