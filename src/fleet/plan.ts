/**
 * Planning a fleet query from ClickHouse: which sensors hold flows that may match, in which time
 * windows, where each is reached, and the query text each is sent (its sensor terms decided, the
 * windows added, so a sensor reads only the files that can hold matches).
 */
import type { Query } from "../query/ast.ts";
import { formatQuery, formatTime } from "../query/ast.ts";
import type { ClickHouse } from "../export/clickhouse.ts";
import { FLOW_COLUMN_NAMES, TABLES } from "../export/schema.ts";
import { querySql } from "./sql.ts";

/** A stretch of time (microseconds, inclusive) holding matching flows of one sensor. */
export interface Window {
  fromUs: number;
  toUs: number;
}

/** One sensor to ask. */
export interface SensorPlan {
  sensor: string;
  /** Its API, from its latest heartbeat ("" when it advertised none). */
  url: string;
  windows: Window[];
  /** The query text it is sent. */
  query: string;
}

/** At most this many windows per sensor (the closest are joined beyond it). */
const MAX_WINDOWS = 16;
/** Flows are grouped into windows of this many microseconds before joining (one minute). */
const BUCKET_US = 60_000_000;

/** Rows not of files retention deleted (the deletion batch reached ClickHouse). */
export function liveRows(): string {
  return `(sensor, file) GLOBAL NOT IN (SELECT sensor, file FROM ${TABLES.deleted})`;
}

/**
 * A FROM source of every flow row that may match `may` (SQL), not of deleted files: the finalized
 * files' rows and, for each file still open on its sensor, the rows of its latest export (none once
 * its finalized rows were sent: a file counts once). Columns: FLOW_COLUMN_NAMES.
 */
export function flowRows(may = "1"): string {
  const latestOpen = `SELECT sensor, file, max(generation) FROM ${TABLES.openFiles} ` +
    `GROUP BY sensor, file HAVING max(closed) = 0`;
  return `(SELECT ${FLOW_COLUMN_NAMES} FROM ${TABLES.flows} PREWHERE ${may} WHERE ${liveRows()} ` +
    `UNION ALL SELECT ${FLOW_COLUMN_NAMES} FROM ${TABLES.openFlows} PREWHERE ${may} ` +
    `WHERE ${liveRows()} AND (sensor, file, generation) GLOBAL IN (${latestOpen}))`;
}

/** Where each sensor is reached and how it last reported, from the heartbeat table. */
export interface SensorInfo {
  sensor: string;
  url: string;
  /** Unix seconds of its last heartbeat. */
  lastSeen: number;
  backlogFiles: number;
  lastFile: string;
}

/** Every sensor that ever reported, with its latest heartbeat. */
export async function sensorInfo(ch: ClickHouse): Promise<SensorInfo[]> {
  const rows = await ch.select<Record<string, string>>(
    `SELECT sensor, argMax(url, at) AS url, toUInt32(max(at)) AS seen, ` +
      `argMax(backlog_files, at) AS backlog, argMax(last_file, at) AS last_file ` +
      `FROM ${TABLES.sensors} GROUP BY sensor ORDER BY sensor`,
  );
  return rows.map((r) => ({
    sensor: r.sensor,
    url: r.url,
    lastSeen: Number(r.seen),
    backlogFiles: Number(r.backlog),
    lastFile: r.last_file,
  }));
}

/** The sensors and windows that hold flows which may match `q`. */
export async function planQuery(ch: ClickHouse, q: Query): Promise<SensorPlan[]> {
  const where = querySql(q).may;
  const rows = await ch.select<Record<string, string>>(
    `SELECT sensor, intDiv(first_us, ${BUCKET_US}) AS bucket, min(first_us) AS from_us, ` +
      `max(last_us) AS to_us FROM ${flowRows(where)} ` +
      `GROUP BY sensor, bucket ORDER BY sensor, from_us`,
  );
  const bySensor = new Map<string, Window[]>();
  for (const r of rows) {
    const list = bySensor.get(r.sensor) ?? [];
    list.push({ fromUs: Number(r.from_us), toUs: Number(r.to_us) });
    bySensor.set(r.sensor, list);
  }
  const urls = new Map((await sensorInfo(ch)).map((s) => [s.sensor, s.url]));
  const plans: SensorPlan[] = [];
  for (const [sensor, windows] of bySensor) {
    const joined = joinWindows(windows);
    const folded = foldSensor(q, sensor);
    if (folded === false) continue;
    plans.push({
      sensor,
      url: urls.get(sensor) ?? "",
      windows: joined,
      query: sensorQueryText(folded, joined),
    });
  }
  return plans;
}

/** Sorts, joins overlapping windows, then joins the closest until at most MAX_WINDOWS remain. */
export function joinWindows(windows: readonly Window[]): Window[] {
  const sorted = [...windows].sort((a, b) => a.fromUs - b.fromUs);
  const out: Window[] = [];
  for (const w of sorted) {
    const last = out.at(-1);
    if (last !== undefined && w.fromUs <= last.toUs) last.toUs = Math.max(last.toUs, w.toUs);
    else out.push({ ...w });
  }
  while (out.length > MAX_WINDOWS) {
    let best = 0;
    for (let i = 1; i < out.length - 1; i++) {
      if (out[i + 1].fromUs - out[i].toUs < out[best + 1].fromUs - out[best].toUs) best = i;
    }
    out[best].toUs = out[best + 1].toUs;
    out.splice(best + 1, 1);
  }
  return out;
}

/**
 * The query a sensor is sent: `q` with its sensor terms decided for `sensor` (true: dropped),
 * and only within the windows (`after FROM and before TO+1µs`, or-ed).
 */
export function sensorQueryText(q: Query | true, windows: readonly Window[]): string {
  const span = windows.map((w) =>
    `(after ${formatTime(w.fromUs / 1e6)} and before ${formatTime((w.toUs + 1) / 1e6)})`
  ).join(" or ");
  const timed = windows.length > 1 ? `(${span})` : span;
  return q === true ? timed : `${formatQuery(q)} and ${timed}`;
}

/** Replaces `sensor NAME` terms by their value for `sensor` and simplifies. */
export function foldSensor(q: Query, sensor: string): Query | boolean {
  switch (q.type) {
    case "sensor":
      return q.name === sensor;
    case "not": {
      const child = foldSensor(q.child, sensor);
      return typeof child === "boolean" ? !child : { type: "not", child };
    }
    case "and":
    case "or": {
      const decisive = q.type === "or";
      const kept: Query[] = [];
      for (const c of q.children) {
        const f = foldSensor(c, sensor);
        if (f === decisive) return decisive;
        if (typeof f !== "boolean") kept.push(f);
      }
      if (kept.length === 0) return !decisive;
      return kept.length === 1 ? kept[0] : { type: q.type, children: kept };
    }
    default:
      return q;
  }
}
