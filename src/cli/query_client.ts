/**
 * `cutcap query` and `cutcap flows`: HTTP clients of a running sensor (or `cutcap serve`). `query` is
 * stenoread's job — the pcap goes to stdout or -w FILE, ready for `| tcpdump -nr -`.
 */
import { errorCauses } from "../log.ts";
import { parseInteger, parseStrict } from "../config.ts";
import { type OptionTable, UsageError } from "./options.ts";
import { parseDuration, parseSize } from "../units.ts";
import { readTokenFile } from "../server/auth.ts";
import { type FlowRecord, formatFlowTable } from "../query/flows.ts";
import { copyAnswer, type CopyResult, ONE_RECORD_MORE } from "./answer_copy.ts";

/** Options `cutcap query` and `cutcap flows` share. */
const CLIENT_OPTIONS = {
  server: {
    type: "string",
    default: "http://127.0.0.1:9102",
    arg: "URL",
    help: "the sensor or cutcap serve to ask (http:// when no scheme is given)",
  },
  token: { type: "string", arg: "T", help: "bearer token", shownDefault: "$CUTCAP_TOKEN" },
  "token-file": { type: "string", arg: "FILE", help: "read the bearer token from FILE" },
  ca: { type: "string", arg: "FILE", help: "CA certificate to verify an HTTPS server" },
  "community-id-seed": {
    type: "string",
    arg: "N",
    help: "Community ID seed of community-id terms and shown IDs (default: the server's)",
  },
} as const satisfies OptionTable;

/** Option table of `cutcap query` (parser and help). */
export const QUERY_OPTIONS = {
  ...CLIENT_OPTIONS,
  write: { type: "string", short: "w", arg: "FILE", help: "write the pcap to FILE, not stdout" },
  limit: { type: "string", arg: "N", help: "at most N packets" },
  "max-bytes": { type: "string", arg: "SIZE", help: "at most this many pcap bytes" },
  pcapng: { type: "boolean", default: false, help: "answer as pcapng instead of pcap" },
  "from-eve": {
    type: "string",
    arg: "FILE",
    help: "instead of a query: the flows of Suricata EVE JSON lines (alerts, flow events)",
  },
  "from-zeek": {
    type: "string",
    arg: "FILE",
    help: "instead of a query: the flows of a Zeek conn.log (TSV with #fields, or JSON lines)",
  },
  margin: {
    type: "string",
    default: "1m",
    arg: "DUR",
    help: "with --from-eve/--from-zeek: time kept before and after each event or flow",
  },
} as const satisfies OptionTable;

/** Option table of `cutcap read` (help; runReadCommand maps stenoread's names to query's). */
export const READ_OPTIONS = {
  ...CLIENT_OPTIONS,
  "limit-packets": { type: "string", arg: "N", help: "at most N packets (also --limit)" },
  "limit-bytes": {
    type: "string",
    arg: "SIZE",
    help: "at most this many pcap bytes (also --max-bytes)",
  },
  limit: { type: "string", arg: "N", help: "the same as --limit-packets" },
  "max-bytes": { type: "string", arg: "SIZE", help: "the same as --limit-bytes" },
} as const satisfies OptionTable;

/** Option table of `cutcap flows` (parser and help). */
export const FLOWS_OPTIONS = {
  ...CLIENT_OPTIONS,
  limit: { type: "string", arg: "N", help: "at most N flows" },
  "max-bytes": {
    type: "string",
    arg: "SIZE",
    help: "only flows until their stored bytes add up to this",
  },
  json: { type: "boolean", default: false, help: "JSON lines instead of a table" },
} as const satisfies OptionTable;

/** Parsed client options. */
interface ClientArgs {
  server: string;
  token: string | undefined;
  ca: string | undefined;
  write: string | undefined;
  limit: string | undefined;
  maxBytes: string | undefined;
  json: boolean;
  pcapng: boolean;
  /** Community ID seed sent as `seed=` (the server's own when absent). */
  seed: number | undefined;
  /** `--from-eve`/`--from-zeek`: the lines to pivot from instead of a query. */
  pivot: { format: "eve" | "zeek"; file: string; margin: number } | undefined;
  query: string;
}

function parseClientArgs(args: string[], command: "query" | "flows" | "read"): ClientArgs {
  const { values, positionals } = command !== "flows"
    ? parseStrict(args, QUERY_OPTIONS)
    : parseStrict(args, FLOWS_OPTIONS);
  const query = positionals.join(" ").trim();
  const pivot = "from-eve" in values || "from-zeek" in values
    ? pivotArgs(values as Parameters<typeof pivotArgs>[0])
    : undefined;
  if (pivot !== undefined && query !== "") {
    throw new UsageError(
      `Unexpected query "${query}" with --from-${pivot.format}: give a query or a file to pivot from, not both`,
    );
  }
  if (query === "" && pivot === undefined) {
    throw new UsageError(
      `Missing query: e.g. cutcap ${command} 'host 198.18.0.1 and after 1h ago'`,
    );
  }
  // The same reading as the server's --token-file: the first line, trimmed.
  const token = values.token ??
    (values["token-file"] !== undefined
      ? readTokenFile(values["token-file"])
      : Deno.env.get("CUTCAP_TOKEN"));
  return {
    server: serverUrl(values.server),
    token,
    ca: values.ca,
    write: "write" in values ? values.write : undefined,
    limit: values.limit,
    maxBytes: values["max-bytes"] === undefined
      ? undefined
      : String(parseSize(values["max-bytes"], "--max-bytes")),
    json: "json" in values ? values.json : false,
    pcapng: "pcapng" in values ? values.pcapng : false,
    seed: values["community-id-seed"] === undefined
      ? undefined
      : parseInteger(values["community-id-seed"], "--community-id-seed", 0, 65535),
    pivot,
    query,
  };
}

/** `--from-eve FILE` / `--from-zeek FILE` with `--margin`, when given. */
function pivotArgs(values: {
  "from-eve"?: string;
  "from-zeek"?: string;
  margin?: string;
}): ClientArgs["pivot"] {
  const eve = values["from-eve"];
  const zeek = values["from-zeek"];
  if (eve !== undefined && zeek !== undefined) {
    throw new UsageError("Options --from-eve and --from-zeek exclude each other: give one file");
  }
  if (eve === undefined && zeek === undefined) return undefined;
  const margin = parseDuration(values.margin ?? "1m", "--margin");
  return eve !== undefined
    ? { format: "eve", file: eve, margin }
    : { format: "zeek", file: zeek!, margin };
}

/** The request a query or a pivot makes: its path with parameters, and its body. */
async function queryRequest(
  args: ClientArgs,
  params: URLSearchParams,
): Promise<{ path: string; body: string }> {
  if (args.pivot === undefined) {
    return { path: `/query${params.size > 0 ? `?${params}` : ""}`, body: args.query };
  }
  params.set("input", args.pivot.format);
  params.set("margin", String(args.pivot.margin));
  let body: string;
  try {
    body = await Deno.readTextFile(args.pivot.file);
  } catch (error) {
    throw new Error(`Cannot read ${args.pivot.file}: ${errorCauses(error)}`);
  }
  return { path: `/query/pivot?${params}`, body };
}

/** Says on stderr which lines of the pivot file the server could not use, one per line. */
function reportPivotProblems(args: ClientArgs, headers: Headers): void {
  if (args.pivot === undefined) return;
  const problems = headers.get("x-cutcap-pivot-problems");
  if (!problems) return;
  for (const problem of problems.split(/; (?=line \d+: )/)) {
    console.error(`cutcap: ${args.pivot.file} ${problem}`);
  }
}

/** `--server` as a base URL: `127.0.0.1:9102` means http://127.0.0.1:9102, no trailing slash. */
function serverUrl(text: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  try {
    new URL(withScheme);
  } catch {
    throw new UsageError(`Invalid --server "${text}": expected a URL like http://127.0.0.1:9102`);
  }
  return withScheme.replace(/\/+$/, "");
}

async function request(args: ClientArgs, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (args.token) headers.set("authorization", `Bearer ${args.token}`);
  const client = args.ca
    ? Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(args.ca)] })
    : undefined;
  let response: Response;
  try {
    response = await fetch(`${args.server}${path}`, { ...init, headers, client });
  } catch (error) {
    throw new Error(`Cannot reach ${args.server}: ${errorCauses(error)}`);
  }
  if (!response.ok) {
    throw new Error(
      `${args.server} answered ${response.status}: ${(await response.text()).trim()}`,
    );
  }
  return response;
}

/** `cutcap query`: writes the matching packets as pcap to stdout or -w FILE. */
export async function runQueryCommand(argv: string[]): Promise<number> {
  const args = parseClientArgs(argv, "query");
  const file = args.write
    ? await Deno.open(args.write, { write: true, create: true, truncate: true })
    : null;
  await fetchAnswer(args, file?.writable ?? Deno.stdout.writable);
  return 0;
}

/** Options of `cutcap read` (all take a value); stenoread's limit names map to the client's. */
const READ_VALUE_OPTIONS: Record<string, string> = Object.fromEntries(
  Object.keys(READ_OPTIONS).map((name) => [
    `--${name}`,
    name === "limit-packets" ? "--limit" : name === "limit-bytes" ? "--max-bytes" : `--${name}`,
  ]),
);

/**
 * `cutcap read [options] QUERY [tcpdump options…]`, stenoread for cutcap: runs the query and pipes
 * the answer into `tcpdump -r -` with the options after the query. Exits with tcpdump's code.
 */
export async function runReadCommand(argv: string[]): Promise<number> {
  const clientArgv: string[] = [];
  let i = 0;
  for (; i < argv.length && argv[i].startsWith("--"); i++) {
    const [name, inline] = argv[i].split(/=(.*)/s, 2);
    const mapped = READ_VALUE_OPTIONS[name];
    if (mapped === undefined) {
      throw new UsageError(
        `Unknown option "${name}" before the query: expected one of ${
          Object.keys(READ_VALUE_OPTIONS).join(", ")
        } (tcpdump's options go after the query)`,
      );
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`Missing value after ${name}`);
    clientArgv.push(`${mapped}=${value}`);
  }
  if (i >= argv.length) {
    throw new UsageError(
      "Missing query: e.g. cutcap read 'host 198.18.0.1 and port 443' -nn -c 10",
    );
  }
  const args = parseClientArgs([...clientArgv, "--", argv[i]], "read");
  let tcpdump: Deno.ChildProcess;
  try {
    tcpdump = new Deno.Command("tcpdump", {
      args: ["-r", "-", ...argv.slice(i + 1)],
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    throw new Error(
      `Cannot run tcpdump: ${errorCauses(error)} (install it: apt-get install tcpdump)`,
    );
  }
  try {
    // tcpdump (libpcap) reads one link type per file: ask for pcap; files of other link types
    // are then named on stderr.
    await fetchAnswer(args, tcpdump.stdin, "pcap");
  } catch (error) {
    await tcpdump.stdin.close().catch(() => {});
    await tcpdump.status;
    throw error;
  }
  return (await tcpdump.status).code;
}

/**
 * Runs the query and copies the answer to `sink` within the client's limits; says on stderr when
 * a limit cut the answer. Returns null when the reader went away early (a quiet end, exit 0).
 */
export async function fetchAnswer(
  args: ClientArgs,
  sink: WritableStream<Uint8Array>,
  format?: "pcap",
): Promise<CopyResult | null> {
  const limits = {
    packets: readLimit(args.limit, "--limit"),
    bytes: readLimit(args.maxBytes, "--max-bytes"),
  };
  const params = new URLSearchParams();
  // One packet (and one largest record) more than wanted: its arrival proves the limit cut.
  if (limits.packets !== Infinity) params.set("limit", String(limits.packets + 1));
  if (limits.bytes !== Infinity) params.set("max_bytes", String(limits.bytes + ONE_RECORD_MORE));
  if (args.pcapng) params.set("format", "pcapng");
  else if (format) params.set("format", format);
  if (args.seed !== undefined) params.set("seed", String(args.seed));
  const { path, body: text } = await queryRequest(args, params);
  const response = await request(args, path, { method: "POST", body: text });
  reportPivotProblems(args, response.headers);
  // A fleet coordinator names the sensors it could not ask.
  const partial = response.headers.get("x-cutcap-partial");
  if (partial) console.error(`Partial answer: ${partial}`);
  const body = response.body ?? new ReadableStream<Uint8Array>();
  const result = await copyAnswer(body, sink, {
    ...limits,
    closeSink: sink !== Deno.stdout.writable,
  });
  if (result.closedEarly) return null;
  const note = truncationNote(result, limits, response.headers);
  if (note !== null) console.error(note);
  const leftOut = response.headers.get("x-cutcap-left-out");
  if (leftOut) console.error(`cutcap: the answer leaves out ${leftOut}`);
  return result;
}

/** The stderr line for an answer a limit cut, or null when it is whole. */
function truncationNote(
  result: CopyResult,
  asked: { packets: number; bytes: number },
  headers: Headers,
): string | null {
  const counts = `${result.packets} packets, ${result.bytes} bytes`;
  if (result.cutBy === "packets") {
    return `cutcap: answer cut at --limit ${asked.packets} (${counts}); more packets match`;
  }
  if (result.cutBy === "bytes") {
    return `cutcap: answer cut at --max-bytes ${asked.bytes} (${counts}); more packets match`;
  }
  // The server's own cap (--max-query-packets) may be below what was asked.
  const serverPackets = Number(headers.get("x-cutcap-limit-packets") ?? Infinity);
  if (serverPackets < asked.packets + 1 && result.packets >= serverPackets) {
    return `cutcap: answer cut at the server's limit of ${serverPackets} packets (--max-query-packets) (${counts}); more packets may match`;
  }
  return null;
}

function readLimit(text: string | undefined, name: string): number {
  if (text === undefined) return Infinity;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UsageError(`Invalid ${name} "${text}": expected a whole number above 0`);
  }
  return Number(text);
}

/** `cutcap flows`: prints the matching flows as a table (or JSON lines with --json). */
export async function runFlowsCommand(argv: string[]): Promise<number> {
  const args = parseClientArgs(argv, "flows");
  const params = new URLSearchParams({ q: args.query });
  if (args.limit) params.set("limit", args.limit);
  if (args.maxBytes) params.set("max_bytes", args.maxBytes);
  if (args.seed !== undefined) params.set("seed", String(args.seed));
  const response = await request(args, `/flows?${params}`);
  const records = await response.json() as FlowRecord[];
  const limit = Number(response.headers.get("x-cutcap-flow-limit") ?? Infinity);
  if (records.length >= limit) {
    console.error(`Showing the first ${limit} flows; more may match: give --limit N for more`);
  }
  if (args.json) { for (const record of records) console.log(JSON.stringify(record)); }
  else console.log(formatFlowTable(records));
  return 0;
}
