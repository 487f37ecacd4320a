/**
 * How a full block reaches the file: one `BlockSink` per strategy, chosen when the file is opened
 * (`openBlockSink`), each writing through the file's `BlockFile`.
 *
 * - `InLineSink`: the capture thread compresses (gzip/zstd) and writes each block at once.
 * - `HelperSink`: gzip/zstd blocks are compressed on a helper thread (compressor.ts) while the
 *   next one fills, and written when collected at the next flush.
 * - `AioSink`: plain blocks are written by glibc's AIO threads (ffi/aio.ts) while the next one
 *   fills, and collected at the next flush: the kernel's copy into the page cache (~18 % of a
 *   capture worker's time) runs on another core.
 *
 * A sink that keeps a block in flight fills two buffers in turn; it knows nothing of streams and
 * records: what a block in flight holds is counted by BlockWriter, the one layer that does.
 * A record larger than a buffer gets a private buffer of its own (BlockWriter.grow), which every
 * sink writes in-line; so does a sink whose helper is not running (yet, or any more).
 */
import { compressBlock, type Compression, writeFully } from "../pcap/block_format.ts";
import { AsyncWrite } from "../../ffi/aio.ts";
import type { BlockCompressor } from "./compressor.ts";
import type { Writeback } from "./writeback.ts";

/** `BlockSink.put`'s answer when the block completes at `finish`. */
export const IN_FLIGHT = -1;

/** Where full blocks go; see the module comment. */
export interface BlockSink {
  /** The buffers blocks are filled in: two, filled in turn, when a block can be in flight. */
  readonly buffers: readonly Uint8Array[];
  /**
   * Takes the block in bytes [0, length) of `buffer` (one of `buffers`, or a larger private
   * one). Returns its size on disk when it was written now, or IN_FLIGHT when it is written by
   * `finish` (the buffer must stay untouched until then). Throws a write error.
   */
  put(buffer: Uint8Array, length: number): number;
  /** Completes the block in flight: returns its size on disk, or throws its write error. */
  finish(): number;
  /** Waits for the block in flight and forgets it (its file is being abandoned). */
  discard(): void;
}

/** The file blocks are appended to: its end, position, writeback hints, cut back and sync. */
export class BlockFile {
  /** Bytes of complete blocks on disk: where the next block starts. */
  size = 0;
  readonly #file: Deno.FsFile;
  readonly #writeback: Writeback | null;

  constructor(file: Deno.FsFile, writeback: Writeback | null) {
    this.#file = file;
    this.#writeback = writeback;
  }

  /** The file's descriptor, -1 when unknown (see writeback.ts). */
  get fd(): number {
    return this.#writeback?.fd ?? -1;
  }

  /** Writes `bytes` at the file's position (within the block after `size`). Throws on failure. */
  write(bytes: Uint8Array): void {
    writeFully(this.#file, bytes);
  }

  /** Puts the file's position `written` bytes past `size` (after a write at an explicit offset). */
  seekPast(written: number): void {
    this.#file.seekSync(this.size + written, Deno.SeekMode.Start);
  }

  /** The `length` bytes after `size` are a complete block: starts their writeback, moves `size`. */
  complete(length: number): void {
    this.#writeback?.start(this.size, length);
    this.size += length;
  }

  /** Removes a partly written block so the file ends with its last complete one. */
  cutBack(): void {
    try {
      this.#file.truncateSync(this.size);
      this.#file.seekSync(this.size, Deno.SeekMode.Start);
    } catch {
      // The file system may refuse even this (EIO); recovery at the next start cuts the file.
    }
  }

  /** Syncs the file to disk (fsync). Throws on failure. */
  sync(): void {
    this.#file.syncSync();
  }
}

/** How a file's blocks are encoded and which helpers may write them; see `openBlockSink`. */
export interface BlockSinkOptions {
  compress: Compression;
  /** Resolved compression level. */
  level: number;
  /** Bytes of a buffer. */
  blockSize: number;
  /** Compress gzip/zstd blocks on this helper thread (used when its slots are `blockSize`). */
  compressor?: BlockCompressor | null;
  /** Write plain (`none`) blocks through glibc's AIO threads, where available. */
  aioPlainWrites?: boolean;
}

/** The sink `options` ask for, or the in-line one where that cannot be used. */
export function openBlockSink(file: BlockFile, options: BlockSinkOptions): BlockSink {
  const { compress, compressor } = options;
  if (compress !== "none" && compressor && compressor.slotSize === options.blockSize) {
    return new HelperSink(file, compressor, compress, options.level);
  }
  if (compress === "none" && options.aioPlainWrites === true && file.fd >= 0) {
    const aio = AsyncWrite.create();
    if (aio !== null) return new AioSink(file, aio, options.blockSize);
  }
  return new InLineSink(file, options);
}

/** Compresses `raw` and appends it to `file` as one block; returns its size on disk. */
function writeInLine(
  file: BlockFile,
  raw: Uint8Array,
  compress: Compression,
  level: number,
): number {
  const out = compressBlock(raw, compress, level);
  file.write(out);
  file.complete(out.length);
  return out.length;
}

function noBlockInFlight(): never {
  throw new Error("No block in flight");
}

/** Every block compressed and written by the calling thread, at once. */
class InLineSink implements BlockSink {
  readonly buffers: readonly Uint8Array[];
  readonly #file: BlockFile;
  readonly #compress: Compression;
  readonly #level: number;

  constructor(file: BlockFile, options: BlockSinkOptions) {
    this.#file = file;
    this.#compress = options.compress;
    this.#level = options.level;
    this.buffers = [new Uint8Array(options.blockSize)];
  }

  put(buffer: Uint8Array, length: number): number {
    return writeInLine(this.#file, buffer.subarray(0, length), this.#compress, this.#level);
  }

  finish(): number {
    noBlockInFlight();
  }

  discard(): void {}
}

/** gzip/zstd blocks compressed on a helper thread, written when collected. */
class HelperSink implements BlockSink {
  /** The compressor's two shared slots. */
  readonly buffers: readonly Uint8Array[];
  readonly #file: BlockFile;
  readonly #compressor: BlockCompressor;
  readonly #compress: Compression;
  readonly #level: number;

  constructor(file: BlockFile, compressor: BlockCompressor, compress: Compression, level: number) {
    this.#file = file;
    this.#compressor = compressor;
    this.#compress = compress;
    this.#level = level;
    this.buffers = [compressor.slot(0), compressor.slot(1)];
  }

  put(buffer: Uint8Array, length: number): number {
    const slot = this.buffers.indexOf(buffer);
    if (slot < 0 || !this.#compressor.ready()) {
      return writeInLine(this.#file, buffer.subarray(0, length), this.#compress, this.#level);
    }
    this.#compressor.submit(slot, length, this.#compress, this.#level);
    return IN_FLIGHT;
  }

  finish(): number {
    const out = this.#compressor.wait();
    this.#file.write(out);
    this.#file.complete(out.length);
    return out.length;
  }

  discard(): void {
    try {
      this.#compressor.wait();
    } catch {
      // Its result is not used.
    }
  }
}

/** Plain blocks written by glibc's AIO threads, collected at the next flush. */
class AioSink implements BlockSink {
  readonly buffers: readonly Uint8Array[];
  readonly #file: BlockFile;
  readonly #aio: AsyncWrite;
  /** The buffer of the block in flight, null when none. */
  #inFlight: Uint8Array | null = null;
  #length = 0;

  constructor(file: BlockFile, aio: AsyncWrite, blockSize: number) {
    this.#file = file;
    this.#aio = aio;
    this.buffers = [new Uint8Array(blockSize), new Uint8Array(blockSize)];
  }

  put(buffer: Uint8Array, length: number): number {
    if (this.buffers.includes(buffer)) {
      try {
        this.#aio.startWrite(this.#file.fd, buffer, length, this.#file.size);
        this.#inFlight = buffer;
        this.#length = length;
        return IN_FLIGHT;
      } catch {
        // It cannot be queued: written in-line.
      }
    }
    return writeInLine(this.#file, buffer.subarray(0, length), "none", 0);
  }

  finish(): number {
    const buffer = this.#inFlight ?? noBlockInFlight();
    const length = this.#length;
    this.#inFlight = null;
    const written = this.#aio.finish();
    // The file's own position, for in-line writes: AIO writes at explicit offsets.
    this.#file.seekPast(written);
    // A short write (the disk filled up mid-block): the rest in-line, which reports the error.
    if (written < length) this.#file.write(buffer.subarray(written, length));
    this.#file.complete(length);
    return length;
  }

  discard(): void {
    if (this.#inFlight === null) return;
    this.#inFlight = null;
    try {
      this.#aio.finish();
    } catch {
      // Its result is not used.
    }
  }
}
