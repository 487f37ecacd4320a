/**
 * Streaming decompression of a gzip or zstd file section with bounded buffers, synchronously,
 * through the system's libz and libzstd (FFI) — for foreign pcaps compressed as one stream larger
 * than a block may be (MAX_UNIT_BYTES). node:zlib's synchronous calls return a unit's whole
 * output, so they cannot stream; its streaming classes are asynchronous, and the scan and the
 * record reader are synchronous. Memory is the input and output buffers plus the decoder's window
 * (32 KiB for deflate, at most 128 MiB for zstd's largest default window), never the
 * uncompressed size. Consecutive gzip members and zstd frames (and skippable frames) are read on.
 * The decoding itself is each codec's (codec/*.ts `streamDecoder`).
 *
 * @module
 */
import { StreamCorruption, type StreamDecoder } from "./codec/codec.ts";
import { codec, type Compression } from "./codecs.ts";

/** Whether this process can stream-decompress `compress` (libz/libzstd loadable, --allow-ffi). */
export function canStream(compress: Compression): boolean {
  return codec(compress).canStream();
}

/** Compressed bytes read from the file at once. */
const INPUT_BYTES = 1024 * 1024;

/** Decompresses a file from a compressed offset to its end, a bounded piece per `read`. */
export class StreamInflater {
  readonly #file: Deno.FsFile;
  readonly #compress: Compression;
  readonly #decoder: StreamDecoder;
  readonly #input = new Uint8Array(INPUT_BYTES);
  #inputPos = 0;
  #inputLen = 0;
  #filePos: number;
  readonly #fileEnd: number;
  #ended = false;
  /** At the start of a unit (gzip member, zstd frame), where the data may end cleanly. */
  #unitStart = true;
  #error: Error | null = null;
  #closed = false;
  /** Bytes decompressed so far. */
  produced = 0;

  /** `file` stays owned by the caller; reading starts at `start` and ends at `end`. */
  constructor(file: Deno.FsFile, compress: Compression, start: number, end: number) {
    this.#file = file;
    this.#compress = compress;
    this.#filePos = start;
    this.#fileEnd = end;
    this.#decoder = codec(compress).streamDecoder();
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
        n += this.#decode(out.subarray(n));
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
    if (this.#closed) return;
    this.#closed = true;
    this.#decoder.close();
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

  #decode(out: Uint8Array): number {
    const decoder = this.#decoder;
    if (this.#unitStart && !decoder.startsUnit(this.#input[this.#inputPos])) {
      // Padding after the last unit (zeros), which gzip tools ignore.
      this.#ended = this.#input.subarray(this.#inputPos, this.#inputLen).every((b) => b === 0);
      if (!this.#ended) {
        throw new Error(
          `trailing data after a ${codec(this.#compress).unitName} at byte ${this.compressedPos}`,
        );
      }
      return 0;
    }
    try {
      const produced = decoder.decode(this.#input, this.#inputPos, this.#inputLen, out);
      this.#inputPos += decoder.consumed;
      this.#unitStart = decoder.unitEnd;
      return produced;
    } catch (err) {
      if (!(err instanceof StreamCorruption)) throw err;
      this.#inputPos += err.consumed;
      throw new Error(
        `corrupt ${this.#compress} data near byte ${this.compressedPos}${err.detail}`,
      );
    }
  }
}
