/**
 * `cutcap serve --out DIR [--listen HOST:PORT]`: the same server and routes as a capture, over an existing
 * archive, without capturing. The catalog is rebuilt from the files when it is missing or stale.
 */
import { parseInteger, parseListen, parseStrict } from "../config.ts";
import { Catalog } from "../index/catalog.ts";
import { logInfo } from "../log.ts";
import { startServer } from "../server/mod.ts";
import { DEFAULT_QUERY_POLICY, queryRoutes } from "../server/query_routes.ts";
import type { SensorView } from "../sensor/view.ts";

const SERVE_OPTIONS = {
  out: { type: "string", short: "o", default: "./out" },
  listen: { type: "string", default: "127.0.0.1:9102" },
  "max-query-packets": { type: "string", default: String(DEFAULT_QUERY_POLICY.maxPackets) },
  "max-concurrent-queries": { type: "string", default: String(DEFAULT_QUERY_POLICY.maxConcurrent) },
} as const;

/** Runs the server until SIGINT/SIGTERM. */
export async function runServeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseStrict(argv, SERVE_OPTIONS);
  if (positionals.length > 0) throw new Error(`Unexpected argument "${positionals[0]}"`);
  const listen = parseListen(values.listen);
  if (!listen) throw new Error("cutcap serve needs --listen HOST:PORT");
  const catalog = Catalog.open(values.out, { log: (line) => logInfo(line) });
  const view: SensorView = {
    startedAt: Date.now() / 1000,
    outDir: values.out,
    capturing: false,
    workers: () => [],
    catalog: () => catalog,
    retention: () => ({ deletedFiles: 0, deletedBytes: 0 }),
    libpcapVersion: "",
  };
  const routes = queryRoutes({
    catalog: () => catalog,
    policy: {
      ...DEFAULT_QUERY_POLICY,
      maxPackets: parseInteger(values["max-query-packets"], "--max-query-packets", 1, 2 ** 52),
      maxConcurrent: parseInteger(
        values["max-concurrent-queries"],
        "--max-concurrent-queries",
        1,
        1024,
      ),
    },
  });
  const server = startServer(view, { ...listen, routes });
  logInfo(
    `Serving ${values.out} (${catalog.entries().length} files) on ${listen.host}:${listen.port}`,
  );
  const stopped = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGINT", () => stopped.resolve());
  Deno.addSignalListener("SIGTERM", () => stopped.resolve());
  await stopped.promise;
  await server.shutdown();
  return 0;
}
