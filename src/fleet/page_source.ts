/**
 * The analyst's page on the coordinator (src/web): flows, totals and the time histogram from
 * ClickHouse's flow rows (the rows `/flows` answers from), the sensors' status as the status view.
 * ClickHouse holds one row per flow per file, not packet times, so the histogram counts a row's
 * packets at its first packet's time.
 */
import type { ClickHouse } from "../export/clickhouse.ts";
import { type FlowRow as ExportRow, rowRecord } from "../export/schema.ts";
import { flowQuery } from "../web/sensor_source.ts";
import type {
  FlowPage,
  FlowPageRequest,
  Histogram,
  PageQuery,
  PageSource,
  Setting,
  SortKey,
  StatusView,
} from "../web/source.ts";
import { flowRows } from "./plan.ts";
import { FLOW_FIELDS } from "./routes.ts";
import { querySql } from "./sql.ts";
import { VERSION } from "../version.ts";

/** Columns the rows sort by (keys the schema lacks sort by time). */
const SORT_COLUMNS: Partial<Record<SortKey, string>> = {
  first: "first_us",
  last: "last_us",
  sensor: "sensor",
  src: "src",
  dst: "dst",
  srcPort: "src_port",
  dstPort: "dst_port",
  proto: "proto",
  vlan: "vlan",
  communityId: "community_id",
  packets: "packets",
  bytes: "bytes",
  totalPackets: "total_packets",
  totalBytes: "total_bytes",
};

/** Most buckets of a histogram. */
const MAX_BUCKETS = 120;

/** One sensor as the status view lists it. */
export interface SensorLine {
  name: string;
  url: string;
  /** Unix seconds of its last heartbeat, 0 when never. */
  lastSeen: number;
  backlogFiles: number;
  reachable: boolean;
}

/** What the coordinator's page source reads. */
export interface FleetPageDeps {
  clickhouse: ClickHouse;
  /** The sensors, their last export, backlog and reachability. */
  sensors(): Promise<SensorLine[]>;
  settings: readonly Setting[];
}

/** The page's source for the coordinator. */
export function fleetPageSource(deps: FleetPageDeps): PageSource {
  return {
    flows: (q, request) => flowPage(deps.clickhouse, q, request),
    histogram: (q, range) => histogram(deps.clickhouse, q, range),
    status: () => status(deps),
    queryPath: (text) => `/query?q=${encodeURIComponent(text)}`,
  };
}

/** The rows of the page's query (see flowRows). */
function rowsOf(q: PageQuery): string {
  return flowRows(querySql(q.query).may);
}

async function flowPage(
  clickhouse: ClickHouse,
  q: PageQuery,
  request: FlowPageRequest,
): Promise<FlowPage> {
  const [totals] = await clickhouse.select<{ flows: string; packets: string; bytes: string }>(
    `SELECT count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes FROM ${rowsOf(q)}`,
  );
  const column = SORT_COLUMNS[request.sort] ?? "first_us";
  const rows = await clickhouse.select<ExportRow>(
    `SELECT ${FLOW_FIELDS} FROM ${rowsOf(q)} ORDER BY ${column} ` +
      `${request.descending ? "DESC" : "ASC"}, first_us, sensor, file ` +
      `LIMIT ${Math.floor(request.limit)} OFFSET ${Math.floor(request.offset)}`,
  );
  const flows = Number(totals?.flows ?? 0);
  return {
    rows: rows.map((row) => {
      const record = rowRecord(row);
      const flow = flowQuery(record);
      return { ...record, pcapQuery: flow === "" ? "" : `sensor ${record.sensor} and ${flow}` };
    }),
    flows,
    packets: Number(totals?.packets ?? 0),
    bytes: Number(totals?.bytes ?? 0),
    sortedOver: flows,
  };
}

async function histogram(
  clickhouse: ClickHouse,
  q: PageQuery,
  range: { from: number | null; to: number | null },
): Promise<Histogram> {
  let from = range.from;
  let to = range.to;
  if (from === null || to === null) {
    const [span] = await clickhouse.select<{ lo: string; hi: string; n: string }>(
      `SELECT min(first_us) AS lo, max(first_us) AS hi, count() AS n FROM ${rowsOf(q)}`,
    );
    if (span === undefined || Number(span.n) === 0) {
      return { from: Math.floor(Date.now() / 1000), bucketSeconds: 60, packets: [], bytes: [] };
    }
    from ??= Number(span.lo) / 1e6;
    to ??= Number(span.hi) / 1e6;
  }
  const stepUs = bucketMicros(to - from);
  const startUs = Math.floor(from * 1e6 / stepUs) * stepUs;
  const count = Math.floor((to * 1e6 - startUs) / stepUs) + 1;
  const out: Histogram = {
    from: startUs / 1e6,
    bucketSeconds: stepUs / 1e6,
    packets: new Array(count).fill(0),
    bytes: new Array(count).fill(0),
  };
  const buckets = await clickhouse.select<{ b: string; packets: string; bytes: string }>(
    `SELECT intDiv(first_us - ${startUs}, ${stepUs}) AS b, sum(packets) AS packets, ` +
      `sum(bytes) AS bytes FROM ${rowsOf(q)} GROUP BY b`,
  );
  for (const row of buckets) {
    const b = Number(row.b);
    if (b < 0 || b >= count) continue;
    out.packets[b] += Number(row.packets);
    out.bytes[b] += Number(row.bytes);
  }
  return out;
}

/** A bucket width in microseconds: 1-2-5 steps giving at most MAX_BUCKETS buckets. */
function bucketMicros(seconds: number): number {
  let step = 1000; // 1 ms
  for (let i = 0; seconds * 1e6 / step >= MAX_BUCKETS; i++) step *= i % 3 === 1 ? 2.5 : 2;
  return Math.round(step);
}

async function status(deps: FleetPageDeps): Promise<StatusView> {
  const sensors = await deps.sensors();
  const newest = await deps.clickhouse.select<{ hi: string; n: string }>(
    `SELECT max(last_us) AS hi, count() AS n FROM ${flowRows()}`,
  ).catch(() => []);
  const now = Date.now() / 1000;
  const hi = newest[0] !== undefined && Number(newest[0].n) > 0 ? Number(newest[0].hi) / 1e6 : null;
  return {
    version: VERSION,
    tables: [{
      title: "Sensors",
      columns: ["Sensor", "API", "Last export", "Backlog (files)", "Reachable"],
      rows: sensors.map((s) => [
        s.name,
        s.url,
        s.lastSeen ? new Date(s.lastSeen * 1000).toISOString() : "never",
        String(s.backlogFiles),
        s.reachable ? "yes" : "no",
      ]),
    }],
    settings: deps.settings,
    history: [],
    queryableLagSeconds: hi === null ? null : Math.max(0, now - hi),
  };
}
