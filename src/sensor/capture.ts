/**
 * `cutcap capture`: the main thread of a sensor. Checks the environment (libpcap, interfaces, output
 * directory), repairs files a crash left behind, starts the workers and the services the command plugs in
 * (the HTTP server: src/cli/capture.ts), prints stats lines, and shuts everything down cleanly on
 * SIGINT/SIGTERM or when an offline replay ends. It imports nothing of the server.
 */
import type { CaptureConfig } from "../config.ts";
import { Counter } from "../worker/counters.ts";
import {
  checkFilter,
  defaultInterface,
  findAllDevs,
  loadLibpcap,
  PcapHandle,
} from "../../ffi/libpcap.ts";
import { CatalogKeeper, lockArchive, openArchive, type RecoveredFile } from "../archive/archive.ts";
import type { Catalog } from "../archive/catalog.ts";
import { reportLargeFlow } from "./large_flow_hook.ts";
import { Retention } from "../archive/retention.ts";
import { sdNotify, watchdogInterval } from "../../ffi/sd_notify.ts";
import { logError, type LogFields, logInfo, logWarn, setLogFormat } from "../log.ts";
import { UsageError } from "../cli/options.ts";
import { snapshot, statsFields, type StatsSnapshot } from "./stats_line.ts";
import {
  requestRotate,
  requestStop,
  startCapturing,
  startWorkers,
  type WorkerHandle,
} from "./supervisor.ts";
import { dropPrivileges, lookupGroup, lookupUser, setCaptureCapabilities } from "../../ffi/libc.ts";
import {
  ensureWritableDir,
  missingDirs,
  prepareDirForUser,
  shareWithGroup,
} from "../archive/output_dir.ts";
import { linkTypeOf } from "../capture/link.ts";
import { ensureLibpcap } from "./libpcap_setup.ts";
import type { Exporter } from "../export/exporter.ts";

/** A repeat of the first signal this soon is its echo (see onSignal), not an operator's second signal. */
const DUPLICATE_SIGNAL_MS = 300;

/** What a running capture offers the services started beside it (the HTTP server). */
export interface CaptureRun {
  readonly config: CaptureConfig;
  /** Unix seconds when the capture started. */
  readonly startedAt: number;
  /** The capture workers (filled in once they are started). */
  workers(): readonly WorkerHandle[];
  /** Finalized files. */
  catalog(): Catalog;
  /** Retention deletions so far. */
  retention(): { deletedFiles: number; deletedBytes: number };
  /** The flow exporter, with --export-clickhouse. */
  readonly exporter?: Exporter;
}

/** Services a capture runs beside its workers, started once the archive is open. */
export type CaptureServices = (run: CaptureRun) => Promise<RunningServices>;

/** Started services. */
export interface RunningServices {
  /** The address the HTTP server listens on, if it does. */
  readonly listening?: Deno.NetAddr;
  /** Called once the workers are done, the catalog saved and the export drained (final metrics, shutdown). */
  stop(): Promise<void>;
}

/** Options of {@linkcode runCapture}. */
export interface RunCaptureOptions {
  /** A capture worker already loading its modules, used for the first planned worker. */
  spareWorker?: Worker;
  /** What to run beside the workers (the HTTP server, --metrics-file). */
  services?: CaptureServices;
}

/** Runs a capture until it is stopped (live) or its input ends (offline); resolves to the exit code. */
export async function runCapture(
  config: CaptureConfig,
  opts: RunCaptureOptions = {},
): Promise<number> {
  setLogFormat(config.logFormat);
  await ensureLibpcap(config.libpcap, loadLibpcap);
  if (config.readFiles.length === 0) {
    resolveInterfaces(config);
    checkLiveFilter(config);
  } else checkReadable(config.readFiles, config.filter);
  const created = missingDirs(config.outDir);
  ensureWritableDir(config.outDir);
  if (config.user !== undefined) {
    const entry = lookupUser(config.user);
    if (entry === undefined) {
      throw new UsageError(
        `Unknown --user "${config.user}": expected an account in the password database`,
      );
    }
    prepareDirForUser(config.outDir, { name: config.user, ...entry }, created);
  }
  if (config.group !== undefined) {
    const gid = lookupGroup(config.group);
    if (gid === undefined) {
      throw new UsageError(
        `Unknown --group "${config.group}": expected a group in the group database`,
      );
    }
    shareWithGroup(config.outDir, gid);
  }

  const archiveLock = lockArchive(config.outDir);
  let keeper: CatalogKeeper;
  let recovered: RecoveredFile[];
  try {
    const archive = openArchive(config.outDir);
    keeper = new CatalogKeeper(archive.catalog);
    recovered = archive.recovered;
  } catch (error) {
    archiveLock.close();
    throw error;
  }
  const workers: WorkerHandle[] = [];
  const startedAt = Date.now() / 1000;
  let services: RunningServices | undefined = undefined;
  const exporter: Exporter | undefined = config.exportClickhouse === undefined
    ? undefined
    : (await import("../export/mod.ts")).exporterFor(config, () => services?.listening?.port);
  if (exporter !== undefined && config.user !== undefined) {
    // Made as root: the user it drops to appends and removes batches there.
    const entry = lookupUser(config.user)!;
    Deno.chownSync(exporter.spoolDir, entry.uid, entry.gid);
    for (const batch of Deno.readDirSync(exporter.spoolDir)) {
      Deno.chownSync(`${exporter.spoolDir}/${batch.name}`, entry.uid, entry.gid);
    }
  }
  const retention = new Retention({
    outDir: config.outDir,
    minFree: config.minFree,
    maxBytes: config.maxBytes,
    maxAge: config.maxAge,
    onDelete: (path) => exporter?.fileDeleted(path),
  });
  const enforceRetention = () => retention.enabled && retention.run(keeper.catalog);
  enforceRetention();
  const retentionTimer = retention.enabled ? setInterval(enforceRetention, 5000) : undefined;
  services = await opts.services?.({
    config,
    startedAt,
    workers: () => workers,
    catalog: () => keeper.catalog,
    retention: () => retention.totals(),
    exporter,
  });
  exporter?.start();
  // Files a crash left open go the way of a finalized file: their open rows are replaced.
  for (const file of recovered) {
    const entry = keeper.catalog.get(file.path);
    if (entry !== undefined) exporter?.fileFinalized(entry.path, entry, file.openName);
  }
  const source = config.readFiles.length > 0
    ? plural(config.readFiles.length, "file")
    : config.interfaces.join(",");
  let capturing = false;

  let exitCode = 0;
  let stopping = false;
  const finished = Promise.withResolvers<void>();
  workers.push(...startWorkers(config, {
    onLog: (level, message) =>
      (level === "info" ? logInfo : level === "warn" ? logWarn : logError)(message),
    onReady: (from) => {
      logInfo(`Started worker ${from.index} on ${from.label}`);
      if (!workers.every((w) => w.ready)) return;
      if (config.user !== undefined) {
        // Every handle is open: the rest needs no privilege. glibc changes every thread's ids.
        try {
          dropPrivileges(config.user);
          // Checked as root at start; the user may not be allowed to write there.
          ensureWritableDir(config.outDir);
        } catch (error) {
          logError(
            `Running as ${config.user}: ${error instanceof Error ? error.message : String(error)}`,
          );
          exitCode = 1;
          stop();
          return;
        }
        logInfo(`Dropped privileges to ${config.user}`);
      } else if (config.readFiles.length === 0 && setCaptureCapabilities(false)) {
        // Workers turn them on only while (re)opening their interface; this thread never needs them.
        logInfo("CAP_NET_RAW and CAP_NET_ADMIN are off except while a worker opens its interface");
      }
      startCapturing(workers);
      capturing = true;
      const method = config.readFiles.length > 0 ? "" : ` (${config.captureMethod})`;
      logInfo(
        `Capturing on ${source} with ${plural(workers.length, "worker")}${method}`,
        startFields(config, services?.listening),
      );
      sdNotify(`READY=1\nSTATUS=Capturing on ${source}`);
    },
    onFinalized: (file) => {
      logInfo("moved", { path: file.path, packets: file.packets }, { inline: ["path"] });
      const entry = keeper.add(file.path);
      if (entry !== undefined) exporter?.fileFinalized(entry.path, entry);
      enforceRetention();
    },
    onFatal: (message) => {
      logError(message);
      exitCode = 1;
      stop();
      checkFinished();
    },
    onDone: () => checkFinished(),
    onLargeFlow: (flow, bytes, threshold) =>
      reportLargeFlow(flow, { bytes, threshold }, config.largeFlowCommand),
  }, opts.spareWorker));

  function stop(): void {
    if (stopping) return;
    stopping = true;
    requestStop(workers);
  }
  function checkFinished(): void {
    if (workers.every((w) => w.done)) finished.resolve();
  }

  const previous = new Map<WorkerHandle, StatsSnapshot>(
    workers.map((w) => [w, snapshot(w.counters)]),
  );
  const logStats = (): void => {
    for (const w of workers) {
      const now = snapshot(w.counters);
      const fields = statsFields(w.label, w.index, w.counters, { previous: previous.get(w)!, now });
      logInfo("stats", fields, { bare: true });
      previous.set(w, now);
    }
  };
  const statsTimer = config.statsInterval > 0
    ? setInterval(() => capturing && logStats(), config.statsInterval * 1000)
    : undefined;

  const watchdog = watchdogInterval();
  const watchdogTimer = watchdog
    ? setInterval(() => sdNotify("WATCHDOG=1"), watchdog * 1000)
    : undefined;

  // Ctrl-C under `deno task` reaches cutcap twice (from the terminal's process group and forwarded by
  // the task runner): the same signal again within DUPLICATE_SIGNAL_MS is that echo, not a second request.
  let firstSignal: { signal: Deno.Signal; at: number } | undefined;
  const onSignal = (signal: Deno.Signal): void => {
    const now = performance.now();
    if (firstSignal) {
      if (signal === firstSignal.signal && now - firstSignal.at < DUPLICATE_SIGNAL_MS) return;
      logWarn("Second signal: exiting without finishing files");
      Deno.exit(130);
    }
    firstSignal = { signal, at: now };
    logInfo("Signal received: finishing files");
    sdNotify("STOPPING=1");
    stop();
  };
  const onSigint = () => onSignal("SIGINT");
  const onSigterm = () => onSignal("SIGTERM");
  // SIGHUP (logrotate's postrotate, a closed SSH session): finalize every open file, go on.
  const onSighup = () => {
    if (stopping) return;
    logInfo(`SIGHUP: finalizing the open files of ${workers.length} workers; capture goes on`);
    requestRotate(workers);
  };
  Deno.addSignalListener("SIGINT", onSigint);
  Deno.addSignalListener("SIGTERM", onSigterm);
  Deno.addSignalListener("SIGHUP", onSighup);

  await finished.promise;
  clearInterval(statsTimer);
  // A last line for the time since the previous one, so the lines add up to the whole run (none
  // when the capture never started: the error said it all).
  if (statsTimer !== undefined && capturing) logStats();
  clearInterval(retentionTimer);
  clearInterval(watchdogTimer);
  Deno.removeSignalListener("SIGINT", onSigint);
  Deno.removeSignalListener("SIGTERM", onSigterm);
  Deno.removeSignalListener("SIGHUP", onSighup);
  keeper.close();
  if (exporter !== undefined) await finishExport(exporter, config.readFiles.length > 0);
  await services?.stop();
  archiveLock.close();
  if (capturing) logInfo("Capture finished");
  const lost = lostPackets(workers);
  if (lost.packets > 0 && config.readFiles.length > 0) {
    // A replay is a batch job: a partial archive must not look like a complete one.
    logError(
      `Lost ${lost.packets} of ${lost.seen} packets to ${lost.errors} write error(s): the archive ` +
        `misses them; free space on ${config.outDir} and replay again`,
    );
    if (exitCode === 0) exitCode = 1;
  }
  return exitCode;
}

/** Packets seen and lost (write errors dropped their block) over every worker. */
function lostPackets(
  workers: readonly WorkerHandle[],
): { packets: number; seen: number; errors: number } {
  let packets = 0, seen = 0, errors = 0;
  for (const w of workers) {
    packets += w.counters[Counter.PacketsLost];
    seen += w.counters[Counter.PacketsSeen];
    errors += w.counters[Counter.WriteErrors];
  }
  return { packets, seen, errors };
}

/** Seconds a replay (which exits when done) waits for its last batches to reach ClickHouse. */
const REPLAY_EXPORT_WAIT_MS = 60_000;
/** … and a live sensor at shutdown (the spool keeps the rest for the next start). */
const SHUTDOWN_EXPORT_WAIT_MS = 5_000;

/** Gives the exporter a bounded time to send what is spooled, then stops it. */
async function finishExport(exporter: Exporter, replay: boolean): Promise<void> {
  const sent = await exporter.drain(replay ? REPLAY_EXPORT_WAIT_MS : SHUTDOWN_EXPORT_WAIT_MS);
  if (!sent) {
    logWarn(
      `export: ${exporter.stats().backlogBatches} batch(es) stay spooled; the next start with --export-clickhouse sends them`,
    );
  }
  await exporter.close();
}

/** Fills in the default interface and checks that every named one exists. */
function resolveInterfaces(config: CaptureConfig): void {
  if (config.interfaces.length === 0) config.interfaces = [defaultInterface()];
  const known = new Set(findAllDevs().map((d) => d.name));
  for (const iface of config.interfaces) {
    if (!known.has(iface)) {
      throw new Error(`Interface ${iface} not found (cutcap interfaces lists them)`);
    }
  }
}

/** What a capture start says besides its source: where files go, the cutoff, the server. */
function startFields(config: CaptureConfig, listen: Deno.NetAddr | undefined): LogFields {
  const fields: LogFields = {
    out: config.outDir,
    byte_cutoff: config.byteCutoff,
    packet_cutoff: config.packetCutoff,
  };
  if (listen !== undefined) {
    const host = listen.hostname.includes(":") ? `[${listen.hostname}]` : listen.hostname;
    fields.listen = `${config.tlsCert ? "https" : "http"}://${host}:${listen.port}`;
  }
  return fields;
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/**
 * Compiles the filter for each interface's link type (from /sys/class/net) before anything binds
 * or starts, so a bad filter is the error reported; interfaces of other types are checked by their
 * worker when it opens them.
 */
function checkLiveFilter(config: CaptureConfig): void {
  if (config.filter === "") return;
  for (const iface of config.interfaces) {
    const dlt = linkTypeOf(iface);
    if (dlt !== undefined) checkFilter(config.filter, dlt, config.snaplen);
  }
}

/** Opens every replay file (and compiles the filter for it) before any output exists, so a refused
 * file or a bad filter stops the run cleanly. */
function checkReadable(files: string[], filter: string): void {
  for (const file of files) {
    const handle = PcapHandle.openOffline(file);
    try {
      if (filter) handle.setFilter(filter);
    } finally {
      handle.close();
    }
  }
}
