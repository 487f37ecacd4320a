/**
 * The page's data on a sensor (or `cutcap serve`): flows and the time histogram from the archive's
 * indexes (no packet is read), the status report with the running configuration and recent rates.
 */
import type { Catalog, CatalogEntry } from "../archive/catalog.ts";
import { closeInputs, type ExtraInput, wantedInputs } from "../query/open_files.ts";
import { readOpenStates } from "../store/open_file.ts";
import type { FileIndex } from "../index/index_reader.ts";
import { indexPathFor } from "../archive/naming.ts";
import { KEY_WORDS } from "../packet/packet_info.ts";
import { type FlowRecord, matchingFlows } from "../query/flows.ts";
import { sharedIndexCache } from "../query/index_cache.ts";
import { type FlowRecordRef, flowTruth, packetMatches, timeBounds, Truth } from "../query/match.ts";
import { indexTime } from "../query/select.ts";
import type { StatusReport } from "../server/status.ts";
import type { RateHistory } from "./rate_history.ts";
import type {
  FlowPage,
  FlowPageRequest,
  FlowRow,
  Histogram,
  PageQuery,
  PageSource,
  Setting,
  StatusView,
} from "./source.ts";
import { formatQueryTime } from "./search.ts";

/** Rows kept for sorting and paging; past this the totals still count every match. */
export const MAX_SORTED_ROWS = 100_000;
/** Most buckets of a histogram. */
const MAX_BUCKETS = 120;
/** Bucket widths a histogram picks from (seconds). */
const BUCKET_STEPS = [
  0.001,
  0.002,
  0.005,
  0.01,
  0.02,
  0.05,
  0.1,
  0.2,
  0.5,
  1,
  2,
  5,
  10,
  15,
  30,
  60,
  120,
  300,
  600,
  900,
  1800,
  3600,
  7200,
  10800,
  21600,
  43200,
  86400,
];

/** The archive as the query routes read it: finalized files, open files' prefixes, the seed. */
export interface ArchiveView {
  /** The catalog of finalized files (read after the open files were gathered). */
  catalog(): Catalog;
  /** Open files' flushed prefixes (src/query/open_files.ts); none when absent. */
  openInputs?: () => Promise<ExtraInput[]>;
  /** Community ID seed of the records (`--community-id-seed`). */
  communityIdSeed?: number;
}

/** What a sensor's page source reads. */
export interface SensorSourceDeps extends ArchiveView {
  report(): StatusReport;
  settings: readonly Setting[];
  /** Recent worker rates (none when the server does not sample them). */
  history?: RateHistory;
}

/** The page's source for one sensor's archive. */
export function sensorSource(deps: SensorSourceDeps): PageSource {
  return {
    flows: (q, request) => flowPage(deps, q, request),
    histogram: (q, range) => histogram(deps, q, range),
    status: () => Promise.resolve(statusView(deps)),
    queryPath: (text) => `/query?q=${encodeURIComponent(text)}`,
  };
}

function statusView(deps: SensorSourceDeps): StatusView {
  const report = deps.report();
  let newest = report.archive.newestPacketTs;
  if (deps.openInputs !== undefined) {
    // Open files are queryable up to their last flush.
    for (const state of readOpenStates(report.outDir)) {
      if (state.packets > 0 && (newest === null || state.lastTs > newest)) newest = state.lastTs;
    }
  }
  return {
    version: report.version,
    report,
    settings: deps.settings,
    history: deps.history?.histories() ?? [],
    queryableLagSeconds: newest === null ? null : Math.max(0, report.now - newest),
  };
}

/** The inputs of one scan: open files first (see open_files.ts), then the catalog. */
async function scanInputs(
  archive: ArchiveView,
): Promise<{ catalog: Catalog; extra: ExtraInput[] }> {
  const extra = archive.openInputs === undefined ? [] : await archive.openInputs();
  closeInputs(extra); // the indexes are enough: no packet is read
  return { catalog: archive.catalog(), extra };
}

/** Sorts and pages the matching flows (the records `/flows` gives); counts every match. */
export async function flowPage(
  archive: ArchiveView,
  q: PageQuery,
  request: FlowPageRequest,
): Promise<FlowPage> {
  const kept: FlowRow[] = [];
  const page: FlowPage = { rows: [], flows: 0, packets: 0, bytes: 0, sortedOver: 0 };
  const { catalog, extra } = await scanInputs(archive);
  const seed = archive.communityIdSeed ?? 0;
  for await (
    const record of matchingFlows(catalog, q.query, Infinity, undefined, Infinity, seed, extra)
  ) {
    page.flows++;
    page.packets += record.packets;
    page.bytes += record.bytes;
    if (kept.length < MAX_SORTED_ROWS) kept.push({ ...record, pcapQuery: flowQuery(record) });
  }
  const key = request.sort;
  const sign = request.descending ? -1 : 1;
  kept.sort((a, b) => sign * compareValues(a[key], b[key]));
  page.sortedOver = kept.length;
  page.rows = kept.slice(request.offset, request.offset + request.limit);
  return page;
}

function compareValues(a: unknown, b: unknown): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (a === undefined || b === undefined) return a === b ? 0 : a === undefined ? -1 : 1;
  const [x, y] = [String(a), String(b)];
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * A query selecting one flow's packets in its file's time span: both addresses, the protocol, both
 * ports, the VLAN and the time of its first and last matching packet. "" for non-IP flows, which
 * the language has no words for.
 */
export function flowQuery(r: FlowRecord): string {
  if (r.kind !== "ipv4" && r.kind !== "ipv6") return "";
  const terms = [`host ${r.src}`, `host ${r.dst}`, `proto ${r.proto}`];
  if (r.proto === 6 || r.proto === 17 || r.proto === 132) {
    terms.push(`port ${r.srcPort}`, `port ${r.dstPort}`);
  }
  terms.push(`vlan ${r.vlan}`, `after ${formatQueryTime(r.first)}`);
  terms.push(`before ${formatQueryTime(r.last + 1e-6)}`);
  return terms.join(" and ");
}

/**
 * Packets (and their bytes, spread evenly over each flow's packets) per time bucket. Files whose
 * index is gone (retention) are left out, as `/flows` leaves them out.
 */
export async function histogram(
  archive: ArchiveView,
  q: PageQuery,
  range: { from: number | null; to: number | null },
): Promise<Histogram> {
  const bounds = timeBounds(q.query);
  const { catalog, extra } = await scanInputs(archive);
  const files = [
    ...catalog.files({ from: bounds.from, to: bounds.to }),
    ...wantedInputs(extra, catalog, bounds),
  ];
  let from = range.from ?? Infinity;
  let to = range.to ?? -Infinity;
  if (range.from === null || range.to === null) {
    await eachMatchingFlow(catalog, files, q, (index, flow) => {
      if (range.from === null) from = Math.min(from, index.firstTs[flow]);
      if (range.to === null) to = Math.max(to, index.lastTs[flow]);
    });
  }
  if (!(from <= to)) {
    return { from: Math.floor(Date.now() / 1000), bucketSeconds: 60, packets: [], bytes: [] };
  }
  const step = BUCKET_STEPS.find((s) => (to - from) / s < MAX_BUCKETS) ??
    86400 * Math.ceil((to - from) / 86400 / MAX_BUCKETS);
  const start = Math.floor(from / step) * step;
  const count = Math.floor((to - start) / step) + 1;
  const out: Histogram = {
    from: start,
    bucketSeconds: step,
    packets: new Array(count).fill(0),
    bytes: new Array(count).fill(0),
  };
  await eachMatchingFlow(catalog, files, q, (index, flow, truth) => {
    const keyAt = flow * KEY_WORDS;
    const first = index.pktStart[flow];
    const share = index.bytes[flow] / index.pktCount[flow];
    const rec: FlowRecordRef = { index, flow }; // the flow's record terms and extra tags
    for (let p = first; p < first + index.pktCount[flow]; p++) {
      const ts = indexTime(index.times, p);
      if (truth !== Truth.True && !packetMatches(q.query, index.keys, keyAt, ts, rec)) continue;
      const bucket = Math.floor((ts - start) / step);
      if (bucket < 0 || bucket >= count) continue;
      out.packets[bucket]++;
      out.bytes[bucket] += share;
    }
  });
  out.bytes = out.bytes.map(Math.round);
  return out;
}

/** Calls `visit` for each flow `q` may match, file by file, giving the event loop a turn between files. */
async function eachMatchingFlow(
  catalog: Catalog,
  files: readonly (CatalogEntry | ExtraInput)[],
  q: PageQuery,
  visit: (index: FileIndex, flow: number, truth: Truth) => void,
): Promise<void> {
  for (const entry of files) {
    let index: FileIndex;
    try {
      index = "index" in entry
        ? entry.index
        : await sharedIndexCache.load(indexPathFor(`${catalog.outDir}/${entry.path}`));
    } catch {
      continue;
    }
    for (let flow = 0; flow < index.header.flowCount; flow++) {
      const truth = flowTruth(
        q.query,
        index.keys,
        flow * KEY_WORDS,
        index.firstTs[flow],
        index.lastTs[flow],
        { index, flow },
      );
      if (truth !== Truth.False) visit(index, flow, truth);
    }
  }
}
