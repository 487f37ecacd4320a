/**
 * The main thread's view of the archive: crash recovery at start (temporary files repaired, indexed and
 * renamed into view), the catalog of finalized files, and its upkeep as workers finalize files.
 */
import { clearOpenStates } from "../store/open_file.ts";
import { archiveRelative, finalPathFor, indexPathFor, parseOutputFileName } from "./naming.ts";
import { Catalog, type CatalogEntry } from "./catalog.ts";
import { indexPcapFile } from "../index/index_pcap.ts";
import { removeStaleSpillFiles } from "../index/packet_log.ts";
import { logInfo, logWarn } from "../log.ts";
import { recoverTempFiles } from "./mod.ts";

/**
 * Takes the archive's exclusive lock (flock on the `--out` directory itself) for a capture, which
 * recovers, writes and deletes files there; throws one clear line when another capture holds it.
 * `serve` and `index` only read and add indexes, and do not take it. The lock lasts as long as the
 * returned handle is open (the process's life; the kernel releases it at exit, even a crash). The
 * directory rather than a lock file: a lock file deleted under the capture, yet held open, would
 * keep the file system from being remounted read-only, and could not be planted as a symlink.
 */
export function lockArchive(outDir: string): Deno.FsFile {
  const dir = Deno.openSync(outDir, { read: true });
  if (!dir.tryLockSync(true)) {
    dir.close();
    throw new Error(
      `Archive ${outDir} is in use by another cutcap capture: stop it first, or give another --out`,
    );
  }
  return dir;
}

/** A file crash recovery renamed into view (paths relative to the archive). */
export interface RecoveredFile {
  path: string;
  /** The name it had while open (what open exports called it): `path` unless that was taken. */
  openName: string;
}

/** Repairs what a crash left behind, then opens (or rebuilds) the catalog. */
export function openArchive(outDir: string): { catalog: Catalog; recovered: RecoveredFile[] } {
  removeStaleSpillFiles(outDir);
  // No file is open yet: states a crash left would point queries at files recovery now repairs.
  clearOpenStates(outDir);
  const reports = recoverTempFiles(outDir, {
    // A recovered file has no index yet: build it by reading the repaired file, under the final name.
    beforeRename: (file) => {
      const name = parseOutputFileName(file.path.slice(file.path.lastIndexOf("/") + 1));
      indexPcapFile(file.tmpPath, {
        indexPath: indexPathFor(file.path),
        iface: name?.iface ?? "",
        worker: name?.worker ?? -1,
      });
    },
    log: (line) => logWarn(line),
  });
  const catalog = Catalog.open(outDir, { log: (line) => logInfo(line) });
  if (reports.length > 0) {
    logInfo(`Recovered ${reports.filter((r) => r.path).length} file(s) after a crash`);
  }
  const recovered = reports.flatMap((r) =>
    r.path === null ? [] : [{
      path: archiveRelative(outDir, r.path),
      // The final name the writer published while it was open.
      openName: archiveRelative(outDir, finalPathFor(r.tmpPath) ?? r.tmpPath),
    }]
  );
  return { catalog, recovered };
}

/** Adds a file a worker just finalized; the catalog file is saved at most every few seconds. */
export class CatalogKeeper {
  readonly catalog: Catalog;
  #dirty = false;
  #timer: ReturnType<typeof setInterval>;

  constructor(catalog: Catalog, saveEveryMs = 5000) {
    this.catalog = catalog;
    this.#timer = setInterval(() => this.flush(), saveEveryMs);
  }

  /** Records a finalized pcap file (its index is already beside it); its entry, unless unreadable. */
  add(path: string): CatalogEntry | undefined {
    try {
      const entry = this.catalog.addFile(path);
      this.#dirty = true;
      return entry;
    } catch (error) {
      logWarn(
        `Cannot add ${path} to the catalog: ${error instanceof Error ? error.message : error}`,
      );
      return undefined;
    }
  }

  /** Saves the catalog when it changed. */
  flush(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    try {
      this.catalog.save();
    } catch (error) {
      logWarn(`Cannot save the catalog: ${error instanceof Error ? error.message : error}`);
    }
  }

  /** Saves and stops the timer. */
  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
