/**
 * Decoded indexes kept between queries. Decoding an index (checksum, offsets, times) is most of a small
 * query's cost, and an index never changes once written — it is only replaced by rename (a rebuild) or
 * deleted (retention) — so an entry stays valid while the file's size and modification time do.
 */
import { decodeFileIndex, type FileIndex, readFileIndex } from "../index/index_reader.ts";

/** Bytes of decoded indexes kept, at most (about 1.5 % of the pcap bytes they cover). */
const DEFAULT_BUDGET = 256 * 1024 * 1024;

interface CachedIndex {
  index: FileIndex;
  size: number;
  mtime: number;
}

/** A least-recently-used cache of decoded indexes, bounded by their byte size. */
export class IndexCache {
  readonly #entries = new Map<string, CachedIndex>();
  readonly #budget: number;
  #bytes = 0;

  constructor(budget = DEFAULT_BUDGET) {
    this.#budget = budget;
  }

  /** The decoded index at `path`, from the cache when the file is unchanged. */
  get(path: string): FileIndex {
    const stat = Deno.statSync(path);
    return this.#cached(path, stat) ?? this.#keep(path, stat, readFileIndex(path));
  }

  /** Like `get`, but the file is read without blocking the event loop (only decoding is synchronous). */
  async load(path: string): Promise<FileIndex> {
    const stat = await Deno.stat(path);
    return this.#cached(path, stat) ??
      this.#keep(path, stat, decodeFileIndex(path, await Deno.readFile(path)));
  }

  /** The cached index when the file is unchanged (and marks it most recently used). */
  #cached(path: string, stat: Deno.FileInfo): FileIndex | undefined {
    const mtime = stat.mtime?.getTime() ?? 0;
    const cached = this.#entries.get(path);
    if (cached && cached.size === stat.size && cached.mtime === mtime) {
      this.#entries.delete(path);
      this.#entries.set(path, cached);
      return cached.index;
    }
    if (cached) this.#forget(path, cached);
    return undefined;
  }

  #keep(path: string, stat: Deno.FileInfo, index: FileIndex): FileIndex {
    const racing = this.#entries.get(path); // another load of the same file finished meanwhile
    if (racing) this.#forget(path, racing);
    const entry = { index, size: stat.size, mtime: stat.mtime?.getTime() ?? 0 };
    this.#entries.set(path, entry);
    this.#bytes += entry.size;
    for (const [oldest, old] of this.#entries) {
      if (this.#bytes <= this.#budget || oldest === path) break;
      this.#forget(oldest, old);
    }
    return index;
  }

  #forget(path: string, entry: CachedIndex): void {
    this.#entries.delete(path);
    this.#bytes -= entry.size;
  }
}

/** The process-wide cache the query routes share. */
export const sharedIndexCache: IndexCache = new IndexCache();
