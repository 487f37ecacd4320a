/**
 * `cutcap capture`: the sensor (src/sensor/) with the HTTP server (src/server/) beside it. Neither
 * imports the other; this module builds the server's read interface (SensorView) from the running
 * capture and starts the server, the metrics and --metrics-file for it.
 */
import type { CaptureConfig } from "../config.ts";
import {
  type CaptureRun,
  runCapture,
  type RunCaptureOptions,
  type RunningServices,
} from "../sensor/capture.ts";
import type { WorkerHandle } from "../sensor/supervisor.ts";
import { NamedCounters } from "../worker/counters.ts";
import type { SensorView, WorkerView } from "../server/view.ts";
import type { ListenOptions } from "../server/mod.ts";
import type { SensorMetrics } from "../server/metrics.ts";
import type { OpenFiles } from "../query/open_files.ts";
import { libpcapVersion } from "../../ffi/libpcap.ts";
import { lookupUser } from "../../ffi/libc.ts";
import { createTempFile, dirOf } from "../store/pcap_file_writer.ts";
import { writeFully } from "../pcap/block_format.ts";
import { logWarn } from "../log.ts";

/** Runs a capture, serving it when --listen or --metrics-file asks; resolves to the exit code. */
export function runCaptureCommand(
  config: CaptureConfig,
  opts: Omit<RunCaptureOptions, "services"> = {},
): Promise<number> {
  const serve = Boolean(config.listen || config.metricsFile);
  return runCapture(config, { ...opts, services: serve ? startServices : undefined });
}

/** The server, the metrics and the open-file index of a running capture. */
async function startServices(run: CaptureRun): Promise<RunningServices> {
  const config = run.config;
  const http = await loadHttp();
  const view = sensorView(run);
  const metrics = new http.SensorMetrics(view);
  // One index of each open file for the routes, the page and the exporter (queries are on only
  // while flushing publishes the open files' state).
  const openFiles: OpenFiles | undefined = config.flushInterval > 0
    ? run.exporter?.openFiles ?? new http.OpenFiles(config.outDir)
    : undefined;
  const server = config.listen
    ? http.startServer(view, { ...serverOptions(http, run, openFiles), metrics })
    : undefined;
  const exporter = run.exporter;
  if (exporter !== undefined) {
    (await import("../export/metrics.ts")).registerExportMetrics(
      metrics.registry,
      () => exporter.stats(),
    );
  }
  return {
    listening: server?.addr,
    stop: async () => {
      if (config.metricsFile) await writeMetricsFile(config.metricsFile, metrics);
      await server?.shutdown();
    },
  };
}

/** What the server sees of the capture. */
function sensorView(run: CaptureRun): SensorView {
  const config = run.config;
  const views = new Map<WorkerHandle, WorkerView>();
  return {
    startedAt: run.startedAt,
    outDir: config.outDir,
    capturing: true,
    liveInterfaces: config.readFiles.length === 0 ? config.interfaces : [],
    workers: () =>
      run.workers().map((handle) => {
        let view = views.get(handle);
        if (view === undefined) views.set(handle, view = workerView(handle));
        return view;
      }),
    catalog: run.catalog,
    retention: run.retention,
    libpcapVersion: libpcapVersion(),
  };
}

/** A worker as the server sees it: its counters by name, its state read from its handle. */
function workerView(handle: WorkerHandle): WorkerView {
  return {
    label: handle.label,
    index: handle.index,
    counters: new NamedCounters(handle.counters),
    get ready() {
      return handle.ready;
    },
    get done() {
      return handle.done;
    },
    get openFile() {
      return handle.openFile;
    },
    get error() {
      return handle.error ?? undefined;
    },
  };
}

/** The HTTP server, query routes and metrics: their modules (hono, prom-client and the node
 * compatibility layer under it) take ~0.1 s and ~20 MB to load, so a sensor that neither listens
 * nor writes --metrics-file (an offline replay) does without them. */
async function loadHttp(): Promise<HttpModules> {
  const [server, routes, app, metrics, settings, openFiles] = await Promise.all([
    import("../server/mod.ts"),
    import("../server/query_routes.ts"),
    import("../server/app.ts"),
    import("../server/metrics.ts"),
    import("../web/settings.ts"),
    import("../query/open_files.ts"),
  ]);
  return {
    startServer: server.startServer,
    queryRoutes: routes.queryRoutes,
    defaultQueryPolicy: routes.DEFAULT_QUERY_POLICY,
    readServerSecrets: app.readServerSecrets,
    SensorMetrics: metrics.SensorMetrics,
    captureSettings: settings.captureSettings,
    OpenFiles: openFiles.OpenFiles,
  };
}

interface HttpModules {
  startServer: typeof import("../server/mod.ts").startServer;
  queryRoutes: typeof import("../server/query_routes.ts").queryRoutes;
  defaultQueryPolicy: typeof import("../server/query_routes.ts").DEFAULT_QUERY_POLICY;
  readServerSecrets: typeof import("../server/app.ts").readServerSecrets;
  SensorMetrics: typeof import("../server/metrics.ts").SensorMetrics;
  captureSettings: typeof import("../web/settings.ts").captureSettings;
  OpenFiles: typeof import("../query/open_files.ts").OpenFiles;
}

/** Listen address, TLS and the query routes with the configured limits. */
function serverOptions(
  http: HttpModules,
  run: CaptureRun,
  openFiles: OpenFiles | undefined,
): ListenOptions {
  const config = run.config;
  const routes = http.queryRoutes({
    catalog: run.catalog,
    openFiles,
    policy: {
      ...http.defaultQueryPolicy,
      maxPackets: config.maxQueryPackets,
      maxConcurrent: config.maxConcurrentQueries,
    },
    communityIdSeed: config.communityIdSeed,
  });
  return {
    host: config.listen!.host,
    port: config.listen!.port,
    ...http.readServerSecrets(config),
    routes,
    socketOwner: config.user === undefined ? undefined : lookupUser(config.user),
    insecure: config.insecure,
    openMetrics: config.openMetrics,
    settings: http.captureSettings(config),
    openFiles,
    communityIdSeed: config.communityIdSeed,
  };
}

/** Final metrics for batch runs (an offline replay exits when done): written atomically, so a
 * node_exporter textfile collector never reads half a file. */
async function writeMetricsFile(path: string, metrics: SensorMetrics): Promise<void> {
  try {
    const text = await metrics.metricsText();
    const name = path.slice(path.lastIndexOf("/") + 1);
    const { path: temp, file } = createTempFile(dirOf(path), `.${name}.`, ".tmp");
    try {
      writeFully(file, new TextEncoder().encode(text));
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (error) {
    logWarn(
      `Cannot write --metrics-file ${path}: ${error instanceof Error ? error.message : error}`,
    );
  }
}
