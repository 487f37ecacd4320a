/**
 * `cutcap query` and `cutcap flows`: HTTP clients of a running sensor (or `cutcap serve`). `query` is
 * stenoread's job — the pcap goes to stdout or -w FILE, ready for `| tcpdump -nr -`.
 */
import { parseStrict } from "../config.ts";
import { type OptionTable, UsageError } from "./options.ts";
import { parseSize } from "../units.ts";
import { readTokenFile } from "../server/auth.ts";
import { type FlowRecord, formatFlowTable } from "../query/flows.ts";

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
} as const satisfies OptionTable;

/** Option table of `cutcap query` (parser and help). */
export const QUERY_OPTIONS = {
  ...CLIENT_OPTIONS,
  write: { type: "string", short: "w", arg: "FILE", help: "write the pcap to FILE, not stdout" },
  limit: { type: "string", arg: "N", help: "at most N packets" },
  "max-bytes": { type: "string", arg: "SIZE", help: "at most this many pcap bytes" },
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
  query: string;
}

function parseClientArgs(args: string[], command: "query" | "flows"): ClientArgs {
  const { values, positionals } = command === "query"
    ? parseStrict(args, QUERY_OPTIONS)
    : parseStrict(args, FLOWS_OPTIONS);
  const query = positionals.join(" ").trim();
  if (query === "") {
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
    query,
  };
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
    throw new Error(`Cannot reach ${args.server}: ${causes(error)}`);
  }
  if (!response.ok) {
    throw new Error(
      `${args.server} answered ${response.status}: ${(await response.text()).trim()}`,
    );
  }
  return response;
}

/** An error's message and its causes' ("fetch failed: ... invalid peer certificate: UnknownIssuer"). */
function causes(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e !== undefined && parts.length < 5;) {
    const text = e instanceof Error ? e.message : String(e);
    if (!parts.some((p) => p.includes(text))) parts.push(text);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(": ");
}

/** `cutcap query`: writes the matching packets as pcap to stdout or -w FILE. */
export async function runQueryCommand(argv: string[]): Promise<number> {
  const args = parseClientArgs(argv, "query");
  const params = new URLSearchParams();
  if (args.limit) params.set("limit", args.limit);
  if (args.maxBytes) params.set("max_bytes", args.maxBytes);
  const suffix = params.size > 0 ? `?${params}` : "";
  const response = await request(args, `/query${suffix}`, { method: "POST", body: args.query });
  const body = response.body ?? new ReadableStream<Uint8Array>();
  if (args.write) {
    const file = await Deno.open(args.write, { write: true, create: true, truncate: true });
    await body.pipeTo(file.writable);
  } else {
    await body.pipeTo(Deno.stdout.writable, { preventClose: true });
  }
  return 0;
}

/** `cutcap flows`: prints the matching flows as a table (or JSON lines with --json). */
export async function runFlowsCommand(argv: string[]): Promise<number> {
  const args = parseClientArgs(argv, "flows");
  const params = new URLSearchParams({ q: args.query });
  if (args.limit) params.set("limit", args.limit);
  if (args.maxBytes) params.set("max_bytes", args.maxBytes);
  const response = await request(args, `/flows?${params}`);
  const records = await response.json() as FlowRecord[];
  if (args.json) { for (const record of records) console.log(JSON.stringify(record)); }
  else console.log(formatFlowTable(records));
  return 0;
}
