/**
 * `cutcap serve --out DIR [--listen HOST:PORT]`: the same server and routes as a capture, over an existing
 * archive, without capturing. The catalog is rebuilt from the files when it is missing or stale.
 */
import {
  checkListenSecurity,
  parseGuardOptions,
  parseInteger,
  parseListen,
  parseStrict,
  SERVER_ACCESS_OPTIONS,
  SERVER_GUARD_OPTIONS,
} from "../config.ts";
import type { OptionTable } from "./options.ts";
import { Catalog } from "../archive/catalog.ts";
import { OpenFiles } from "../query/open_files.ts";
import { logInfo } from "../log.ts";
import { startServer } from "../server/mod.ts";
import { readServerSecrets } from "../server/auth.ts";
import { DEFAULT_QUERY_POLICY, queryRoutes } from "../server/query_routes.ts";
import type { SensorView } from "../server/view.ts";
import { serverSettings } from "../web/settings.ts";

/** Option table of `cutcap serve` (parser and help). */
export const SERVE_OPTIONS = {
  out: { type: "string", short: "o", default: "./out", arg: "DIR", help: "archive directory" },
  listen: { type: "string", default: "127.0.0.1:9102", arg: "HOST:PORT", help: "HTTP server" },
  "max-query-packets": {
    type: "string",
    default: String(DEFAULT_QUERY_POLICY.maxPackets),
    arg: "N",
    help: "server-wide cap on packets per query",
  },
  "max-concurrent-queries": {
    type: "string",
    default: String(DEFAULT_QUERY_POLICY.maxConcurrent),
    arg: "N",
    help: "queries at once; more get 503",
  },
  ...SERVER_ACCESS_OPTIONS,
  ...SERVER_GUARD_OPTIONS,
  "community-id-seed": {
    type: "string",
    default: "0",
    arg: "N",
    help: "Community ID seed (0-65535) of flow records and community-id queries",
  },
} as const satisfies OptionTable;

/** How often `serve` compares its catalog with the files on disk. */
const RESCAN_MS = 5000;

/** Runs the server until SIGINT/SIGTERM. */
export async function runServeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseStrict(argv, SERVE_OPTIONS);
  if (positionals.length > 0) throw new Error(`Unexpected argument "${positionals[0]}"`);
  const listen = parseListen(values.listen);
  if (!listen) throw new Error("cutcap serve needs --listen HOST:PORT");
  checkListenSecurity(listen.host, {
    tlsCert: values["tls-cert"],
    tlsKey: values["tls-key"],
    tokenFile: values["token-file"],
    insecure: values.insecure,
  });
  const { token, cert, key } = readServerSecrets({
    tlsCert: values["tls-cert"],
    tlsKey: values["tls-key"],
    tokenFile: values["token-file"],
  });
  checkArchiveDir(values.out);
  const catalog = Catalog.open(values.out, { log: (line) => logInfo(line) });
  // A capture (or `cutcap index`) may add files and its retention delete them: look again.
  const refresh = () => {
    const { added, removed } = catalog.refresh({ log: (line) => logInfo(line) });
    if (added + removed > 0) logInfo(`Catalog: ${added} file(s) added, ${removed} removed`);
  };
  const rescan = setInterval(refresh, RESCAN_MS);
  // One index of each open file, shared by the query routes and the page.
  const openFiles = new OpenFiles(values.out);
  const view: SensorView = {
    startedAt: Date.now() / 1000,
    outDir: values.out,
    capturing: false,
    workers: () => [],
    catalog: () => catalog,
    retention: () => ({ deletedFiles: 0, deletedBytes: 0 }),
    libpcapVersion: "",
  };
  const policy = {
    ...DEFAULT_QUERY_POLICY,
    maxPackets: parseInteger(values["max-query-packets"], "--max-query-packets", 1, 2 ** 52),
    maxConcurrent: parseInteger(
      values["max-concurrent-queries"],
      "--max-concurrent-queries",
      1,
      1024,
    ),
  };
  const communityIdSeed = parseInteger(
    values["community-id-seed"],
    "--community-id-seed",
    0,
    65535,
  );
  const routes = queryRoutes({
    // A sensor may be writing here: the files it finalized since the last rescan count (a query
    // looks again), and its open files.
    catalog: () => {
      refresh();
      return catalog;
    },
    openFiles,
    policy,
    communityIdSeed,
  });
  const server = startServer(view, {
    ...listen,
    routes,
    token,
    cert,
    key,
    openMetrics: values["open-metrics"],
    insecure: values.insecure,
    openFiles,
    communityIdSeed,
    settings: [
      ["Archive", values.out],
      ...serverSettings({
        listen,
        tlsCert: values["tls-cert"],
        tokenFile: values["token-file"],
        maxQueryPackets: policy.maxPackets,
        maxConcurrentQueries: policy.maxConcurrent,
      }),
    ],
    ...parseGuardOptions(values),
  });
  // Listening for signals before saying "Serving": a signal right after that line is handled.
  const stopped = Promise.withResolvers<void>();
  const onSignal = (signal: Deno.Signal) => () => {
    logInfo(`${signal} received: stopping the server`);
    stopped.resolve();
  };
  Deno.addSignalListener("SIGINT", onSignal("SIGINT"));
  Deno.addSignalListener("SIGTERM", onSignal("SIGTERM"));
  logInfo(
    `Serving ${values.out} (${catalog.entries().length} files) on ` +
      `${cert ? "https" : "http"}://${hostPort(listen.host, server.addr.port)}`,
  );
  await stopped.promise;
  clearInterval(rescan);
  await server.shutdown();
  logInfo("Server stopped");
  return 0;
}

/** Serving a directory that is not there would answer "0 files" forever: refuse it. */
function checkArchiveDir(dir: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(dir);
  } catch {
    throw new Error(
      `Archive directory ${dir} does not exist: give --out the directory a capture writes to`,
    );
  }
  if (!info.isDirectory) {
    throw new Error(`Archive directory ${dir} is not a directory: give --out a capture's --out`);
  }
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
