/**
 * What `/readyz` and `/status` say about a running sensor: readiness with reasons, and a report of
 * interfaces, workers (with rates between two reports), flows, the files being written, disk and
 * archive. Everything is read from the SensorView (the file each worker reported it is writing) and
 * the state each worker publishes of its open file; nothing is asked of the workers.
 */
import { readOpenState } from "../store/open_file.ts";
import type { RetentionStats, SensorView, WorkerView } from "./view.ts";
import { sanitizeIface } from "../archive/naming.ts";
import type { DiskSpace } from "../archive/retention.ts";
import { probeWritable } from "../store/pcap_file_writer.ts";
import { VERSION } from "../version.ts";
import { linkIsDown, linkState } from "../capture/link.ts";
import { oldestPacketTs } from "./metrics.ts";

/** Readiness of the sensor for `/readyz`. */
export interface Readiness {
  ready: boolean;
  /** One sentence per problem; empty when ready. */
  reasons: string[];
}

/**
 * Ready when capturing: every worker is in its packet loop (ready and not done) and the archive
 * directory takes a new file. For `serve` (no workers): the archive directory can be listed.
 */
export function readiness(sensor: SensorView): Readiness {
  const reasons: string[] = [];
  if (sensor.capturing) {
    const workers = sensor.workers();
    if (workers.length === 0) reasons.push("No capture worker has started");
    for (const w of workers) {
      if (w.done) {
        reasons.push(`Worker ${w.label}/${w.index} stopped${w.error ? `: ${w.error}` : ""}`);
      } else if (!w.ready) {
        reasons.push(`Worker ${w.label}/${w.index} is not capturing yet`);
      }
    }
    for (const iface of sensor.liveInterfaces ?? []) {
      const state = linkState(iface);
      if (linkIsDown(state)) reasons.push(`Interface ${iface} link is ${state}: nothing arrives`);
    }
    const problem = writeProbe(sensor.outDir);
    if (problem !== undefined) {
      reasons.push(`Output directory ${sensor.outDir} is not writable: ${problem}`);
    }
  } else {
    try {
      for (const _ of Deno.readDirSync(sensor.outDir)) break;
    } catch (error) {
      reasons.push(`Archive ${sensor.outDir} is not readable: ${shortMessage(error)}`);
    }
  }
  return { ready: reasons.length === 0, reasons };
}

/** Creates (exclusively, under a random name) and removes an empty hidden file (ignored by the catalog); returns the error, if any. */
function writeProbe(dir: string): string | undefined {
  try {
    probeWritable(dir, ".cutcap-ready-");
    return undefined;
  } catch (error) {
    return shortMessage(error);
  }
}

/** The first part of an OS error ("Permission denied" rather than the whole errno story). */
function shortMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/ \(os error \d+\).*$/s, "");
}

/** Per-second rates between two reports (or since start for the first one). */
export interface Rates {
  /** Seconds the rates were measured over. */
  intervalSeconds: number;
  packetsPerSecond: number;
  bytesPerSecond: number;
  writtenPacketsPerSecond: number;
  writtenBytesPerSecond: number;
  /** libpcap drops (buffer and interface) per second. */
  dropsPerSecond: number;
  /** Share of packets written over the interval, percent; 0 without packets. */
  outputPercent: number;
}

/** The file a worker is writing now. */
export interface CurrentFile {
  /** Path of the temporary file, relative to the archive. */
  path: string;
  /** Bytes on disk. */
  bytes: number;
  /** Packets written to it (queryable) at its last flush; null without --flush-interval. */
  packets: number | null;
  /** Wall-clock time of its last flush, Unix seconds; null without --flush-interval. */
  flushedAt: number | null;
}

/** One worker in `/status`. */
export interface WorkerStatus {
  interface: string;
  worker: number;
  ready: boolean;
  done: boolean;
  error: string | null;
  capturing: boolean;
  packetsSeen: number;
  bytesSeen: number;
  packetsWritten: number;
  bytesWritten: number;
  pcapReceived: number;
  pcapDropped: number;
  pcapIfDropped: number;
  activeFlows: number;
  filesWritten: number;
  writeErrors: number;
  /** Capture time of the latest packet, Unix seconds; null before the first. */
  lastPacketTs: number | null;
  rates: Rates;
  currentFile: CurrentFile | null;
  /** Packets stored but not yet written to the current file. */
  packetsUnflushed: number;
}

/** One interface (its workers summed) in `/status`. */
export interface InterfaceStatus {
  name: string;
  /** Link state (Linux operstate: up, down, lowerlayerdown, unknown, …) of a live interface. */
  link?: string;
  workers: number;
  ready: boolean;
  activeFlows: number;
  packetsSeen: number;
  packetsWritten: number;
  pcapDropped: number;
  pcapIfDropped: number;
  rates: Rates;
}

/** The archive in `/status`. */
export interface ArchiveStatus {
  files: number;
  bytes: number;
  oldestPacketTs: number | null;
  oldestPacketAgeSeconds: number | null;
  newestPacketTs: number | null;
}

/** The archive's filesystem in `/status`. */
export interface DiskStatus {
  freeBytes: number;
  sizeBytes: number;
  freePercent: number;
}

/** The JSON document of `GET /status`. */
export interface StatusReport {
  version: string;
  /** Unix seconds of this report. */
  now: number;
  startedAt: number;
  uptimeSeconds: number;
  capturing: boolean;
  outDir: string;
  ready: boolean;
  notReady: string[];
  activeFlows: number;
  interfaces: InterfaceStatus[];
  workers: WorkerStatus[];
  disk: DiskStatus | null;
  archive: ArchiveStatus;
  retention: RetentionStats;
}

/** Options of `StatusTracker`. */
export interface StatusTrackerOptions {
  /** Filesystem space of the archive (e.g. `SensorMetrics.disk`, which caches it). */
  disk: () => DiskSpace | undefined;
  /** Clock in Unix seconds; tests replace it. */
  now?: () => number;
}

interface Totals {
  packets: number;
  bytes: number;
  written: number;
  writtenBytes: number;
  drops: number;
}

/** Rates shorter than this reuse the previous ones: two reports in a burst would be all noise. */
const MIN_RATE_INTERVAL = 1;

/** Builds `/status` reports, remembering counters between calls to compute rates. */
export class StatusTracker {
  readonly #sensor: SensorView;
  readonly #disk: () => DiskSpace | undefined;
  readonly #now: () => number;
  readonly #previous = new Map<string, { at: number; totals: Totals; rates: Rates }>();

  constructor(sensor: SensorView, options: StatusTrackerOptions) {
    this.#sensor = sensor;
    this.#disk = options.disk;
    this.#now = options.now ?? (() => Date.now() / 1000);
  }

  /** The current report. */
  report(): StatusReport {
    const sensor = this.#sensor;
    const now = this.#now();
    const workers = sensor.workers().map((w) => this.#workerStatus(w, now));
    const readyNow = readiness(sensor);
    const space = this.#disk();
    const catalog = sensor.catalog();
    const oldest = oldestPacketTs(sensor);
    let newest: number | null = null;
    for (const e of catalog.entries()) {
      if (e.packets > 0 && (newest === null || e.lastTs > newest)) newest = e.lastTs;
    }
    return {
      version: VERSION,
      now,
      startedAt: sensor.startedAt,
      uptimeSeconds: Math.max(0, now - sensor.startedAt),
      capturing: sensor.capturing,
      outDir: sensor.outDir,
      ready: readyNow.ready,
      notReady: readyNow.reasons,
      activeFlows: workers.reduce((sum, w) => sum + w.activeFlows, 0),
      interfaces: interfaces(workers, sensor.liveInterfaces ?? []),
      workers,
      disk: space === undefined ? null : {
        freeBytes: space.free,
        sizeBytes: space.size,
        freePercent: space.size > 0 ? round(space.free / space.size * 100, 2) : 0,
      },
      archive: {
        files: catalog.size,
        bytes: catalog.totalBytes(),
        oldestPacketTs: oldest ?? null,
        oldestPacketAgeSeconds: oldest === undefined ? null : Math.max(0, now - oldest),
        newestPacketTs: newest,
      },
      retention: sensor.retention(),
    };
  }

  #workerStatus(w: WorkerView, now: number): WorkerStatus {
    const c = w.counters;
    const totals: Totals = {
      packets: c.packetsSeen,
      bytes: c.bytesSeen,
      written: c.packetsWritten,
      writtenBytes: c.bytesWritten,
      drops: c.pcapDropped + c.pcapIfDropped,
    };
    const key = `${w.label}/${w.index}`;
    const previous = this.#previous.get(key);
    let rates: Rates;
    if (previous !== undefined && now - previous.at < MIN_RATE_INTERVAL) {
      rates = previous.rates;
    } else {
      const since = previous ?? { at: this.#sensor.startedAt, totals: ZERO };
      rates = ratesBetween(since.totals, totals, now - since.at);
      this.#previous.set(key, { at: now, totals, rates });
    }
    const last = c.lastPacketTs;
    return {
      interface: w.label,
      worker: w.index,
      ready: w.ready,
      done: w.done,
      error: w.error ?? null,
      capturing: c.capturing > 0,
      packetsSeen: totals.packets,
      bytesSeen: totals.bytes,
      packetsWritten: totals.written,
      bytesWritten: totals.writtenBytes,
      pcapReceived: c.pcapReceived,
      pcapDropped: c.pcapDropped,
      pcapIfDropped: c.pcapIfDropped,
      activeFlows: c.flowsActive,
      filesWritten: c.filesWritten,
      writeErrors: c.writeErrors,
      lastPacketTs: last > 0 ? last : null,
      rates,
      currentFile: currentFile(this.#sensor.outDir, w),
      packetsUnflushed: c.packetsUnflushed,
    };
  }
}

const ZERO: Totals = { packets: 0, bytes: 0, written: 0, writtenBytes: 0, drops: 0 };

function ratesBetween(before: Totals, after: Totals, seconds: number): Rates {
  const dt = seconds > 0 ? seconds : 0;
  const per = (a: number, b: number) => dt > 0 ? round(Math.max(0, b - a) / dt, 3) : 0;
  const packets = after.packets - before.packets;
  return {
    intervalSeconds: round(dt, 3),
    packetsPerSecond: per(before.packets, after.packets),
    bytesPerSecond: per(before.bytes, after.bytes),
    writtenPacketsPerSecond: per(before.written, after.written),
    writtenBytesPerSecond: per(before.writtenBytes, after.writtenBytes),
    dropsPerSecond: per(before.drops, after.drops),
    outputPercent: packets > 0 ? round((after.written - before.written) / packets * 100, 1) : 0,
  };
}

/** Sums workers by interface, in the order interfaces first appear. */
function interfaces(workers: WorkerStatus[], live: readonly string[]): InterfaceStatus[] {
  const byName = new Map<string, WorkerStatus[]>();
  for (const w of workers) {
    const list = byName.get(w.interface);
    if (list === undefined) byName.set(w.interface, [w]);
    else list.push(w);
  }
  return [...byName].map(([name, list]) => {
    const sum = (f: (w: WorkerStatus) => number) => list.reduce((acc, w) => acc + f(w), 0);
    const packets = sum((w) => w.rates.packetsPerSecond);
    return {
      name,
      ...(live.includes(name) ? { link: linkState(name) ?? "unknown" } : {}),
      workers: list.length,
      ready: list.every((w) => w.ready && !w.done),
      activeFlows: sum((w) => w.activeFlows),
      packetsSeen: sum((w) => w.packetsSeen),
      packetsWritten: sum((w) => w.packetsWritten),
      pcapDropped: sum((w) => w.pcapDropped),
      pcapIfDropped: sum((w) => w.pcapIfDropped),
      rates: {
        intervalSeconds: Math.max(...list.map((w) => w.rates.intervalSeconds)),
        packetsPerSecond: round(packets, 3),
        bytesPerSecond: round(sum((w) => w.rates.bytesPerSecond), 3),
        writtenPacketsPerSecond: round(sum((w) => w.rates.writtenPacketsPerSecond), 3),
        writtenBytesPerSecond: round(sum((w) => w.rates.writtenBytesPerSecond), 3),
        dropsPerSecond: round(sum((w) => w.rates.dropsPerSecond), 3),
        outputPercent: packets > 0
          ? round(sum((w) => w.rates.writtenPacketsPerSecond) / packets * 100, 1)
          : 0,
      },
    };
  });
}

/**
 * The file `w` reported it is writing: its size now, and the packets and time of its last flush from
 * the state the worker publishes (with --flush-interval; null without).
 */
function currentFile(outDir: string, w: WorkerView): CurrentFile | null {
  if (w.openFile === null || w.done) return null;
  let bytes: number;
  try {
    bytes = Deno.statSync(`${outDir}/${w.openFile}`).size;
  } catch {
    return null; // finalized since it reported it
  }
  const state = readOpenState(outDir, sanitizeIface(w.label), w.index);
  const flushed = state?.tmp === w.openFile ? state : undefined;
  return {
    path: w.openFile,
    bytes,
    packets: flushed?.packets ?? null,
    flushedAt: flushed?.flushedAt ?? null,
  };
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
