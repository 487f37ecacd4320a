/**
 * A capture worker: owns one capture source (libpcap handle or AF_PACKET ring) and one capture
 * pipeline (pipeline.ts: flow table, output stream, index). The packet loop is synchronous and polls
 * the shared control block between batches, so stop and rotate requests never wait behind a message
 * queue. Here: thread messages, the live and replay loops, reopening with back-off, control polling
 * and counter publishing.
 */
/// <reference lib="deno.worker" />
import { loadLibpcap, PcapHandle } from "../../ffi/libpcap.ts";
import { setCaptureCapabilities } from "../../ffi/libc.ts";
import { type CaptureSource, openSource } from "../capture/source.ts";
import { BlockCompressor } from "../store/compressor.ts";
import { archiveRelative, indexPathFor } from "../archive/naming.ts";
import { CapturePipeline } from "./pipeline.ts";
import type { FinalizedFile } from "../store/pcap_file_writer.ts";
import type { WorkerMessage, WorkerSetup } from "./protocol.ts";
import { Control, Counter } from "./counters.ts";

/** Packets handled between two looks at the control block and two counter publications. */
const BATCH = 4096;

function post(message: WorkerMessage): void {
  self.postMessage(message);
}

self.onmessage = (event: MessageEvent<WorkerSetup>) => {
  self.onmessage = null;
  try {
    runWorker(event.data);
    post({ type: "done" });
  } catch (error) {
    post({ type: "fatal", message: error instanceof Error ? error.message : String(error) });
  }
};

/** Everything one worker owns, from its first source's opening on. */
interface WorkerState {
  setup: WorkerSetup;
  pipeline: CapturePipeline;
  counters: Float64Array;
  /** libpcap statistics of handles closed since the start (a reopened handle counts from 0). */
  statsBase: { recv: number; drop: number; ifdrop: number };
  /** Last RotateRequest value acted on. */
  rotateSeen: number;
  /** Write errors seen, when the last was logged, whether writing is failing now, and the
   * bytes on disk then (so the recovery gets a log line too). */
  errorsSeen: number;
  errorsLoggedAt: number;
  writeFailing: boolean;
  bytesAtFailure: number;
  /** Wall-clock time (s) of the next time-bounded flush (--flush-interval); Infinity when off. */
  flushDue: number;
  /** The same as a packet timestamp (whole seconds, fraction in the handle's unit), so the live
   * loop leaves a batch on time when packets trickle in. */
  flushDueSec: number;
  flushDueFrac: number;
  /** The open file last reported to the main thread (archive-relative temporary path), or null. */
  openFileReported: string | null;
}

function runWorker(setup: WorkerSetup): void {
  loadLibpcap(setup.config.libpcap);
  const compressor = openCompressor(setup);
  try {
    let state: WorkerState | undefined;
    if (setup.source.kind === "live") {
      const handle = openLive(setup);
      state = start(setup, handle, compressor);
      captureLive(state, handle);
    } else {
      state = replayFiles(setup, setup.source.files, compressor);
    }
    if (state === undefined) return;
    state.pipeline.close();
    publish(state, undefined);
  } finally {
    compressor?.close();
  }
}

/**
 * The output's block-compression helper for gzip/zstd: the one the main thread started
 * (BlockCompressor.startHelper) comes with the setup; without one, the worker starts its own
 * (about a second later: see src/store/compressor.ts). Null with --compress none.
 */
function openCompressor(setup: WorkerSetup): BlockCompressor | null {
  if (setup.compressor !== undefined) return BlockCompressor.attach(setup.compressor);
  return setup.config.compress === "none" ? null : BlockCompressor.start();
}

/**
 * Builds the pipeline for the first source's format, tells the main thread the worker is ready
 * and waits for its go.
 */
function start(
  setup: WorkerSetup,
  first: CaptureSource,
  compressor: BlockCompressor | null,
): WorkerState {
  const state: WorkerState = {
    setup,
    pipeline: openPipeline(setup, first, compressor),
    counters: setup.counters,
    statsBase: { recv: 0, drop: 0, ifdrop: 0 },
    rotateSeen: Atomics.load(setup.control, Control.RotateRequest),
    errorsSeen: 0,
    errorsLoggedAt: 0,
    writeFailing: false,
    bytesAtFailure: 0,
    flushDue: Infinity,
    flushDueSec: Infinity,
    flushDueFrac: 0,
    openFileReported: null,
  };
  scheduleFlush(state, Date.now() / 1000);
  post({ type: "ready", linkType: first.linkType(), snaplen: first.snaplen() });
  waitForGo(setup.control);
  return state;
}

/**
 * Opens the worker's interface with CAP_NET_RAW/CAP_NET_ADMIN effective for just that (they are
 * off in this thread the rest of the time; see setCaptureCapabilities).
 */
function openLive(setup: WorkerSetup): CaptureSource {
  setCaptureCapabilities(true);
  try {
    return openLiveSource(setup);
  } finally {
    setCaptureCapabilities(false);
  }
}

function openLiveSource(setup: WorkerSetup): CaptureSource {
  const { config, source } = setup;
  if (source.kind !== "live") throw new Error("Live source expected");
  const handle = openSource({
    device: source.iface,
    method: config.captureMethod,
    filter: config.filter,
    fanoutGroup: source.fanout ? source.fanoutGroup : undefined,
    snaplen: config.snaplen,
    promisc: config.promisc,
    bufferSize: config.bufferSize,
    timeoutMs: config.pcapTimeoutMs,
    immediate: config.immediate,
    nanosecond: config.nanosecond,
  });
  if (handle.warning) log("warn", `${source.iface}: ${handle.warning}`);
  return handle;
}

/** The capture pipeline as configured, writing files in the format of `first`. */
function openPipeline(
  setup: WorkerSetup,
  first: CaptureSource,
  compressor: BlockCompressor | null,
): CapturePipeline {
  const { config, label, index, counters } = setup;
  return new CapturePipeline({
    maxFlows: config.maxFlows,
    flowTimeout: config.flowTimeout,
    byteCutoff: config.byteCutoff,
    packetCutoff: config.packetCutoff,
    largeFlowThreshold: config.largeFlowThreshold,
    onLargeFlow: (flow, bytes, threshold) => post({ type: "largeFlow", flow, bytes, threshold }),
    communityIdSeed: config.communityIdSeed,
    live: setup.source.kind === "live",
    counters,
    output: {
      outDir: config.outDir,
      iface: label,
      worker: index,
      linkType: first.linkType(),
      snaplen: first.snaplen(),
      nanosecond: config.nanosecond,
      compress: config.compress,
      level: config.compressLevel,
      rotateSize: config.rotateSize,
      rotateInterval: config.rotateInterval,
      // While the next block fills, gzip/zstd blocks are compressed on the helper thread and
      // plain blocks written by glibc's AIO threads.
      compressor,
      aioPlainWrites: true,
      // Queries read the open file up to its last time-bounded flush.
      publishOpenState: config.flushInterval > 0,
      onFinalized: (file) => finalized(counters, file),
    },
  });
}

/** Counts a finalized file and tells the main thread. */
function finalized(counters: Float64Array, file: FinalizedFile): void {
  counters[Counter.FilesWritten]++;
  counters[Counter.FileBytesWritten] += file.bytesOnDisk;
  post({
    type: "finalized",
    file: {
      path: file.path,
      indexPath: indexPathFor(file.path),
      linkType: file.linkType,
      packets: file.packets,
      firstTs: file.firstTs,
      lastTs: file.lastTs,
      bytesOnDisk: file.bytesOnDisk,
      bytesUncompressed: file.bytesUncompressed,
    },
  });
}

/** Live loop: batches of packets, then control, clock-driven rotation and counters. */
function captureLive(state: WorkerState, opened: CaptureSource): void {
  const control = state.setup.control;
  const pipeline = state.pipeline;
  let handle: CaptureSource | null = opened;
  state.counters[Counter.Capturing] = 1;
  while (Atomics.load(control, Control.Stop) === 0) {
    if (handle === null) {
      handle = reopenLive(state);
      if (handle === null) break; // stop requested while waiting
    }
    let status = 1;
    for (let i = 0; i < BATCH; i++) {
      status = handle.next();
      if (status !== 1) break;
      pipeline.handle(handle);
      // A trickle of packets keeps next() from timing out: leave the batch when a flush is due.
      if (handle.tsSec >= state.flushDueSec && flushDueAt(state, handle)) break;
    }
    if (status === -1 || status === -2) {
      // The interface went away (pcap_next_ex: "The interface disappeared") or the handle broke:
      // keep the flows and the open output file, close the handle and reopen it with back-off.
      const reason = status === -1 ? handle.lastError() : "the capture loop was broken";
      publish(state, handle);
      keepStats(state, handle);
      handle.close();
      handle = null;
      state.counters[Counter.Capturing] = 0;
      log("warn", `Capture on ${state.setup.label} failed: ${reason}; reopening it`);
      continue;
    }
    housekeeping(state, status === 0);
    publish(state, handle);
  }
  if (handle !== null) {
    publish(state, handle);
    keepStats(state, handle);
    handle.close();
  }
  state.counters[Counter.Capturing] = 0;
}

/** First wait before reopening a failed capture handle; doubles per failed attempt up to the cap. */
const REOPEN_FIRST_MS = 500;
const REOPEN_MAX_MS = 30_000;

/**
 * Reopens the live handle after waiting 0.5 s, 1 s, 2 s, ... up to 30 s between attempts; the
 * output keeps its file and the flow table its flows. Null when a stop request came first.
 */
function reopenLive(state: WorkerState): CaptureSource | null {
  const label = state.setup.label;
  let delay = REOPEN_FIRST_MS;
  for (let attempt = 1;; attempt++) {
    if (!pause(state, delay)) return null;
    state.counters[Counter.ReopenAttempts]++;
    let handle: CaptureSource;
    try {
      handle = openLive(state.setup);
    } catch (error) {
      delay = Math.min(delay * 2, REOPEN_MAX_MS);
      log(
        "warn",
        `Reopening ${label} failed (attempt ${attempt}): ${errorText(error)}; ` +
          `next try in ${delay / 1000} s`,
      );
      continue;
    }
    if (handle.linkType() !== state.pipeline.linkType) {
      state.pipeline.setFormat(handle.linkType(), handle.snaplen());
    }
    state.counters[Counter.Capturing] = 1;
    log("info", `Reopened capture on ${label} after ${attempt} attempt(s)`);
    return handle;
  }
}

/**
 * Waits for the main thread's go (every worker ready, privileges dropped) or a stop request; packets
 * arriving meanwhile wait in the kernel ring.
 */
function waitForGo(control: Int32Array): void {
  while (Atomics.load(control, Control.Go) === 0 && Atomics.load(control, Control.Stop) === 0) {
    Atomics.wait(control, Control.Go, 0, 100);
  }
}

/** Waits `ms` in short slices, keeping rotation, expiry and counters going; false on a stop request. */
function pause(state: WorkerState, ms: number): boolean {
  const control = state.setup.control;
  const until = Date.now() + ms;
  for (;;) {
    if (Atomics.load(control, Control.Stop) !== 0) return false;
    const left = until - Date.now();
    if (left <= 0) return true;
    Atomics.wait(control, Control.Stop, 0, Math.min(left, 100));
    housekeeping(state, true);
    publish(state, undefined);
  }
}

/**
 * Rotation requests, time-bounded flushes, and on a quiet link the wall-clock driven rotation and
 * flow expiry.
 */
function housekeeping(state: WorkerState, quiet: boolean): void {
  if (rotateIfAsked(state) || state.pipeline.rotateIfManyFlows()) {
    // rotated
  } else if (quiet) {
    // Time moves on without packets, so rotation and expiry follow the wall clock.
    state.pipeline.idle(Date.now() / 1000);
  }
  flushIfDue(state);
}

/** Rotates when the main thread asked (SIGHUP); true when it did. */
function rotateIfAsked(state: WorkerState): boolean {
  const asked = Atomics.load(state.setup.control, Control.RotateRequest);
  if (asked === state.rotateSeen) return false;
  state.rotateSeen = asked;
  state.pipeline.output.rotate();
  return true;
}

/** Writes the buffered records to the open file once --flush-interval has passed since the last time. */
function flushIfDue(state: WorkerState): void {
  const now = Date.now() / 1000;
  if (now < state.flushDue) return;
  state.pipeline.output.flush();
  scheduleFlush(state, now);
}

/** Sets the next flush time, `--flush-interval` after `now` (never when it is 0). */
function scheduleFlush(state: WorkerState, now: number): void {
  const interval = state.setup.config.flushInterval;
  if (!(interval > 0)) return;
  state.flushDue = now + interval;
  state.flushDueSec = Math.floor(state.flushDue);
  state.flushDueFrac = 0;
}

/** True when the handle's packet time has reached the flush time (packet time is wall-clock time live). */
function flushDueAt(state: WorkerState, handle: CaptureSource): boolean {
  if (state.flushDueFrac === 0 && handle.tsSec === state.flushDueSec) {
    // First packet in the due second: the fraction in the handle's unit, once.
    const frac = state.flushDue - state.flushDueSec;
    state.flushDueFrac = Math.max(1, Math.floor(frac * (handle.nanosecond ? 1e9 : 1e6)));
  }
  return handle.tsSec > state.flushDueSec || handle.tsFrac >= state.flushDueFrac;
}

/** Adds a handle's final libpcap statistics to the totals, before it is closed. */
function keepStats(state: WorkerState, handle: CaptureSource): void {
  const stats = handle.stats();
  state.statsBase.recv += stats.recv;
  state.statsBase.drop += stats.drop;
  state.statsBase.ifdrop += stats.ifdrop;
}

/**
 * Offline loop: every file in turn through the same pipeline, until the last ends or a stop
 * request. Returns the worker's state (undefined when there was no file).
 */
function replayFiles(
  setup: WorkerSetup,
  files: string[],
  compressor: BlockCompressor | null,
): WorkerState | undefined {
  const { config, control } = setup;
  let state: WorkerState | undefined;
  for (const file of files) {
    // direct: records are parsed in JS from large reads (libpcap takes over for anything unusual
    // and for filters); no FFI call per packet.
    const handle = PcapHandle.openOffline(file, { nanosecond: config.nanosecond, direct: true });
    try {
      if (config.filter) handle.setFilter(config.filter);
      if (state === undefined) state = start(setup, handle, compressor);
      else state.pipeline.setFormat(handle.linkType(), handle.snaplen());
      const pipeline = state.pipeline;
      let status = 1;
      while (status === 1 && Atomics.load(control, Control.Stop) === 0) {
        for (let i = 0; i < BATCH; i++) {
          status = handle.next();
          if (status !== 1) break;
          pipeline.handle(handle);
        }
        if (!rotateIfAsked(state)) pipeline.rotateIfManyFlows();
        flushIfDue(state);
        publish(state, undefined);
      }
      if (status === -1) {
        log("warn", `${file}: ${handle.lastError()}; keeping the packets before it`);
      }
    } finally {
      handle.close();
    }
    if (Atomics.load(control, Control.Stop) !== 0) break;
  }
  return state;
}

/** Tells the main thread which file the output writes now (the server shows it) when that changed. */
function reportOpenFile(state: WorkerState): void {
  const tmpPath = state.pipeline.output.current?.tmpPath;
  const path = tmpPath === undefined ? null : archiveRelative(state.setup.config.outDir, tmpPath);
  if (path === state.openFileReported) return;
  state.openFileReported = path;
  post({ type: "openFile", path });
}

/** Copies the slow-moving counters into shared memory for the main thread. */
function publish(state: WorkerState, handle: CaptureSource | undefined): void {
  const { counters, pipeline } = state;
  const { flows, output } = pipeline;
  counters[Counter.FlowsActive] = flows.active;
  counters[Counter.FlowsStarted] = flows.started;
  counters[Counter.FlowsExpired] = flows.expiredIdle;
  counters[Counter.FlowsClosed] = flows.closed;
  counters[Counter.FlowsEvicted] = flows.evicted;
  counters[Counter.FlowsFlushed] = flows.flushed;
  counters.set(flows.sizes.values, Counter.FlowSizeBuckets);
  counters[Counter.WriteErrors] = output.writeErrors;
  counters[Counter.PacketsLost] = output.lostPackets;
  counters[Counter.Rotations] = output.filesFinalized;
  counters[Counter.PacketsUnflushed] = output.unflushedPackets;
  counters[Counter.OpenFileBytes] = output.current?.bytesOnDisk ?? 0;
  reportWriteErrors(state);
  reportOpenFile(state);
  // Counted before the kernel's totals are read, and stored after them: so the kernel's `recvd` is
  // never behind `pkts` in a stats line or a scrape.
  const seen = pipeline.packetsSeen;
  if (handle) {
    const stats = handle.stats();
    const base = state.statsBase;
    counters[Counter.PcapReceived] = base.recv + stats.recv;
    counters[Counter.PcapDropped] = base.drop + stats.drop;
    counters[Counter.PcapIfDropped] = base.ifdrop + stats.ifdrop;
  }
  counters[Counter.PacketsSeen] = seen;
}

/** Seconds between two log lines about write errors while they go on. */
const WRITE_ERROR_LOG_INTERVAL = 10;

/** Logs new write errors (at most one line per interval) and, once records are written again, that. */
function reportWriteErrors(state: WorkerState): void {
  const output = state.pipeline.output;
  const errors = output.writeErrors;
  const now = Date.now() / 1000;
  // Bytes that reached the disk: records buffered in memory do not show that writing works.
  const onDisk = state.counters[Counter.FileBytesWritten] + (output.current?.bytesOnDisk ?? 0);
  if (errors > state.errorsSeen) {
    if (!state.writeFailing || now - state.errorsLoggedAt >= WRITE_ERROR_LOG_INTERVAL) {
      log(
        "error",
        `Writing to ${state.setup.config.outDir} failed: ${output.lastError} ` +
          `(${errors} write errors, ${output.lostPackets} packets lost so far)`,
      );
      state.errorsLoggedAt = now;
    }
    state.errorsSeen = errors;
    state.writeFailing = true;
    state.bytesAtFailure = onDisk;
  } else if (state.writeFailing && onDisk > state.bytesAtFailure) {
    state.writeFailing = false;
    log(
      "info",
      `Writing to ${state.setup.config.outDir} again after ${errors} write errors ` +
        `(${output.lostPackets} packets lost)`,
    );
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function log(level: "info" | "warn" | "error", message: string): void {
  post({ type: "log", level, message });
}
