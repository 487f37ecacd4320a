/**
 * What the HTTP server may see of a running sensor (or of an archive served without capture): the workers'
 * counters by name, the file each is writing, the catalog of finalized files, and a few facts about the run.
 * The server reads; it never reaches into workers, and imports nothing of the capture process: the capture
 * command (src/cli/capture.ts) builds this view from the sensor and hands it to the server.
 */
import type { Catalog } from "../archive/catalog.ts";

/** The counters of a worker the server reads, current values; cumulative since it started unless noted. */
export interface WorkerCounters {
  readonly packetsSeen: number;
  /** Original (wire) lengths. */
  readonly bytesSeen: number;
  readonly packetsWritten: number;
  /** Captured lengths, before compression. */
  readonly bytesWritten: number;
  /** Packets lost with blocks that failed to reach the disk. */
  readonly packetsLost: number;
  /** Flows in the flow table now. */
  readonly flowsActive: number;
  readonly flowsStarted: number;
  /** Flows removed by reason. */
  readonly flowsExpired: number;
  readonly flowsClosed: number;
  readonly flowsEvicted: number;
  /** libpcap's (or the ring's) ps_recv, ps_drop, ps_ifdrop. */
  readonly pcapReceived: number;
  readonly pcapDropped: number;
  readonly pcapIfDropped: number;
  /** Files finalized and their bytes on disk. */
  readonly filesWritten: number;
  readonly fileBytesWritten: number;
  readonly rotations: number;
  readonly writeErrors: number;
  readonly indexBuildSeconds: number;
  /** Seconds from the last packet of the latest finalized file to its index (a gauge). */
  readonly indexLagSeconds: number;
  readonly largeFlows: number;
  /** 1 while the capture handle is open and reading (a gauge). */
  readonly capturing: number;
  /** Capture time of the latest packet, Unix seconds; 0 before the first (a gauge). */
  readonly lastPacketTs: number;
  readonly reopenAttempts: number;
  readonly undecodedFrames: number;
  readonly caplenOverLen: number;
  /** Packets stored but not yet written to the open file (a gauge). */
  readonly packetsUnflushed: number;
  /** Bytes on disk of the open file, 0 between files (a gauge). */
  readonly openFileBytes: number;
  /** Flow sizes: per-bucket counts of FLOW_SIZE_BUCKETS (src/flow/size_histogram.ts), then +Inf. */
  readonly flowSizeCounts: ArrayLike<number>;
  /** Sum of the flow sizes counted. */
  readonly flowSizeSum: number;
}

/** One capture worker as the server sees it. */
export interface WorkerView {
  /** Interface name, or "read" for offline replay. */
  label: string;
  /** Worker number within the interface. */
  index: number;
  /** The worker's counters, read when accessed. */
  counters: WorkerCounters;
  /** Opened its capture handle and is in its packet loop. */
  ready: boolean;
  /** Finished (stopped, input ended, or failed). */
  done: boolean;
  /** Why it stopped, when it failed. */
  error?: string;
  /** Archive-relative path of the temporary file it is writing (as it reported), null between files. */
  openFile: string | null;
}

/** Retention counters kept by the main thread. */
export interface RetentionStats {
  deletedFiles: number;
  deletedBytes: number;
}

/** The running sensor as the server sees it. */
export interface SensorView {
  /** Unix seconds when the process started. */
  readonly startedAt: number;
  /** Archive directory. */
  readonly outDir: string;
  /** True when capturing; false for `cutcap serve`. */
  readonly capturing: boolean;
  /** Interfaces captured live (none for a replay or `serve`): their link state counts for readiness. */
  readonly liveInterfaces?: readonly string[];
  /** Capture workers (empty for `cutcap serve`). */
  workers(): readonly WorkerView[];
  /** Finalized files, their time ranges and sizes. */
  catalog(): Catalog;
  /** Retention deletions so far. */
  retention(): RetentionStats;
  /** libpcap's version string, "" when not loaded (serve). */
  readonly libpcapVersion: string;
}
