/**
 * The state of each worker's open (still hidden) output file, as it stood at its last flush: how
 * many bytes of it are durable, how many records they hold, and the block table of that prefix.
 * A worker publishes it after each time-bounded flush (`--flush-interval`) to
 * `<out>/.open/<iface>_w<NN>.json`, written as `.new` and renamed over the old one, so readers (the
 * sensor's own query server and `cutcap serve` on the same directory) always see one whole
 * snapshot. A query indexes the open file's durable prefix itself (src/query/open_files.ts):
 * nothing per packet crosses a thread or a process.
 */
import { type Compression, isCompression } from "../pcap/codecs.ts";
import type { FinalizedFile } from "./pcap_file_writer.ts";
import { archiveRelative, OPEN_DIR, openStatePath } from "../archive/naming.ts";

/** The published state of one worker's open file. */
export interface OpenFileState {
  version: 1;
  /** Archive-relative path of the hidden temporary file being written. */
  tmp: string;
  /** Archive-relative path it gets when it is finalized. */
  final: string;
  /**
   * Archive-relative path of the file this worker finalized before, "" when none: a query that
   * races that file's rename still finds it.
   */
  previous: string;
  iface: string;
  worker: number;
  linkType: number;
  snaplen: number;
  nanosecond: boolean;
  compress: Compression;
  /** Records in the durable prefix. */
  packets: number;
  /** First and last record time of the prefix, seconds. */
  firstTs: number;
  lastTs: number;
  /** Bytes of the file on disk that hold complete blocks. */
  bytesOnDisk: number;
  /** Bytes of the uncompressed pcap stream those blocks hold. */
  dataSize: number;
  /** Block table of a compressed file (4 numbers per block), empty for a plain one. */
  blocks: number[];
  /** Wall-clock time of the flush, seconds. */
  flushedAt: number;
}

/** Publishes the flushed state of `file` (what `PcapFileWriter.durable()` reports). */
export function publishOpenState(
  outDir: string,
  file: FinalizedFile,
  owner: { iface: string; worker: number; previous: string },
): void {
  const state: OpenFileState = {
    version: 1,
    tmp: archiveRelative(outDir, file.tmpPath),
    final: archiveRelative(outDir, file.path),
    previous: owner.previous,
    iface: owner.iface,
    worker: owner.worker,
    linkType: file.linkType,
    snaplen: file.snaplen,
    nanosecond: file.nanosecond,
    compress: file.compress,
    packets: file.packets,
    firstTs: file.firstTs,
    lastTs: file.lastTs,
    bytesOnDisk: file.bytesOnDisk,
    dataSize: file.bytesUncompressed,
    blocks: Array.from(file.blocks),
    flushedAt: Date.now() / 1000,
  };
  const path = openStatePath(outDir, owner.iface, owner.worker);
  const next = `${path}.new`;
  try {
    Deno.writeTextFileSync(next, JSON.stringify(state));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    Deno.mkdirSync(`${outDir}/${OPEN_DIR}`, { recursive: true });
    Deno.writeTextFileSync(next, JSON.stringify(state));
  }
  // No fsync: the state is for readers of a running sensor; recovery starts without it.
  Deno.renameSync(next, path);
}

/** Removes a worker's state file (its output is closed); missing is fine. */
export function removeOpenState(outDir: string, iface: string, worker: number): void {
  try {
    Deno.removeSync(openStatePath(outDir, iface, worker));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** Removes every state file (at start, before recovery: no file is open then). */
export function clearOpenStates(outDir: string): void {
  try {
    Deno.removeSync(`${outDir}/${OPEN_DIR}`, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** The published states under `outDir`, skipping any that cannot be read or parsed. */
export function readOpenStates(outDir: string): OpenFileState[] {
  const states: OpenFileState[] = [];
  let names: Deno.DirEntry[];
  try {
    names = [...Deno.readDirSync(`${outDir}/${OPEN_DIR}`)];
  } catch {
    return states;
  }
  for (const entry of names) {
    if (!entry.isFile || !entry.name.endsWith(".json")) continue;
    try {
      const state = JSON.parse(Deno.readTextFileSync(`${outDir}/${OPEN_DIR}/${entry.name}`));
      if (validState(state)) states.push(state);
    } catch {
      // Removed between the listing and the read (the worker stopped), or not ours.
    }
  }
  return states;
}

/** The published state of worker `worker` on interface `iface` (sanitized); null when none is readable. */
export function readOpenState(outDir: string, iface: string, worker: number): OpenFileState | null {
  try {
    const state = JSON.parse(Deno.readTextFileSync(openStatePath(outDir, iface, worker)));
    return validState(state) ? state : null;
  } catch {
    return null; // no file open, or removed as the worker stopped
  }
}

function validState(s: unknown): s is OpenFileState {
  if (typeof s !== "object" || s === null) return false;
  const r = s as Record<string, unknown>;
  return r.version === 1 && typeof r.tmp === "string" && typeof r.final === "string" &&
    typeof r.previous === "string" && safeRelative(r.tmp) && safeRelative(r.final) &&
    (r.previous === "" || safeRelative(r.previous)) && Array.isArray(r.blocks) &&
    typeof r.compress === "string" && isCompression(r.compress) &&
    ["packets", "firstTs", "lastTs", "bytesOnDisk", "dataSize", "linkType"].every((k) =>
      typeof r[k] === "number" && Number.isFinite(r[k])
    );
}

/** A path inside the archive: relative, without `..` (the state file is not trusted further). */
function safeRelative(path: string): boolean {
  return path !== "" && !path.startsWith("/") && !path.split("/").includes("..");
}
