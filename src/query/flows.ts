/**
 * `GET /flows` and `cutcap flows`: the flow records of matching files, for analysts who want the
 * connection list before the packets. One record per flow per file; counts are of stored packets.
 */
import type { Catalog } from "../archive/catalog.ts";
import { sharedIndexCache } from "./index_cache.ts";
import { errorText, nextTurn } from "./execute.ts";
import type { FileIndex } from "../index/index_reader.ts";
import { indexPathFor } from "../archive/naming.ts";
import { describeKey, etherTypeName, type KeyDescription } from "../packet/describe.ts";
import { communityId } from "../flow/community_id.ts";
import { FLOW_END_NAMES } from "../flow/flow_table.ts";
import { KEY_WORDS } from "../packet/packet_info.ts";
import type { Query } from "./ast.ts";
import { type FlowRecordRef, flowTruth, packetMatches, timeBounds, Truth } from "./match.ts";
import { type ExtraInput, wantedInputs } from "./open_files.ts";
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
  endReason: string;
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
  communityIdSeed = 0,
  extra: readonly ExtraInput[] = [],
): AsyncGenerator<FlowRecord> {
  const bounds = timeBounds(q);
  // Open files (open_files.ts) count unless the catalog lists them by now.
  const files = [
    ...catalog.files({ from: bounds.from, to: bounds.to }),
    ...wantedInputs(extra, catalog, bounds),
  ].sort((a, b) => a.firstTs - b.firstTs);
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
        const index = "index" in entry
          ? entry.index
          : await sharedIndexCache.load(indexPathFor(`${catalog.outDir}/${entry.path}`));
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
    const record = flowMatch(best.index, q, best.flow, best.path, communityIdSeed);
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

/**
 * Every flow record of one file's index, whole (what the ClickHouse exporter sends), with the
 * Community IDs of the seed the index was written with.
 */
export function* fileFlows(index: FileIndex, file: string): Generator<FlowRecord> {
  for (let flow = 0; flow < index.header.flowCount; flow++) {
    const record = flowMatch(index, undefined, flow, file, index.header.cidSeed);
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
  seed: number,
): FlowRecord | null {
  const keyAt = flow * KEY_WORDS;
  const rec: FlowRecordRef = { index, flow };
  const truth = q === undefined
    ? Truth.True
    : flowTruth(q, index.keys, keyAt, index.firstTs[flow], index.lastTs[flow], rec);
  if (truth === Truth.False) return null;
  const start = index.pktStart[flow];
  let packets = 0;
  let first = Infinity;
  let last = -Infinity;
  for (let p = start; p < start + index.pktCount[flow]; p++) {
    const ts = indexTime(index.times, p);
    if (truth !== Truth.True && !packetMatches(q!, index.keys, keyAt, ts, rec)) continue;
    first = Math.min(first, ts);
    last = Math.max(last, ts);
    packets++;
  }
  if (packets === 0 && !unstoredMatch(index, q, flow, truth, rec)) return null;
  // The record (its Community ID is a SHA-1) only for flows that match.
  const record = flowRecord(index, flow, file, seed);
  record.first = packets === 0 ? index.firstTs[flow] : first;
  record.last = packets === 0 ? index.lastTs[flow] : last;
  record.packets = packets;
  record.bytes = truth === Truth.True || packets === 0
    ? index.bytes[flow]
    : Math.round(index.bytes[flow] * record.packets / index.pktCount[flow]);
  return record;
}

/**
 * Whether a flow without stored packets in the file (cut off earlier, still sending) matches: as if
 * it had one packet at the time of its latest packet, which its first and last times both hold.
 */
function unstoredMatch(
  index: FileIndex,
  q: Query | undefined,
  flow: number,
  truth: Truth,
  rec: FlowRecordRef,
): boolean {
  if (index.pktCount[flow] !== 0) return false;
  if (truth === Truth.True) return true;
  return packetMatches(q!, index.keys, flow * KEY_WORDS, index.lastTs[flow], rec);
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
    /** Seed of the Community IDs shown (default 0). */
    communityIdSeed?: number;
    /** Open files' indexes (their descriptors are not used), see open_files.ts. */
    extra?: readonly ExtraInput[];
    onFinish?: (
      report: FlowScanReport,
      outcome: "complete" | "limited" | "cancelled" | "error",
    ) => void;
  },
): ReadableStream<Uint8Array> {
  const report: FlowScanReport = { records: 0, limited: false, skipped: [] };
  const records = matchingFlows(
    catalog,
    q,
    options.limit,
    report,
    options.maxBytes,
    options.communityIdSeed,
    options.extra,
  );
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

/** Flow `flow` of `index` as a record, its stored counts still to be added by the caller. */
export function flowRecord(index: FileIndex, flow: number, file: string, seed: number): FlowRecord {
  const key = index.keys.subarray(flow * KEY_WORDS, (flow + 1) * KEY_WORDS);
  const reversed = (index.flowState[flow] & 1) === 1;
  const d = describeKey(key);
  if (reversed) {
    [d.src, d.dst, d.srcPort, d.dstPort] = [d.dst, d.src, d.dstPort, d.srcPort];
  }
  // An L2 key repeats its type in the ports word; the record says it as etherType instead.
  if (d.kind === "l2") d.srcPort = d.dstPort = 0;
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
    endReason: FLOW_END_NAMES[(index.flowState[flow] >>> 1) & 7] ?? "unknown",
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
      r.endReason,
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
  // Records from a fleet coordinator name their sensor: it leads each row.
  if (records.some((r) => "sensor" in r)) {
    header.unshift("sensor");
    rows.forEach((row, i) => row.unshift(String((records[i] as { sensor?: string }).sensor ?? "")));
  }
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
