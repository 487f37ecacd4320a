/**
 * What the analyst's page needs from whatever answers it: a sensor over its own archive
 * (sensor_source.ts) or the fleet coordinator over ClickHouse. The page parses and validates the
 * query itself (src/query/parse.ts is the single source of truth) and hands both the text and the
 * parsed tree to the source.
 */
import type { Query } from "../query/ast.ts";
import type { FlowRecord } from "../query/flows.ts";
import type { StatusReport } from "../server/status.ts";

/** A query as the page asks it: the text (for links and the CLI) and its parsed tree. */
export interface PageQuery {
  /** The whole query, time range included, in cutcap's query language. */
  text: string;
  query: Query;
}

/** One row of the flows table: a `/flows` record, with what a source may add. */
export interface FlowRow extends FlowRecord {
  /** The sensor holding the flow (fleet only). */
  sensor?: string;
  /** A query selecting exactly this flow's packets ("" when the language cannot say it). */
  pcapQuery: string;
}

/** Columns the table sorts by. */
export const SORT_KEYS = [
  "first",
  "last",
  "sensor",
  "src",
  "dst",
  "srcPort",
  "dstPort",
  "proto",
  "vlan",
  "communityId",
  "packets",
  "bytes",
  "totalPackets",
  "totalBytes",
] as const;

/** A column the table sorts by. */
export type SortKey = typeof SORT_KEYS[number];

/** Which rows of the matching flows to show. */
export interface FlowPageRequest {
  sort: SortKey;
  descending: boolean;
  /** Index of the first row (after sorting). */
  offset: number;
  /** Rows per page. */
  limit: number;
}

/** One page of the flows table with the totals of every match. */
export interface FlowPage {
  rows: FlowRow[];
  /** Matching flows, packets and bytes in all (not only this page). */
  flows: number;
  packets: number;
  bytes: number;
  /**
   * Rows sorted and paged over: all matches, or the first `sortedOver` when there were more than a
   * source keeps (the totals still count every match).
   */
  sortedOver: number;
}

/** Matching packets and bytes over time, from the index. */
export interface Histogram {
  /** Start of the first bucket, Unix seconds. */
  from: number;
  bucketSeconds: number;
  packets: number[];
  bytes: number[];
}

/** One label and value of the running configuration. */
export type Setting = readonly [label: string, value: string];

/** Recent rates of one worker, oldest first, one sample per `intervalSeconds`. */
export interface WorkerHistory {
  worker: string;
  intervalSeconds: number;
  packetsPerSecond: number[];
  bitsPerSecond: number[];
  dropsPerSecond: number[];
}

/** A table of the status view for what a sensor report does not cover (the fleet's sensors). */
export interface StatusTable {
  title: string;
  columns: readonly string[];
  /** Cells as text (escaped when rendered). */
  rows: readonly (readonly string[])[];
}

/** Everything the status view shows. */
export interface StatusView {
  /** Version of the server answering. */
  version: string;
  /** A sensor's `/status` report, shown as its tables. */
  report?: StatusReport;
  /** More tables (the fleet's sensors, their last export, backlog, reachability). */
  tables?: readonly StatusTable[];
  settings: readonly Setting[];
  history: WorkerHistory[];
  /**
   * Seconds between now and the newest packet a query can return (null with no packets): how far
   * the queryable archive lags the wire.
   */
  queryableLagSeconds: number | null;
}

/** The data behind the page. */
export interface PageSource {
  /** Flows matching `q`, sorted and paged, with the totals of every match. */
  flows(q: PageQuery, request: FlowPageRequest): Promise<FlowPage>;
  /** Matching packets per time bucket between `from` and `to` (null: the matches' own range). */
  histogram(q: PageQuery, range: { from: number | null; to: number | null }): Promise<Histogram>;
  /** The status view's content. */
  status(): Promise<StatusView>;
  /** Path and parameters of the pcap answer for `text` (the same bytes as `/query`). */
  queryPath(text: string): string;
}
