/**
 * Pivot from alerts to packets: Suricata EVE JSON lines (alerts, flow events) or a Zeek conn.log
 * (TSV with its `#fields` header, or JSON lines) become one query for the packets of all the flows
 * they name, each within its own time window (`margin` around the event or flow times).
 *
 * A line names its flow by `community_id` when it has one (with the query's seed), else by its
 * 5-tuple (both addresses, the IP protocol, and for TCP/UDP/SCTP both ports). Lines that cannot be
 * used (not JSON, no addresses, no time, an unknown protocol) are reported with their number; a
 * text without one usable line is an error.
 *
 * @module
 */
import type { Predicate, Query } from "./ast.ts";
import { digestPrefix, parseCommunityId } from "../flow/community_id.ts";
import { parseAddress, type ParsedAddress } from "./address.ts";

/** What the lines are. */
export type PivotFormat = "eve" | "zeek";

/** Options of parsePivot. */
export interface PivotOptions {
  /** Seconds added before and after each line's event or flow times. */
  margin: number;
  /** Community ID seed of `community_id` fields (`--community-id-seed`). */
  seed: number;
}

/** A line that could not be used, by its 1-based number. */
export interface PivotProblem {
  line: number;
  message: string;
}

/** The query of a pivot and what it was made of. */
export interface Pivot {
  query: Query;
  /** Lines used. */
  flows: number;
  problems: PivotProblem[];
}

/** Most usable lines in one pivot: each is a branch every flow of every file is checked against. */
export const MAX_PIVOT_FLOWS = 2000;

/** A flow a line names, with its time window in seconds. */
interface Named {
  term: Query;
  from: number;
  to: number;
}

const PROTOCOLS: Record<string, number> = {
  tcp: 6,
  udp: 17,
  sctp: 132,
  icmp: 1,
  "ipv6-icmp": 58,
  icmp6: 58,
  icmpv6: 58,
};
const PORTED = new Set([6, 17, 132]);

/** Parses the lines; throws an Error naming the problems when no line is usable. */
export function parsePivot(text: string, format: PivotFormat, opts: PivotOptions): Pivot {
  const lines = text.split(/\r?\n/);
  const problems: PivotProblem[] = [];
  const named: Named[] = [];
  const zeekTsv = format === "zeek" && lines.some((l) => l.startsWith("#fields"));
  let fields: string[] | null = null;
  let separator = "\t";
  for (const [i, line] of lines.entries()) {
    if (line.trim() === "") continue;
    try {
      if (zeekTsv && line.startsWith("#")) {
        if (line.startsWith("#separator ")) separator = unescapeSeparator(line.slice(11));
        if (line.startsWith("#fields")) fields = line.split(separator).slice(1);
        continue;
      }
      let record: Record<string, unknown>;
      if (zeekTsv) {
        if (fields === null) throw new Error("data before the #fields header");
        record = tsvRecord(line, fields, separator);
      } else {
        record = jsonRecord(line);
      }
      const flow = format === "eve" ? eveFlow(record, opts) : zeekFlow(record, opts);
      if (named.length === MAX_PIVOT_FLOWS) {
        throw new Error(`more than ${MAX_PIVOT_FLOWS} flows in one pivot: split the input`);
      }
      named.push(flow);
    } catch (error) {
      problems.push({ line: i + 1, message: (error as Error).message });
    }
  }
  if (named.length === 0) {
    const shown = problems.slice(0, 5).map((p) => `line ${p.line}: ${p.message}`).join("; ");
    throw new Error(
      `No usable line in the ${format === "eve" ? "EVE" : "conn.log"} input: expected ${
        format === "eve"
          ? "EVE JSON lines with community_id or src_ip/dest_ip/proto, and timestamp"
          : "conn.log lines (TSV with #fields, or JSON) with community_id or id.orig_h/id.resp_h/proto, and ts"
      }${shown === "" ? "" : `; found ${shown}`}`,
    );
  }
  const branches: Query[] = named.map((n) => ({
    type: "and",
    children: [
      n.term,
      { type: "time", op: "after", at: n.from - opts.margin },
      { type: "time", op: "before", at: n.to + opts.margin },
    ],
  }));
  return {
    query: branches.length === 1 ? branches[0] : { type: "or", children: branches },
    flows: named.length,
    problems,
  };
}

function jsonRecord(line: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new Error("not a JSON object");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error("not a JSON object");
  }
  return value as Record<string, unknown>;
}

function tsvRecord(line: string, fields: string[], separator: string): Record<string, unknown> {
  const cells = line.split(separator);
  if (cells.length !== fields.length) {
    throw new Error(`${cells.length} fields, the #fields header names ${fields.length}`);
  }
  const record: Record<string, unknown> = {};
  fields.forEach((f, i) => {
    if (cells[i] !== "-" && cells[i] !== "(empty)") record[f] = cells[i];
  });
  return record;
}

/** `\x09` (how Zeek writes its separator) or the character itself. */
function unescapeSeparator(text: string): string {
  return text.replace(/\\x([0-9a-fA-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

function eveFlow(r: Record<string, unknown>, opts: PivotOptions): Named {
  const flow = typeof r.flow === "object" && r.flow !== null
    ? r.flow as Record<string, unknown>
    : {};
  const times: number[] = [];
  if (r.timestamp !== undefined) times.push(timeOf(r.timestamp, "timestamp"));
  if (flow.start !== undefined) times.push(timeOf(flow.start, "flow.start"));
  if (flow.end !== undefined) times.push(timeOf(flow.end, "flow.end"));
  if (times.length === 0) throw new Error("no timestamp or flow.start");
  const term = r.community_id !== undefined
    ? cidTerm(r.community_id, opts.seed)
    : tupleTerm(r.src_ip, r.dest_ip, r.proto, r.src_port, r.dest_port, "src_ip", "dest_ip");
  return { term, from: Math.min(...times), to: Math.max(...times) };
}

function zeekFlow(r: Record<string, unknown>, opts: PivotOptions): Named {
  if (r.ts === undefined) throw new Error("no ts");
  const ts = timeOf(r.ts, "ts");
  const duration = r.duration === undefined ? 0 : Number(r.duration);
  if (!(duration >= 0)) throw new Error(`invalid duration "${r.duration}"`);
  const term = r.community_id !== undefined ? cidTerm(r.community_id, opts.seed) : tupleTerm(
    r["id.orig_h"],
    r["id.resp_h"],
    r.proto,
    r["id.orig_p"],
    r["id.resp_p"],
    "id.orig_h",
    "id.resp_h",
  );
  return { term, from: ts, to: ts + duration };
}

function cidTerm(value: unknown, seed: number): Predicate {
  const digest = typeof value === "string" ? parseCommunityId(value) : null;
  if (digest === null) throw new Error(`invalid community_id ${JSON.stringify(value)}`);
  return { type: "cid", digest, prefix: digestPrefix(digest), seed };
}

function tupleTerm(
  src: unknown,
  dst: unknown,
  proto: unknown,
  sport: unknown,
  dport: unknown,
  srcName: string,
  dstName: string,
): Query {
  const a = addressOf(src, srcName);
  const b = addressOf(dst, dstName);
  if (a.family !== b.family) throw new Error(`${srcName} and ${dstName} of different families`);
  let p = typeof proto === "number" ? proto : PROTOCOLS[String(proto ?? "").toLowerCase()];
  if (p === 1 && a.family === 6) p = 58;
  if (!(Number.isInteger(p) && p >= 0 && p <= 255)) {
    throw new Error(
      `unknown proto ${JSON.stringify(proto)}: expected tcp, udp, sctp, icmp or 0-255`,
    );
  }
  const children: Query[] = [
    { type: "address", family: a.family, from: a.words, to: a.words },
    { type: "address", family: b.family, from: b.words, to: b.words },
    { type: "proto", proto: p, family: a.family },
  ];
  if (PORTED.has(p)) {
    for (const [value, name] of [[sport, "source port"], [dport, "destination port"]] as const) {
      const port = Number(value);
      if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
        throw new Error(`invalid ${name} ${JSON.stringify(value)}`);
      }
      children.push({ type: "port", from: port, to: port });
    }
  }
  return { type: "and", children };
}

function addressOf(value: unknown, name: string): ParsedAddress {
  const parsed = typeof value === "string" ? parseAddress(value) : null;
  if (parsed === null) throw new Error(`no usable ${name} (${JSON.stringify(value)})`);
  return parsed;
}

/** Seconds from Unix seconds (number or numeric text) or an ISO 8601 / EVE time. */
function timeOf(value: unknown, name: string): number {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string") {
    if (/^[0-9]+(\.[0-9]+)?$/.test(value)) return Number(value);
    // EVE writes +0000; Date wants +00:00. Keep microseconds the Date parser would drop.
    const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$/.exec(value);
    if (m !== null) {
      const zone = m[3] === undefined ? "Z" : m[3].replace(/^([+-]\d\d)(\d\d)$/, "$1:$2");
      const whole = Date.parse(m[1] + zone);
      if (Number.isFinite(whole)) return whole / 1000 + (m[2] ? Number(`0${m[2]}`) : 0);
    }
  }
  throw new Error(`invalid ${name} ${JSON.stringify(value)}`);
}
