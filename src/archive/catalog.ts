/**
 * The catalog of an archive: one entry per finalized pcap file under `<outDir>/YYYY/MM/DD/`, with what
 * a query planner and retention need (time range, sizes) without opening any file. It is kept in
 * `<outDir>/catalog.json`, a cache: on open it is checked against the directory tree, and files added
 * or deleted behind its back are reconciled (a corrupt catalog is rebuilt from the index headers).
 */
import { type FileIndexHeader, readFileIndex, readIndexHeader } from "../index/index_reader.ts";
import { type Compression, isCompression } from "../pcap/codecs.ts";
import { indexPcapFile } from "../index/index_pcap.ts";
import { DIR_MODE } from "../store/pcap_file_writer.ts";
import { writeFileDurably } from "../index/index_builder.ts";
import {
  CATALOG_FILE,
  indexPathFor,
  isPcapName,
  MONTH_OR_DAY_FOLDER,
  parseOutputFileName,
  YEAR_FOLDER,
} from "./naming.ts";

/** One finalized pcap file of the archive. */
export interface CatalogEntry {
  /** Path relative to the archive directory, "/"-separated (`2024/05/01/x.pcap.gz`). */
  path: string;
  iface: string;
  /** Capture worker number, -1 when unknown. */
  worker: number;
  /** Time of the first and last packet, seconds (0 and 0 for a file without packets). */
  firstTs: number;
  lastTs: number;
  packets: number;
  flows: number;
  /** pcapBytes + indexBytes. */
  bytesOnDisk: number;
  pcapBytes: number;
  indexBytes: number;
  linkType: number;
  compress: Compression;
}

/** Options of `Catalog.open`. */
export interface CatalogOpenOptions {
  /**
   * Verify every index's whole-file checksum while rebuilding (reads every index entirely);
   * by default only headers and lengths are checked, which catches torn and truncated indexes.
   */
  verify?: boolean;
  /** Receives one line per file that had to be (re)indexed or could not be. */
  log?: (line: string) => void;
}

/** Time range of `Catalog.files`; a missing end is unbounded. */
export interface TimeRange {
  from?: number;
  to?: number;
}

/** How `Catalog.open` obtained its entries. */
export type CatalogSource = "loaded" | "reconciled" | "rebuilt";

interface CatalogFile {
  version: number;
  entries: CatalogEntry[];
  /** Files in the tree that cannot be indexed (e.g. pcapng named .pcap), so they are not retried. */
  skipped: string[];
}

const CATALOG_VERSION = 1;

/** The finalized files of an archive, sorted by first packet time. */
export class Catalog {
  /** Archive directory. */
  readonly outDir: string;
  /** Whether the entries came from catalog.json, were reconciled with the tree, or rebuilt. */
  source: CatalogSource = "rebuilt";
  #sorted: CatalogEntry[] = [];
  #byPath = new Map<string, CatalogEntry>();
  #skipped = new Set<string>();
  #total = 0;

  private constructor(outDir: string) {
    this.outDir = outDir.replace(/\/+$/, "") || "/";
  }

  /**
   * Loads `<outDir>/catalog.json` when it matches the set of finalized pcap files in the tree;
   * otherwise reconciles or rebuilds it (indexing pcaps without a valid index) and saves it.
   */
  static open(outDir: string, opts: CatalogOpenOptions = {}): Catalog {
    const cat = new Catalog(outDir);
    const onDisk = listArchive(cat.outDir);
    const stored = loadCatalogFile(`${cat.outDir}/${CATALOG_FILE}`);
    if (stored !== null) {
      for (const e of stored.entries) if (onDisk.has(e.path)) cat.add(e);
      for (const s of stored.skipped) if (onDisk.has(s)) cat.#skipped.add(s);
      const same = stored.entries.length === cat.#byPath.size &&
        stored.skipped.length === cat.#skipped.size &&
        cat.#byPath.size + cat.#skipped.size === onDisk.size;
      if (same) {
        cat.source = "loaded";
        return cat;
      }
      cat.source = "reconciled";
    }
    cat.#addMissing(onDisk, opts);
    cat.save();
    return cat;
  }

  /**
   * Brings the catalog in line with the files on disk: files another process finalized are added
   * (indexed when they have no index), files deleted meanwhile (another process's retention) are
   * dropped. Does not save. For `cutcap serve`, which shares the archive with a capture.
   */
  refresh(opts: CatalogOpenOptions = {}): { added: number; removed: number } {
    const onDisk = listArchive(this.outDir);
    let removed = 0;
    for (const path of [...this.#byPath.keys()]) {
      if (!onDisk.has(path) && this.remove(path)) removed++;
    }
    for (const path of [...this.#skipped]) if (!onDisk.has(path)) this.#skipped.delete(path);
    return { added: this.#addMissing(onDisk, opts), removed };
  }

  /** Adds the files of `onDisk` the catalog neither holds nor skipped; returns how many. */
  #addMissing(onDisk: Set<string>, opts: CatalogOpenOptions): number {
    let added = 0;
    for (const rel of onDisk) {
      if (this.#byPath.has(rel) || this.#skipped.has(rel)) continue;
      try {
        this.add(entryFor(this.outDir, rel, opts));
        added++;
      } catch (e) {
        this.#skipped.add(rel);
        opts.log?.(`catalog: skipping ${rel}: ${(e as Error).message}`);
      }
    }
    return added;
  }

  /** Number of files. */
  get size(): number {
    return this.#sorted.length;
  }

  /** All entries sorted by first packet time (do not modify). */
  entries(): readonly CatalogEntry[] {
    return this.#sorted;
  }

  /** The entry of a relative path, if any. */
  get(path: string): CatalogEntry | undefined {
    return this.#byPath.get(path);
  }

  /** Adds (or replaces) an entry; O(log n) search plus an array insert. Does not save. */
  add(entry: CatalogEntry): void {
    this.remove(entry.path);
    const e = { ...entry };
    const a = this.#sorted;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid].firstTs <= e.firstTs) lo = mid + 1;
      else hi = mid;
    }
    a.splice(lo, 0, e);
    this.#byPath.set(e.path, e);
    this.#total += e.bytesOnDisk;
  }

  /**
   * Adds the finalized pcap file at `pcapPath` (absolute, or relative to the archive) from its
   * index header and file sizes; returns the entry. Does not save.
   */
  addFile(pcapPath: string): CatalogEntry {
    const prefix = this.outDir + "/";
    const rel = pcapPath.startsWith(prefix) ? pcapPath.slice(prefix.length) : pcapPath;
    const entry = entryFromHeader(
      rel,
      readIndexHeader(indexPathFor(`${prefix}${rel}`)),
      Deno.statSync(`${prefix}${rel}`).size,
    );
    this.add(entry);
    return entry;
  }

  /** Removes the entry of a relative path; returns whether there was one. Does not save. */
  remove(path: string): boolean {
    const e = this.#byPath.get(path);
    if (e === undefined) {
      this.#skipped.delete(path);
      return false;
    }
    this.#byPath.delete(path);
    const i = this.#sorted.indexOf(e);
    this.#sorted.splice(i, 1);
    this.#total -= e.bytesOnDisk;
    return true;
  }

  /**
   * Files with packets whose [firstTs, lastTs] overlaps [from, to] (either end optional),
   * sorted by firstTs.
   */
  files(range: TimeRange = {}): CatalogEntry[] {
    const from = range.from ?? -Infinity;
    const to = range.to ?? Infinity;
    const a = this.#sorted;
    // Entries are sorted by firstTs: everything past the first entry starting after `to` is out.
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid].firstTs <= to) lo = mid + 1;
      else hi = mid;
    }
    const out: CatalogEntry[] = [];
    for (let i = 0; i < lo; i++) {
      const e = a[i];
      if (e.packets > 0 && e.lastTs >= from) out.push(e);
    }
    return out;
  }

  /** Sum of bytesOnDisk over all files. */
  totalBytes(): number {
    return this.#total;
  }

  /** The file with the earliest first packet, the first to go under retention. */
  oldest(): CatalogEntry | undefined {
    return this.#sorted[0];
  }

  /** Writes `<outDir>/catalog.json` atomically (temporary file, fsync, rename). */
  save(): void {
    const doc: CatalogFile = {
      version: CATALOG_VERSION,
      entries: this.#sorted,
      skipped: [...this.#skipped].sort(),
    };
    Deno.mkdirSync(this.outDir, { recursive: true, mode: DIR_MODE });
    writeFileDurably(
      `${this.outDir}/${CATALOG_FILE}`,
      new TextEncoder().encode(JSON.stringify(doc) + "\n"),
    );
  }
}

/** Relative paths of the finalized pcap files under `outDir/YYYY/MM/DD/`, sorted. */
function listArchive(outDir: string): Set<string> {
  const out: string[] = [];
  for (const y of dirs(outDir, YEAR_FOLDER)) {
    for (const m of dirs(`${outDir}/${y}`, MONTH_OR_DAY_FOLDER)) {
      for (const d of dirs(`${outDir}/${y}/${m}`, MONTH_OR_DAY_FOLDER)) {
        for (const f of Deno.readDirSync(`${outDir}/${y}/${m}/${d}`)) {
          if (f.isFile && isPcapName(f.name)) out.push(`${y}/${m}/${d}/${f.name}`);
        }
      }
    }
  }
  // Sorted, so that (re)indexing runs and logs in a stable order.
  return new Set(out.sort());
}

function dirs(path: string, re: RegExp): string[] {
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(path)) if (e.isDirectory && re.test(e.name)) out.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

function entryFromHeader(rel: string, h: FileIndexHeader, pcapBytes: number): CatalogEntry {
  return {
    path: rel,
    iface: h.iface,
    worker: h.worker,
    firstTs: h.firstTs,
    lastTs: h.lastTs,
    packets: h.packetCount,
    flows: h.flowCount,
    bytesOnDisk: pcapBytes + h.indexSize,
    pcapBytes,
    indexBytes: h.indexSize,
    linkType: h.linkType,
    compress: h.compress,
  };
}

/** Entry for a file found in the tree, (re)indexing it when its index is missing, damaged or stale. */
function entryFor(outDir: string, rel: string, opts: CatalogOpenOptions): CatalogEntry {
  const pcap = `${outDir}/${rel}`;
  const idx = indexPathFor(pcap);
  const size = Deno.statSync(pcap).size;
  let why: string;
  try {
    const h = opts.verify ? readFileIndex(idx).header : readIndexHeader(idx);
    if (h.pcapSize === 0 || h.pcapSize === size) return entryFromHeader(rel, h, size);
    why = `index is stale: it describes ${h.pcapSize} pcap bytes, the file has ${size}`;
  } catch (e) {
    why = e instanceof Deno.errors.NotFound ? "no index" : (e as Error).message;
  }
  opts.log?.(`catalog: indexing ${rel} (${why})`);
  // Keep what the old index knew about the writer, else what cutcap's file name says.
  const prev = tryHeader(idx);
  const named = parseOutputFileName(rel.slice(rel.lastIndexOf("/") + 1));
  indexPcapFile(pcap, {
    iface: prev?.iface ?? named?.iface ?? "",
    worker: prev?.worker ?? named?.worker ?? -1,
  });
  return entryFromHeader(rel, readIndexHeader(idx), size);
}

/** The header of a possibly damaged index, to keep its iface and worker when re-indexing. */
function tryHeader(path: string): FileIndexHeader | null {
  try {
    return readIndexHeader(path, { ignoreLength: true });
  } catch {
    return null;
  }
}

/** catalog.json if it parses and has the expected shape, else null (then the tree is the truth). */
function loadCatalogFile(path: string): CatalogFile | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return null;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof doc !== "object" || doc === null) return null;
  const d = doc as Record<string, unknown>;
  if (d.version !== CATALOG_VERSION || !Array.isArray(d.entries) || !Array.isArray(d.skipped)) {
    return null;
  }
  for (const e of d.entries) if (!validEntry(e)) return null;
  for (const s of d.skipped) if (typeof s !== "string") return null;
  return d as unknown as CatalogFile;
}

function validEntry(e: unknown): boolean {
  if (typeof e !== "object" || e === null) return false;
  const r = e as Record<string, unknown>;
  const nums = [
    "worker",
    "firstTs",
    "lastTs",
    "packets",
    "flows",
    "bytesOnDisk",
    "pcapBytes",
    "indexBytes",
    "linkType",
  ];
  for (const k of nums) if (typeof r[k] !== "number" || !Number.isFinite(r[k])) return false;
  return typeof r.path === "string" && typeof r.iface === "string" &&
    typeof r.compress === "string" && isCompression(r.compress);
}
