/**
 * A capture worker: owns one capture source (libpcap handle or AF_PACKET ring), one flow table and one output stream. The packet loop is
 * synchronous — decode, count the flow, apply the cutoff, write, index — and polls the shared control block
 * between batches, so stop and rotate requests never wait behind a message queue.
 */
/// <reference lib="deno.worker" />
import { loadLibpcap, PcapHandle } from "../../ffi/libpcap.ts";
import { setCaptureCapabilities } from "../../ffi/libc.ts";
import { type CaptureSource, openSource } from "../capture/source.ts";
import { Cutoff, FlowTable } from "../flow/mod.ts";
import { IndexBuilder } from "../index/mod.ts";
import { indexPcapFile } from "../index/index_pcap.ts";
import { decodePacket } from "../packet/mod.ts";
import { FlowKind, KEY_WORDS, PacketInfo } from "../packet/packet_info.ts";
import { describeKey } from "../packet/describe.ts";
import { crossedLevel, largeFlowLevel } from "../flow/large_flows.ts";
import { RotatingOutput } from "../store/mod.ts";
import { archiveRelative, indexPathFor } from "../archive/naming.ts";
import { BlockCompressor } from "../store/compressor.ts";
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

/** Everything one worker owns. */
interface WorkerState {
  setup: WorkerSetup;
  flows: FlowTable;
  cutoff: Cutoff;
  output: RotatingOutput;
  /** The output's block-compression helper thread, null when blocks are compressed in-line. */
  compressor: BlockCompressor | null;
  index: IndexBuilder;
  info: PacketInfo;
  counters: Float64Array;
  /** Bytes at which a flow is reported as large (then at each doubling). */
  largeFlowThreshold: number;
  /**
   * Packets seen, published by `publish` after libpcap's totals are read: so the kernel's
   * `recvd` is never behind `pkts` in a stats line or a scrape.
   */
  packetsSeen: number;
  /** The current source's link type, cached: asking libpcap per packet would be a second FFI call. */
  linkType: number;
  /** libpcap statistics of handles closed since the start (a reopened handle counts from 0). */
  statsBase: { recv: number; drop: number; ifdrop: number };
  /** Flow id and wire length of the packet being written (-1: none): a rotation it triggers
   * leaves it out of the finished file's flow totals. */
  inFlightFlow: number;
  inFlightLen: number;
  /** Last RotateRequest value acted on. */
  rotateSeen: number;
  /** Distinct flows after which the open file is rotated (FILE_FLOWS_PER_TABLE × --max-flows). */
  maxFileFlows: number;
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
  const { config } = setup;
  loadLibpcap(config.libpcap);
  const flows = new FlowTable({ maxFlows: config.maxFlows, flowTimeout: config.flowTimeout });
  const cutoff = new Cutoff({ bytes: config.byteCutoff, packets: config.packetCutoff });
  // Keys of live flows are read from the table when an index is written.
  const index = IndexBuilder.forFlowTable(flows, {
    spillDir: config.outDir,
    communityIdSeed: config.communityIdSeed,
  });
  const state: WorkerState = {
    setup,
    flows,
    cutoff,
    index,
    compressor: openCompressor(setup),
    info: new PacketInfo(),
    counters: setup.counters,
    linkType: -1,
    statsBase: { recv: 0, drop: 0, ifdrop: 0 },
    rotateSeen: Atomics.load(setup.control, Control.RotateRequest),
    maxFileFlows: FILE_FLOWS_PER_TABLE * config.maxFlows,
    inFlightFlow: -1,
    inFlightLen: 0,
    errorsSeen: 0,
    errorsLoggedAt: 0,
    writeFailing: false,
    bytesAtFailure: 0,
    largeFlowThreshold: config.largeFlowThreshold > 0 ? config.largeFlowThreshold : Infinity,
    packetsSeen: 0,
    output: undefined as unknown as RotatingOutput,
    flushDue: Infinity,
    flushDueSec: Infinity,
    flushDueFrac: 0,
    openFileReported: null,
  };
  scheduleFlush(state, Date.now() / 1000);
  if (setup.source.kind === "live") {
    const handle = openLive(setup);
    state.linkType = handle.linkType();
    state.output = openOutput(state, handle);
    post({ type: "ready", linkType: handle.linkType(), snaplen: handle.snaplen() });
    waitForGo(setup.control);
    captureLive(state, handle);
  } else {
    replayFiles(state, setup.source.files);
  }
  state.output.close();
  state.compressor?.close();
  flows.expireAll();
  index.close();
  publish(state, undefined);
}

/**
 * The block-compression helper for a compressed output: the one the main thread started
 * (BlockCompressor.startHelper) comes with the setup; without one, the worker starts its own
 * (about a second later: see src/store/compressor.ts).
 */
function openCompressor(setup: WorkerSetup): BlockCompressor | null {
  if (setup.compressor !== undefined) return BlockCompressor.attach(setup.compressor);
  return setup.config.compress === "none" ? null : BlockCompressor.start();
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

function openOutput(state: WorkerState, handle: CaptureSource): RotatingOutput {
  const { config, label, index } = state.setup;
  return new RotatingOutput({
    outDir: config.outDir,
    iface: label,
    worker: index,
    linkType: handle.linkType(),
    snaplen: handle.snaplen(),
    nanosecond: config.nanosecond,
    compress: config.compress,
    level: config.compressLevel,
    rotateSize: config.rotateSize,
    rotateInterval: config.rotateInterval,
    // While the next block fills, gzip/zstd blocks are compressed on the helper thread and plain
    // blocks written by glibc's AIO threads.
    compressor: state.compressor,
    aioPlainWrites: true,
    // Queries read the open file up to its last time-bounded flush.
    publishOpenState: config.flushInterval > 0,
    beforeRename: (file) => {
      const started = performance.now();
      if (state.index.packetCount > file.packets) {
        // A block failed to reach the disk (ENOSPC, EIO...): its records were indexed when they
        // were buffered and are not in the file. Index the file as it is on disk instead.
        indexPcapFile(file.tmpPath, {
          iface: label,
          worker: index,
          indexPath: indexPathFor(file.path),
        });
      } else {
        state.index.write(indexPathFor(file.path), {
          pcapName: file.path.slice(file.path.lastIndexOf("/") + 1),
          linkType: file.linkType,
          snaplen: file.snaplen,
          nanosecond: file.nanosecond,
          compress: file.compress,
          blocks: file.blocks,
          iface: label,
          worker: index,
          pcapSize: file.bytesOnDisk,
          dataSize: file.bytesUncompressed,
          inFlight: state.inFlightFlow < 0
            ? undefined
            : { flowId: state.inFlightFlow, wireLen: state.inFlightLen },
        });
      }
      state.index.reset();
      state.counters[Counter.IndexBuildSeconds] += (performance.now() - started) / 1000;
      // How long after its last packet the file's index was written (live capture: packet time is
      // wall-clock time; a replay's packet times are not, so no lag is reported for it).
      if (state.setup.source.kind === "live") {
        state.counters[Counter.IndexLagSeconds] = Math.max(0, Date.now() / 1000 - file.lastTs);
      }
    },
    onFinalized: (file) => {
      state.counters[Counter.FilesWritten]++;
      state.counters[Counter.FileBytesWritten] += file.bytesOnDisk;
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
    },
  });
}

/** Live loop: batches of packets, then control, clock-driven rotation and counters. */
function captureLive(state: WorkerState, opened: CaptureSource): void {
  const control = state.setup.control;
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
      handlePacket(state, handle);
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
    if (handle.linkType() !== state.linkType) {
      state.linkType = handle.linkType();
      state.output.setFormat({ linkType: handle.linkType(), snaplen: handle.snaplen() });
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
 * A file holds at most this many times --max-flows distinct flows: beyond, the index builder's
 * per-file maps and copied keys (~50 bytes a flow) and the index would grow without bound.
 */
const FILE_FLOWS_PER_TABLE = 2;

/**
 * Rotates when the open file holds `maxFileFlows` distinct flows, far more than the table holds (a
 * scan, a flood of one-packet flows): a new file bounds the index builder's per-file memory and the
 * size of one index. Called between batches; true when it rotated.
 */
function rotateIfManyFlows(state: WorkerState): boolean {
  if (state.index.flowCount < state.maxFileFlows) return false;
  state.output.rotate();
  return true;
}

/**
 * Rotation requests, time-bounded flushes, and on a quiet link the wall-clock driven rotation and
 * flow expiry.
 */
function housekeeping(state: WorkerState, quiet: boolean): void {
  if (rotateIfAsked(state) || rotateIfManyFlows(state)) {
    // rotated
  } else if (quiet) {
    // Time moves on without packets, so rotation and expiry follow the wall clock.
    const now = Date.now() / 1000;
    state.output.rotateIfDue(now);
    state.flows.expireIdle(now);
  }
  flushIfDue(state);
}

/** Rotates when the main thread asked (SIGHUP); true when it did. */
function rotateIfAsked(state: WorkerState): boolean {
  const asked = Atomics.load(state.setup.control, Control.RotateRequest);
  if (asked === state.rotateSeen) return false;
  state.rotateSeen = asked;
  state.output.rotate();
  return true;
}

/** Writes the buffered records to the open file once --flush-interval has passed since the last time. */
function flushIfDue(state: WorkerState): void {
  const now = Date.now() / 1000;
  if (now < state.flushDue) return;
  state.output?.flush();
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

/** Offline loop: every file in turn through the same pipeline, until the last ends or a stop request. */
function replayFiles(state: WorkerState, files: string[]): void {
  const control = state.setup.control;
  for (const file of files) {
    // direct: records are parsed in JS from large reads (libpcap takes over for anything unusual
    // and for filters); no FFI call per packet.
    const handle = PcapHandle.openOffline(file, {
      nanosecond: state.setup.config.nanosecond,
      direct: true,
    });
    try {
      if (state.setup.config.filter) handle.setFilter(state.setup.config.filter);
      state.linkType = handle.linkType();
      if (state.output === undefined) {
        state.output = openOutput(state, handle);
        post({ type: "ready", linkType: handle.linkType(), snaplen: handle.snaplen() });
        waitForGo(control);
      } else {
        state.output.setFormat({ linkType: handle.linkType(), snaplen: handle.snaplen() });
      }
      let status = 1;
      while (status === 1 && Atomics.load(control, Control.Stop) === 0) {
        for (let i = 0; i < BATCH; i++) {
          status = handle.next();
          if (status !== 1) break;
          handlePacket(state, handle);
        }
        if (!rotateIfAsked(state)) rotateIfManyFlows(state);
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
}

/** The per-packet path: no allocation, one FFI call (made by the caller). */
function handlePacket(state: WorkerState, handle: CaptureSource): void {
  const { info, flows, counters } = state;
  decodePacket(state.linkType, handle.data, handle.offset, handle.caplen, info);
  const ts = handle.tsSec + handle.tsFrac * (handle.nanosecond ? 1e-9 : 1e-6);
  const id = flows.observe(info.key, ts, handle.wireLen, info.tcpFlags);
  state.packetsSeen++;
  counters[Counter.BytesSeen] += handle.wireLen;
  counters[Counter.LastPacketTs] = ts;
  if (info.kind === FlowKind.Opaque) counters[Counter.UndecodedFrames]++;
  if (handle.caplen > handle.wireLen) counters[Counter.CaplenOverLen]++;
  if (flows.bytesBefore + handle.wireLen >= state.largeFlowThreshold) {
    checkLargeFlow(state, id, handle.wireLen);
  }
  if (!state.cutoff.allows(flows.packetsBefore, flows.bytesBefore)) {
    flows.markCut(id, flows.packetsBefore + 1);
    return;
  }
  // Offline packets stored are moved to one place first (see PcapHandle.settle), so the writer
  // reuses its views instead of making one per packet.
  handle.settle();
  state.inFlightFlow = id;
  state.inFlightLen = handle.wireLen;
  const offset = state.output.write(
    handle.data,
    handle.offset,
    handle.caplen,
    handle.wireLen,
    handle.tsSec,
    handle.tsFrac,
  );
  state.inFlightFlow = -1;
  if (offset < 0) return; // lost to a write error: counted by the output, not indexed
  state.index.record(id, ts, offset, handle.wireLen);
  if (info.innerVlanCount + info.mplsCount > 0) state.index.noteTags(id, info);
  counters[Counter.PacketsWritten]++;
  counters[Counter.BytesWritten] += handle.wireLen;
}

/** Reports a flow that crossed the large-flow threshold or one of its doublings (rare: not hot). */
function checkLargeFlow(state: WorkerState, id: number, wireLen: number): void {
  const before = state.flows.bytesBefore;
  const level = crossedLevel(before, before + wireLen, state.largeFlowThreshold);
  if (level < 0) return;
  if (level === 0 || largeFlowLevel(before, state.largeFlowThreshold) < 0) {
    state.counters[Counter.LargeFlows]++;
  }
  const key = new Uint32Array(KEY_WORDS);
  state.flows.copyKey(id, key);
  post({
    type: "largeFlow",
    flow: describeKey(key),
    bytes: before + wireLen,
    threshold: state.largeFlowThreshold * 2 ** level,
  });
}

/** Tells the main thread which file the output writes now (the server shows it) when that changed. */
function reportOpenFile(state: WorkerState): void {
  const tmpPath = state.output.current?.tmpPath;
  const path = tmpPath === undefined ? null : archiveRelative(state.setup.config.outDir, tmpPath);
  if (path === state.openFileReported) return;
  state.openFileReported = path;
  post({ type: "openFile", path });
}

/** Copies the slow-moving counters into shared memory for the main thread. */
function publish(state: WorkerState, handle: CaptureSource | undefined): void {
  const { counters, flows } = state;
  counters[Counter.FlowsActive] = flows.active;
  counters[Counter.FlowsStarted] = flows.started;
  counters[Counter.FlowsExpired] = flows.expiredIdle;
  counters[Counter.FlowsClosed] = flows.closed;
  counters[Counter.FlowsEvicted] = flows.evicted;
  counters[Counter.FlowsFlushed] = flows.flushed;
  counters.set(flows.sizes.values, Counter.FlowSizeBuckets);
  if (state.output) {
    counters[Counter.WriteErrors] = state.output.writeErrors;
    counters[Counter.PacketsLost] = state.output.lostPackets;
    counters[Counter.Rotations] = state.output.filesFinalized;
    counters[Counter.PacketsUnflushed] = state.output.unflushedPackets;
    counters[Counter.OpenFileBytes] = state.output.current?.bytesOnDisk ?? 0;
    reportWriteErrors(state);
    reportOpenFile(state);
  }
  // Counted before the kernel's totals are read, and stored after them.
  const seen = state.packetsSeen;
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
  const output = state.output;
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
