/**
 * The ClickHouse schema flow records are exported into, and the one place that turns a `/flows`
 * record into a row. The version is part of every table name (`cutcap_flows_v1`): a change of
 * columns is a new version, new tables, and readers that name the version they understand, so an
 * old coordinator never misreads a new sensor's rows.
 *
 * Only types and syntax that ClickHouse 18.16 (Debian 12's package) and current releases both
 * accept: String, FixedString, UInt/Int, Date, DateTime; `MergeTree() PARTITION BY … ORDER BY …`.
 * Addresses are kept twice: as text (what `/flows` shows) and as the four flow-key words in two
 * UInt64 columns per end (`a_hi`/`a_lo`, `b_hi`/`b_lo`; an IPv4 address is all in `_hi`), so a CIDR
 * or range term is a comparison of numbers (16 bytes an end to scan, half of the version 2 hex).
 */
import type { FlowRecord } from "../query/flows.ts";
import { parseAddress } from "../query/address.ts";
import { etherTypeName } from "../packet/describe.ts";

/** Version of the tables below; bumped with every change of columns. */
export const SCHEMA_VERSION = 3;

/** Table names of this version. */
export const TABLES = {
  /** One row per flow per finalized file. */
  flows: `cutcap_flows_v${SCHEMA_VERSION}`,
  /** Files retention deleted (their rows are ignored by the fleet, then purged). */
  deleted: `cutcap_deleted_v${SCHEMA_VERSION}`,
  /** A row per export batch and per heartbeat: where a sensor is reached and its backlog. */
  sensors: `cutcap_sensors_v${SCHEMA_VERSION}`,
  /** Open files' flow rows, the whole file again at each export (`generation`). */
  openFlows: `cutcap_open_flows_v${SCHEMA_VERSION}`,
  /** Per open file its latest exported generation, and whether it was finalized since. */
  openFiles: `cutcap_open_files_v${SCHEMA_VERSION}`,
} as const;

/** The generation of the row that says a file was finalized: above every export's. */
export const CLOSED_GENERATION = 2 ** 53 - 1;

/** One exported flow record: the `/flows` record plus where it was captured. */
export interface FlowRow {
  sensor: string;
  iface: string;
  worker: number;
  file: string;
  kind: string;
  src: string;
  dst: string;
  src_port: number;
  dst_port: number;
  proto: number;
  vlan: number;
  ether_type: number;
  /** Flow-key words 0-1 and 2-3 of end A and B as UInt64 decimal text (beyond 2^53). */
  a_hi: string;
  a_lo: string;
  b_hi: string;
  b_lo: string;
  /** First and last stored packet, microseconds since the epoch. */
  first_us: number;
  last_us: number;
  packets: number;
  bytes: number;
  /** Community ID v1 with the seed the index was written with; "" for non-IP flows. */
  community_id: string;
  /** Packets and bytes seen by the end of the file, stored or not. */
  total_packets: number;
  total_bytes: number;
  /** Number of the first packet the cutoff refused, 0 when none. */
  cut_packet: number;
  /** fin, rst, idle, evicted, shutdown, open or unknown. */
  end_reason: string;
  /** UTC day of `first_us` (partition). */
  day: string;
}

const FLOW_COLUMNS = `
  sensor String,
  iface String,
  worker Int16,
  file String,
  kind String,
  src String,
  dst String,
  src_port UInt16,
  dst_port UInt16,
  proto UInt8,
  vlan UInt16,
  ether_type UInt16,
  a_hi UInt64,
  a_lo UInt64,
  b_hi UInt64,
  b_lo UInt64,
  first_us Int64,
  last_us Int64,
  packets UInt64,
  bytes UInt64,
  community_id String,
  total_packets UInt64,
  total_bytes UInt64,
  cut_packet UInt64,
  end_reason String,
  day Date`;

const DELETED_COLUMNS = `
  sensor String,
  file String,
  deleted_at DateTime`;

const SENSOR_COLUMNS = `
  sensor String,
  url String,
  at DateTime,
  backlog_files UInt64,
  last_file String`;

const OPEN_FILE_COLUMNS = `
  sensor String,
  file String,
  generation UInt64,
  closed UInt8`;

/**
 * Engine clauses of the MergeTree tables, by table. The open tables are ReplacingMergeTree: merges
 * keep a flow's (a file's) latest generation only, so they stay about one row per flow of the open
 * files; readers never rely on merges (they pick the latest generation, src/fleet/plan.ts).
 */
const ENGINES: Record<keyof typeof TABLES, string> = {
  flows: "ENGINE = MergeTree() PARTITION BY toYYYYMM(day) ORDER BY (day, a_hi, a_lo, first_us)",
  deleted: "ENGINE = MergeTree() PARTITION BY tuple() ORDER BY (sensor, file)",
  sensors: "ENGINE = MergeTree() PARTITION BY toYYYYMM(at) ORDER BY (sensor, at)",
  openFlows: "ENGINE = ReplacingMergeTree(generation) PARTITION BY tuple() " +
    "ORDER BY (sensor, file, kind, src, dst, src_port, dst_port, proto, vlan, ether_type, first_us)",
  openFiles: "ENGINE = ReplacingMergeTree(generation) PARTITION BY tuple() ORDER BY (sensor, file)",
};

const COLUMNS: Record<keyof typeof TABLES, string> = {
  flows: FLOW_COLUMNS,
  deleted: DELETED_COLUMNS,
  sensors: SENSOR_COLUMNS,
  openFlows: `${FLOW_COLUMNS},\n  generation UInt64`,
  openFiles: OPEN_FILE_COLUMNS,
};

/** The columns of a flow row, in table order (the open table's but `generation`). */
export const FLOW_COLUMN_NAMES = FLOW_COLUMNS.trim().split(",\n").map((c) => c.trim().split(" ")[0])
  .join(", ");

/**
 * Statements creating the single-server tables (what the exporter runs on first use). The sharded
 * variant (`_local` tables and Distributed ones under these names) is in README.md, "Two shards".
 */
export function mergeTreeSchema(): string[] {
  return (Object.keys(TABLES) as (keyof typeof TABLES)[]).map((t) =>
    `CREATE TABLE IF NOT EXISTS ${TABLES[t]} (${COLUMNS[t]}\n) ${ENGINES[t]}`
  );
}

/** Where a file's flows were captured. */
export interface RowOrigin {
  sensor: string;
  iface: string;
  worker: number;
}

/** The row of one `/flows` record (the record's `file` is the archive-relative path). */
export function flowRow(record: FlowRecord, origin: RowOrigin): FlowRow {
  const firstUs = Math.round(record.first * 1e6);
  const a = addressPair(record.kind, record.src);
  const b = addressPair(record.kind, record.dst);
  return {
    sensor: origin.sensor,
    iface: origin.iface,
    worker: origin.worker,
    file: record.file,
    kind: record.kind,
    src: record.src,
    dst: record.dst,
    src_port: record.srcPort,
    dst_port: record.dstPort,
    proto: record.proto,
    vlan: record.vlan,
    ether_type: record.etherType,
    a_hi: a[0],
    a_lo: a[1],
    b_hi: b[0],
    b_lo: b[1],
    first_us: firstUs,
    last_us: Math.round(record.last * 1e6),
    packets: record.packets,
    bytes: record.bytes,
    community_id: record.communityId,
    total_packets: record.totalPackets,
    total_bytes: record.totalBytes,
    cut_packet: record.cutPacket,
    end_reason: record.endReason,
    day: new Date(Math.floor(firstUs / 1000)).toISOString().slice(0, 10),
  };
}

/** The `/flows` record a row was made from, with its sensor. */
export function rowRecord(row: FlowRow): FlowRecord & { sensor: string } {
  return {
    kind: row.kind,
    src: row.src,
    dst: row.dst,
    srcPort: Number(row.src_port),
    dstPort: Number(row.dst_port),
    proto: Number(row.proto),
    vlan: Number(row.vlan),
    etherType: Number(row.ether_type),
    first: Number(row.first_us) / 1e6,
    last: Number(row.last_us) / 1e6,
    packets: Number(row.packets),
    bytes: Number(row.bytes),
    communityId: row.community_id,
    etherTypeName: row.kind === "l2" ? etherTypeName(Number(row.ether_type)) : "",
    totalPackets: Number(row.total_packets),
    totalBytes: Number(row.total_bytes),
    cut: Number(row.cut_packet) !== 0,
    cutPacket: Number(row.cut_packet),
    endReason: row.end_reason,
    file: row.file,
    sensor: row.sensor,
  };
}

/** An IP address's flow-key words as two UInt64 (decimal text); zeros for MACs and opaque flows. */
function addressPair(kind: string, text: string): [string, string] {
  const parsed = kind === "ipv4" || kind === "ipv6" ? parseAddress(text) : null;
  return parsed === null ? ["0", "0"] : wordPairs(parsed.words);
}

/** Four flow-key words as two unsigned 64-bit numbers (decimal text): words 0-1 and 2-3. */
export function wordPairs(words: ArrayLike<number>): [string, string] {
  const pair = (i: number) =>
    ((BigInt(words[i] >>> 0) << 32n) | BigInt(words[i + 1] >>> 0)).toString();
  return [pair(0), pair(2)];
}
