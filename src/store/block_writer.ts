/**
 * Assembles output in a large reusable buffer and hands it to the file a block at a time: as is
 * (`none`), or as one gzip member / zstd frame (see block_format.ts). How a block reaches the
 * file (in-line, compressed on a helper thread, written through AIO) is the sink's business
 * (block_sink.ts); where every block and its records are — filling, in flight, on disk, lost —
 * is counted here and nowhere else.
 *
 * Writes are synchronous because this runs inside a capture worker with nothing else to do. A
 * write error (ENOSPC, EIO, read-only or deleted file system) never throws: it is counted, its
 * message kept, the block dropped and the file cut back to its last complete block, and `failed`
 * is set so the owner can move on to a new file.
 *
 * A block in flight (handed to a helper, collected at the next `flush()` or at `drain()`) is
 * counted in `streamOffset` already. When its write fails, it and the pending block are both
 * dropped and the stream ends at the last block written (`streamOffset` goes back there), so
 * offsets handed out for them are at or past the file's decompressed size, as for any lost block.
 */
import { BlockTable, type Compression, resolveLevel } from "../pcap/block_format.ts";
import type { Writeback } from "./writeback.ts";
import type { BlockCompressor } from "./compressor.ts";
import { BlockFile, type BlockSink, IN_FLIGHT, openBlockSink } from "./block_sink.ts";

/** Default block buffer size: 1 MiB. */
export const DEFAULT_BLOCK_SIZE = 1 << 20;

/** Options for `BlockWriter`. */
export interface BlockWriterOptions {
  /** Block compression, default `none`. */
  compress?: Compression;
  /** Compression level: gzip 1-9, zstd 1-22; 0 or absent = default (1, see `defaultLevel`). */
  level?: number;
  /** Buffer (uncompressed block) size in bytes, default 1 MiB. */
  blockSize?: number;
  /**
   * Compress gzip/zstd blocks on this helper thread while the next block fills (compressor.ts);
   * absent or null: in-line. Only from a worker (it waits with Atomics).
   */
  compressor?: BlockCompressor | null;
  /**
   * Write plain (`none`) blocks through glibc's AIO threads while the next block fills
   * (ffi/aio.ts); default false. Needs FFI and the file's descriptor, else writes stay in-line.
   */
  aioPlainWrites?: boolean;
}

/** Writes a decompressed pcap stream to a file as a sequence of blocks. */
export class BlockWriter {
  /** The buffer being filled; bytes [0, used) are the pending block. */
  buffer: Uint8Array;
  /** DataView over `buffer`, for header fields. */
  view: DataView;
  /** Bytes of the pending block. */
  used = 0;
  /** Records in the pending block: the caller counts each one it adds. */
  records = 0;
  /**
   * Decompressed-stream offset of `buffer[0]`: bytes of the stream written to disk so far, plus
   * the block in flight.
   */
  streamOffset = 0;
  /** Blocks written so far. */
  readonly blocks: BlockTable = new BlockTable();
  /** Records in blocks on disk. */
  recordsWritten = 0;
  /** Time of the last record on disk (seconds), 0 before one. */
  lastWrittenTs = 0;
  /** Records dropped with blocks that could not be written. */
  recordsLost = 0;
  /** Failed block writes. */
  writeErrors = 0;
  /** Message of the last write error, "" when none. */
  lastError = "";
  /** True once a block was dropped: the file ends at the last good block. */
  failed = false;
  readonly compress: Compression;
  readonly level: number;
  readonly #file: BlockFile;
  readonly #sink: BlockSink;
  readonly #views: DataView[];
  /** The sink's buffer `buffer` is; -1 while it is a private one (see `grow`). */
  #current = 0;
  /** The block in flight: stream bytes, records, time of its last record; 0 bytes when none. */
  #inFlightBytes = 0;
  #inFlightRecords = 0;
  #inFlightLastTs = 0;

  constructor(
    file: Deno.FsFile,
    options: BlockWriterOptions & { writeback?: Writeback | null } = {},
  ) {
    this.compress = options.compress ?? "none";
    this.level = resolveLevel(this.compress, options.level);
    const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!(blockSize >= 4096)) {
      throw new Error(`Invalid block size ${blockSize}: expected at least 4096`);
    }
    this.#file = new BlockFile(file, options.writeback ?? null);
    this.#sink = openBlockSink(this.#file, {
      compress: this.compress,
      level: this.level,
      blockSize,
      compressor: options.compressor,
      aioPlainWrites: options.aioPlainWrites,
    });
    this.#views = this.#sink.buffers.map((b) => new DataView(b.buffer, b.byteOffset, b.length));
    this.buffer = this.#sink.buffers[0];
    this.view = this.#views[0];
  }

  /** File bytes written so far (compressed size for gzip/zstd). */
  get bytesOnDisk(): number {
    return this.#file.size;
  }

  /** Stream bytes of the block in flight, 0 when none. */
  get inFlightBytes(): number {
    return this.#inFlightBytes;
  }

  /** Records of the block in flight. */
  get recordsInFlight(): number {
    return this.#inFlightRecords;
  }

  /** Stream bytes in blocks on disk. */
  get streamWritten(): number {
    return this.streamOffset - this.#inFlightBytes;
  }

  /**
   * Grows an empty buffer to hold at least `bytes` (a record larger than the block size gets a
   * block of its own, written in-line). Call only when `used` is 0.
   */
  grow(bytes: number): void {
    if (bytes <= this.buffer.length) return;
    this.#current = -1;
    this.buffer = new Uint8Array(bytes);
    this.view = new DataView(this.buffer.buffer);
  }

  /**
   * Collects the block in flight, then hands the pending block (whose last record is at
   * `lastTs`) to the sink, which writes it or keeps it in flight. Returns false when a write
   * failed (the pending block and any block in flight are dropped); never throws.
   */
  flush(lastTs: number): boolean {
    if (this.#inFlightBytes > 0 && !this.#collect()) return false;
    if (this.used === 0) return true;
    const length = this.used;
    let size: number;
    try {
      size = this.#sink.put(this.buffer, length);
    } catch (err) {
      this.#fail(err);
      if (this.#current < 0) this.#use(0);
      return false;
    }
    if (size === IN_FLIGHT) {
      this.#inFlightBytes = length;
      this.#inFlightRecords = this.records;
      this.#inFlightLastTs = lastTs;
      // The other buffer fills meanwhile.
      this.#use((this.#current + 1) % this.#views.length);
    } else {
      this.#written(size, this.streamOffset, length, this.records, lastTs);
      // Back from a private (grown) buffer to the sink's.
      if (this.#current < 0) this.#use(0);
    }
    this.streamOffset += length;
    this.used = 0;
    this.records = 0;
    return true;
  }

  /**
   * Writes the block in flight, if any (waits for its helper). Returns false when that failed;
   * the pending bytes are then dropped too.
   */
  drain(): boolean {
    return this.#inFlightBytes === 0 || this.#collect();
  }

  /** Waits for the block in flight without writing it (the file is being abandoned). */
  discard(): void {
    if (this.#inFlightBytes === 0) return;
    this.#sink.discard();
    this.streamOffset -= this.#inFlightBytes;
    this.#inFlightBytes = 0;
    this.#inFlightRecords = 0;
  }

  /** Syncs the file to disk (fsync). Throws on failure. */
  sync(): void {
    this.#file.sync();
  }

  #collect(): boolean {
    const length = this.#inFlightBytes;
    const records = this.#inFlightRecords;
    this.#inFlightBytes = 0;
    this.#inFlightRecords = 0;
    const start = this.streamOffset - length;
    try {
      this.#written(this.#sink.finish(), start, length, records, this.#inFlightLastTs);
      return true;
    } catch (err) {
      this.streamOffset = start;
      this.recordsLost += records;
      this.#fail(err);
      return false;
    }
  }

  /** Counts a block the sink put on disk (`size` bytes there) with its stream range and records. */
  #written(size: number, start: number, length: number, records: number, lastTs: number): void {
    this.blocks.push(this.#file.size - size, size, start, length);
    this.recordsWritten += records;
    this.lastWrittenTs = lastTs;
  }

  /** Fills the sink's buffer `i` from now on. */
  #use(i: number): void {
    this.#current = i;
    this.buffer = this.#sink.buffers[i];
    this.view = this.#views[i];
  }

  /** Drops the pending block after a failed write and cuts the file back to its last block. */
  #fail(err: unknown): void {
    this.writeErrors++;
    this.lastError = err instanceof Error ? err.message : String(err);
    this.recordsLost += this.records;
    this.records = 0;
    this.used = 0;
    this.failed = true;
    this.#file.cutBack();
  }
}
