/**
 * Assembles output in one large reusable buffer and writes it to the file a block at a time:
 * as is (`none`), or as one gzip member / zstd frame (see block_format.ts).
 *
 * Writes are synchronous because this runs inside a capture worker with nothing else to do. A
 * write error (ENOSPC, EIO, read-only or deleted file system) never throws: it is counted, its
 * message kept, the block dropped and the file cut back to its last complete block, and `failed`
 * is set so the owner can move on to a new file.
 */
import {
  BlockTable,
  compressBlock,
  type Compression,
  resolveLevel,
  writeFully,
} from "./block_format.ts";
import type { Writeback } from "./writeback.ts";

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
}

/** Internal options of `BlockWriter` (not part of the public writer options). */
interface BlockWriterInternals {
  /** Starts disk writeback of each block once written (see writeback.ts). */
  writeback?: Writeback | null;
}

/** Writes a decompressed pcap stream to a file as a sequence of blocks. */
export class BlockWriter {
  /** The buffer being filled; bytes [0, used) are the pending block. */
  buffer: Uint8Array;
  /** DataView over `buffer`, for header fields. */
  view: DataView;
  /** Bytes of the pending block. */
  used = 0;
  /** Decompressed-stream offset of `buffer[0]`: bytes of the stream written to disk so far. */
  streamOffset = 0;
  /** File bytes written so far (compressed size for gzip/zstd). */
  bytesOnDisk = 0;
  /** Blocks written so far. */
  readonly blocks: BlockTable = new BlockTable();
  /** Failed block writes. */
  writeErrors = 0;
  /** Message of the last write error, "" when none. */
  lastError = "";
  /** True once a block was dropped: the file ends at the last good block. */
  failed = false;
  readonly compress: Compression;
  readonly level: number;
  readonly #file: Deno.FsFile;
  readonly #writeback: Writeback | null;

  constructor(file: Deno.FsFile, options: BlockWriterOptions & BlockWriterInternals = {}) {
    this.#file = file;
    this.#writeback = options.writeback ?? null;
    this.compress = options.compress ?? "none";
    this.level = resolveLevel(this.compress, options.level);
    const size = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!(size >= 4096)) throw new Error(`Invalid block size ${size}: expected at least 4096`);
    this.buffer = new Uint8Array(size);
    this.view = new DataView(this.buffer.buffer);
  }

  /** Free bytes in the buffer. */
  room(): number {
    return this.buffer.length - this.used;
  }

  /**
   * Grows an empty buffer to hold at least `bytes` (a record larger than the block size gets a
   * block of its own). Call only when `used` is 0.
   */
  grow(bytes: number): void {
    if (bytes <= this.buffer.length) return;
    this.buffer = new Uint8Array(bytes);
    this.view = new DataView(this.buffer.buffer);
  }

  /**
   * Writes the pending bytes as one block. Returns false (and drops the block) when the write
   * failed; never throws.
   */
  flush(): boolean {
    if (this.used === 0) return true;
    const raw = this.buffer.subarray(0, this.used);
    try {
      const out = compressBlock(raw, this.compress, this.level);
      writeFully(this.#file, out);
      this.#writeback?.start(this.bytesOnDisk, out.length);
      this.blocks.push(this.bytesOnDisk, out.length, this.streamOffset, this.used);
      this.bytesOnDisk += out.length;
      this.streamOffset += this.used;
      this.used = 0;
      return true;
    } catch (err) {
      this.writeErrors++;
      this.lastError = err instanceof Error ? err.message : String(err);
      this.used = 0;
      this.failed = true;
      this.#cutBack();
      return false;
    }
  }

  /** Syncs the file to disk (fsync). Throws on failure. */
  sync(): void {
    this.#file.syncSync();
  }

  /** Removes a partly written block so the file ends with its last complete one. */
  #cutBack(): void {
    try {
      this.#file.truncateSync(this.bytesOnDisk);
      this.#file.seekSync(this.bytesOnDisk, Deno.SeekMode.Start);
    } catch {
      // The file system may refuse even this (EIO); recovery at the next start cuts the file.
    }
  }
}
