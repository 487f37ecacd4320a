/**
 * The query API: `POST /query` (stenographer-compatible: the query is the body), `GET /query?q=`, and
 * `GET /flows?q=`. Routes only parse requests and call src/query; limits and the concurrency cap live here
 * because they are HTTP policy.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import type { Catalog } from "../index/catalog.ts";
import { parseQuery, QueryError } from "../query/parse.ts";
import type { Query } from "../query/ast.ts";
import { queryPcapStream } from "../query/execute.ts";
import { recordQuery } from "./metrics.ts";
import { matchingFlows } from "../query/flows.ts";
import { closeInputs, type ExtraInput, OpenFiles } from "../query/open_files.ts";

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
}

/** Defaults for `QueryPolicy`. */
export const DEFAULT_QUERY_POLICY: QueryPolicy = {
  maxPackets: 10_000_000,
  maxBytes: 64 * 1024 ** 3,
  maxConcurrent: 4,
  maxBodyBytes: 64 * 1024,
};

/** What the routes need from their host. */
export interface QueryRouteDeps {
  /** The catalog of finalized files; called after the open files were gathered. */
  catalog(): Catalog;
  policy: QueryPolicy;
  /** Also read the open files of this archive up to their last flush (src/query/open_files.ts). */
  openFilesOf?: string;
}

/** Builds the query routes. */
export function queryRoutes(deps: QueryRouteDeps): Hono {
  const app = new Hono();
  let running = 0;
  const openFiles = deps.openFilesOf === undefined ? null : new OpenFiles(deps.openFilesOf);
  // Before the catalog is read: see open_files.ts.
  const openInputs = (): Promise<ExtraInput[]> =>
    openFiles === null ? Promise.resolve([]) : openFiles.inputs();

  const answer = async (c: Context, text: string | undefined) => {
    const parsed = parseRequest(text);
    if ("error" in parsed) return c.text(parsed.error + "\n", 400);
    const limits = readLimits(c, deps.policy);
    if ("error" in limits) return c.text(limits.error + "\n", 400);
    if (running >= deps.policy.maxConcurrent) {
      recordQuery("rejected", 0, 0);
      return c.text(
        `Too many queries: ${running} running, the limit is ${deps.policy.maxConcurrent}\n`,
        503,
      );
    }
    running++;
    const started = performance.now();
    let stream: ReadableStream<Uint8Array>;
    let extra: ExtraInput[] = [];
    try {
      extra = await openInputs();
      stream = queryPcapStream(deps.catalog(), parsed.query, {
        ...limits,
        extra,
        onFinish: (result) => {
          running--;
          recordQuery(result.outcome, (performance.now() - started) / 1000, result.bytes);
        },
      });
    } catch (error) {
      running--;
      closeInputs(extra);
      throw error;
    }
    const name = `cutcap-${new Date().toISOString().replace(/[:.]/g, "-")}.pcap`;
    await Promise.resolve();
    return new Response(stream, {
      headers: {
        "content-type": "application/vnd.tcpdump.pcap",
        "content-disposition": `attachment; filename="${name}"`,
      },
    });
  };

  app.post("/query", async (c) => {
    const body = await readBody(c.req.raw, deps.policy.maxBodyBytes);
    if (body === null) return c.text(`Query body over ${deps.policy.maxBodyBytes} bytes\n`, 413);
    return answer(c, body);
  });
  app.get("/query", (c) => answer(c, c.req.query("q")));
  app.get("/flows", async (c) => {
    const parsed = parseRequest(c.req.query("q"));
    if ("error" in parsed) return c.text(parsed.error + "\n", 400);
    const limits = readLimits(c, deps.policy);
    if ("error" in limits) return c.text(limits.error + "\n", 400);
    const extra = await openInputs();
    // Flow records come from the indexes alone: the descriptors are not needed.
    closeInputs(extra);
    const records = [...matchingFlows(deps.catalog(), parsed.query, limits.limit, extra)];
    const wantsNdjson = c.req.query("format") === "ndjson" ||
      (c.req.header("accept") ?? "").includes("application/x-ndjson");
    if (!wantsNdjson) return c.json(records);
    return c.body(
      records.map((r) => JSON.stringify(r)).join("\n") + (records.length ? "\n" : ""),
      200,
      {
        "content-type": "application/x-ndjson",
      },
    );
  });
  return app;
}

function parseRequest(text: string | undefined): { query: Query } | { error: string } {
  if (text === undefined) return { error: "Missing query: give it as the request body or as ?q=" };
  try {
    return { query: parseQuery(text) };
  } catch (error) {
    if (error instanceof QueryError) return { error: error.message };
    throw error;
  }
}

/** `limit` (packets) and `max_bytes` from the URL, capped by the server's policy. */
function readLimits(
  c: Context,
  policy: QueryPolicy,
): { limit: number; maxBytes: number } | { error: string } {
  const limit = readPositive(c.req.query("limit"), "limit", policy.maxPackets);
  const maxBytes = readPositive(c.req.query("max_bytes"), "max_bytes", policy.maxBytes);
  if (typeof limit === "string") return { error: limit };
  if (typeof maxBytes === "string") return { error: maxBytes };
  return { limit, maxBytes };
}

function readPositive(text: string | undefined, name: string, cap: number): number | string {
  if (text === undefined || text === "") return cap;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    return `Invalid ${name} "${text}": expected a whole number above 0`;
  }
  return Math.min(Number(text), cap);
}

/** Reads a request body up to `max` bytes; null when it is longer. */
async function readBody(request: Request, max: number): Promise<string | null> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > max) return null;
  if (!request.body) return "";
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of request.body) {
    total += chunk.length;
    if (total > max) return null;
    chunks.push(chunk);
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return new TextDecoder().decode(all);
}
