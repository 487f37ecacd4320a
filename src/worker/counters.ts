/**
 * Worker counters shared with the main thread through a SharedArrayBuffer: each worker writes its own
 * Float64Array (one writer, no locks) a few times a second, and the main thread reads them for stats lines,
 * /metrics and /status. Nothing per packet crosses the thread boundary.
 */
import { FLOW_SIZE_BUCKET_COUNT, FLOW_SIZE_SUM, FLOW_SIZE_VALUES } from "../flow/size_histogram.ts";

/** Slot numbers in a worker's counter array. Counters are cumulative since the worker started. */
export const enum Counter {
  PacketsSeen,
  BytesSeen,
  PacketsWritten,
  BytesWritten,
  FlowsActive,
  FlowsStarted,
  FlowsExpired,
  FlowsClosed,
  FlowsEvicted,
  /** Flows still open when the worker stopped (ended by shutdown). */
  FlowsFlushed,
  PcapReceived,
  PcapDropped,
  PcapIfDropped,
  FilesWritten,
  FileBytesWritten,
  Rotations,
  WriteErrors,
  IndexBuildSeconds,
  IndexLagSeconds,
  LargeFlows,
  Capturing,
  LastPacketTs,
  ReopenAttempts,
  UndecodedFrames,
  /** Packets handed to the writer but lost with a block that failed to reach the disk. */
  PacketsLost,
  /** Records whose captured length exceeds their wire length (hostile or broken input), kept as read. */
  CaplenOverLen,
  /** Packets stored but not yet written to the open file (--flush-interval bounds their age). */
  PacketsUnflushed,
  /** Bytes on disk of the open file (0 between files). */
  OpenFileBytes,
  /** First slot of the flow-size histogram: FlowSizeHistogram.values (buckets, +Inf, sum, count). */
  FlowSizeBuckets,
}

/** Number of Float64 slots per worker: the counters, then the flow-size histogram's values. */
export const COUNTER_SLOTS = Counter.FlowSizeBuckets + FLOW_SIZE_VALUES;

/** Allocates one worker's shared counter block. */
export function allocateCounters(): Float64Array {
  return new Float64Array(new SharedArrayBuffer(COUNTER_SLOTS * 8));
}

/**
 * A worker's counters by name, read from its shared array when accessed: what readers outside the
 * capture process (the server's SensorView) see instead of the slot layout.
 */
export class NamedCounters {
  readonly #c: Float64Array;

  constructor(slots: Float64Array) {
    this.#c = slots;
  }

  get packetsSeen(): number {
    return this.#c[Counter.PacketsSeen];
  }
  get bytesSeen(): number {
    return this.#c[Counter.BytesSeen];
  }
  get packetsWritten(): number {
    return this.#c[Counter.PacketsWritten];
  }
  get bytesWritten(): number {
    return this.#c[Counter.BytesWritten];
  }
  get packetsLost(): number {
    return this.#c[Counter.PacketsLost];
  }
  get flowsActive(): number {
    return this.#c[Counter.FlowsActive];
  }
  get flowsStarted(): number {
    return this.#c[Counter.FlowsStarted];
  }
  get flowsExpired(): number {
    return this.#c[Counter.FlowsExpired];
  }
  get flowsClosed(): number {
    return this.#c[Counter.FlowsClosed];
  }
  get flowsEvicted(): number {
    return this.#c[Counter.FlowsEvicted];
  }
  get pcapReceived(): number {
    return this.#c[Counter.PcapReceived];
  }
  get pcapDropped(): number {
    return this.#c[Counter.PcapDropped];
  }
  get pcapIfDropped(): number {
    return this.#c[Counter.PcapIfDropped];
  }
  get filesWritten(): number {
    return this.#c[Counter.FilesWritten];
  }
  get fileBytesWritten(): number {
    return this.#c[Counter.FileBytesWritten];
  }
  get rotations(): number {
    return this.#c[Counter.Rotations];
  }
  get writeErrors(): number {
    return this.#c[Counter.WriteErrors];
  }
  get indexBuildSeconds(): number {
    return this.#c[Counter.IndexBuildSeconds];
  }
  get indexLagSeconds(): number {
    return this.#c[Counter.IndexLagSeconds];
  }
  get largeFlows(): number {
    return this.#c[Counter.LargeFlows];
  }
  get capturing(): number {
    return this.#c[Counter.Capturing];
  }
  get lastPacketTs(): number {
    return this.#c[Counter.LastPacketTs];
  }
  get reopenAttempts(): number {
    return this.#c[Counter.ReopenAttempts];
  }
  get undecodedFrames(): number {
    return this.#c[Counter.UndecodedFrames];
  }
  get caplenOverLen(): number {
    return this.#c[Counter.CaplenOverLen];
  }
  get packetsUnflushed(): number {
    return this.#c[Counter.PacketsUnflushed];
  }
  get openFileBytes(): number {
    return this.#c[Counter.OpenFileBytes];
  }
  /** Per-bucket flow-size counts (not cumulative), then the count above the last bound. */
  get flowSizeCounts(): Float64Array {
    return this.#c.subarray(
      Counter.FlowSizeBuckets,
      Counter.FlowSizeBuckets + FLOW_SIZE_BUCKET_COUNT + 1,
    );
  }
  get flowSizeSum(): number {
    return this.#c[Counter.FlowSizeBuckets + FLOW_SIZE_SUM];
  }
}

/** Control words the main thread writes and the worker polls between packets. */
export const enum Control {
  /** Non-zero: finish the current file and stop. */
  Stop,
  /** Incremented by the main thread to ask for a rotation now. */
  RotateRequest,
  /**
   * Non-zero: start reading packets. Set once every worker has opened its handle and the main thread
   * has dropped privileges (--user), so no file or directory is created as root.
   */
  Go,
  Slots,
}

/** Allocates one worker's shared control block. */
export function allocateControl(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(Control.Slots * 4));
}
