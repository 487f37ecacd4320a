/**
 * Reads pcap records at known offsets of the uncompressed stream — what the index hands the query. Plain
 * files are read through a sliding window; compressed files one block at a time (only the blocks holding
 * wanted packets are decompressed). Offsets must be asked for in ascending order per reader. A block
 * larger than STREAM_ABOVE_BYTES (a foreign file compressed as one big stream, streamed by the scan) is
 * stream-decompressed from its start, skipping to the wanted records, with bounded buffers: slower
 * than a block of cutcap's own, but memory stays independent of the uncompressed size.
 */
import {
  type Compression,
  decompressBlockRange,
  findBlock,
  STREAM_ABOVE_BYTES,
} from "./block_format.ts";
import { StreamInflater } from "./stream_inflate.ts";
import { MAX_CAPLEN, sniffMagic } from "./format.ts";

/** Largest read from a plain file at once: the span of the wanted records it covers, at most this. */
export const READ_WINDOW = 256 * 1024;

/** One record, valid until the next read. */
export interface RecordView {
  bytes: Uint8Array;
  /** Offset of the 16-byte record header in `bytes`. */
  at: number;
  tsSec: number;
  tsFrac: number;
  caplen: number;
  wireLen: number;
}

/** Reads records of one pcap file by their uncompressed offsets. */
export class RecordReader {
  readonly #file: Deno.FsFile;
  readonly #path: string;
  readonly #compress: Compression;
  readonly #blocks: Float64Array;
  readonly #littleEndian: boolean;
  /** True when the file's timestamps count nanoseconds. */
  readonly nanosecond: boolean;
  #buffer: Uint8Array = new Uint8Array(0);
  /** Uncompressed offset of #buffer[0]. */
  #bufferStart = 0;
  /** Valid bytes in #buffer (a plain file's reads reuse one buffer). */
  #bufferLength = 0;
  /** The reused read buffer of a plain file. */
  #scratch: Uint8Array = new Uint8Array(0);
  #view: DataView = new DataView(new ArrayBuffer(0));
  /** The streamed block being read (see the module doc), its window and where it starts. */
  #stream: StreamInflater | null = null;
  #streamBlock = -1;
  #streamBuffer: Uint8Array = new Uint8Array(0);
  #streamStart = 0;
  #streamLength = 0;
  readonly record: RecordView = {
    bytes: this.#buffer,
    at: 0,
    tsSec: 0,
    tsFrac: 0,
    caplen: 0,
    wireLen: 0,
  };

  /**
   * `options.file`: the file already open (an open output file, held across its rename); the
   * reader closes it. Otherwise `path` is opened.
   */
  constructor(
    path: string,
    options: { compress: Compression; blocks: Float64Array; file?: Deno.FsFile },
  ) {
    this.#path = path;
    this.#file = options.file ?? Deno.openSync(path, { read: true });
    this.#compress = options.compress;
    this.#blocks = options.blocks;
    const magic = this.#readMagic();
    this.#littleEndian = magic.littleEndian;
    this.nanosecond = magic.nanosecond;
  }

  /**
   * Reads the record whose header starts at `offset`; throws naming the file when it is not there.
   * `spanEnd` is where the caller's next wanted records end (as far as it knows): a plain file is
   * read up to there (at most READ_WINDOW), not a whole window, when the wanted records are sparse.
   */
  read(offset: number, spanEnd = offset + READ_WINDOW): RecordView {
    if (!this.#holds(offset, 16)) this.#load(offset, 16, spanEnd);
    const header = offset - this.#bufferStart;
    const view = this.#view;
    const le = this.#littleEndian;
    const caplen = view.getUint32(header + 8, le);
    if (caplen > MAX_CAPLEN) {
      throw new Error(`${this.#path}: record at offset ${offset} claims ${caplen} bytes`);
    }
    if (!this.#holds(offset, 16 + caplen)) this.#load(offset, 16 + caplen, spanEnd);
    const at = offset - this.#bufferStart;
    const record = this.record;
    record.bytes = this.#buffer;
    record.at = at;
    record.tsSec = this.#view.getUint32(at, le);
    record.tsFrac = this.#view.getUint32(at + 4, le);
    record.caplen = caplen;
    record.wireLen = this.#view.getUint32(at + 12, le);
    return record;
  }

  close(): void {
    this.#stream?.close();
    this.#file.close();
  }

  #holds(offset: number, length: number): boolean {
    return offset >= this.#bufferStart &&
      offset + length <= this.#bufferStart + this.#bufferLength;
  }

  /** Brings [offset, offset+length) into the buffer: a window of a plain file, or the block holding it. */
  #load(offset: number, length: number, spanEnd: number): void {
    if (this.#compress === "none") {
      const want = Math.max(length, Math.min(READ_WINDOW, spanEnd - offset));
      if (this.#scratch.length < want) this.#scratch = new Uint8Array(Math.max(want, READ_WINDOW));
      this.#setBuffer(this.#scratch, offset, this.#readInto(this.#scratch, offset, want));
    } else {
      const block = findBlock(this.#blocks, offset);
      if (block < 0) throw new Error(`${this.#path}: no block holds offset ${offset}`);
      const b = this.#blocks;
      if (b[block * 4 + 1] > STREAM_ABOVE_BYTES || b[block * 4 + 3] > STREAM_ABOVE_BYTES) {
        this.#loadStreamed(block, offset, length);
      } else {
        this.#loadBlock(block);
      }
    }
    if (!this.#holds(offset, length)) {
      throw new Error(
        `${this.#path}: record at offset ${offset} is cut short (file damaged or truncated)`,
      );
    }
  }

  /** Decompresses one block whole. */
  #loadBlock(block: number): void {
    const b = this.#blocks;
    {
      const compressed = new Uint8Array(b[block * 4 + 1]);
      const n = this.#readInto(compressed, b[block * 4], compressed.length);
      const bytes = decompressBlockRange(compressed.subarray(0, n), this.#compress);
      this.#setBuffer(bytes, b[block * 4 + 2], bytes.length);
    }
  }

  /**
   * Brings [offset, offset+length) of a streamed block into the stream window, decompressing on
   * from where the window is (from the block's start when the offset lies behind it).
   */
  #loadStreamed(block: number, offset: number, length: number): void {
    const b = this.#blocks;
    if (this.#stream === null || this.#streamBlock !== block || offset < this.#streamStart) {
      this.#stream?.close();
      const start = b[block * 4];
      this.#stream = new StreamInflater(
        this.#file,
        this.#compress,
        start,
        start + b[block * 4 + 1],
      );
      this.#streamBlock = block;
      this.#streamStart = b[block * 4 + 2];
      this.#streamLength = 0;
      if (this.#streamBuffer.length === 0) {
        this.#streamBuffer = new Uint8Array(READ_WINDOW * 4 + MAX_CAPLEN + 16);
      }
    }
    const buffer = this.#streamBuffer;
    const stream = this.#stream;
    try {
      // Skip whole windows before the offset.
      while (this.#streamStart + this.#streamLength <= offset) {
        this.#streamStart += this.#streamLength;
        this.#streamLength = stream.read(buffer);
        if (this.#streamLength === 0) break;
      }
      const drop = Math.min(offset - this.#streamStart, this.#streamLength);
      buffer.copyWithin(0, drop, this.#streamLength);
      this.#streamStart += drop;
      this.#streamLength -= drop;
      if (this.#streamLength < length) {
        this.#streamLength += stream.read(buffer.subarray(this.#streamLength));
      }
    } catch (e) {
      throw new Error(`${this.#path}: ${(e as Error).message}`);
    }
    this.#setBuffer(buffer, this.#streamStart, this.#streamLength);
  }

  #setBuffer(bytes: Uint8Array, start: number, length: number): void {
    if (bytes !== this.#buffer) {
      this.#buffer = bytes;
      this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    this.#bufferStart = start;
    this.#bufferLength = length;
  }

  /** Reads up to `length` bytes at `position` into `out` from its start; returns how many. */
  #readInto(out: Uint8Array, position: number, length: number): number {
    this.#file.seekSync(position, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < length) {
      const n = this.#file.readSync(out.subarray(filled, length));
      if (n === null || n === 0) break;
      filled += n;
    }
    return filled;
  }

  /** Byte order and precision of the file, from its magic (uncompressed offset 0). */
  #readMagic(): { littleEndian: boolean; nanosecond: boolean } {
    this.#load(0, 24, 24);
    const magic = this.#view.getUint32(0, true);
    const sniffed = sniffMagic(magic);
    if (sniffed !== null) return sniffed;
    throw new Error(`${this.#path}: not a pcap file (magic 0x${magic.toString(16)})`);
  }
}
