/**
 * The main thread's view of the archive: crash recovery at start (temporary files repaired, indexed and
 * renamed into view), the catalog of finalized files, and its upkeep as workers finalize files.
 */
import { clearOpenStates } from "../store/open_file.ts";
import { Catalog } from "../index/catalog.ts";
import { indexPcapFile } from "../index/index_pcap.ts";
import { removeStaleSpillFiles } from "../index/packet_log.ts";
import { logInfo, logWarn } from "../log.ts";
import { parseOutputFileName, recoverTempFiles } from "../store/mod.ts";

/** Repairs what a crash left behind, then opens (or rebuilds) the catalog. */
export function openArchive(outDir: string): Catalog {
  removeStaleSpillFiles(outDir);
  // No file is open yet: states a crash left would point queries at files recovery now repairs.
  clearOpenStates(outDir);
  const reports = recoverTempFiles(outDir, {
    // A recovered file has no index yet: build it by reading the repaired file, under the final name.
    beforeRename: (file) => {
      const name = parseOutputFileName(file.path.slice(file.path.lastIndexOf("/") + 1));
      indexPcapFile(file.tmpPath, {
        indexPath: `${file.path}.idx`,
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
  return catalog;
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

  /** Records a finalized pcap file (its index is already beside it). */
  add(path: string): void {
    try {
      this.catalog.addFile(path);
      this.#dirty = true;
    } catch (error) {
      logWarn(
        `Cannot add ${path} to the catalog: ${error instanceof Error ? error.message : error}`,
      );
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
