/**
 * Retention: deletes the oldest finalized files of the archive (each with its `.idx` sidecar and its
 * catalog entry) until the output filesystem has `--min-free` space, the archive is within
 * `--max-bytes`, and no file holds only packets older than `--max-age`. Files being written (hidden
 * `.<name>.tmp`) are never in the catalog, so they are never candidates. Retention owns only cutcap's
 * own files (names as `outputFileName` makes them): a pcap someone copied into the archive (a
 * `evidence-case42.pcap`) is queried like the others but never deleted. `--max-age` counts from when
 * a file was written as well as from its last packet (the later of the two), so a replay of old
 * traffic is not deleted the moment it is written. Cheap enough to run every few seconds and after
 * each finalized file: it looks at the catalog (in memory), one statvfs, and the modification time
 * of files whose packets are past `--max-age`.
 */
import type { Catalog, CatalogEntry } from "./catalog.ts";
import { indexPathFor, parseOutputFileName } from "./naming.ts";
import { logInfo, logWarn } from "../log.ts";
import { filesystemSpace } from "../../ffi/libc.ts";
import type { SizeOrPercent } from "../units.ts";

/** Free and total space of a filesystem, in bytes. */
export interface DiskSpace {
  /** Bytes available to an unprivileged user (statvfs f_bavail). */
  free: number;
  /** Size of the filesystem (statvfs f_blocks). */
  size: number;
}

/** Limits of `Retention`; each one left out (or 0) is off. */
export interface RetentionOptions {
  /** Archive directory (the catalog's outDir). */
  outDir: string;
  /** Keep at least this much of the output filesystem free. */
  minFree?: SizeOrPercent;
  /** Keep the archive (pcap + index bytes) at or below this many bytes; 0 = no limit. */
  maxBytes?: number;
  /** Delete files whose packets are all older than this many seconds; 0 = no limit. */
  maxAge?: number;
  /**
   * Save catalog.json after a run that deleted something; default true. Pass false when the caller
   * saves the catalog itself (and mark it changed when `run` deleted files).
   */
  saveCatalog?: boolean;
  /** Called with the archive-relative path of each file deleted (the exporter tells ClickHouse). */
  onDelete?: (path: string) => void;
  /** Clock in Unix seconds; tests replace it. */
  now?: () => number;
  /** Filesystem space of a path; tests replace it. */
  diskSpace?: (path: string) => DiskSpace;
}

/** What one `Retention.run` (or all of them, `Retention.totals`) deleted. */
export interface RetentionResult {
  deletedFiles: number;
  deletedBytes: number;
}

/** Why a file was deleted, as logged. */
type Reason = "max-age" | "max-bytes" | "min-free";

/** Deletes the oldest files of an archive to keep it within its limits; see the module comment. */
export class Retention {
  readonly #outDir: string;
  readonly #minFree: SizeOrPercent | undefined;
  readonly #maxBytes: number;
  readonly #maxAge: number;
  readonly #saveCatalog: boolean;
  readonly #onDelete: ((path: string) => void) | undefined;
  readonly #now: () => number;
  readonly #diskSpace: (path: string) => DiskSpace;
  /** Files that could not be deleted: skipped afterwards, so each failure is logged once. */
  readonly #failed = new Set<string>();
  #totalFiles = 0;
  #totalBytes = 0;

  constructor(options: RetentionOptions) {
    this.#outDir = options.outDir.replace(/\/+$/, "") || "/";
    const minFree = options.minFree;
    this.#minFree =
      minFree === undefined || ("bytes" in minFree ? minFree.bytes : minFree.percent) <= 0
        ? undefined
        : minFree;
    this.#maxBytes = options.maxBytes ?? 0;
    this.#maxAge = options.maxAge ?? 0;
    this.#saveCatalog = options.saveCatalog ?? true;
    this.#onDelete = options.onDelete;
    this.#now = options.now ?? (() => Date.now() / 1000);
    this.#diskSpace = options.diskSpace ?? diskSpace;
  }

  /** True when at least one limit is set (otherwise `run` never deletes anything). */
  get enabled(): boolean {
    return this.#minFree !== undefined || this.#maxBytes > 0 || this.#maxAge > 0;
  }

  /** Everything deleted since this object was made. */
  totals(): RetentionResult {
    return { deletedFiles: this.#totalFiles, deletedBytes: this.#totalBytes };
  }

  /**
   * Deletes files until every limit holds (or nothing deletable is left); saves the catalog when
   * it changed (unless `saveCatalog` is false). Returns what this run deleted.
   */
  run(catalog: Catalog): RetentionResult {
    const result: RetentionResult = { deletedFiles: 0, deletedBytes: 0 };
    if (!this.enabled) return result;

    if (this.#maxAge > 0) {
      const cutoff = this.#now() - this.#maxAge;
      // A file goes only when all its packets are too old: multiple workers' files overlap in time,
      // so this is not a prefix of the catalog's order.
      const expired = catalog.entries().filter((e) =>
        e.lastTs < cutoff && owned(e) && writtenBefore(`${catalog.outDir}/${e.path}`, cutoff)
      );
      for (const entry of expired) this.#delete(catalog, entry, "max-age", result);
    }

    if (this.#maxBytes > 0) {
      while (catalog.totalBytes() > this.#maxBytes) {
        const entry = this.#oldest(catalog);
        if (entry === undefined) break;
        this.#delete(catalog, entry, "max-bytes", result);
      }
    }

    if (this.#minFree !== undefined) {
      // One statvfs, then count the bytes we delete instead of asking again: space held by a file a
      // query still has open, or freed lazily by the filesystem, would otherwise look like a
      // shortfall and empty the archive. The next run (seconds later) sees the real figure.
      const space = this.#diskSpace(this.#outDir);
      const floor = "bytes" in this.#minFree
        ? this.#minFree.bytes
        : space.size * this.#minFree.percent / 100;
      let missing = floor - space.free;
      while (missing > 0) {
        const entry = this.#oldest(catalog);
        if (entry === undefined) break;
        if (this.#delete(catalog, entry, "min-free", result)) missing -= entry.bytesOnDisk;
      }
    }

    if (result.deletedFiles > 0 && this.#saveCatalog) catalog.save();
    return result;
  }

  /** The oldest entry of cutcap's own not known to be undeletable. */
  #oldest(catalog: Catalog): CatalogEntry | undefined {
    for (const entry of catalog.entries()) {
      if (!this.#failed.has(entry.path) && owned(entry)) return entry;
    }
    return undefined;
  }

  /** Deletes one file, its index and its catalog entry; false when it could not. */
  #delete(catalog: Catalog, entry: CatalogEntry, reason: Reason, result: RetentionResult): boolean {
    if (this.#failed.has(entry.path)) return false;
    const pcap = `${catalog.outDir}/${entry.path}`;
    try {
      removeIfPresent(pcap);
      removeIfPresent(indexPathFor(pcap));
    } catch (error) {
      this.#failed.add(entry.path);
      logWarn(`retention: cannot delete ${entry.path}: ${(error as Error).message}`);
      return false;
    }
    catalog.remove(entry.path);
    result.deletedFiles++;
    result.deletedBytes += entry.bytesOnDisk;
    this.#totalFiles++;
    this.#totalBytes += entry.bytesOnDisk;
    logInfo(`retention: deleted ${entry.path}`, { reason, bytes: entry.bytesOnDisk });
    this.#onDelete?.(entry.path);
    removeEmptyDirs(catalog.outDir, entry.path);
    return true;
  }
}

/** True for files cutcap wrote (its output names); retention leaves every other file alone. */
function owned(entry: CatalogEntry): boolean {
  return parseOutputFileName(entry.path.slice(entry.path.lastIndexOf("/") + 1)) !== null;
}

/** True when the file at `path` was last written before `cutoff` (Unix seconds), or is gone. */
function writtenBefore(path: string, cutoff: number): boolean {
  try {
    return (Deno.statSync(path).mtime?.getTime() ?? 0) / 1000 < cutoff;
  } catch {
    return true;
  }
}

/** Removes the YYYY/MM/DD folders of `relPath` that are now empty, innermost first. */
function removeEmptyDirs(outDir: string, relPath: string): void {
  const parts = relPath.split("/");
  for (let depth = parts.length - 1; depth > 0; depth--) {
    try {
      // Not recursive: fails (and we stop) as soon as a folder still holds something.
      Deno.removeSync(`${outDir}/${parts.slice(0, depth).join("/")}`);
    } catch {
      return;
    }
  }
}

function removeIfPresent(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * Free and total bytes of the filesystem holding `path` (statvfs, ffi/libc.ts). Throws when the
 * path does not exist.
 */
export function diskSpace(path: string): DiskSpace {
  const space = filesystemSpace(path);
  if (space === null) {
    Deno.statSync(path); // throws the descriptive NotFound / PermissionDenied
    throw new Error(`Cannot statvfs ${path}: expected a readable filesystem path`);
  }
  return space;
}
