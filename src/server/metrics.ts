/**
 * Prometheus metrics. Every sensor metric is read at scrape time from what already exists: the
 * workers' counters (SensorView, by name), the catalog, the retention totals and one
 * cached statvfs of the archive directory. Nothing per packet is sent anywhere for metrics; a scrape
 * costs a few hundred array reads.
 *
 * Histograms whose counts are kept elsewhere (the workers' flow sizes, the query durations) are
 * exposed through `ScrapedHistogram`, because prom-client's Histogram can only be fed one
 * observation at a time.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { cpuUsage } from "node:process";
import { maxFds, openFdCount, processMemory } from "../../ffi/proc_self.ts";
import type { SensorView, WorkerCounters, WorkerView } from "./view.ts";
import { FLOW_SIZE_BUCKETS } from "../flow/size_histogram.ts";
import { type DiskSpace, diskSpace } from "../archive/retention.ts";
import { VERSION } from "../version.ts";
import { linkIsDown, linkState } from "../capture/link.ts";

/** Upper bounds (seconds) of `cutcap_query_duration_seconds`. */
export const QUERY_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
]);

/**
 * Query outcomes that are always exported (at 0 until they happen), so rates exist from the start:
 * src/query/execute.ts's QueryOutcome, "rejected" for queries refused before they ran (too many at
 * once) and "invalid" for requests that were not a valid query (400, 413).
 */
const KNOWN_OUTCOMES = ["complete", "limited", "cancelled", "error", "rejected", "invalid"];

/**
 * Query statistics live at module level: query routes call `recordQuery` without knowing which
 * registry (if any) exports them.
 */
const queryOutcomes = new Map<string, number>(KNOWN_OUTCOMES.map((o) => [o, 0]));
/** Per-bucket counts (not cumulative), then the count above the last bound. */
const queryDurationCounts = new Float64Array(QUERY_DURATION_BUCKETS.length + 1);
let queryDurationSum = 0;
let queryBytes = 0;

/**
 * Counts one answered (or refused) query: `outcome` is a short word, QueryResult.outcome
 * ("complete", "limited", "cancelled", "error") or "rejected" (refused, e.g. too many at once);
 * `seconds` its wall time; `bytes` the pcap or JSON bytes sent.
 */
export function recordQuery(outcome: string, seconds: number, bytes: number): void {
  queryOutcomes.set(outcome, (queryOutcomes.get(outcome) ?? 0) + 1);
  const s = Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
  let i = 0;
  while (i < QUERY_DURATION_BUCKETS.length && s > QUERY_DURATION_BUCKETS[i]) i++;
  queryDurationCounts[i]++;
  queryDurationSum += s;
  if (Number.isFinite(bytes) && bytes > 0) queryBytes += bytes;
}

/** One labelled series of a `ScrapedHistogram`. */
export interface HistogramSnapshot {
  labels: Record<string, string>;
  /** Per-bucket counts, NOT cumulative, one per bound, then the count above the last bound. */
  counts: ArrayLike<number>;
  /** Sum of the observed values. */
  sum: number;
}

/** What `ScrapedHistogram` needs. */
interface ScrapedHistogramConfig {
  name: string;
  help: string;
  bounds: readonly number[];
  labelNames: string[];
  registry: Registry;
  read: () => HistogramSnapshot[];
}

type HistogramMetric = Awaited<ReturnType<Histogram<string>["get"]>>;

/**
 * A histogram whose bucket counts are read at scrape time (`read`) instead of observed. It is a
 * prom-client Histogram so the registry accepts it; it replaces what the registry asks for. The
 * registry calls `getForPromString` when a metric has one (Histogram does), else `get`.
 */
class ScrapedHistogram extends Histogram<string> {
  readonly #bounds: readonly number[];
  readonly #read: () => HistogramSnapshot[];
  /** An empty twin whose `get()` supplies name, help, type and aggregator, typed. */
  readonly #template: Histogram<string>;

  constructor(config: ScrapedHistogramConfig) {
    const base = {
      name: config.name,
      help: config.help,
      buckets: [...config.bounds],
      labelNames: config.labelNames,
    };
    super({ ...base, registers: [config.registry] });
    this.#bounds = config.bounds;
    this.#read = config.read;
    this.#template = new Histogram({ ...base, registers: [] });
  }

  override async get(): Promise<HistogramMetric> {
    const metric = await this.#template.get();
    const values: HistogramMetric["values"] = [];
    for (const snapshot of this.#read()) {
      let cumulative = 0;
      for (let i = 0; i <= this.#bounds.length; i++) {
        cumulative += finite(snapshot.counts[i]);
        values.push({
          metricName: `${metric.name}_bucket`,
          labels: { ...snapshot.labels, le: i < this.#bounds.length ? this.#bounds[i] : "+Inf" },
          value: cumulative,
        });
      }
      values.push({
        metricName: `${metric.name}_sum`,
        labels: snapshot.labels,
        value: finite(snapshot.sum),
      });
      values.push({
        metricName: `${metric.name}_count`,
        labels: snapshot.labels,
        value: cumulative,
      });
    }
    return { ...metric, values };
  }

  /** What prom-client's registry formats; the same as `get`. */
  getForPromString(): Promise<HistogramMetric> {
    return this.get();
  }
}

/** A worker's counters that are plain numbers. */
type CounterName = Exclude<keyof WorkerCounters, "flowSizeCounts">;

/** A worker counter exported as a labelled counter or gauge. */
interface WorkerSeries {
  name: string;
  help: string;
  counter: CounterName;
}

const WORKER_COUNTERS: readonly WorkerSeries[] = [
  {
    name: "cutcap_packets_seen_total",
    help: "Packets seen by the capture loop",
    counter: "packetsSeen",
  },
  { name: "cutcap_bytes_seen_total", help: "Bytes (original length) seen", counter: "bytesSeen" },
  {
    name: "cutcap_packets_written_total",
    help:
      "Packets handed to the pcap writer (those lost to write errors are also in cutcap_packets_lost_total)",
    counter: "packetsWritten",
  },
  {
    name: "cutcap_packets_lost_total",
    help: "Packets lost with output blocks that failed to reach the disk",
    counter: "packetsLost",
  },
  {
    name: "cutcap_bytes_written_total",
    help: "Packet bytes (captured length) written, before compression",
    counter: "bytesWritten",
  },
  {
    name: "cutcap_flows_started_total",
    help: "Flows added to the flow table",
    counter: "flowsStarted",
  },
  { name: "cutcap_pcap_received_total", help: "libpcap ps_recv", counter: "pcapReceived" },
  {
    name: "cutcap_pcap_dropped_total",
    help: "libpcap ps_drop (buffer full)",
    counter: "pcapDropped",
  },
  {
    name: "cutcap_pcap_ifdropped_total",
    help: "libpcap ps_ifdrop (dropped by the interface)",
    counter: "pcapIfDropped",
  },
  { name: "cutcap_output_files_total", help: "pcap files finalized", counter: "filesWritten" },
  {
    name: "cutcap_output_bytes_total",
    help: "Bytes of finalized pcap files on disk, after compression",
    counter: "fileBytesWritten",
  },
  { name: "cutcap_rotations_total", help: "Output file rotations", counter: "rotations" },
  {
    name: "cutcap_write_errors_total",
    help: "Failed writes or file opens",
    counter: "writeErrors",
  },
  {
    name: "cutcap_index_build_seconds_total",
    help: "Time spent writing index files",
    counter: "indexBuildSeconds",
  },
  {
    name: "cutcap_large_flows_total",
    help: "Flows that crossed --large-flow-threshold",
    counter: "largeFlows",
  },
  {
    name: "cutcap_reopen_attempts_total",
    help: "Attempts to reopen a capture handle that failed",
    counter: "reopenAttempts",
  },
  {
    name: "cutcap_caplen_over_len_total",
    help: "Records whose captured length exceeded their wire length, stored as read",
    counter: "caplenOverLen",
  },
  {
    name: "cutcap_undecoded_frames_total",
    help: "Frames whose headers could not be decoded (stored without a flow key)",
    counter: "undecodedFrames",
  },
];

const WORKER_GAUGES: readonly WorkerSeries[] = [
  { name: "cutcap_flows_active", help: "Flows in the flow table", counter: "flowsActive" },
  {
    name: "cutcap_index_lag_seconds",
    help:
      "Seconds from the last packet of the worker's latest finalized file until its index was written",
    counter: "indexLagSeconds",
  },
  {
    name: "cutcap_worker_capturing",
    help: "1 while the worker's capture handle is open and reading",
    counter: "capturing",
  },
  {
    name: "cutcap_last_packet_timestamp_seconds",
    help: "Capture time of the worker's latest packet (Unix seconds)",
    counter: "lastPacketTs",
  },
  {
    name: "cutcap_packets_unflushed",
    help: "Packets stored but not yet written to the open file (at most --flush-interval old)",
    counter: "packetsUnflushed",
  },
  {
    name: "cutcap_open_file_bytes",
    help: "Bytes on disk of the file the worker is writing",
    counter: "openFileBytes",
  },
];

const REMOVAL_REASONS: readonly { reason: string; counter: CounterName }[] = [
  { reason: "idle", counter: "flowsExpired" },
  { reason: "closed", counter: "flowsClosed" },
  { reason: "evicted", counter: "flowsEvicted" },
];

const WORKER_LABELS = ["interface", "worker"];

/** Seconds a statvfs result is reused: scrapes and /status in a burst share one. */
const DISK_CACHE_SECONDS = 5;

/** Options of `SensorMetrics`. */
export interface SensorMetricsOptions {
  /** Add the standard process_* metrics (CPU, memory, file descriptors); default true. */
  defaultMetrics?: boolean;
}

/** The sensor's Prometheus registry; see the module comment. */
export class SensorMetrics {
  /** The prom-client registry; more metrics can be registered on it. */
  readonly registry: Registry = new Registry();
  readonly #sensor: SensorView;
  #disk: { at: number; value: DiskSpace | undefined } | undefined;

  constructor(sensor: SensorView, options: SensorMetricsOptions = {}) {
    this.#sensor = sensor;
    const registry = this.registry;
    if (options.defaultMetrics ?? true) processMetrics(registry);
    this.#workerMetrics();
    this.#archiveMetrics();
    this.#queryMetrics();
    new Gauge({
      name: "cutcap_build_info",
      help: "Versions of cutcap, Deno and libpcap; always 1",
      labelNames: ["version", "deno", "libpcap"],
      registers: [registry],
    }).set({ version: VERSION, deno: Deno.version.deno, libpcap: sensor.libpcapVersion }, 1);
  }

  /** Content-Type of `metricsText()`. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text, every value read now. */
  metricsText(): Promise<string> {
    return this.registry.metrics();
  }

  /** Free and total bytes of the archive's filesystem (cached a few seconds); undefined if unknown. */
  disk(): DiskSpace | undefined {
    const now = performance.now() / 1000;
    if (this.#disk === undefined || now - this.#disk.at > DISK_CACHE_SECONDS) {
      let value: DiskSpace | undefined;
      try {
        value = diskSpace(this.#sensor.outDir);
      } catch {
        value = undefined;
      }
      this.#disk = { at: now, value };
    }
    return this.#disk.value;
  }

  #workerMetrics(): void {
    const sensor = this.#sensor;
    const registers = [this.registry];
    for (const series of WORKER_COUNTERS) {
      const counter = series.counter;
      new Counter({
        name: series.name,
        help: series.help,
        labelNames: WORKER_LABELS,
        registers,
        collect() {
          this.reset();
          for (const w of sensor.workers()) this.inc(workerLabels(w), finite(w.counters[counter]));
        },
      });
    }
    for (const series of WORKER_GAUGES) {
      const counter = series.counter;
      new Gauge({
        name: series.name,
        help: series.help,
        labelNames: WORKER_LABELS,
        registers,
        collect() {
          this.reset();
          for (const w of sensor.workers()) this.set(workerLabels(w), finite(w.counters[counter]));
        },
      });
    }
    new Gauge({
      name: "cutcap_worker_ready",
      help: "1 while the worker is in its packet loop (ready and not done)",
      labelNames: WORKER_LABELS,
      registers,
      collect() {
        this.reset();
        for (const w of sensor.workers()) this.set(workerLabels(w), w.ready && !w.done ? 1 : 0);
      },
    });
    new Gauge({
      name: "cutcap_link_up",
      help: "1 while a live capture interface's link is up (operstate), 0 while it is down",
      labelNames: ["interface"],
      registers,
      collect() {
        this.reset();
        for (const iface of sensor.liveInterfaces ?? []) {
          this.set({ interface: iface }, linkIsDown(linkState(iface)) ? 0 : 1);
        }
      },
    });
    new Counter({
      name: "cutcap_flows_removed_total",
      help: "Flows removed from the flow table, by reason",
      labelNames: [...WORKER_LABELS, "reason"],
      registers,
      collect() {
        this.reset();
        for (const w of sensor.workers()) {
          for (const { reason, counter } of REMOVAL_REASONS) {
            this.inc({ ...workerLabels(w), reason }, finite(w.counters[counter]));
          }
        }
      },
    });
    new ScrapedHistogram({
      name: "cutcap_flow_size_bytes",
      help: "Size in bytes of flows when they leave the flow table",
      bounds: FLOW_SIZE_BUCKETS,
      labelNames: WORKER_LABELS,
      registry: this.registry,
      read: () =>
        sensor.workers().map((w) => ({
          labels: workerLabels(w),
          counts: w.counters.flowSizeCounts,
          sum: w.counters.flowSizeSum,
        })),
    });
  }

  #archiveMetrics(): void {
    const sensor = this.#sensor;
    const registers = [this.registry];
    const disk = () => this.disk();
    const diskGauge = (name: string, help: string, field: "free" | "size") =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const space = disk();
          if (space === undefined) this.remove();
          else this.set(space[field]);
        },
      });
    diskGauge("cutcap_disk_free_bytes", "Bytes available on the archive's filesystem", "free");
    diskGauge("cutcap_disk_size_bytes", "Size of the archive's filesystem", "size");
    new Gauge({
      name: "cutcap_archive_bytes",
      help: "Bytes of finalized pcap and index files in the archive",
      registers,
      collect() {
        this.set(sensor.catalog().totalBytes());
      },
    });
    const registry = this.registry;
    scrapedGauge(
      registry,
      { name: "cutcap_archive_files", help: "Finalized pcap files in the archive" },
      () => sensor.catalog().size,
    );
    scrapedCounter(
      registry,
      { name: "cutcap_retention_deleted_files_total", help: "Files deleted by retention" },
      () => finite(sensor.retention().deletedFiles),
    );
    scrapedCounter(
      registry,
      { name: "cutcap_retention_deleted_bytes_total", help: "Bytes deleted by retention" },
      () => finite(sensor.retention().deletedBytes),
    );
    scrapedGauge(registry, {
      name: "cutcap_oldest_packet_age_seconds",
      help: "Age of the oldest packet still in the archive; absent while the archive is empty",
    }, () => {
      const oldest = oldestPacketTs(sensor);
      return oldest === undefined ? undefined : Math.max(0, Date.now() / 1000 - oldest);
    });
  }

  #queryMetrics(): void {
    const registers = [this.registry];
    new Counter({
      name: "cutcap_queries_total",
      help: "Queries answered, by outcome",
      labelNames: ["outcome"],
      registers,
      collect() {
        this.reset();
        for (const [outcome, count] of queryOutcomes) this.inc({ outcome }, count);
      },
    });
    scrapedCounter(
      this.registry,
      { name: "cutcap_query_bytes_total", help: "Bytes sent in query answers" },
      () => queryBytes,
    );
    new ScrapedHistogram({
      name: "cutcap_query_duration_seconds",
      help: "Wall time of queries",
      bounds: QUERY_DURATION_BUCKETS,
      labelNames: [],
      registry: this.registry,
      read: () => [{ labels: {}, counts: queryDurationCounts, sum: queryDurationSum }],
    });
  }
}

/** A counter without labels whose total is read at scrape time. */
export function scrapedCounter(
  registry: Registry,
  series: { name: string; help: string },
  read: () => number,
): void {
  new Counter({
    ...series,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A gauge without labels read at scrape time; absent while `read` gives undefined. */
export function scrapedGauge(
  registry: Registry,
  series: { name: string; help: string },
  read: () => number | undefined,
): void {
  new Gauge({
    ...series,
    registers: [registry],
    collect() {
      const value = read();
      if (value === undefined) this.remove();
      else this.set(value);
    },
  });
}

/**
 * The standard process_* metrics, read at scrape time through ffi/proc_self.ts: prom-client's own
 * collectors read /proc/self with node:fs, which Deno refuses under the shipped tasks' permissions
 * (they exported 0). Its nodejs_* series (event loop lag, V8 heap spaces, handles) are left out:
 * Deno's node layer fakes several of them.
 */
function processMetrics(registry: Registry): void {
  const gauge = (name: string, help: string, read: () => number | undefined) =>
    scrapedGauge(registry, { name, help }, read);
  const counter = (name: string, help: string, read: () => number) =>
    scrapedCounter(registry, { name, help }, read);
  counter(
    "process_cpu_user_seconds_total",
    "User CPU time spent in seconds",
    () => cpuUsage().user / 1e6,
  );
  counter(
    "process_cpu_system_seconds_total",
    "System CPU time spent in seconds",
    () => cpuUsage().system / 1e6,
  );
  counter("process_cpu_seconds_total", "User and system CPU time spent in seconds", () => {
    const used = cpuUsage();
    return (used.user + used.system) / 1e6;
  });
  const started = Math.round(performance.timeOrigin / 1000);
  gauge(
    "process_start_time_seconds",
    "Start time of the process since the Unix epoch in seconds",
    () => started,
  );
  gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes",
    () => processMemory()?.resident ?? Deno.memoryUsage().rss,
  );
  gauge(
    "process_virtual_memory_bytes",
    "Virtual memory size in bytes",
    () => processMemory()?.virtual,
  );
  gauge(
    "process_heap_bytes",
    "Process heap (data segment) size in bytes",
    () => processMemory()?.data,
  );
  gauge("process_open_fds", "Number of open file descriptors", openFdCount);
  gauge("process_max_fds", "Maximum number of open file descriptors", maxFds);
}

/** Capture time of the oldest packet in the archive, or undefined when it holds none. */
export function oldestPacketTs(sensor: SensorView): number | undefined {
  // Sorted by first packet; files without packets (firstTs 0) come first and say nothing.
  for (const entry of sensor.catalog().entries()) if (entry.packets > 0) return entry.firstTs;
  return undefined;
}

function workerLabels(w: WorkerView): Record<string, string> {
  return { interface: w.label, worker: String(w.index) };
}

/** Counter values as prom-client accepts them: finite and not negative (a torn or missing slot is 0). */
function finite(value: number | undefined): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : 0;
}
