/**
 * Command-line options of `cutcap capture` (and the shared ones of `serve`): defaults, parsing with
 * node:util's parseArgs, and validation with one clear message per mistake.
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { snfRingCount } from "./capture/snf.ts";
import type { CaptureMethod } from "./capture/source.ts";
import { checkClickHouseUrl } from "./export/clickhouse.ts";
import { parseDuration, parseSize, parseSizeOrPercent, type SizeOrPercent } from "./units.ts";
import { checkOptionWords, type OptionTable, UsageError } from "./cli/options.ts";
import type { GuardOptions } from "./server/conn_guard.ts";
import { MAX_CAPLEN } from "./pcap/format.ts";
import {
  codec,
  COMPRESSED_SUFFIXES,
  type Compression,
  COMPRESSIONS,
  isCompression,
  orList,
} from "./pcap/codecs.ts";

/** The HTTP server's access options, the same for `capture` and `serve`. */
export const SERVER_ACCESS_OPTIONS = {
  "tls-cert": {
    type: "string",
    arg: "FILE",
    help: "serve HTTPS with this certificate (with --tls-key)",
  },
  "tls-key": { type: "string", arg: "FILE", help: "the certificate's private key" },
  "token-file": {
    type: "string",
    arg: "FILE",
    help: "require Authorization: Bearer <token> on every route",
  },
  insecure: {
    type: "boolean",
    default: false,
    help: "allow a non-loopback --listen without TLS and token",
  },
  "open-metrics": {
    type: "boolean",
    default: false,
    help: "leave /metrics, /healthz and /readyz open when a token is required",
  },
} as const satisfies OptionTable;

/**
 * The connection guard's timeouts and caps (src/server/conn_guard.ts), the same for `serve` and
 * `fleet`; parseGuardOptions reads them.
 */
export const SERVER_GUARD_OPTIONS = {
  "header-timeout": {
    type: "string",
    default: "10s",
    arg: "DUR",
    help: "close a connection that has not finished its TLS handshake and headers by then",
  },
  "idle-timeout": {
    type: "string",
    default: "2m",
    arg: "DUR",
    help: "close a connection idle this long",
  },
  "max-connections": { type: "string", default: "256", arg: "N", help: "connections at once" },
  "max-per-source": {
    type: "string",
    default: "32",
    arg: "N",
    help: "connections at once from one client address",
  },
  "request-timeout": {
    type: "string",
    default: "1m",
    arg: "DUR",
    help: "close a connection whose request has not been answered by then (trickled bodies)",
  },
} as const satisfies OptionTable;

/** The guard's settings from SERVER_GUARD_OPTIONS' values. */
export function parseGuardOptions(values: {
  "header-timeout": string;
  "idle-timeout": string;
  "max-connections": string;
  "max-per-source": string;
  "request-timeout": string;
}): GuardOptions {
  return {
    headerTimeout: parsePositiveDuration(values["header-timeout"], "--header-timeout"),
    idleTimeout: parsePositiveDuration(values["idle-timeout"], "--idle-timeout"),
    maxConnections: parseInteger(values["max-connections"], "--max-connections", 1, 65536),
    maxPerSource: parseInteger(values["max-per-source"], "--max-per-source", 1, 65536),
    requestTimeout: parsePositiveDuration(values["request-timeout"], "--request-timeout"),
  };
}

/** Output compression: independent gzip members / zstd frames, so readers can seek. */
export type { Compression } from "./pcap/codecs.ts";

/** Log line style. */
export type LogFormat = "text" | "json";

/** Everything a capture run needs, validated. */
export interface CaptureConfig {
  interfaces: string[];
  readFiles: string[];
  /** What --read output files are named after: --name, else the first file's base name. */
  readName: string;
  outDir: string;
  workers: number;
  snaplen: number;
  promisc: boolean;
  bufferSize: number;
  pcapTimeoutMs: number;
  immediate: boolean;
  /** How live captures read packets (--capture-method, default afpacket on Linux). */
  captureMethod: CaptureMethod;
  filter: string;
  byteCutoff: number;
  packetCutoff: number;
  flowTimeout: number;
  maxFlows: number;
  rotateInterval: number;
  /** Seconds after which a stored packet is written to its file at the latest; 0 = when a block fills. */
  flushInterval: number;
  rotateSize: number;
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
  /** Group given read access to the archive (--group). */
  group: string | undefined;
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
  /** Community ID seed (0-65535) of the flow records and of Community ID queries. */
  communityIdSeed: number;
  /** `--export-clickhouse`: flow records go to this ClickHouse HTTP URL. */
  exportClickhouse: string | undefined;
  /** `--export-clickhouse-credentials`: a file holding USER:PASSWORD. */
  exportCredentials: string | undefined;
  /** `--export-ca`: PEM CA for an https ClickHouse URL. */
  exportCa: string | undefined;
  /** `--sensor-name`: this sensor's name in exported rows (default: the host name). */
  sensorName: string;
  /** `--advertise-url`: where the fleet coordinator reaches this sensor's API. */
  advertiseUrl: string | undefined;
}

/** Option table of `cutcap capture`: the parser's and `cutcap capture --help`'s (src/cli/options.ts). */
export const CAPTURE_OPTIONS = {
  interface: {
    type: "string",
    short: "i",
    multiple: true,
    arg: "IF[,IF...]",
    help: "interfaces to capture on (repeat or comma-separate)",
    shownDefault: "the default interface",
  },
  read: {
    type: "string",
    short: "r",
    multiple: true,
    arg: "FILE...",
    help: "replay pcap/pcapng files through the pipeline, exit when done",
  },
  name: {
    type: "string",
    arg: "NAME",
    help: "source name in --read output file names",
    shownDefault: "the first file's base name",
  },
  out: { type: "string", short: "o", default: "./out", arg: "DIR", help: "archive directory" },
  workers: {
    type: "string",
    short: "w",
    arg: "N",
    help: "workers per interface (AF_PACKET fanout)",
    shownDefault: "1, $SNF_NUM_RINGS when set",
  },
  snaplen: {
    type: "string",
    short: "s",
    default: String(MAX_CAPLEN),
    arg: "N",
    help: "bytes kept per packet",
  },
  "no-promisc": { type: "boolean", default: false, help: "leave promiscuous mode off" },
  "capture-method": {
    type: "string",
    arg: "M",
    help: "afpacket (kernel ring read in JS) or libpcap",
    shownDefault: "afpacket on Linux; libpcap with --libpcap or SNF",
  },
  "buffer-size": { type: "string", default: "64MiB", arg: "SIZE", help: "kernel ring per worker" },
  "pcap-timeout": {
    type: "string",
    default: "100ms",
    arg: "DUR",
    help: "read timeout: a partly filled ring block is handed over after it",
  },
  immediate: {
    type: "boolean",
    default: false,
    help: "hand packets over at once (libpcap immediate mode; afpacket: 1 ms blocks)",
  },
  filter: { type: "string", short: "f", default: "", arg: "BPF", help: "capture filter" },
  "byte-cutoff": {
    type: "string",
    default: "64KiB",
    arg: "SIZE",
    help: "stop storing a flow after this many bytes, 0 = never",
  },
  "packet-cutoff": {
    type: "string",
    default: "0",
    arg: "N",
    help: "stop storing a flow after this many packets, 0 = never",
  },
  "flow-timeout": {
    type: "string",
    default: "5m",
    arg: "DUR",
    help: "idle time (packet time) after which a flow ends",
  },
  "max-flows": {
    type: "string",
    default: "1000000",
    arg: "N",
    help: "flow table size per worker",
  },
  "rotate-interval": {
    type: "string",
    default: "1m",
    arg: "DUR",
    help: "start a new file this often, 0 = never",
  },
  "flush-interval": {
    type: "string",
    default: "1s",
    arg: "DUR",
    help: "write stored packets to their file within this time, 0 = only full blocks",
  },
  "rotate-size": {
    type: "string",
    default: "1GiB",
    arg: "SIZE",
    help: "start a new file at this size on disk, 0 = never",
  },
  compress: {
    type: "string",
    default: "none",
    arg: COMPRESSIONS.join("|"),
    help: "compression in independently decompressible blocks",
  },
  "compress-level": {
    type: "string",
    default: "0",
    arg: "N",
    help: `${levelRanges().join(" / ")}, 0 = level 1 (fastest)`,
  },
  nanosecond: { type: "boolean", default: false, help: "nanosecond timestamps" },
  "stats-interval": {
    type: "string",
    default: "30s",
    arg: "DUR",
    help: "a stats line per worker, 0 = off",
  },
  listen: {
    type: "string",
    default: "127.0.0.1:9102",
    arg: "HOST:PORT",
    help: "HTTP server, off to disable",
  },
  "metrics-file": {
    type: "string",
    arg: "PATH",
    help: "write the final metrics there at exit (textfile collector)",
  },
  libpcap: {
    type: "string",
    arg: "PATH",
    help: "libpcap build to load (Myricom SNF, PF_RING)",
    shownDefault: "$CUTCAP_LIBPCAP, else the system's",
  },
  "log-format": { type: "string", default: "text", arg: "text|json", help: "log style" },
  user: {
    type: "string",
    arg: "NAME",
    help: "drop root privileges once the capture handles are open",
  },
  group: {
    type: "string",
    arg: "NAME",
    help: "group that may read the archive (files 0640, folders 0750)",
  },
  "min-free": {
    type: "string",
    arg: "SIZE|PCT",
    help: "keep this much of the output filesystem free",
  },
  "max-bytes": {
    type: "string",
    default: "0",
    arg: "SIZE",
    help: "keep the archive below this size, 0 = no limit",
  },
  "max-age": {
    type: "string",
    default: "0",
    arg: "DUR",
    help: "delete files older than this, 0 = no limit",
  },
  "large-flow-threshold": {
    type: "string",
    default: "1GiB",
    arg: "SIZE",
    help: "log a flow when it crosses this size, then each doubling",
  },
  "large-flow-command": {
    type: "string",
    arg: "CMD",
    help: "run CMD with the flow's key when it crosses the threshold",
  },
  ...SERVER_ACCESS_OPTIONS,
  "max-query-packets": {
    type: "string",
    default: "10000000",
    arg: "N",
    help: "server-wide cap on packets per query",
  },
  "max-concurrent-queries": {
    type: "string",
    default: "4",
    arg: "N",
    help: "queries at once; more get 503",
  },
  "community-id-seed": {
    type: "string",
    default: "0",
    arg: "N",
    help: "Community ID seed (0-65535) of flow records and community-id queries",
  },
  "export-clickhouse": {
    type: "string",
    arg: "URL",
    help: "send flow records to ClickHouse (http://ch1:8123/?database=cutcap)",
  },
  "export-clickhouse-credentials": {
    type: "string",
    arg: "FILE",
    help: "ClickHouse user and password as USER:PASSWORD",
  },
  "export-ca": { type: "string", arg: "FILE", help: "CA certificate of an https ClickHouse" },
  "sensor-name": {
    type: "string",
    arg: "NAME",
    help: "this sensor's name in exported records",
    shownDefault: "the host name",
  },
  "advertise-url": {
    type: "string",
    arg: "URL",
    help: "where the fleet coordinator reaches this sensor's API",
    shownDefault: "the --listen address",
  },
} as const satisfies OptionTable;

/** Parses `cutcap capture` arguments; throws an Error with one clear line on any mistake. */
export function parseCaptureArgs(args: string[]): CaptureConfig {
  const { values, positionals } = parseStrict(args, CAPTURE_OPTIONS);
  const readFiles = [...(values.read ?? [])];
  // `--read a.pcap b.pcap`: parseArgs takes only the first as the value; the rest arrive as positionals.
  if (readFiles.length > 0) readFiles.push(...positionals);
  else if (positionals.length > 0) {
    throw new UsageError(
      `Unexpected argument "${positionals[0]}": expected an option such as --interface`,
    );
  }
  const interfaces = (values.interface ?? []).flatMap((v) => v.split(",")).map((v) => v.trim())
    .filter((v) => v !== "");
  const twice = interfaces.find((name, i) => interfaces.indexOf(name) !== i);
  if (twice !== undefined) {
    throw new UsageError(
      `Interface ${twice} is given twice in --interface: each interface is captured once ` +
        "(--workers N spreads one over N workers)",
    );
  }
  if (interfaces.length > 0 && readFiles.length > 0) {
    throw new UsageError(
      "Options --interface and --read exclude each other: capture live or replay files",
    );
  }
  if (values.name !== undefined && readFiles.length === 0) {
    throw new UsageError("Option --name names a --read source: live files are named by interface");
  }
  const compress = values.compress;
  if (!isCompression(compress)) {
    throw new UsageError(`Invalid --compress "${compress}": expected ${orList(COMPRESSIONS)}`);
  }
  const logFormat = values["log-format"];
  if (logFormat !== "text" && logFormat !== "json") {
    throw new UsageError(`Invalid --log-format "${logFormat}": expected text or json`);
  }
  const libpcap = values.libpcap ?? Deno.env.get("CUTCAP_LIBPCAP");
  const config: CaptureConfig = {
    interfaces,
    readFiles,
    readName: values.name ?? sourceName(readFiles[0] ?? ""),
    outDir: values.out,
    // Like gotm: with Myricom SNF the NIC splits flows into SNF_NUM_RINGS rings, one worker each.
    workers: parseInteger(values.workers ?? String(snfRingCount() ?? 1), "--workers", 1, 64),
    snaplen: parseInteger(values.snaplen, "--snaplen", 64, MAX_CAPLEN),
    promisc: !values["no-promisc"],
    bufferSize: parseBufferSize(values["buffer-size"]),
    pcapTimeoutMs: Math.round(parseDuration(values["pcap-timeout"], "--pcap-timeout") * 1000),
    immediate: values.immediate,
    captureMethod: parseCaptureMethod(values["capture-method"], libpcap),
    filter: values.filter,
    byteCutoff: parseSize(values["byte-cutoff"], "--byte-cutoff"),
    packetCutoff: parseInteger(values["packet-cutoff"], "--packet-cutoff", 0, 2 ** 52),
    flowTimeout: parsePositiveDuration(values["flow-timeout"], "--flow-timeout"),
    maxFlows: parseInteger(values["max-flows"], "--max-flows", 16, 100_000_000),
    rotateInterval: parseDuration(values["rotate-interval"], "--rotate-interval"),
    flushInterval: parseDuration(values["flush-interval"], "--flush-interval"),
    rotateSize: parseSize(values["rotate-size"], "--rotate-size"),
    compress,
    compressLevel: parseInteger(values["compress-level"], "--compress-level", 0, maxLevel()),
    nanosecond: values.nanosecond,
    statsInterval: parseDuration(values["stats-interval"], "--stats-interval"),
    listen: parseListen(values.listen),
    metricsFile: values["metrics-file"],
    libpcap,
    logFormat,
    user: values.user,
    group: values.group,
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
    communityIdSeed: parseInteger(values["community-id-seed"], "--community-id-seed", 0, 65535),
    ...exportOptions(values),
  };
  validateServerSecurity(config);
  return config;
}

/**
 * --capture-method, or its default: afpacket on Linux, unless a libpcap build is named (--libpcap,
 * CUTCAP_LIBPCAP) or Myricom SNF is in use (SNF_NUM_RINGS), which plug in through libpcap.
 */
function parseCaptureMethod(text: string | undefined, libpcap: string | undefined): CaptureMethod {
  const linux = Deno.build.os === "linux";
  if (text === undefined) {
    return linux && libpcap === undefined && snfRingCount() === undefined ? "afpacket" : "libpcap";
  }
  if (text !== "afpacket" && text !== "libpcap") {
    throw new UsageError(`Invalid --capture-method "${text}": expected afpacket or libpcap`);
  }
  if (text === "afpacket" && !linux) {
    throw new UsageError(
      `Invalid --capture-method afpacket on ${Deno.build.os}: AF_PACKET is Linux only; use libpcap`,
    );
  }
  return text;
}

/** The export options, checked: a URL that is one, a name a query can spell, options that need
 * --export-clickhouse only with it. */
function exportOptions(values: {
  "export-clickhouse"?: string;
  "export-clickhouse-credentials"?: string;
  "export-ca"?: string;
  "sensor-name"?: string;
  "advertise-url"?: string;
}): Pick<
  CaptureConfig,
  "exportClickhouse" | "exportCredentials" | "exportCa" | "sensorName" | "advertiseUrl"
> {
  const url = values["export-clickhouse"];
  if (url !== undefined) checkClickHouseUrl(url, "--export-clickhouse");
  else {
    for (const option of ["export-clickhouse-credentials", "export-ca"] as const) {
      if (values[option] !== undefined) {
        throw new UsageError(`Option --${option} needs --export-clickhouse URL`);
      }
    }
  }
  const sensorName = values["sensor-name"] ?? Deno.hostname();
  if (!/^[A-Za-z0-9._:-]{1,255}$/.test(sensorName)) {
    throw new UsageError(
      `Invalid --sensor-name "${sensorName}": expected 1-255 letters, digits, ".", "_", ":" or "-"`,
    );
  }
  const advertise = values["advertise-url"];
  if (advertise !== undefined && !/^https?:\/\/[^/]+/.test(advertise)) {
    throw new UsageError(
      `Invalid --advertise-url "${advertise}": expected http(s)://HOST:PORT where the fleet reaches this sensor`,
    );
  }
  return {
    exportClickhouse: url,
    exportCredentials: values["export-clickhouse-credentials"],
    exportCa: values["export-ca"],
    sensorName,
    advertiseUrl: advertise?.replace(/\/+$/, ""),
  };
}

/**
 * parseArgs with strict checking after cutcap's own check of the option words (unknown options with
 * a suggestion, gotm's spellings); any mistake is a UsageError of one line.
 */
export function parseStrict<const T extends ParseArgsOptionsConfig & OptionTable>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ options: T; allowPositionals: true; strict: true }>> {
  checkOptionWords(args, options);
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(`Bad arguments: ${message.split("\n")[0]}`);
  }
}

/** A replayed file's name without folders and capture-file extensions (`/x/day1.pcap.gz` → `day1`). */
export function sourceName(path: string): string {
  const base = path.split("/").at(-1) ?? "";
  return base.replace(CAPTURE_EXTENSIONS, "") || "read";
}

/** Capture-file extensions `sourceName` drops: pcap's own and every codec's. */
const CAPTURE_EXTENSIONS = new RegExp(
  `(\\.(${["pcap", "pcapng", "cap", "dmp", ...COMPRESSED_SUFFIXES].join("|")}))+$`,
  "i",
);

/** Each codec's level range (`gzip 1-9`), for --compress-level's help. */
function levelRanges(): string[] {
  return COMPRESSIONS.filter((c) => codec(c).maxLevel > 0).map((c) =>
    `${c} 1-${codec(c).maxLevel}`
  );
}

/** The highest level of any codec (--compress-level's bound; each codec checks its own). */
function maxLevel(): number {
  return Math.max(...COMPRESSIONS.map((c) => codec(c).maxLevel));
}

/** Parses HOST:PORT (IPv6 as [::1]:9102); `off` or an empty string disables the server. */
export function parseListen(text: string): { host: string; port: number } | null {
  if (text === "" || text === "off") return null;
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  if (!match) {
    throw new UsageError(`Invalid --listen "${text}": expected HOST:PORT, like 127.0.0.1:9102`);
  }
  const port = Number(match[3]);
  if (port > 65535) throw new UsageError(`Invalid --listen port ${port}: expected 0-65535`);
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

/**
 * True for addresses only this machine can reach: `localhost`, an IPv4 literal in 127.0.0.0/8
 * (four decimal parts: a host name such as `127.example.com` is not one), `::1`, or `::ffff:127.…`.
 * The bound address is checked again after binding (`checkBoundAddress`), so a name that resolves
 * elsewhere is caught there.
 */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return bare === "localhost" || bare === "::1" ||
    /^(::ffff:)?127(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(bare);
}

function validateServerSecurity(config: CaptureConfig): void {
  checkListenSecurity(config.listen?.host, config);
}

/** Server security options as given on the command line. */
export interface ListenSecurity {
  tlsCert?: string;
  tlsKey?: string;
  tokenFile?: string;
  insecure?: boolean;
}

/**
 * Throws unless the listen address is loopback, or TLS and a token file are given, or `insecure`:
 * captured traffic must not be served in clear or without a token to other hosts by accident.
 * `host` undefined (not listening) checks only that the TLS options come as a pair.
 */
export function checkListenSecurity(host: string | undefined, security: ListenSecurity): void {
  if ((security.tlsCert === undefined) !== (security.tlsKey === undefined)) {
    throw new UsageError("Options --tls-cert and --tls-key go together: give both or neither");
  }
  if (host === undefined || isLoopback(host) || security.insecure) return;
  if (security.tlsCert === undefined || security.tokenFile === undefined) {
    throw new UsageError(
      `Listening on ${host} exposes captured traffic: give --tls-cert, --tls-key and ` +
        "--token-file, or --insecure to accept the risk",
    );
  }
}

/** Parses a whole number within [min, max], naming the option on error. */
export function parseInteger(text: string, option: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`Invalid ${option} "${text}": expected a whole number ${min}-${max}`);
  }
  return value;
}

/** libpcap takes the ring size as a C int. */
function parseBufferSize(text: string): number {
  const bytes = parseSize(text, "--buffer-size");
  if (bytes > 2 ** 31 - 1) {
    throw new UsageError(`Invalid --buffer-size "${text}": expected at most 2GiB - 1 (2147483647)`);
  }
  return bytes;
}

function parsePositiveDuration(text: string, option: string): number {
  const seconds = parseDuration(text, option);
  if (seconds <= 0) {
    throw new UsageError(`Invalid ${option} "${text}": expected a duration above 0`);
  }
  return seconds;
}
