/**
 * The coordinator's API, the same routes a sensor serves: `/flows` answered from ClickHouse alone,
 * `/query` planned from ClickHouse and answered by the sensors that hold matches (in parallel,
 * merged by time), `/status` listing the sensors (the page at `/` is src/web, installed by mod.ts). Stateless: every answer is computed from
 * ClickHouse and the sensors, so several coordinators can run behind a load balancer.
 *
 * Partial answers: a sensor that cannot be asked (no URL, unreachable, an error status, not pcap)
 * is named in the `X-Cutcap-Partial` header; one that fails after the answer started makes the
 * body end with an error once every other sensor's packets are sent. With `partial=false` the
 * answer is assembled in a temporary file first and any failure is a 502 naming the sensors.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Context } from "hono";
import { parseQuery, QueryError } from "../query/parse.ts";
import type { Query } from "../query/ast.ts";
import { ClickHouseError } from "../export/clickhouse.ts";
import type { ClickHouse } from "../export/clickhouse.ts";
import { type FlowRow, rowRecord } from "../export/schema.ts";
import { flowRows, planQuery, sensorInfo, type SensorPlan } from "./plan.ts";
import { querySql } from "./sql.ts";
import { mergedFormat, mergePcapStreams, PcapStreamReader } from "./pcap_merge.ts";
import { errorCauses, logWarn } from "../log.ts";

/** What the routes need. */
export interface FleetDeps {
  clickhouse: ClickHouse;
  /** Bearer token sent to the sensors (`--sensor-token-file`). */
  sensorToken?: string;
  /** TLS client trusting `--sensor-ca`. */
  sensorClient?: Deno.HttpClient;
  /** Cap on packets (and flows) per answer. */
  maxPackets: number;
  /** Queries at once; more get 503. */
  maxConcurrent: number;
  /** Seconds a sensor may take to start answering. */
  sensorTimeoutSeconds: number;
}

/** Largest query body accepted. */
const MAX_BODY_BYTES = 64 * 1024;

/** Header naming the sensors missing from an answer. */
export const PARTIAL_HEADER = "X-Cutcap-Partial";
/** Header naming the sensors an answer was asked of. */
export const SENSORS_HEADER = "X-Cutcap-Sensors";

/** The columns of a flow row that make its `/flows` record (rowRecord). */
export const FLOW_FIELDS =
  "sensor, file, kind, src, dst, src_port, dst_port, proto, vlan, ether_type, first_us, last_us, packets, bytes" +
  ", community_id, total_packets, total_bytes, cut_packet, end_reason";

/** Builds the coordinator's routes. */
export function fleetRoutes(deps: FleetDeps): Hono {
  const app = new Hono();
  let running = 0;
  const noStore = { "Cache-Control": "no-store" };

  app.get("/healthz", (c) => c.text("ok\n", 200, noStore));
  app.get("/status", async (c) => c.json(await fleetStatus(deps), 200, noStore));

  app.get("/flows", async (c) => {
    const parsed = parseRequest(c.req.query("q"));
    if ("error" in parsed) return c.text(parsed.error + "\n", 400);
    const limit = readLimit(c.req.query("limit"), deps.maxPackets);
    if (typeof limit === "string") return c.text(limit + "\n", 400);
    let rows: FlowRow[];
    try {
      rows = await deps.clickhouse.select<FlowRow>(
        // PREWHERE: the query's columns are read first, the rest only for the rows it keeps.
        `SELECT ${FLOW_FIELDS} FROM ${flowRows(querySql(parsed.query).may)} ` +
          `ORDER BY first_us, sensor, file LIMIT ${limit}`,
      );
    } catch (error) {
      return clickHouseFailure(c, error);
    }
    const records = rows.map(rowRecord);
    const wantsNdjson = c.req.query("format") === "ndjson" ||
      (c.req.header("accept") ?? "").includes("application/x-ndjson");
    if (!wantsNdjson) return c.json(records);
    return c.body(records.map((r) => JSON.stringify(r) + "\n").join(""), 200, {
      "content-type": "application/x-ndjson",
    });
  });

  const answer = async (c: Context, text: string | undefined) => {
    const parsed = parseRequest(text);
    if ("error" in parsed) return c.text(parsed.error + "\n", 400);
    const limit = readLimit(c.req.query("limit"), deps.maxPackets);
    if (typeof limit === "string") return c.text(limit + "\n", 400);
    const strict = c.req.query("partial") === "false";
    const format = c.req.query("format");
    if (format !== undefined && format !== "pcap" && format !== "pcapng") {
      return c.text(`Invalid format "${format}": expected pcap or pcapng\n`, 400);
    }
    if (running >= deps.maxConcurrent) {
      return c.text(
        `Too many queries: ${running} running, the limit is ${deps.maxConcurrent}\n`,
        503,
      );
    }
    running++;
    let finished = false;
    const done = () => {
      if (!finished) running--;
      finished = true;
    };
    try {
      return await fleetQuery(c, deps, parsed.query, { limit, strict, format, done });
    } catch (error) {
      done();
      if (error instanceof ClickHouseError) return clickHouseFailure(c, error);
      throw error;
    }
  };
  // A query is short text: a body over 64 KiB is refused (413), as on a sensor.
  const limit = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) => c.text(`Query body over ${MAX_BODY_BYTES} bytes\n`, 413),
  });
  app.post("/query", limit, async (c) => answer(c, await c.req.text()));
  app.get("/query", (c) => answer(c, c.req.query("q")));
  return app;
}

/** A sensor missing from an answer and why. */
interface Missing {
  sensor: string;
  reason: string;
}

async function fleetQuery(
  c: Context,
  deps: FleetDeps,
  q: Query,
  opts: { limit: number; strict: boolean; format?: "pcap" | "pcapng"; done: () => void },
): Promise<Response> {
  const plans = await planQuery(deps.clickhouse, q);
  const missing: Missing[] = [];
  const params = `limit=${opts.limit}${opts.format ? `&format=${opts.format}` : ""}`;
  const opened = await Promise.all(plans.map((p) => openSensor(deps, p, params)));
  const readers: PcapStreamReader[] = [];
  for (const [i, result] of opened.entries()) {
    if (result instanceof PcapStreamReader) readers.push(result);
    else missing.push({ sensor: plans[i].sensor, reason: result });
  }
  // A pcap answer holds one link type: when the client insists on pcap, sensors answering with
  // another are named, not mixed in; otherwise differing link types make the answer pcapng.
  let sources = readers;
  const format = opts.format ?? mergedFormat(readers);
  if (format === "pcap" && readers.length > 0) {
    const linkType = readers[0].interfaces[0].linkType;
    sources = readers.filter((r) => r.format === "pcap" && r.interfaces[0].linkType === linkType);
    for (const r of readers.filter((r) => !sources.includes(r))) {
      r.cancel();
      missing.push({
        sensor: r.name,
        reason: `answers with another link type than the pcap's ${linkType} (ask format=pcapng)`,
      });
    }
  }
  const headers: Record<string, string> = {
    "content-type": format === "pcapng" ? "application/x-pcapng" : "application/vnd.tcpdump.pcap",
    "content-disposition": `attachment; filename="cutcap-fleet-${
      new Date().toISOString().replace(/[:.]/g, "-")
    }.${format}"`,
    [SENSORS_HEADER]: plans.map((p) => p.sensor).join(", "),
  };
  if (opts.strict && missing.length > 0) {
    for (const r of sources) r.cancel();
    opts.done();
    return c.text(`Partial answer refused (partial=false): ${describeMissing(missing)}\n`, 502);
  }
  const midway: Missing[] = [];
  const stream = mergePcapStreams(sources, format, {
    limit: opts.limit,
    errorAtEndOnFailure: true,
    onSourceError: (sensor, error) => {
      midway.push({ sensor, reason: `failed during the answer: ${error.message}` });
      logWarn(`fleet: sensor ${sensor} failed during an answer: ${error.message}`);
    },
    onFinish: () => opts.done(),
  });
  if (missing.length > 0) headers[PARTIAL_HEADER] = headerValue(describeMissing(missing));
  if (!opts.strict) return new Response(stream, { headers });
  return await bufferedAnswer(c, stream, midway, headers);
}

/** partial=false: the whole answer goes to a temporary file first, so a failure is a status. */
async function bufferedAnswer(
  c: Context,
  stream: ReadableStream<Uint8Array>,
  midway: Missing[],
  headers: Record<string, string>,
): Promise<Response> {
  const path = await Deno.makeTempFile({ prefix: "cutcap-fleet-" });
  try {
    const file = await Deno.open(path, { write: true });
    try {
      await stream.pipeTo(file.writable);
    } catch {
      // A sensor failed: `midway` names it.
    }
    if (midway.length > 0) {
      return c.text(`Partial answer refused (partial=false): ${describeMissing(midway)}\n`, 502);
    }
    const reader = await Deno.open(path, { read: true });
    await Deno.remove(path);
    return new Response(reader.readable, { headers });
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** Asks one sensor; its reader with the header read, or why it cannot be asked. */
async function openSensor(
  deps: FleetDeps,
  plan: SensorPlan,
  params: string,
): Promise<PcapStreamReader | string> {
  if (plan.url === "") return "it advertised no URL (--advertise-url)";
  const headers: Record<string, string> = { "content-type": "text/plain" };
  if (deps.sensorToken !== undefined) headers.authorization = `Bearer ${deps.sensorToken}`;
  // The timeout covers the start of the answer only: a long answer may take its time.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), deps.sensorTimeoutSeconds * 1000);
  try {
    return await startAnswer(deps, plan, params, headers, abort.signal);
  } finally {
    clearTimeout(timer);
  }
}

async function startAnswer(
  deps: FleetDeps,
  plan: SensorPlan,
  params: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<PcapStreamReader | string> {
  let response: Response;
  try {
    response = await fetch(`${plan.url}/query?${params}`, {
      method: "POST",
      body: plan.query,
      headers,
      client: deps.sensorClient,
      signal,
    });
  } catch (error) {
    return `unreachable at ${plan.url}: ${errorCauses(error)}`;
  }
  if (!response.ok || response.body === null) {
    const text = (await response.text().catch(() => "")).trim().slice(0, 200);
    return `answered ${response.status}: ${text}`;
  }
  const reader = new PcapStreamReader(plan.sensor, response.body);
  try {
    await reader.readHeader();
  } catch (error) {
    reader.cancel();
    return `no pcap answer: ${error instanceof Error ? error.message : error}`;
  }
  return reader;
}

function describeMissing(missing: readonly Missing[]): string {
  return missing.map((m) => `sensor ${m.sensor} ${m.reason}`).join("; ");
}

/** A header value: one line of printable ASCII. */
function headerValue(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, " ").slice(0, 4000);
}

function parseRequest(text: string | undefined): { query: Query } | { error: string } {
  if (text === undefined) return { error: "Missing query: give it as the request body or as ?q=" };
  try {
    const query = parseQuery(text, { sensors: true });
    querySql(query); // refuses what the flow rows cannot answer
    return { query };
  } catch (error) {
    if (error instanceof QueryError) return { error: error.message };
    throw error;
  }
}

function readLimit(text: string | undefined, cap: number): number | string {
  if (text === undefined || text === "") return cap;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    return `Invalid limit "${text}": expected a whole number above 0`;
  }
  return Math.min(Number(text), cap);
}

function clickHouseFailure(c: Context, error: unknown): Response {
  if (!(error instanceof ClickHouseError)) throw error;
  return c.text(`${error.message}\n`, 502);
}

/** One sensor as `/status` shows it. */
interface SensorStatus {
  name: string;
  url: string;
  /** Unix seconds of its last heartbeat (sent with every export). */
  lastSeen: number;
  backlogFiles: number;
  lastFile: string;
  /** Its /healthz answered within 2 s. */
  reachable: boolean;
}

/** The sensors as `/status` (and the page's status view) show them. */
export async function fleetStatus(
  deps: FleetDeps,
): Promise<{ role: "fleet"; sensors: SensorStatus[] }> {
  const sensors = await sensorInfo(deps.clickhouse).catch(() => []);
  const reachable = await Promise.all(sensors.map(async (s) => {
    if (s.url === "") return false;
    try {
      const response = await fetch(`${s.url}/healthz`, {
        client: deps.sensorClient,
        signal: AbortSignal.timeout(2000),
        headers: deps.sensorToken ? { authorization: `Bearer ${deps.sensorToken}` } : {},
      });
      await response.body?.cancel();
      return response.ok;
    } catch {
      return false;
    }
  }));
  return {
    role: "fleet",
    sensors: sensors.map((s, i) => ({
      name: s.sensor,
      url: s.url,
      lastSeen: s.lastSeen,
      backlogFiles: s.backlogFiles,
      lastFile: s.lastFile,
      reachable: reachable[i],
    })),
  };
}
