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
import { parseCommunityIdSeed } from "../flow/community_id.ts";

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
  catalog(): Catalog;
  policy: QueryPolicy;
  /** Community ID seed of `community-id` terms and `/flows`, unless a request gives `seed`. */
  communityIdSeed?: number;
}

/** Builds the query routes. */
export function queryRoutes(deps: QueryRouteDeps): Hono {
  const app = new Hono();
  let running = 0;

  const answer = async (c: Context, text: string | undefined) => {
    const parsed = parseRequest(c, text, deps);
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
    try {
      stream = queryPcapStream(deps.catalog(), parsed.query, {
        ...limits,
        onFinish: (result) => {
          running--;
          recordQuery(result.outcome, (performance.now() - started) / 1000, result.bytes);
        },
      });
    } catch (error) {
      running--;
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
  app.get("/flows", (c) => {
    const parsed = parseRequest(c, c.req.query("q"), deps);
    if ("error" in parsed) return c.text(parsed.error + "\n", 400);
    const limits = readLimits(c, deps.policy);
    if ("error" in limits) return c.text(limits.error + "\n", 400);
    const records = [
      ...matchingFlows(deps.catalog(), parsed.query, limits.limit, {
        communityIdSeed: parsed.seed,
      }),
    ];
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
