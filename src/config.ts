/**
 * Command-line options of `cutcap capture` (and the shared ones of `serve`): defaults, parsing with
 * node:util's parseArgs, and validation with one clear message per mistake.
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { snfRingCount } from "./capture/snf.ts";
import { parseDuration, parseSize, parseSizeOrPercent, type SizeOrPercent } from "./units.ts";

/** Output compression: independent gzip members / zstd frames, so readers can seek. */
export type Compression = "none" | "gzip" | "zstd";

/** Log line style. */
export type LogFormat = "text" | "json";

/** Everything a capture run needs, validated. */
export interface CaptureConfig {
  interfaces: string[];
  readFiles: string[];
  outDir: string;
  workers: number;
  snaplen: number;
  promisc: boolean;
  bufferSize: number;
  pcapTimeoutMs: number;
  immediate: boolean;
  filter: string;
  byteCutoff: number;
  packetCutoff: number;
  flowTimeout: number;
  maxFlows: number;
  rotateInterval: number;
  rotateSize: number;
  /** Seconds after which a stored packet is written to its file at the latest; 0 = when a block fills. */
  flushInterval: number;
  compress: Compression;
  compressLevel: number;
  nanosecond: boolean;
  statsInterval: number;
  listen: { host: string; port: number } | null;
  /** Where to write the final metrics at exit (node_exporter textfile format), if anywhere. */
  metricsFile: string | undefined;
  libpcap: string | undefined;
  logFormat: LogFormat;
  user: string | undefined;
  minFree: SizeOrPercent | undefined;
  maxBytes: number;
  maxAge: number;
  largeFlowThreshold: number;
  largeFlowCommand: string | undefined;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  tokenFile: string | undefined;
  insecure: boolean;
  openMetrics: boolean;
  maxQueryPackets: number;
  maxConcurrentQueries: number;
}

/** Option table shared by the parser and `cutcap help`. */
export const CAPTURE_OPTIONS = {
  interface: { type: "string", short: "i", multiple: true },
  read: { type: "string", short: "r", multiple: true },
  out: { type: "string", short: "o", default: "./out" },
  workers: { type: "string", short: "w" },
  snaplen: { type: "string", short: "s", default: "262144" },
  "no-promisc": { type: "boolean", default: false },
  "buffer-size": { type: "string", default: "64MiB" },
  "pcap-timeout": { type: "string", default: "100ms" },
  immediate: { type: "boolean", default: false },
  filter: { type: "string", short: "f", default: "" },
  "byte-cutoff": { type: "string", default: "64KiB" },
  "packet-cutoff": { type: "string", default: "0" },
  "flow-timeout": { type: "string", default: "5m" },
  "max-flows": { type: "string", default: "1000000" },
  "rotate-interval": { type: "string", default: "1m" },
  "flush-interval": { type: "string", default: "1s" },
  "rotate-size": { type: "string", default: "1GiB" },
  compress: { type: "string", default: "none" },
  "compress-level": { type: "string", default: "0" },
  nanosecond: { type: "boolean", default: false },
  "stats-interval": { type: "string", default: "30s" },
  listen: { type: "string", default: "127.0.0.1:9102" },
  "metrics-file": { type: "string" },
  libpcap: { type: "string" },
  "log-format": { type: "string", default: "text" },
  user: { type: "string" },
  "min-free": { type: "string" },
  "max-bytes": { type: "string", default: "0" },
  "max-age": { type: "string", default: "0" },
  "large-flow-threshold": { type: "string", default: "1GiB" },
  "large-flow-command": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "token-file": { type: "string" },
  insecure: { type: "boolean", default: false },
  "open-metrics": { type: "boolean", default: false },
  "max-query-packets": { type: "string", default: "10000000" },
  "max-concurrent-queries": { type: "string", default: "4" },
} as const;

/** Parses `cutcap capture` arguments; throws an Error with one clear line on any mistake. */
export function parseCaptureArgs(args: string[]): CaptureConfig {
  const { values, positionals } = parseStrict(args, CAPTURE_OPTIONS);
  const readFiles = [...(values.read ?? [])];
  // `--read a.pcap b.pcap`: parseArgs takes only the first as the value; the rest arrive as positionals.
  if (readFiles.length > 0) readFiles.push(...positionals);
  else if (positionals.length > 0) {
    throw new Error(
      `Unexpected argument "${positionals[0]}": expected an option such as --interface`,
    );
  }
  const interfaces = (values.interface ?? []).flatMap((v) => v.split(",")).map((v) => v.trim())
    .filter((v) => v !== "");
  if (interfaces.length > 0 && readFiles.length > 0) {
    throw new Error(
      "Options --interface and --read exclude each other: capture live or replay files",
    );
  }
  const compress = values.compress;
  if (compress !== "none" && compress !== "gzip" && compress !== "zstd") {
    throw new Error(`Invalid --compress "${compress}": expected none, gzip or zstd`);
  }
  const logFormat = values["log-format"];
  if (logFormat !== "text" && logFormat !== "json") {
    throw new Error(`Invalid --log-format "${logFormat}": expected text or json`);
  }
  const config: CaptureConfig = {
    interfaces,
    readFiles,
    outDir: values.out,
    // Like gotm: with Myricom SNF the NIC splits flows into SNF_NUM_RINGS rings, one worker each.
    workers: parseInteger(values.workers ?? String(snfRingCount() ?? 1), "--workers", 1, 64),
    snaplen: parseInteger(values.snaplen, "--snaplen", 64, 262144),
    promisc: !values["no-promisc"],
    bufferSize: parseSize(values["buffer-size"], "--buffer-size"),
    pcapTimeoutMs: Math.round(parseDuration(values["pcap-timeout"], "--pcap-timeout") * 1000),
    immediate: values.immediate,
    filter: values.filter,
    byteCutoff: parseSize(values["byte-cutoff"], "--byte-cutoff"),
    packetCutoff: parseInteger(values["packet-cutoff"], "--packet-cutoff", 0, 2 ** 52),
    flowTimeout: parsePositiveDuration(values["flow-timeout"], "--flow-timeout"),
    maxFlows: parseInteger(values["max-flows"], "--max-flows", 16, 100_000_000),
    rotateInterval: parseDuration(values["rotate-interval"], "--rotate-interval"),
    flushInterval: parseDuration(values["flush-interval"], "--flush-interval"),
    rotateSize: parseSize(values["rotate-size"], "--rotate-size"),
    compress,
    compressLevel: parseInteger(values["compress-level"], "--compress-level", 0, 22),
    nanosecond: values.nanosecond,
    statsInterval: parseDuration(values["stats-interval"], "--stats-interval"),
    listen: parseListen(values.listen),
    metricsFile: values["metrics-file"],
    libpcap: values.libpcap ?? Deno.env.get("CUTCAP_LIBPCAP"),
    logFormat,
    user: values.user,
    minFree: values["min-free"] === undefined
      ? undefined
      : parseSizeOrPercent(values["min-free"], "--min-free"),
    maxBytes: parseSize(values["max-bytes"], "--max-bytes"),
    maxAge: parseDuration(values["max-age"], "--max-age"),
    largeFlowThreshold: parseSize(values["large-flow-threshold"], "--large-flow-threshold"),
    largeFlowCommand: values["large-flow-command"],
    tlsCert: values["tls-cert"],
    tlsKey: values["tls-key"],
    tokenFile: values["token-file"],
    insecure: values.insecure,
    openMetrics: values["open-metrics"],
    maxQueryPackets: parseInteger(values["max-query-packets"], "--max-query-packets", 1, 2 ** 52),
    maxConcurrentQueries: parseInteger(
      values["max-concurrent-queries"],
      "--max-concurrent-queries",
      1,
      1024,
    ),
  };
  validateServerSecurity(config);
  return config;
}

/** parseArgs with strict checking, its messages turned into one cutcap line. */
export function parseStrict<const T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ options: T; allowPositionals: true; strict: true }>> {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`Bad arguments: ${message.split("\n")[0]}`);
  }
}

/** Parses HOST:PORT (IPv6 as [::1]:9102); `off` or an empty string disables the server. */
export function parseListen(text: string): { host: string; port: number } | null {
  if (text === "" || text === "off") return null;
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  if (!match) {
    throw new Error(`Invalid --listen "${text}": expected HOST:PORT, like 127.0.0.1:9102`);
  }
  const port = Number(match[3]);
  if (port > 65535) throw new Error(`Invalid --listen port ${port}: expected 0-65535`);
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

function validateServerSecurity(config: CaptureConfig): void {
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new Error("Options --tls-cert and --tls-key go together: give both or neither");
  }
  if (!config.listen || isLoopback(config.listen.host) || config.insecure) return;
  if (config.tlsCert === undefined || config.tokenFile === undefined) {
    throw new Error(
      `Listening on ${config.listen.host} exposes captured traffic: give --tls-cert, --tls-key and ` +
        "--token-file, or --insecure to accept the risk",
    );
  }
}

/** Parses a whole number within [min, max], naming the option on error. */
export function parseInteger(text: string, option: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new Error(`Invalid ${option} "${text}": expected a whole number ${min}-${max}`);
  }
  return value;
}

function parsePositiveDuration(text: string, option: string): number {
  const seconds = parseDuration(text, option);
  if (seconds <= 0) throw new Error(`Invalid ${option} "${text}": expected a duration above 0`);
  return seconds;
}
