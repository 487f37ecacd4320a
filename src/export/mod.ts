/**
 * Flow-record export to ClickHouse (`--export-clickhouse`): the schema, the HTTP client, the
 * on-disk spool and the exporter that drains it. See DESIGN.md, "Export and fleet".
 */
import type { CaptureConfig } from "../config.ts";
import { ClickHouse, readCredentials } from "./clickhouse.ts";
import { Exporter } from "./exporter.ts";

export { Exporter } from "./exporter.ts";
export type { ExportStats } from "./exporter.ts";
export { registerExportMetrics } from "./metrics.ts";

/** The exporter a capture's options ask for (not started; `listenPort` gives the server's bound port once it listens), or undefined without --export-clickhouse. */
export function exporterFor(
  config: CaptureConfig,
  listenPort: () => number | undefined,
): Exporter | undefined {
  if (config.exportClickhouse === undefined) return undefined;
  const credentials = config.exportCredentials === undefined
    ? {}
    : readCredentials(config.exportCredentials);
  const clickhouse = new ClickHouse({
    url: config.exportClickhouse,
    ...credentials,
    caCert: config.exportCa === undefined ? undefined : Deno.readTextFileSync(config.exportCa),
  });
  return new Exporter({
    clickhouse,
    sensor: config.sensorName,
    advertiseUrl: () => config.advertiseUrl ?? defaultAdvertiseUrl(config, listenPort()),
    outDir: config.outDir,
  });
}

/** The listen address as a URL the fleet can use ("" when not listening). */
function defaultAdvertiseUrl(config: CaptureConfig, port: number | undefined): string {
  if (!config.listen || port === undefined) return "";
  const scheme = config.tlsCert === undefined ? "http" : "https";
  const host = config.listen.host === "0.0.0.0" || config.listen.host === "::"
    ? Deno.hostname()
    : config.listen.host;
  return `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
}
