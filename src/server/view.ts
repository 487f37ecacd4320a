/**
 * What the HTTP server may see of a running sensor (or of an archive served without capture): the workers'
 * shared counters, the catalog of finalized files, and a few facts about the run. The server reads; it never
 * reaches into workers.
 */
import type { Catalog } from "../archive/catalog.ts";

/** One capture worker as the server sees it. */
export interface WorkerView {
  /** Interface name, or "read" for offline replay. */
  label: string;
  /** Worker number within the interface. */
  index: number;
  /** The worker's shared counters, indexed by `Counter` (src/worker/counters.ts). */
  counters: Float64Array;
  /** Opened its capture handle and is in its packet loop. */
  ready: boolean;
  /** Finished (stopped, input ended, or failed). */
  done: boolean;
  /** Why it stopped, when it failed. */
  error?: string;
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
