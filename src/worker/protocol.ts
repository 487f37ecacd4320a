/**
 * Messages between the main thread and capture workers. Only per-file and per-event facts travel here;
 * per-packet state stays in the worker and counters go through shared memory (counters.ts).
 */
import type { CaptureConfig } from "../config.ts";
import type { KeyDescription } from "../packet/describe.ts";
import type { CompressorSetup } from "../store/compressor.ts";

/** Where a worker's packets come from. */
export type WorkerSource =
  | { kind: "live"; iface: string; fanoutGroup: number; fanout: boolean }
  | { kind: "offline"; files: string[] };

/** Sent once to a new worker. */
export interface WorkerSetup {
  /** Worker number within its interface (W=00 in stats lines, w00 in file names). */
  index: number;
  /** Name used in file names and metrics labels: the interface, or "read" for offline replay. */
  label: string;
  source: WorkerSource;
  config: CaptureConfig;
  counters: Float64Array;
  control: Int32Array;
  /**
   * Shared buffers of the block-compression helper thread the main thread started for this
   * worker (BlockCompressor.startHelper), for the worker's BlockCompressor.attach. Why
   * from the main thread: with Deno 2.9 a worker started from a worker takes about a second to
   * run (one from the main thread, ~30 ms), and blocks are compressed in-line until it does.
   * Absent with --compress none, or when starting it failed (the worker then starts its own).
   */
  compressor?: CompressorSetup;
}

/** A file the worker finalized (renamed into view with its index beside it). */
export interface FinalizedFileMessage {
  path: string;
  indexPath: string;
  linkType: number;
  packets: number;
  firstTs: number;
  lastTs: number;
  bytesOnDisk: number;
  bytesUncompressed: number;
}

/** Worker → main. */
export type WorkerMessage =
  | { type: "ready"; linkType: number; snaplen: number }
  | { type: "log"; level: "info" | "warn" | "error"; message: string }
  | { type: "finalized"; file: FinalizedFileMessage }
  /** The temporary file the worker writes now, archive-relative; null between files. Sent on change. */
  | { type: "openFile"; path: string | null }
  | { type: "fatal"; message: string }
  | { type: "largeFlow"; flow: KeyDescription; bytes: number; threshold: number }
  | { type: "done" };
