/**
 * Compressed block framing shared by the writer, the reader and crash recovery.
 *
 * A compressed output file is a sequence of independent blocks, each a complete unit of its codec
 * (a gzip member, a zstd frame: codec/gzip.ts, codec/zstd.ts), so `zcat F | tcpdump -r -` works
 * and a reader can start decompressing at any block. Every block holds whole pcap records (block
 * 0 also holds the global header). The functions here pick the codec from the table (codecs.ts).
 */
import {
  type BlockMeasure,
  boundedInflate,
  MAX_UNIT_BYTES,
  MEASURE_INVALID,
} from "./codec/codec.ts";
import { codec, type Compression } from "./codecs.ts";

export {
  type BlockMeasure,
  boundedInflate,
  MAX_UNIT_BYTES,
  MEASURE_INVALID,
  MEASURE_NEED_MORE,
  MEASURE_OK,
  MEASURE_UNKNOWN,
  STREAM_ABOVE_BYTES,
  unitTooLargeMessage,
} from "./codec/codec.ts";
export { GZIP_HEADER_SIZE } from "./codec/gzip.ts";
export { type Compression, detectCompression } from "./codecs.ts";

/** The file name suffix for a compression (`""`, `".gz"`, `".zst"`). */
export function compressionSuffix(compress: Compression): string {
  return codec(compress).suffix;
}

/** Default compression level (0 for none; see each codec for why its default). */
export function defaultLevel(compress: Compression): number {
  return codec(compress).defaultLevel;
}

/**
 * The level to use: `level` when given and not 0, else the default. Throws when it is out of
 * the codec's range (gzip 1-9, zstd 1-22), so a bad option fails at start, not per block.
 */
export function resolveLevel(compress: Compression, level?: number): number {
  const c = codec(compress);
  if (level === undefined || level === 0 || c.maxLevel === 0) return c.defaultLevel;
  if (!Number.isInteger(level) || level < 1 || level > c.maxLevel) {
    throw new Error(`Invalid ${compress} level ${level}: expected 1-${c.maxLevel} (0 = default)`);
  }
  return level;
}

/**
 * Compresses `data` into one self-contained block (gzip member or zstd frame). Allocates the
 * result; called once per block, never per packet.
 */
export function compressBlock(data: Uint8Array, compress: Compression, level: number): Uint8Array {
  return codec(compress).compress(data, level);
}

/**
 * Whether the file whose first bytes are `head` is not made of blocks of cutcap's kind (a gzip
 * stream without cutcap's length field, a zstd frame without a content size or a large one), so
 * that reading it in order should stream it rather than decode block by block.
 */
export function isForeignStream(head: Uint8Array, compress: Compression): boolean {
  return codec(compress).isForeignStream(head);
}

/**
 * Decompresses one block (at most `MAX_UNIT_BYTES`). With `partial`, a truncated block yields what
 * its complete part decodes to instead of throwing (used for damaged files). Throws on corrupt data.
 */
export function decompressBlock(
  bytes: Uint8Array,
  compress: Compression,
  partial: boolean,
): Uint8Array {
  if (compress === "none") return bytes;
  const c = codec(compress);
  return boundedInflate(`A ${compress} block`, () => c.decompress(bytes, partial, MAX_UNIT_BYTES));
}

/**
 * Decompresses one block of a block table (`file[compOffset, compOffset + compLen)`), which may
 * hold several units (a foreign file's records straddling gzip members or zstd frames); at most
 * MAX_UNIT_BYTES.
 */
export function decompressBlockRange(comp: Uint8Array, compress: Compression): Uint8Array {
  return codec(compress).decompressUnits(comp);
}

/**
 * Index of the block of `blocks` (4 numbers per block, see BlockTable) holding decompressed-stream
 * offset `offset`, or -1.
 */
export function findBlock(blocks: Float64Array, offset: number): number {
  let lo = 0;
  let hi = (blocks.length >> 2) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const start = blocks[mid * 4 + 2];
    if (offset < start) hi = mid - 1;
    else if (offset >= start + blocks[mid * 4 + 3]) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/**
 * Measures the block starting at `bytes[pos]` (window ends at `end`). Returns one of the
 * MEASURE_* codes and fills `out`. Never reads past `end`.
 */
export function measureBlock(
  bytes: Uint8Array,
  pos: number,
  end: number,
  compress: Compression,
  out: BlockMeasure,
): number {
  return compress === "none" ? MEASURE_INVALID : codec(compress).measure(bytes, pos, end, out);
}

/**
 * Table of a file's blocks: for block i, its file offset, compressed length, uncompressed start
 * (offset in the decompressed pcap stream) and uncompressed length. One growable Float64Array,
 * four numbers per block, so recording a block allocates nothing until the array doubles.
 */
export class BlockTable {
  /** Number of blocks. */
  count = 0;
  /** Four numbers per block: fileOffset, compressedLength, uncompressedStart, uncompressedLength. */
  data: Float64Array;

  constructor(capacity = 64) {
    this.data = new Float64Array(Math.max(capacity, 1) * 4);
  }

  /** Wraps (without copying) a table saved with `toFloat64Array`, e.g. read from an index. */
  static fromFloat64Array(values: Float64Array): BlockTable {
    if (values.length % 4 !== 0) {
      throw new Error(
        `Invalid block table: expected a multiple of 4 numbers, found ${values.length}`,
      );
    }
    const table = new BlockTable(1);
    table.data = values.length > 0 ? values : table.data;
    table.count = values.length / 4;
    return table;
  }

  /** Appends a block. */
  push(
    fileOffset: number,
    compressedLength: number,
    uncompressedStart: number,
    uncompressedLength: number,
  ): void {
    if ((this.count + 1) * 4 > this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    const i = this.count * 4;
    this.data[i] = fileOffset;
    this.data[i + 1] = compressedLength;
    this.data[i + 2] = uncompressedStart;
    this.data[i + 3] = uncompressedLength;
    this.count++;
  }

  /** File offset of block `i`. */
  fileOffset(i: number): number {
    return this.data[i * 4];
  }

  /** Compressed (on-disk) length of block `i`. */
  compressedLength(i: number): number {
    return this.data[i * 4 + 1];
  }

  /** Offset of block `i`'s first byte in the decompressed stream. */
  uncompressedStart(i: number): number {
    return this.data[i * 4 + 2];
  }

  /** Decompressed length of block `i`. */
  uncompressedLength(i: number): number {
    return this.data[i * 4 + 3];
  }

  /** Index of the block holding decompressed-stream offset `offset`, or -1. */
  find(offset: number): number {
    return findBlock(this.data.subarray(0, this.count * 4), offset);
  }

  /** An exact-length copy of the table's numbers (4 per block). */
  toFloat64Array(): Float64Array {
    return this.data.slice(0, this.count * 4);
  }
}

/** Writes all of `bytes` at the file's current position (writeSync may write less). */
export function writeFully(file: Deno.FsFile, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    const n = file.writeSync(done === 0 ? bytes : bytes.subarray(done));
    if (n <= 0) throw new Error(`Short write: expected ${bytes.length - done} bytes, wrote ${n}`);
    done += n;
  }
}

/** Reads up to `length` bytes at file offset `position` into `into` (from 0); returns bytes read. */
export function readAt(
  file: Deno.FsFile,
  position: number,
  into: Uint8Array,
  length: number,
): number {
  file.seekSync(position, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = file.readSync(into.subarray(done, length));
    if (n === null || n === 0) break;
    done += n;
  }
  return done;
}
