/**
 * The query API: `POST /query` (stenographer-compatible: the query is the body), `GET /query?q=`, and
 * `GET /flows?q=`. Routes only parse requests and call src/query; limits and the concurrency cap live here
 * because they are HTTP policy.
 */
import { bodyLimit } from "hono/body-limit";
import { Hono } from "hono";
import type { Context } from "hono";
import type { Catalog } from "../archive/catalog.ts";
import { parseQuery, QueryError } from "../query/parse.ts";
import type { Query } from "../query/ast.ts";
import {
  type AnswerFormat,
  candidateLinkTypes,
  queryPcapStream,
  type QueryResult,
} from "../query/execute.ts";
import { linkTypeName } from "../packet/link_type.ts";
import { recordQuery } from "./metrics.ts";
import { flowRecordStream } from "../query/flows.ts";
import { logWarn } from "../log.ts";
import { parseCommunityIdSeed } from "../flow/community_id.ts";
import { parsePivot, type Pivot } from "../query/pivot.ts";
import { parseDuration } from "../units.ts";
import { closeInputs, type ExtraInput, type OpenFiles } from "../query/open_files.ts";

/** Server-wide query policy. */
export interface QueryPolicy {
  /** Cap on packets per query, whatever the client asks. */
  maxPackets: number;
  /** Cap on pcap bytes per query. */
  maxBytes: number;
  /** Queries running at once; more get 503. */
  maxConcurrent: number;
  /** Largest accepted query text in bytes. */
  maxBodyBytes: number;
  /** Flow records `/flows` returns when the client gives no `limit`. */
  defaultFlows: number;
}

/** Defaults for `QueryPolicy`. */
export const DEFAULT_QUERY_POLICY: QueryPolicy = {
  maxPackets: 10_000_000,
  maxBytes: 64 * 1024 ** 3,
  maxConcurrent: 4,
  maxBodyBytes: 64 * 1024,
  defaultFlows: 10_000,
};

/** What the routes need from their host. */
export interface QueryRouteDeps {
  /** The catalog of finalized files; called after the open files were gathered. */
  catalog(): Catalog;
  policy: QueryPolicy;
  /** Community ID seed of `community-id` terms and `/flows`, unless a request gives `seed`. */
  communityIdSeed?: number;
  /** Also read these open files up to their last flush (src/query/open_files.ts). */
  openFiles?: OpenFiles;
}

/** Builds the query routes. */
export function queryRoutes(deps: QueryRouteDeps): Hono {
  const app = new Hono();
  let running = 0;
  const openFiles = deps.openFiles;
  // Before the catalog is read: see open_files.ts.
  const openInputs = (): Promise<ExtraInput[]> =>
    openFiles === undefined ? Promise.resolve([]) : openFiles.inputs();

  /** The 503 answer when every query slot is taken (`/query` and `/flows` share them). */
  const refuseWhenBusy = (c: Context): Response | undefined => {
    if (running < deps.policy.maxConcurrent) return undefined;
    recordQuery("rejected", 0, 0);
    return c.text(
      `Too many queries: ${running} running, the limit is ${deps.policy.maxConcurrent}\n`,
      503,
    );
  };

  const answer = (c: Context, text: string | undefined) => {
    const parsed = parseRequest(c, text, deps);
    if ("error" in parsed) return refuse(c, parsed.error);
    return answerQuery(c, parsed.query, {});
  };

  /** The pcap answer of a parsed query; `extra` headers go with it. */
  const answerQuery = async (c: Context, query: Query, extraHeaders: Record<string, string>) => {
    const limits = readLimits(c, deps.policy);
    if ("error" in limits) return refuse(c, limits.error);
    const asked = readFormat(c);
    if (asked === "invalid") {
      return refuse(c, `Invalid format "${c.req.query("format")}": expected pcap or pcapng`);
    }
    const busy = refuseWhenBusy(c);
    if (busy) return busy;
    // Several link types in the query's time range: a pcap answer would leave files out, so the
    // answer is pcapng unless the client insists on pcap (then a header says what is left out).
    const linkTypes = candidateLinkTypes(deps.catalog(), query);
    const format: AnswerFormat = asked ?? (linkTypes.length > 1 ? "pcapng" : "pcap");
    running++;
    const started = performance.now();
    let stream: ReadableStream<Uint8Array>;
    let extra: ExtraInput[] = [];
    let finished: QueryResult | null = null;
    try {
      extra = await openInputs();
      stream = queryPcapStream(deps.catalog(), query, {
        ...limits,
        extra,
        format,
        onFinish: (result) => {
          finished = result;
          running--;
          recordQuery(result.outcome, (performance.now() - started) / 1000, result.bytes);
          for (const skip of result.unreadable) {
            logWarn(`/query skipped ${skip.file}: ${skip.reason}`);
          }
        },
      });
    } catch (error) {
      running--;
      closeInputs(extra);
      throw error;
    }
    const name = `cutcap-${new Date().toISOString().replace(/[:.]/g, "-")}.${format}`;
    const headers: Record<string, string> = { ...extraHeaders };
    if (format === "pcap" && linkTypes.length > 1) {
      headers["x-cutcap-left-out"] =
        `files of link types other than the answer's (the time range holds ${
          linkTypes.map(linkTypeName).join(", ")
        }): ask for format=pcapng to get them all`;
    }
    // The first 256 KiB are made before the headers go: an answer that fits (a small one, or one a
    // small limit cut) is over by then, and a header says whether it is whole.
    const body = await withHeadStart(stream);
    const summary = answerSummary(finished, limits);
    if (summary !== null) headers["x-cutcap-answer"] = summary;
    return new Response(body, {
      headers: {
        ...headers,
        "content-type": format === "pcapng"
          ? "application/x-pcapng"
          : "application/vnd.tcpdump.pcap",
        "content-disposition": `attachment; filename="${name}"`,
        // The limits in force (the client's, stenoread's headers, the server's cap): an answer of
        // exactly this many packets, or within one record of this many bytes, may have been cut.
        "x-cutcap-limit-packets": String(limits.limit),
        "x-cutcap-limit-bytes": String(limits.maxBytes),
      },
    });
  };

  // hono's bodyLimit: a declared length over the limit is refused at once, a chunked body once
  // it passes the limit while read.
  const limitBody = (max: number, what: string) =>
    bodyLimit({ maxSize: max, onError: (c) => refuse(c, `${what} body over ${max} bytes`, 413) });
  app.post("/query", limitBody(deps.policy.maxBodyBytes, "Query"), async (c) => {
    return answer(c, await c.req.text());
  });
  app.get("/query", (c) => answer(c, c.req.query("q")));
  app.post("/query/pivot", limitBody(PIVOT_BODY_BYTES, "Pivot"), async (c) => {
    const body = await c.req.text();
    const pivot = readPivot(c, body, deps);
    if ("error" in pivot) return refuse(c, pivot.error);
    return answerQuery(c, pivot.query, pivotHeaders(pivot));
  });
  app.get("/flows", async (c) => {
    const parsed = parseRequest(c, c.req.query("q"), deps);
    if ("error" in parsed) return refuse(c, parsed.error);
    const limit = readPositive(c.req.query("limit"), "limit", deps.policy.maxPackets);
    if (typeof limit === "string") return refuse(c, limit);
    const maxBytes = readPositive(c.req.query("max_bytes"), "max_bytes", Infinity);
    if (typeof maxBytes === "string") return refuse(c, maxBytes);
    const busy = refuseWhenBusy(c);
    if (busy) return busy;
    const ndjson = c.req.query("format") === "ndjson" ||
      (c.req.header("accept") ?? "").includes("application/x-ndjson");
    const flowLimit = c.req.query("limit") ? limit : deps.policy.defaultFlows;
    running++;
    const started = performance.now();
    let extra: ExtraInput[];
    try {
      extra = await openInputs();
    } catch (error) {
      running--;
      throw error;
    }
    // Flow records come from the indexes alone: the descriptors are not needed.
    closeInputs(extra);
    const stream = flowRecordStream(deps.catalog(), parsed.query, {
      extra,
      limit: flowLimit,
      maxBytes,
      format: ndjson ? "ndjson" : "json",
      communityIdSeed: parsed.seed,
      onFinish: (report, outcome) => {
        running--;
        recordQuery(outcome, (performance.now() - started) / 1000, 0);
        for (const skip of report.skipped) logWarn(`/flows skipped ${skip.file}: ${skip.reason}`);
      },
    });
    return new Response(stream, {
      headers: {
        "content-type": ndjson ? "application/x-ndjson" : "application/json",
        "x-cutcap-flow-limit": String(flowLimit),
      },
    });
  });
  return app;
}

/** A request that cannot be answered as asked: counted as an "invalid" query, then the message. */
function refuse(c: Context, message: string, status: 400 | 413 = 400): Response {
  recordQuery("invalid", 0, 0);
  return c.text(message + "\n", status);
}

/** Bytes of an answer read before its headers are sent (a small answer is then over). */
const HEAD_START = 256 * 1024;

/**
 * A stream equal to `stream` whose first HEAD_START bytes (or all of it, when shorter) have been
 * read already, so that the query's outcome is known for a small answer.
 */
async function withHeadStart(
  stream: ReadableStream<Uint8Array>,
): Promise<ReadableStream<Uint8Array>> {
  const reader = stream.getReader();
  const head: Uint8Array[] = [];
  let bytes = 0;
  let done = false;
  while (bytes < HEAD_START) {
    const next = await reader.read();
    if (next.done) {
      done = true;
      break;
    }
    head.push(next.value);
    bytes += next.value.length;
  }
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of head) controller.enqueue(chunk);
      if (done) controller.close();
    },
    async pull(controller) {
      const next = await reader.read();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * `X-Cutcap-Answer` for an answer that ended within its head start: whole, or cut by which limit,
 * with the counts; null while it is still running (then X-Cutcap-Limit-* say the limits).
 */
function answerSummary(
  result: QueryResult | null,
  limits: { limit: number; maxBytes: number },
): string | null {
  if (result === null) return null;
  const counts = `packets=${result.packets} bytes=${result.bytes}`;
  if (result.outcome === "complete") return `complete ${counts}`;
  if (result.outcome !== "limited") return null;
  const which = result.packets >= limits.limit
    ? `the packet limit ${limits.limit}`
    : `the byte limit ${limits.maxBytes}`;
  return `truncated by ${which}: ${counts}; more packets match`;
}

/** The answer format the client asks for (`format=`, `Accept:`), undefined when it does not. */
function readFormat(c: Context): AnswerFormat | "invalid" | undefined {
  const format = c.req.query("format");
  if (format === "pcap" || format === "pcapng") return format;
  if (format !== undefined && format !== "") return "invalid";
  const accept = c.req.header("accept") ?? "";
  if (accept.includes("application/x-pcapng")) return "pcapng";
  if (accept.includes("application/vnd.tcpdump.pcap")) return "pcap";
  return undefined;
}

/** Largest pivot body (EVE or conn.log lines): 16 MiB. */
const PIVOT_BODY_BYTES = 16 << 20;

/**
 * `POST /query/pivot?input=eve|zeek&margin=DUR[&seed=N]` (and /query's `format`, limits): the
 * body's lines as one query (see src/query/pivot.ts).
 */
function readPivot(c: Context, body: string, deps: QueryRouteDeps): Pivot | { error: string } {
  const input = c.req.query("input");
  if (input !== "eve" && input !== "zeek") {
    return { error: `Invalid input "${input ?? ""}": expected eve or zeek` };
  }
  try {
    const seedText = c.req.query("seed");
    const seed = seedText === undefined
      ? deps.communityIdSeed ?? 0
      : parseCommunityIdSeed(seedText);
    const marginText = c.req.query("margin");
    const margin = marginText === undefined ? 60 : parseDuration(marginText, "margin");
    return parsePivot(body, input, { margin, seed });
  } catch (error) {
    return { error: (error as Error).message };
  }
}

/** Headers saying how many lines a pivot used and which it could not (by number, with why). */
function pivotHeaders(pivot: Pivot): Record<string, string> {
  const headers: Record<string, string> = {
    "x-cutcap-pivot-flows": String(pivot.flows),
    "x-cutcap-pivot-skipped": pivot.problems.map((p) => p.line).join(","),
  };
  if (pivot.problems.length > 0) {
    // Header values are ASCII on one line; the lines' own text is replaced where it is not.
    const text = pivot.problems.map((p) => `line ${p.line}: ${p.message}`).join("; ");
    headers["x-cutcap-pivot-problems"] = text.replace(/[^\x20-\x7e]/g, "?").slice(0, 8000);
  }
  return headers;
}

/** The query text parsed with the Community ID seed of the request (`seed=`) or the server. */
function parseRequest(
  c: Context,
  text: string | undefined,
  deps: QueryRouteDeps,
): { query: Query; seed: number } | { error: string } {
  if (text === undefined) return { error: "Missing query: give it as the request body or as ?q=" };
  const seedText = c.req.query("seed");
  let seed = deps.communityIdSeed ?? 0;
  if (seedText !== undefined) {
    try {
      seed = parseCommunityIdSeed(seedText);
    } catch (error) {
      return { error: (error as Error).message };
    }
  }
  try {
    return { query: parseQuery(text, { communityIdSeed: seed }), seed };
  } catch (error) {
    if (error instanceof QueryError) return { error: error.message };
    throw error;
  }
}

/**
 * Packets and bytes of one answer: the URL's `limit` and `max_bytes`, stenoread's
 * `Steno-Limit-Packets` and `Steno-Limit-Bytes` headers (0 there means no limit, as in
 * stenographer), the smallest of them, capped by the server's policy.
 */
function readLimits(
  c: Context,
  policy: QueryPolicy,
): { limit: number; maxBytes: number } | { error: string } {
  const limit = readPositive(c.req.query("limit"), "limit", policy.maxPackets);
  const maxBytes = readPositive(c.req.query("max_bytes"), "max_bytes", policy.maxBytes);
  const stenoPackets = readStenoLimit(c.req.header("steno-limit-packets"), "Steno-Limit-Packets");
  const stenoBytes = readStenoLimit(c.req.header("steno-limit-bytes"), "Steno-Limit-Bytes");
  for (const v of [limit, maxBytes, stenoPackets, stenoBytes]) {
    if (typeof v === "string") return { error: v };
  }
  return {
    limit: Math.min(limit as number, stenoPackets as number),
    maxBytes: Math.min(maxBytes as number, stenoBytes as number),
  };
}

/** A stenographer limit header: a whole number, 0 or absent = no limit (Infinity). */
function readStenoLimit(text: string | undefined, name: string): number | string {
  if (text === undefined || text.trim() === "") return Infinity;
  const value = text.trim();
  if (!/^\d+$/.test(value)) {
    return `Invalid ${name} header "${value}": expected a whole number (0 = no limit)`;
  }
  return Number(value) === 0 ? Infinity : Number(value);
}

function readPositive(text: string | undefined, name: string, cap: number): number | string {
  if (text === undefined || text === "") return cap;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    return `Invalid ${name} "${text}": expected a whole number above 0`;
  }
  return Math.min(Number(text), cap);
}
