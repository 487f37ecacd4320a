/**
 * `cutcap query` and `cutcap flows`: HTTP clients of a running sensor (or `cutcap serve`). `query` is
 * stenoread's job — the pcap goes to stdout or -w FILE, ready for `| tcpdump -nr -`.
 */
import { parseInteger, parseStrict } from "../config.ts";
import { readTokenFile } from "../server/auth.ts";
import { type FlowRecord, formatFlowTable } from "../query/flows.ts";

const CLIENT_OPTIONS = {
  server: { type: "string", default: "http://127.0.0.1:9102" },
  token: { type: "string" },
  "token-file": { type: "string" },
  ca: { type: "string" },
  write: { type: "string", short: "w" },
  limit: { type: "string" },
  "max-bytes": { type: "string" },
  json: { type: "boolean", default: false },
  "community-id-seed": { type: "string" },
} as const;

/** Parsed client options. */
interface ClientArgs {
  server: string;
  token: string | undefined;
  ca: string | undefined;
  write: string | undefined;
  limit: string | undefined;
  maxBytes: string | undefined;
  json: boolean;
  /** Community ID seed sent as `seed=` (the server's own when absent). */
  seed: number | undefined;
  query: string;
}

function parseClientArgs(args: string[]): ClientArgs {
  const { values, positionals } = parseStrict(args, CLIENT_OPTIONS);
  const query = positionals.join(" ").trim();
  if (query === "") {
    throw new Error("Missing query: e.g. cutcap query 'host 198.18.0.1 and after 1h ago'");
  }
  // The same reading as the server's --token-file: the first line, trimmed.
  const token = values.token ??
    (values["token-file"] !== undefined
      ? readTokenFile(values["token-file"])
      : Deno.env.get("CUTCAP_TOKEN"));
  return {
    server: values.server.replace(/\/+$/, ""),
    token,
    ca: values.ca,
    write: values.write,
    limit: values.limit,
    maxBytes: values["max-bytes"],
    json: values.json,
    seed: values["community-id-seed"] === undefined
      ? undefined
      : parseInteger(values["community-id-seed"], "--community-id-seed", 0, 65535),
    query,
  };
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
  const args = parseClientArgs(argv);
  const params = new URLSearchParams();
  if (args.limit) params.set("limit", args.limit);
  if (args.maxBytes) params.set("max_bytes", args.maxBytes);
  if (args.seed !== undefined) params.set("seed", String(args.seed));
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
  const args = parseClientArgs(argv);
  const params = new URLSearchParams({ q: args.query });
  if (args.limit) params.set("limit", args.limit);
  if (args.seed !== undefined) params.set("seed", String(args.seed));
  const response = await request(args, `/flows?${params}`);
  const records = await response.json() as FlowRecord[];
  if (args.json) { for (const record of records) console.log(JSON.stringify(record)); }
  else console.log(formatFlowTable(records));
  return 0;
}
