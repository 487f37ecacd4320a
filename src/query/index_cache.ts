/**
 * Decoded indexes kept between queries. Decoding an index (checksum, offsets, times) is most of a small
 * query's cost, and an index never changes once written — it is only replaced by rename (a rebuild) or
 * deleted (retention) — so an entry stays valid while the file's size and modification time do.
 */
import { crc32 } from "node:zlib";
import { decodeFileIndex, type FileIndex, readFileIndex } from "../index/index_reader.ts";
import { TRAILER_LEN } from "../index/index_format.ts";

/** Bytes read (and checksummed) per asynchronous step of `IndexCache.load`. */
const READ_STEP = 8 * 1024 * 1024;

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

  /**
   * Like `get`, with shorter stalls of the event loop: the file is read in 8 MiB asynchronous steps
   * (one `Deno.readFile` of a 120 MB million-flow index stalls the loop ~200 ms copying it) and
   * checksummed as it arrives; only the decoding itself (~60 ms for two million packets) is one
   * synchronous step.
   */
  async load(path: string): Promise<FileIndex> {
    const stat = await Deno.stat(path);
    const cached = this.#cached(path, stat);
    if (cached) return cached;
    const bytes = new Uint8Array(stat.size);
    const body = Math.max(0, stat.size - TRAILER_LEN);
    let crc = 0;
    const file = await Deno.open(path, { read: true });
    try {
      for (let at = 0; at < bytes.length;) {
        const n = await file.read(bytes.subarray(at, Math.min(bytes.length, at + READ_STEP)));
        if (n === null) {
          throw new Error(`Index ${path} shrank while read: expected ${stat.size} bytes`);
        }
        if (at < body) crc = crc32(bytes.subarray(at, Math.min(body, at + n)), crc);
        at += n;
      }
    } finally {
      file.close();
    }
    return this.#keep(path, stat, decodeFileIndex(path, bytes, crc));
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
