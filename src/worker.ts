/**
 * A capture worker: owns one libpcap handle, one flow table and one output stream. The packet loop is
 * synchronous — decode, count the flow, apply the cutoff, write, index — and polls the shared control block
 * between batches, so stop and rotate requests never wait behind a message queue.
 */
/// <reference lib="deno.worker" />
import { loadLibpcap, PcapHandle } from "../ffi/libpcap.ts";
import { joinFanout } from "./capture/fanout.ts";
import { Cutoff, FlowTable } from "./flow/mod.ts";
import { IndexBuilder } from "./index/mod.ts";
import { decodePacket } from "./packet/mod.ts";
import { PacketInfo } from "./packet/packet_info.ts";
import { RotatingOutput } from "./store/mod.ts";
import type { WorkerMessage, WorkerSetup } from "./sensor/protocol.ts";
import { Control, Counter } from "./sensor/counters.ts";

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
  index: IndexBuilder;
  info: PacketInfo;
  counters: Float64Array;
  /** The current source's link type, cached: asking libpcap per packet would be a second FFI call. */
  linkType: number;
}

function runWorker(setup: WorkerSetup): void {
  const { config } = setup;
  loadLibpcap(config.libpcap);
  const flows = new FlowTable({ maxFlows: config.maxFlows, flowTimeout: config.flowTimeout });
  const cutoff = new Cutoff({ bytes: config.byteCutoff, packets: config.packetCutoff });
  const index = new IndexBuilder();
  const state: WorkerState = {
    setup,
    flows,
    cutoff,
    index,
    info: new PacketInfo(),
    counters: setup.counters,
    linkType: -1,
    output: undefined as unknown as RotatingOutput,
  };
  if (setup.source.kind === "live") {
    const handle = openLive(setup);
    state.linkType = handle.linkType();
    state.output = openOutput(state, handle);
    post({ type: "ready", linkType: handle.linkType(), snaplen: handle.snaplen() });
    captureLive(state, handle);
  } else {
    replayFiles(state, setup.source.files);
  }
  state.output.close();
  flows.expireAll();
  publish(state, undefined);
}

function openLive(setup: WorkerSetup): PcapHandle {
  const { config } = setup;
  if (setup.source.kind !== "live") throw new Error("Live source expected");
  const handle = PcapHandle.openLive(setup.source.iface, {
    snaplen: config.snaplen,
    promisc: config.promisc,
    bufferSize: config.bufferSize,
    timeoutMs: config.pcapTimeoutMs,
    immediate: config.immediate,
    nanosecond: config.nanosecond,
  });
  if (handle.warning) log("warn", `${setup.source.iface}: ${handle.warning}`);
  if (config.filter) handle.setFilter(config.filter);
  if (setup.source.fanout) joinFanout(handle.selectableFd(), setup.source.fanoutGroup);
  return handle;
}

function openOutput(state: WorkerState, handle: PcapHandle): RotatingOutput {
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
    beforeRename: (file) => {
      const started = performance.now();
      state.index.write(`${file.path}.idx`, {
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
      });
      state.index.reset();
      state.counters[Counter.IndexBuildSeconds] += (performance.now() - started) / 1000;
    },
    onFinalized: (file) => {
      state.counters[Counter.FilesWritten]++;
      state.counters[Counter.FileBytesWritten] += file.bytesOnDisk;
      post({
        type: "finalized",
        file: {
          path: file.path,
          indexPath: `${file.path}.idx`,
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
function captureLive(state: WorkerState, handle: PcapHandle): void {
  const control = state.setup.control;
  let rotateSeen = Atomics.load(control, Control.RotateRequest);
  state.counters[Counter.Capturing] = 1;
  while (Atomics.load(control, Control.Stop) === 0) {
    let status = 1;
    for (let i = 0; i < BATCH; i++) {
      status = handle.next();
      if (status !== 1) break;
      handlePacket(state, handle);
    }
    if (status === -1) throw new Error(`Capture on ${handle.source} failed: ${handle.lastError()}`);
    const rotateAsked = Atomics.load(control, Control.RotateRequest);
    if (rotateAsked !== rotateSeen) {
      rotateSeen = rotateAsked;
      state.output.rotate();
    } else if (status === 0) {
      // A quiet link: time moves on without packets, so rotation and expiry follow the wall clock.
      const now = Date.now() / 1000;
      state.output.rotateIfDue(now);
      state.flows.expireIdle(now);
    }
    publish(state, handle);
  }
  state.counters[Counter.Capturing] = 0;
}

/** Offline loop: every file in turn through the same pipeline, until the last ends or a stop request. */
function replayFiles(state: WorkerState, files: string[]): void {
  const control = state.setup.control;
  for (const file of files) {
    const handle = PcapHandle.openOffline(file, { nanosecond: state.setup.config.nanosecond });
    try {
      if (state.setup.config.filter) handle.setFilter(state.setup.config.filter);
      state.linkType = handle.linkType();
      if (state.output === undefined) {
        state.output = openOutput(state, handle);
        post({ type: "ready", linkType: handle.linkType(), snaplen: handle.snaplen() });
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
function handlePacket(state: WorkerState, handle: PcapHandle): void {
  const { info, flows, counters } = state;
  decodePacket(state.linkType, handle.data, handle.offset, handle.caplen, info);
  const ts = handle.tsSec + handle.tsFrac * (handle.nanosecond ? 1e-9 : 1e-6);
  const id = flows.observe(info.key, ts, handle.wireLen, info.tcpFlags);
  counters[Counter.PacketsSeen]++;
  counters[Counter.BytesSeen] += handle.wireLen;
  if (!state.cutoff.allows(flows.packetsBefore, flows.bytesBefore)) return;
  const offset = state.output.write(
    handle.data,
    handle.offset,
    handle.caplen,
    handle.wireLen,
    handle.tsSec,
    handle.tsFrac,
  );
  if (offset < 0) return; // lost to a write error: counted by the output, not indexed
  state.index.record(id, flows.serialOf(id), info.key, ts, offset, handle.wireLen);
  counters[Counter.PacketsWritten]++;
  counters[Counter.BytesWritten] += handle.wireLen;
}

/** Copies the slow-moving counters into shared memory for the main thread. */
function publish(state: WorkerState, handle: PcapHandle | undefined): void {
  const { counters, flows } = state;
  counters[Counter.FlowsActive] = flows.active;
  counters[Counter.FlowsStarted] = flows.started;
  counters[Counter.FlowsExpired] = flows.expiredIdle;
  counters[Counter.FlowsClosed] = flows.closed;
  counters[Counter.FlowsEvicted] = flows.evicted;
  if (state.output) counters[Counter.WriteErrors] = state.output.writeErrors;
  if (handle) {
    const stats = handle.stats();
    counters[Counter.PcapReceived] = stats.recv;
    counters[Counter.PcapDropped] = stats.drop;
    counters[Counter.PcapIfDropped] = stats.ifdrop;
  }
}

function log(level: "info" | "warn" | "error", message: string): void {
  post({ type: "log", level, message });
}
