/**
 * Worker counters shared with the main thread through a SharedArrayBuffer: each worker writes its own
 * Float64Array (one writer, no locks) a few times a second, and the main thread reads them for stats lines,
 * /metrics and /status. Nothing per packet crosses the thread boundary.
 */
import { FLOW_SIZE_VALUES } from "../flow/size_histogram.ts";

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
