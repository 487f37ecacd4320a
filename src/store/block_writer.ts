/**
 * Assembles output in one large reusable buffer and writes it to the file a block at a time:
 * as is (`none`), or as one gzip member / zstd frame (see block_format.ts).
 *
 * Writes are synchronous because this runs inside a capture worker with nothing else to do. A
 * write error (ENOSPC, EIO, read-only or deleted file system) never throws: it is counted, its
 * message kept, the block dropped and the file cut back to its last complete block, and `failed`
 * is set so the owner can move on to a new file.
 *
 * With a BlockCompressor (compressor.ts), a gzip/zstd block is compressed on a helper thread
 * while the next one fills, and written at the next `flush()` or at `drain()`: the block "in
 * flight". Its write error surfaces then; that block and the pending one are both dropped and
 * the stream ends at the last block written (`streamOffset` goes back there), so offsets handed
 * out for them are at or past the file's decompressed size, as for any lost block.
 *
 * Uncompressed blocks go the same way with `asyncWrite`: a full block is written by glibc's AIO
 * threads (ffi/aio.ts) while the next one fills, in a second buffer, and collected at the next
 * flush: the kernel's copy into the page cache (~18 % of a capture worker's time) runs on
 * another core.
 */
import {
  BlockTable,
  compressBlock,
  type Compression,
  resolveLevel,
  writeFully,
} from "../pcap/block_format.ts";
import type { Writeback } from "./writeback.ts";
import type { BlockCompressor } from "./compressor.ts";
import { AsyncWrite } from "../../ffi/aio.ts";

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
  /** Compresses gzip/zstd blocks on a helper thread (see the module comment). */
  compressor?: BlockCompressor | null;
  /** Writes uncompressed blocks asynchronously (see the module comment); needs `writeback`'s
   * descriptor and FFI, else writes stay in-line. */
  asyncWrite?: boolean;
}

/** Writes a decompressed pcap stream to a file as a sequence of blocks. */
export class BlockWriter {
  /** The buffer being filled; bytes [0, used) are the pending block. */
  buffer: Uint8Array;
  /** DataView over `buffer`, for header fields. */
  view: DataView;
  /** Bytes of the pending block. */
  used = 0;
  /**
   * Decompressed-stream offset of `buffer[0]`: bytes of the stream written to disk so far, plus
   * the block in flight (see `inFlightBytes`).
   */
  streamOffset = 0;
  /** Uncompressed bytes of the block being compressed on the helper thread, 0 when none. */
  inFlightBytes = 0;
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
  /** The helper-thread compressor, null when blocks are compressed in-line. */
  #compressor: BlockCompressor | null;
  /** The compressor's slot `buffer` is (0 or 1); -1 while `buffer` is a private one. */
  #slot = -1;
  #slots: Uint8Array[] = [];
  #slotViews: DataView[] = [];
  /** Asynchronous writes of uncompressed blocks; null when blocks are written in-line. */
  readonly #aio: AsyncWrite | null = null;
  /** The file's descriptor, for #aio. */
  readonly #fd: number = -1;
  /** The buffer of the block #aio is writing. */
  #aioBuffer: Uint8Array | null = null;

  constructor(file: Deno.FsFile, options: BlockWriterOptions & BlockWriterInternals = {}) {
    this.#file = file;
    this.#writeback = options.writeback ?? null;
    this.compress = options.compress ?? "none";
    this.level = resolveLevel(this.compress, options.level);
    const size = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!(size >= 4096)) throw new Error(`Invalid block size ${size}: expected at least 4096`);
    const c = options.compressor ?? null;
    this.#compressor = this.compress !== "none" && c !== null && c.slotSize === size ? c : null;
    if (this.compress === "none" && options.asyncWrite === true && this.#writeback !== null) {
      this.#aio = AsyncWrite.create();
      this.#fd = this.#writeback.fd;
    }
    // Two slots, filled and handed over in turn: the compressor's shared ones, or our own for
    // asynchronous writes.
    const slots = this.#compressor;
    if (slots !== null || this.#aio !== null) {
      for (let i = 0; i < 2; i++) {
        const slot = slots !== null ? slots.slot(i) : new Uint8Array(size);
        this.#slots.push(slot);
        this.#slotViews.push(new DataView(slot.buffer, slot.byteOffset, slot.byteLength));
      }
      this.#slot = 0;
      this.buffer = this.#slots[0];
      this.view = this.#slotViews[0];
    } else {
      this.buffer = new Uint8Array(size);
      this.view = new DataView(this.buffer.buffer);
    }
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
    // Larger than a slot: this block gets a private buffer and is compressed and written in-line.
    this.#slot = -1;
    this.buffer = new Uint8Array(bytes);
    this.view = new DataView(this.buffer.buffer);
  }

  /**
   * Writes the pending bytes as one block, or with a compressor hands them over and writes the
   * block in flight before (see the module comment). Returns false when a write failed (the
   * pending block and any block in flight are dropped); never throws.
   */
  flush(): boolean {
    if (this.inFlightBytes > 0 && !this.#writeInFlight()) return false;
    if (this.used === 0) return true;
    const c = this.#compressor;
    if (c !== null && this.#slot >= 0 && c.ready()) {
      c.submit(this.#slot, this.used, this.compress, this.level);
      this.#handedOver();
      return true;
    }
    if (this.#aio !== null && this.#slot >= 0 && this.#startAsync()) return true;
    const raw = this.buffer.subarray(0, this.used);
    try {
      this.#write(compressBlock(raw, this.compress, this.level), this.used);
      this.streamOffset += this.used;
      this.used = 0;
      return true;
    } catch (err) {
      this.#fail(err);
      return false;
    } finally {
      // Back from a private (grown) buffer to the slots.
      if (this.#slots.length > 0 && this.#slot < 0) this.#useSlot(0);
    }
  }

  /**
   * Writes the block in flight, if any (waits for its compression). Returns false when that
   * failed; the pending bytes are then dropped too.
   */
  drain(): boolean {
    return this.inFlightBytes === 0 || this.#writeInFlight();
  }

  /** Waits for the block in flight without writing it (the file is being abandoned). */
  discard(): void {
    if (this.inFlightBytes === 0) return;
    try {
      if (this.#aio !== null) this.#aio.finish();
      else this.#compressor?.wait();
    } catch {
      // Its result is not used.
    }
    this.streamOffset -= this.inFlightBytes;
    this.inFlightBytes = 0;
  }

  #writeInFlight(): boolean {
    const length = this.inFlightBytes;
    this.inFlightBytes = 0;
    // The stream offset of the block in flight: streamOffset already counts it.
    this.streamOffset -= length;
    try {
      if (this.#aio !== null) this.#finishAsync(length);
      else this.#write((this.#compressor as BlockCompressor).wait(), length);
      this.streamOffset += length;
      return true;
    } catch (err) {
      this.#fail(err);
      return false;
    }
  }

  /**
   * Starts the asynchronous write of the pending block at the end of the file and switches to
   * the other buffer; false when it cannot be queued (the block is then written in-line).
   */
  #startAsync(): boolean {
    const aio = this.#aio as AsyncWrite;
    try {
      aio.startWrite(this.#fd, this.buffer, this.used, this.bytesOnDisk);
    } catch {
      return false;
    }
    this.#aioBuffer = this.buffer;
    this.#handedOver();
    return true;
  }

  /** The pending block is in flight now: count it and fill the other slot. */
  #handedOver(): void {
    this.inFlightBytes = this.used;
    this.streamOffset += this.used;
    this.used = 0;
    this.#useSlot(this.#slot ^ 1);
  }

  /** Fills slot `i` from now on. */
  #useSlot(i: number): void {
    this.#slot = i;
    this.buffer = this.#slots[i];
    this.view = this.#slotViews[i];
  }

  /** Collects the asynchronous write of the block in flight (`length` bytes); throws its error. */
  #finishAsync(length: number): void {
    const written = (this.#aio as AsyncWrite).finish();
    // The file's own position, for in-line writes: AIO writes at explicit offsets.
    this.#file.seekSync(this.bytesOnDisk + written, Deno.SeekMode.Start);
    // A short write (the disk filled up mid-block): the rest in-line, which reports the error.
    if (written < length) {
      writeFully(this.#file, (this.#aioBuffer as Uint8Array).subarray(written, length));
    }
    this.#writeback?.start(this.bytesOnDisk, length);
    this.blocks.push(this.bytesOnDisk, length, this.streamOffset, length);
    this.bytesOnDisk += length;
  }

  /** Appends one block (compressed bytes `out` holding `length` stream bytes) to the file. */
  #write(out: Uint8Array, length: number): void {
    writeFully(this.#file, out);
    this.#writeback?.start(this.bytesOnDisk, out.length);
    this.blocks.push(this.bytesOnDisk, out.length, this.streamOffset, length);
    this.bytesOnDisk += out.length;
  }

  #fail(err: unknown): void {
    this.writeErrors++;
    this.lastError = err instanceof Error ? err.message : String(err);
    this.used = 0;
    this.failed = true;
    this.#cutBack();
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
