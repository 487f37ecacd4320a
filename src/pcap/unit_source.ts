/**
 * The units of any compressed pcap file (gzip: one stream or independent members; zstd: one frame
 * or independent frames; each codec finds its units, codec/*.ts `scanUnit`), decompressed in order
 * for the reader's tcpdump rules (reader.ts, `accept: "tcpdump"`), with the block table a query
 * needs to seek: a record that straddles two units (only possible in files other tools
 * compressed) merges them into one block, so every record lies inside one block, and a file
 * compressed as one stream yields one block. A unit is decompressed whole only up to
 * STREAM_ABOVE_BYTES: from a larger one on (a foreign file compressed as one big stream, or a
 * decompression bomb) the rest of the file is stream-decompressed with bounded buffers
 * (stream_inflate.ts) and becomes one streamed block, so memory never follows the uncompressed size.
 */
import { codec, type Compression } from "./codecs.ts";
import { MAX_UNIT_BYTES, STREAM_ABOVE_BYTES } from "./codec/codec.ts";
import type { Codec } from "./codec/codec.ts";
import { FileWindow } from "./codec/window.ts";
import { canStream, StreamInflater } from "./stream_inflate.ts";

/** What every unit-too-large message says (unitTooLargeMessage). */
const TOO_LARGE = `decompresses to more than ${STREAM_ABOVE_BYTES / 1048576} MiB`;
/** Decompressed bytes handed out at once while streaming. */
const STREAM_CHUNK = 1024 * 1024;
/** Numbers per unit: compOffset, compLen, uncompOffset, uncompLen, joinWithNext. */
const ROW = 5;

/** Decompressed pieces of a compressed file, unit by unit; see the module comment. */
export class UnitSource {
  /** Why the units ended before the file did, "" when they did not. */
  error = "";
  /** True once the rest of the file is being stream-decompressed (a unit too large to hold). */
  streaming = false;
  /** Decompressed bytes handed out so far. */
  produced = 0;
  readonly #file: Deno.FsFile;
  readonly #compress: Compression;
  readonly #codec: Codec;
  readonly #size: number;
  readonly #win: FileWindow;
  readonly #streams: boolean;
  #pos = 0;
  #done = false;
  #inflater: StreamInflater | null = null;
  #chunk: Uint8Array = new Uint8Array(0);
  #rows = new Float64Array(ROW * 64);
  #n = 0;
  /** Unit holding the start of the last record noted (records come in order). */
  #at = 0;

  constructor(file: Deno.FsFile, compress: Compression) {
    this.#file = file;
    this.#compress = compress;
    this.#codec = codec(compress);
    this.#size = file.statSync().size;
    this.#win = new FileWindow(file, this.#size);
    this.#streams = canStream(compress);
  }

  /** The next piece of decompressed data (possibly empty), or null at the end or an error. */
  next(): Uint8Array | null {
    if (this.#inflater !== null) return this.#nextStreamed();
    if (this.#done || this.#pos >= this.#size) return null;
    const limit = this.#streams ? STREAM_ABOVE_BYTES : MAX_UNIT_BYTES;
    const u = this.#codec.scanUnit(this.#win, this.#pos, limit);
    if (u === null) {
      this.#done = true;
      return null;
    }
    if (typeof u === "string" && u.includes(TOO_LARGE) && this.#streams) {
      // The rest of the file becomes one streamed block (see the module comment).
      this.#push(this.#pos, this.#size - this.#pos, 0);
      this.streaming = true;
      this.#inflater = new StreamInflater(this.#file, this.#compress, this.#pos, this.#size);
      this.#chunk = new Uint8Array(STREAM_CHUNK);
      return this.#nextStreamed();
    }
    if (typeof u === "string") {
      this.error = u;
      this.#done = true;
      return null;
    }
    // The block starts at the frame itself, so that a reader can hand it to a decompressor as is.
    this.#push(this.#pos + u.skip, u.compLen, u.data.length);
    this.#pos += u.skip + u.compLen;
    return u.data;
  }

  /**
   * Notes a record (or the global header) at decompressed offsets [start, end): when it straddles
   * units, they are joined into one block.
   */
  noteRecord(start: number, end: number): void {
    const r = this.#rows;
    while (this.#at < this.#n - 1 && r[this.#at * ROW + 2] + r[this.#at * ROW + 3] <= start) {
      this.#at++;
    }
    for (let i = this.#at; i < this.#n - 1 && r[i * ROW + 2] + r[i * ROW + 3] < end; i++) {
      r[i * ROW + 4] = 1;
    }
  }

  /** The block table (4 numbers per block): units joined by straddling records merged. */
  blockTable(): Float64Array {
    const r = this.#rows;
    const out: number[] = [];
    for (let i = 0; i < this.#n;) {
      let j = i;
      while (j < this.#n - 1 && r[j * ROW + 4] === 1) j++;
      const compOff = r[i * ROW];
      const compEnd = r[j * ROW] + r[j * ROW + 1];
      const unOff = r[i * ROW + 2];
      const unEnd = r[j * ROW + 2] + r[j * ROW + 3];
      if (unEnd > unOff) out.push(compOff, compEnd - compOff, unOff, unEnd - unOff);
      i = j + 1;
    }
    return Float64Array.from(out);
  }

  close(): void {
    this.#inflater?.close();
    this.#inflater = null;
  }

  #nextStreamed(): Uint8Array | null {
    if (this.#done) return null;
    let n: number;
    try {
      n = this.#inflater!.read(this.#chunk);
    } catch (e) {
      this.error = (e as Error).message;
      n = 0;
    }
    if (n === 0) {
      this.#done = true;
      return null;
    }
    this.#rows[(this.#n - 1) * ROW + 3] += n;
    this.produced += n;
    return this.#chunk.subarray(0, n);
  }

  #push(compOffset: number, compLength: number, length: number): void {
    if (this.#n * ROW === this.#rows.length) {
      const grown = new Float64Array(this.#rows.length * 2);
      grown.set(this.#rows);
      this.#rows = grown;
    }
    this.#rows.set([compOffset, compLength, this.produced, length, 0], this.#n * ROW);
    this.#n++;
    this.produced += length;
  }
}
