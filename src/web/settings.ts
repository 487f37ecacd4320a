/**
 * The running configuration as the status view lists it: what an operator checks first (sources,
 * filter, cutoffs, rotation, compression, retention, listen address), in words.
 */
import type { CaptureConfig } from "../config.ts";
import { bytes, duration } from "../server/status_page.ts";
import type { Setting } from "./source.ts";

/** The settings of a capture. */
export function captureSettings(config: CaptureConfig): Setting[] {
  const limit = (n: number, format: (n: number) => string) => n > 0 ? format(n) : "none";
  const minFree = config.minFree === undefined
    ? "none"
    : "percent" in config.minFree
    ? `${config.minFree.percent}%`
    : bytes(config.minFree.bytes);
  return [
    [
      "Source",
      config.readFiles.length > 0
        ? `replay of ${config.readFiles.join(", ")}`
        : `interfaces ${config.interfaces.join(", ")}`,
    ],
    ["Workers per interface", String(config.workers)],
    ["Filter", config.filter === "" ? "none" : config.filter],
    ["Snap length", `${config.snaplen} bytes`],
    ["Byte cutoff", limit(config.byteCutoff, bytes)],
    ["Packet cutoff", limit(config.packetCutoff, String)],
    ["Flow timeout", duration(config.flowTimeout)],
    ["Max flows per worker", String(config.maxFlows)],
    [
      "Rotation",
      `every ${limit(config.rotateInterval, duration)} or ${limit(config.rotateSize, bytes)}`,
    ],
    [
      "Compression",
      config.compress === "none" ? "none" : `${config.compress} level ${config.compressLevel || 1}`,
    ],
    ["Output", config.outDir],
    ["Retention: keep free", minFree],
    ["Retention: max archive size", limit(config.maxBytes, bytes)],
    ["Retention: max age", limit(config.maxAge, duration)],
    ...serverSettings(config),
  ];
}

/** The server's own settings (shared by capture and `serve`). */
export function serverSettings(config: {
  listen: { host: string; port: number } | null;
  tlsCert?: string;
  tokenFile?: string;
  maxQueryPackets: number;
  maxConcurrentQueries: number;
}): Setting[] {
  const listen = config.listen === null
    ? "off"
    : `${config.tlsCert ? "https" : "http"}://${
      config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host
    }:${config.listen.port}`;
  return [
    ["Listen", listen],
    ["Access", config.tokenFile ? "token required" : "open"],
    ["Max packets per query", String(config.maxQueryPackets)],
    ["Max concurrent queries", String(config.maxConcurrentQueries)],
  ];
}
