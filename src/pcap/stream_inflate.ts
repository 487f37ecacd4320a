/**
 * Streaming decompression of a gzip or zstd file section with bounded buffers, synchronously,
 * through the system's libz and libzstd (FFI) — for foreign pcaps compressed as one stream larger
 * than a block may be (MAX_UNIT_BYTES). node:zlib's synchronous calls return a unit's whole
 * output, so they cannot stream; its streaming classes are asynchronous, and the scan and the
 * record reader are synchronous. Memory is the input and output buffers plus the decoder's window
 * (32 KiB for deflate, at most 128 MiB for zstd's largest default window), never the
 * uncompressed size. Consecutive gzip members and zstd frames (and skippable frames) are read on.
 *
 * @module
 */
import { loadZlib } from "../../ffi/zlib.ts";
import { loadZstd, zstdError } from "../../ffi/zstd.ts";
import type { Compression } from "./block_format.ts";

/** Whether this process can stream-decompress `compress` (libz/libzstd loadable, --allow-ffi). */
export function canStream(compress: Compression): boolean {
  if (compress === "gzip") return loadZlib() !== null;
  if (compress === "zstd") return loadZstd() !== null;
  return false;
}

/** Compressed bytes read from the file at once. */
const INPUT_BYTES = 1024 * 1024;
/** z_stream on LP64 (zlib.h): 112 bytes. */
const Z_STREAM_SIZE = 112;
const Z_OK = 0;
const Z_STREAM_END = 1;
const Z_BUF_ERROR = -5;
const Z_NO_FLUSH = 0;

/** Decompresses a file from a compressed offset to its end, a bounded piece per `read`. */
export class StreamInflater {
  readonly #file: Deno.FsFile;
  readonly #compress: Compression;
  readonly #input = new Uint8Array(INPUT_BYTES);
  #inputPos = 0;
  #inputLen = 0;
  #filePos: number;
  readonly #fileEnd: number;
  #ended = false;
  /** At the start of a gzip member / zstd frame (where the data may end cleanly). */
  #unitStart = true;
  #error: Error | null = null;
  /** z_stream for gzip; two buffer structs (out, in: pointer, size, pos) for zstd. */
  readonly #state: Uint8Array;
  readonly #stateView: DataView;
  readonly #zstdOut = new Uint8Array(24);
  readonly #zstdOutView = new DataView(this.#zstdOut.buffer);
  #dstream: Deno.PointerValue = null;
  /** Bytes decompressed so far. */
  produced = 0;

  /** `file` stays owned by the caller; reading starts at `start` and ends at `end`. */
  constructor(file: Deno.FsFile, compress: Compression, start: number, end: number) {
    this.#file = file;
    this.#compress = compress;
    this.#filePos = start;
    this.#fileEnd = end;
    if (compress === "gzip") {
      const z = loadZlib();
      if (z === null) {
        throw new Error("Cannot stream gzip: libz.so.1 not loadable (needs --allow-ffi)");
      }
      this.#state = new Uint8Array(Z_STREAM_SIZE);
      const version = z.zlibVersion();
      const versionBytes = new TextEncoder().encode(
        `${version === null ? "1" : Deno.UnsafePointerView.getCString(version)}\0`,
      );
      // 15 + 16: a gzip wrapper, 32 KiB window.
      const rc = z.inflateInit2_(this.#state, 31, versionBytes, Z_STREAM_SIZE);
      if (rc !== Z_OK) throw new Error(`Cannot stream gzip: inflateInit2 failed (${rc})`);
    } else {
      const z = loadZstd();
      if (z === null) {
        throw new Error("Cannot stream zstd: libzstd.so.1 not loadable (needs --allow-ffi)");
      }
      this.#state = new Uint8Array(24);
      this.#dstream = z.ZSTD_createDStream();
      if (this.#dstream === null) throw new Error("Cannot stream zstd: ZSTD_createDStream failed");
    }
    this.#stateView = new DataView(this.#state.buffer);
  }

  /** Compressed offset of the next unread input byte. */
  get compressedPos(): number {
    return this.#filePos - (this.#inputLen - this.#inputPos);
  }

  /**
   * Fills `out` from its start with up to `out.length` decompressed bytes; returns how many, 0 at the
   * end. Throws for corrupt or truncated data (naming the compressed offset).
   */
  read(out: Uint8Array): number {
    if (this.#error !== null) throw this.#error;
    let n = 0;
    try {
      while (n < out.length && !this.#ended) {
        if (this.#inputPos === this.#inputLen && !this.#refill()) {
          if (!this.#unitStart) {
            throw new Error(`truncated ${this.#compress} data at byte ${this.compressedPos}`);
          }
          this.#ended = true;
          break;
        }
        const piece = out.subarray(n);
        n += this.#compress === "gzip" ? this.#inflate(piece) : this.#zstd(piece);
      }
    } catch (err) {
      // The bytes decoded before the damage are still handed out; the error comes next call.
      this.#error = err instanceof Error ? err : new Error(String(err));
      if (n === 0) throw this.#error;
    }
    this.produced += n;
    return n;
  }

  close(): void {
    if (this.#compress === "gzip") loadZlib()!.inflateEnd(this.#state);
    else if (this.#dstream !== null) loadZstd()!.ZSTD_freeDStream(this.#dstream);
    this.#dstream = null;
  }

  #refill(): boolean {
    const want = Math.min(this.#input.length, this.#fileEnd - this.#filePos);
    if (want <= 0) return false;
    this.#file.seekSync(this.#filePos, Deno.SeekMode.Start);
    const got = this.#file.readSync(this.#input.subarray(0, want));
    if (got === null || got === 0) return false;
    this.#filePos += got;
    this.#inputPos = 0;
    this.#inputLen = got;
    return true;
  }

  #inflate(out: Uint8Array): number {
    const z = loadZlib()!;
    const s = this.#stateView;
    if (this.#unitStart && this.#input[this.#inputPos] !== 0x1f) {
      // Padding after the last member (zeros), which gzip tools ignore.
      this.#ended = this.#input.subarray(this.#inputPos, this.#inputLen).every((b) => b === 0);
      if (!this.#ended) {
        throw new Error(`trailing data after a gzip member at byte ${this.compressedPos}`);
      }
      return 0;
    }
    const inPtr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#input)) as bigint;
    const outPtr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(out)) as bigint;
    s.setBigUint64(0, inPtr + BigInt(this.#inputPos), true);
    s.setUint32(8, this.#inputLen - this.#inputPos, true);
    s.setBigUint64(24, outPtr, true);
    s.setUint32(32, out.length, true);
    const rc = z.inflate(this.#state, Z_NO_FLUSH);
    const availIn = s.getUint32(8, true);
    const produced = out.length - s.getUint32(32, true);
    this.#inputPos = this.#inputLen - availIn;
    if (rc === Z_STREAM_END) {
      z.inflateReset(this.#state);
      this.#unitStart = true;
    } else if (rc === Z_OK || rc === Z_BUF_ERROR) {
      this.#unitStart = false;
    } else {
      throw new Error(`corrupt gzip data near byte ${this.compressedPos} (zlib error ${rc})`);
    }
    return produced;
  }

  #zstd(out: Uint8Array): number {
    const z = loadZstd()!;
    const inPtr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#input)) as bigint;
    const outPtr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(out)) as bigint;
    const o = this.#zstdOutView;
    o.setBigUint64(0, outPtr, true);
    o.setBigUint64(8, BigInt(out.length), true);
    o.setBigUint64(16, 0n, true);
    const i = this.#stateView;
    i.setBigUint64(0, inPtr, true);
    i.setBigUint64(8, BigInt(this.#inputLen), true);
    i.setBigUint64(16, BigInt(this.#inputPos), true);
    const rc = z.ZSTD_decompressStream(this.#dstream, this.#zstdOut, this.#state);
    const error = zstdError(z, rc);
    if (error !== null) {
      throw new Error(`corrupt zstd data near byte ${this.compressedPos}: ${error}`);
    }
    this.#inputPos = Number(i.getBigUint64(16, true));
    // 0: a frame ended (the next call starts the next frame).
    this.#unitStart = BigInt(rc) === 0n;
    return Number(o.getBigUint64(16, true));
  }
}
