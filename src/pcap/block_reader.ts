/**
 * Walks the blocks (gzip members / zstd frames) of a compressed file in order, reading the file
 * in large chunks. Shared by the reader (sequential decoding, block table scans) and crash
 * recovery, which both need to know where each block starts and whether it is complete.
 */
import {
  type BlockMeasure,
  type Compression,
  decompressBlock,
  MEASURE_INVALID,
  MEASURE_NEED_MORE,
  MEASURE_OK,
  MEASURE_UNKNOWN,
  measureBlock,
  readAt,
} from "./block_format.ts";
import { codec } from "./codecs.ts";

const CHUNK = 1 << 20;

/** Iterates over the blocks of a gzip or zstd file; see the module comment. */
export class BlockWalker {
  /** File offset of the current block. */
  fileOffset = 0;
  /** On-disk length of the current block (bytes present, when `truncated`). */
  length = 0;
  /** Uncompressed length the block declares; -1 when it does not say. */
  uncompressedLength = -1;
  /** The block's bytes; valid until the next call of `next`. */
  bytes: Uint8Array = new Uint8Array(0);
  /** True when the file ends inside the current block (it is the last). */
  truncated = false;
  /** True for a gzip stream without cutcap's length field: the block is the rest of the file. */
  foreign = false;
  /** Why the walk stopped early, "" when it reached a clean end. */
  error = "";
  readonly #file: Deno.FsFile;
  readonly #compress: Compression;
  readonly #name: string;
  readonly #measure: BlockMeasure = {
    compressedLength: 0,
    uncompressedLength: -1,
    skippable: false,
  };
  #buf = new Uint8Array(CHUNK);
  /** File offset of #buf[0]. */
  #bufStart: number;
  #bufLen = 0;
  #pos = 0;
  #eof = false;
  #done = false;

  constructor(file: Deno.FsFile, compress: Compression, name: string, start = 0) {
    this.#file = file;
    this.#compress = compress;
    this.#name = name;
    this.#bufStart = start;
  }

  /** Moves to the next block; false at the end of the file or when the data is not a block. */
  next(): boolean {
    if (this.#done) return false;
    const m = this.#measure;
    for (;;) {
      if (this.#pos === this.#bufLen && !this.#more(1)) return this.#stop("");
      const status = measureBlock(this.#buf, this.#pos, this.#bufLen, this.#compress, m);
      if (status === MEASURE_NEED_MORE) {
        if (!this.#more(m.compressedLength)) return this.#truncatedBlock(m.compressedLength);
        continue;
      }
      if (status === MEASURE_INVALID) {
        const kind = codec(this.#compress).unitName;
        return this.#stop(
          `Invalid data in ${this.#name} at offset ${
            this.#bufStart + this.#pos
          }: expected a ${kind}`,
        );
      }
      if (status === MEASURE_UNKNOWN) {
        while (this.#more(this.#bufLen - this.#pos + CHUNK));
        this.foreign = true;
        this.#take(this.#bufLen - this.#pos, -1, false);
        this.#done = true;
        return true;
      }
      if (status === MEASURE_OK) {
        if (!this.#more(m.compressedLength)) return this.#truncatedBlock(m.compressedLength);
        if (m.skippable) {
          this.#pos += m.compressedLength;
          continue;
        }
        this.#take(m.compressedLength, m.uncompressedLength, false);
        return true;
      }
    }
  }

  /**
   * Decompresses the current block. A truncated, corrupt or short block yields what could be
   * decoded, sets `error` and ends the walk. Allocates the result (once per block).
   */
  decode(): Uint8Array {
    const where = `block at offset ${this.fileOffset} of ${this.#name}`;
    if (!this.truncated) {
      try {
        const out = decompressBlock(this.bytes, this.#compress, false);
        if (this.uncompressedLength < 0 || out.length === this.uncompressedLength) return out;
        this.error =
          `Short ${where}: expected ${this.uncompressedLength} bytes, decoded ${out.length}`;
        this.#done = true;
        return out;
      } catch (err) {
        this.error = `Corrupt ${where}: ${err instanceof Error ? err.message : String(err)}`;
        this.#done = true;
      }
    }
    try {
      return decompressBlock(this.bytes, this.#compress, true);
    } catch {
      return new Uint8Array(0);
    }
  }

  #truncatedBlock(needed: number): boolean {
    const have = this.#bufLen - this.#pos;
    this.error = `Truncated block in ${this.#name} at offset ${
      this.#bufStart + this.#pos
    }: expected at least ${needed} bytes, found ${have}`;
    this.#take(have, this.#measure.uncompressedLength, true);
    this.#done = true;
    return true;
  }

  #take(length: number, uncompressedLength: number, truncated: boolean): void {
    this.fileOffset = this.#bufStart + this.#pos;
    this.length = length;
    this.uncompressedLength = uncompressedLength;
    this.truncated = truncated;
    this.bytes = this.#buf.subarray(this.#pos, this.#pos + length);
    this.#pos += length;
  }

  #stop(error: string): boolean {
    this.error = error;
    this.#done = true;
    return false;
  }

  /** Makes `need` bytes available from #pos; false when the file ends first. */
  #more(need: number): boolean {
    while (this.#bufLen - this.#pos < need) {
      if (this.#eof) return false;
      if (this.#pos > 0) {
        this.#buf.copyWithin(0, this.#pos, this.#bufLen);
        this.#bufStart += this.#pos;
        this.#bufLen -= this.#pos;
        this.#pos = 0;
      }
      if (need > this.#buf.length) {
        const grown = new Uint8Array(Math.max(this.#buf.length * 2, need + CHUNK));
        grown.set(this.#buf.subarray(0, this.#bufLen));
        this.#buf = grown;
      }
      const room = this.#buf.length - this.#bufLen;
      const n = readAt(
        this.#file,
        this.#bufStart + this.#bufLen,
        this.#buf.subarray(this.#bufLen),
        room,
      );
      if (n < room) this.#eof = true;
      this.#bufLen += n;
    }
    return true;
  }
}
