/**
 * Main-thread side of capture: starts one Deno Worker per (interface, worker number), relays their log
 * lines and finalized files, keeps the file each reports it writes, and stops them through the shared
 * control block. With gzip/zstd it also
 * starts each worker's block-compression helper thread here: from inside a worker that takes about a
 * second with Deno 2.9, during which every block would be compressed in-line.
 */
import type { CaptureConfig } from "../config.ts";
import type { KeyDescription } from "../packet/describe.ts";
import { snfRingCount } from "../capture/snf.ts";
import { DEFAULT_BLOCK_SIZE } from "../store/block_writer.ts";
import { BlockCompressor, type CompressorSetup } from "../store/compressor.ts";
import { allocateControl, allocateCounters, Control } from "../worker/counters.ts";
import type {
  FinalizedFileMessage,
  WorkerMessage,
  WorkerSetup,
  WorkerSource,
} from "../worker/protocol.ts";

/** One running capture worker as the main thread sees it. */
export interface WorkerHandle {
  label: string;
  index: number;
  counters: Float64Array;
  control: Int32Array;
  worker: Worker;
  /** Its block-compression helper thread, when the main thread started one; ended with it. */
  compressor: Worker | null;
  ready: boolean;
  done: boolean;
  linkType: number;
  /** The temporary file it writes now, archive-relative, as it reported it; null between files. */
  openFile: string | null;
  /** Why it stopped, when it failed. */
  error: string | null;
}

/** What the supervisor reports to its owner. */
export interface SupervisorEvents {
  onLog(level: "info" | "warn" | "error", message: string): void;
  onFinalized(file: FinalizedFileMessage, from: WorkerHandle): void;
  onFatal(message: string, from: WorkerHandle): void;
  onReady(from: WorkerHandle): void;
  onDone(from: WorkerHandle): void;
  onLargeFlow(flow: KeyDescription, bytes: number, threshold: number): void;
}

/** Plans the workers a configuration asks for: N per interface, or one for offline replay. */
export function planWorkers(
  config: CaptureConfig,
): { label: string; index: number; source: WorkerSource }[] {
  if (config.readFiles.length > 0) {
    const source = { kind: "offline" as const, files: config.readFiles };
    return [{ label: config.readName, index: 0, source }];
  }
  return config.interfaces.flatMap((iface, ifaceNumber) => {
    // One fanout group per interface; ids only need to be unique on this host while we run.
    const fanoutGroup = (Deno.pid * 8 + ifaceNumber) & 0xffff;
    return Array.from({ length: config.workers }, (_, index) => ({
      label: iface,
      index,
      // With SNF's libpcap the NIC's rings already split flows between the handles: no
      // AF_PACKET fanout (the afpacket method does not use SNF's rings).
      source: {
        kind: "live" as const,
        iface,
        fanoutGroup,
        fanout: config.workers > 1 &&
          (config.captureMethod === "afpacket" || snfRingCount() === undefined),
      },
    }));
  });
}

/** Starts every planned worker; the first one in `spare` when given (a Worker of ../worker.ts). */
export function startWorkers(
  config: CaptureConfig,
  events: SupervisorEvents,
  spare?: Worker,
): WorkerHandle[] {
  return planWorkers(config).map((plan) => {
    const helper = startCompressionHelper(config, `${plan.label}/${plan.index}`, events);
    const worker = spare ??
      new Worker(new URL("../worker/worker.ts", import.meta.url), { type: "module" });
    spare = undefined;
    const handle: WorkerHandle = {
      label: plan.label,
      index: plan.index,
      counters: allocateCounters(),
      control: allocateControl(),
      worker,
      compressor: helper?.worker ?? null,
      ready: false,
      done: false,
      linkType: -1,
      openFile: null,
      error: null,
    };
    worker.onmessage = (event: MessageEvent<WorkerMessage>) => dispatch(event.data, handle, events);
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      handle.done = true;
      handle.error = `Worker ${plan.label}/${plan.index} crashed: ${event.message}`;
      endCompressionHelper(handle);
      events.onFatal(handle.error, handle);
    };
    const setup: WorkerSetup = {
      ...plan,
      config,
      counters: handle.counters,
      control: handle.control,
    };
    if (helper !== null) setup.compressor = helper.setup;
    worker.postMessage(setup);
    return handle;
  });
}

/**
 * Starts the block-compression helper of worker `name` when the output is compressed; null
 * without compression or when it cannot be started (the worker then starts its own, later).
 */
function startCompressionHelper(
  config: CaptureConfig,
  name: string,
  events: SupervisorEvents,
): { setup: CompressorSetup; worker: Worker } | null {
  if (config.compress === "none") return null;
  try {
    // The size of the slots must be the output's block size, or the worker does not use it.
    return BlockCompressor.startHelper(DEFAULT_BLOCK_SIZE, {
      onError: (message) =>
        events.onLog(
          "warn",
          `Compression helper of worker ${name} failed: ${message}; compressing in-line`,
        ),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    events.onLog(
      "warn",
      `Cannot start a compression helper for worker ${name}: ${reason}; the worker starts its own`,
    );
    return null;
  }
}

/**
 * Ends a worker's compression helper. After a clean stop it has ended already (the worker's output
 * stopped it); after a crash it would wait for blocks forever and keep the process alive.
 */
function endCompressionHelper(handle: WorkerHandle): void {
  handle.compressor?.terminate();
  handle.compressor = null;
}

function dispatch(message: WorkerMessage, handle: WorkerHandle, events: SupervisorEvents): void {
  switch (message.type) {
    case "ready":
      handle.ready = true;
      handle.linkType = message.linkType;
      events.onReady(handle);
      break;
    case "log":
      events.onLog(message.level, message.message);
      break;
    case "finalized":
      events.onFinalized(message.file, handle);
      break;
    case "openFile":
      handle.openFile = message.path;
      break;
    case "fatal":
      handle.done = true;
      handle.error = message.message;
      endCompressionHelper(handle);
      events.onFatal(message.message, handle);
      break;
    case "largeFlow":
      events.onLargeFlow(message.flow, message.bytes, message.threshold);
      break;
    case "done":
      handle.done = true;
      handle.worker.terminate();
      endCompressionHelper(handle);
      events.onDone(handle);
      break;
  }
}

/** Asks every worker to finish its file and stop; they answer with "done". */
export function requestStop(workers: WorkerHandle[]): void {
  for (const handle of workers) Atomics.store(handle.control, Control.Stop, 1);
}

/** Lets every worker start reading packets (they wait after "ready" until this). */
export function startCapturing(workers: WorkerHandle[]): void {
  for (const handle of workers) {
    Atomics.store(handle.control, Control.Go, 1);
    Atomics.notify(handle.control, Control.Go);
  }
}

/** Asks every worker to rotate now (used by tests and by SIGHUP). */
export function requestRotate(workers: WorkerHandle[]): void {
  for (const handle of workers) Atomics.add(handle.control, Control.RotateRequest, 1);
}
