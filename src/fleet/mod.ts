/**
 * `cutcap fleet --clickhouse URL --listen HOST:PORT`: the coordinator. It serves the sensor API
 * (src/fleet/routes.ts) over ClickHouse's flow rows and the sensors' own `/query`, with the same
 * TLS and token options as `cutcap serve`; sensors are reached with `--sensor-token-file` and
 * `--sensor-ca`.
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
import { type OptionTable, UsageError } from "../cli/options.ts";
import { parseDuration } from "../units.ts";
import { readServerSecrets, readTokenFile } from "../server/auth.ts";
import { checkClickHouseUrl, ClickHouse, readCredentials } from "../export/clickhouse.ts";
import { logInfo } from "../log.ts";
import { hostPort, startHttpServer } from "../server/mod.ts";
import { Hono } from "hono";
import { type FleetDeps, fleetRoutes, fleetStatus } from "./routes.ts";
import { fleetPageSource } from "./page_source.ts";
import { installPage } from "../web/mod.ts";
import { serverSettings } from "../web/settings.ts";

/** Option table of `cutcap fleet` (parser and help). */
export const FLEET_OPTIONS = {
  clickhouse: {
    type: "string",
    arg: "URL",
    help: "ClickHouse holding the sensors' flow records (http://ch1:8123/?database=cutcap)",
  },
  "clickhouse-credentials": {
    type: "string",
    arg: "FILE",
    help: "ClickHouse user and password as USER:PASSWORD",
  },
  "clickhouse-ca": { type: "string", arg: "FILE", help: "CA certificate of an https ClickHouse" },
  listen: { type: "string", default: "127.0.0.1:9103", arg: "HOST:PORT", help: "HTTP server" },
  ...SERVER_ACCESS_OPTIONS,
  ...SERVER_GUARD_OPTIONS,
  "sensor-token-file": {
    type: "string",
    arg: "FILE",
    help: "bearer token sent to the sensors",
  },
  "sensor-ca": { type: "string", arg: "FILE", help: "CA certificate of the sensors' HTTPS" },
  "sensor-timeout": {
    type: "string",
    default: "30s",
    arg: "DUR",
    help: "a sensor that has not started its answer by then is named missing",
  },
  "max-query-packets": {
    type: "string",
    default: "10000000",
    arg: "N",
    help: "cap on packets (and flows) per answer",
  },
  "max-concurrent-queries": {
    type: "string",
    default: "4",
    arg: "N",
    help: "queries at once; more get 503",
  },
} as const satisfies OptionTable;

/** Runs the coordinator until SIGINT/SIGTERM. */
export async function runFleetCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseStrict(argv, FLEET_OPTIONS);
  if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
  if (values.clickhouse === undefined) {
    throw new UsageError(
      "cutcap fleet needs --clickhouse URL, e.g. --clickhouse 'http://ch1:8123/?database=cutcap'",
    );
  }
  checkClickHouseUrl(values.clickhouse, "--clickhouse");
  const listen = parseListen(values.listen);
  if (!listen) throw new UsageError("cutcap fleet needs --listen HOST:PORT");
  checkListenSecurity(listen.host, {
    tlsCert: values["tls-cert"],
    tlsKey: values["tls-key"],
    tokenFile: values["token-file"],
    insecure: values.insecure,
  });
  const guard = parseGuardOptions(values);
  const credentials = values["clickhouse-credentials"] === undefined
    ? {}
    : readCredentials(values["clickhouse-credentials"]);
  const clickhouse = new ClickHouse({
    url: values.clickhouse,
    ...credentials,
    caCert: readOptional(values["clickhouse-ca"]),
  });
  const sensorCa = readOptional(values["sensor-ca"]);
  const deps: FleetDeps = {
    clickhouse,
    sensorToken: values["sensor-token-file"] === undefined
      ? undefined
      : readTokenFile(values["sensor-token-file"]),
    sensorClient: sensorCa === undefined
      ? undefined
      : Deno.createHttpClient({ caCerts: [sensorCa] }),
    maxPackets: parseInteger(values["max-query-packets"], "--max-query-packets", 1, 2 ** 52),
    maxConcurrent: parseInteger(
      values["max-concurrent-queries"],
      "--max-concurrent-queries",
      1,
      1024,
    ),
    sensorTimeoutSeconds: positiveDuration(values["sensor-timeout"], "--sensor-timeout"),
  };
  const routes = fleetRoutes(deps);
  const { token, cert, key } = readServerSecrets({
    tlsCert: values["tls-cert"],
    tlsKey: values["tls-key"],
    tokenFile: values["token-file"],
  });
  const app = new Hono();
  // The analyst's page (and, with a token, its login) in front of the API routes.
  installPage(app, {
    source: fleetPageSource({
      clickhouse,
      sensors: async () => (await fleetStatus(deps)).sensors,
      settings: [
        ["ClickHouse", new URL(values.clickhouse).host],
        ...serverSettings({
          listen,
          tlsCert: values["tls-cert"],
          tokenFile: values["token-file"],
          maxQueryPackets: deps.maxPackets,
          maxConcurrentQueries: deps.maxConcurrent,
        }),
      ],
    }),
    token,
    openMetrics: values["open-metrics"],
    secure: cert !== undefined && key !== undefined,
    parse: { sensors: true },
  });
  app.route("/", routes);
  const server = startHttpServer(app.fetch, {
    ...listen,
    cert,
    key,
    token,
    insecure: values.insecure,
    ...guard,
  });
  // Listening for signals before saying where it serves: a signal right after that line is handled.
  const stopped = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGINT", () => stopped.resolve());
  Deno.addSignalListener("SIGTERM", () => stopped.resolve());
  logInfo(
    `Fleet coordinator on ${cert ? "https" : "http"}://${
      hostPort(listen.host, server.addr.port)
    } ` +
      `over ClickHouse ${new URL(values.clickhouse).host}`,
  );
  await stopped.promise;
  await server.shutdown();
  clickhouse.close();
  return 0;
}

function positiveDuration(text: string, option: string): number {
  const seconds = parseDuration(text, option);
  if (!(seconds > 0)) {
    throw new UsageError(`Invalid ${option} "${text}": expected a duration above 0`);
  }
  return seconds;
}

function readOptional(path: string | undefined): string | undefined {
  return path === undefined ? undefined : Deno.readTextFileSync(path);
}
