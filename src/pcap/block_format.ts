/**
 * Compressed block framing shared by the writer, the reader and crash recovery.
 *
 * A compressed output file is a sequence of independent blocks, each a complete gzip member or
 * zstd frame, so `zcat F | tcpdump -r -` works and a reader can start decompressing at any block.
 * Every block holds whole pcap records (block 0 also holds the global header).
 *
 * gzip members carry one extra-field subfield (RFC 1952 FEXTRA, ID "CC", 8 bytes: member length
 * and uncompressed length, both u32 little-endian), so a reader finds block boundaries by reading
 * 24-byte headers instead of inflating everything, like BGZF does. gzip tools ignore the field.
 * zstd frames carry the content size in the frame header and a checksum; their compressed length
 * is found by walking the frame's block headers.
 */
import {
  constants as zc,
  gunzipSync,
  gzipSync,
  zstdCompressSync,
  zstdDecompressSync,
  type ZstdOptions,
} from "node:zlib";
import { zstdCompressNative } from "./zstd_native.ts";

/** How output blocks are compressed. */
export type Compression = "none" | "gzip" | "zstd";

/** Size of the gzip member header cutcap writes (10 fixed + 2 XLEN + 12 subfield). */
export const GZIP_HEADER_SIZE = 24;
const GZIP_XLEN = 12;
const ZSTD_MAGIC = 0xfd2fb528;

/** Detects the compression of a file from its first bytes (at least 4). */
export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (
    head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f &&
    head[3] === 0xfd
  ) return "zstd";
  return "none";
}

/** The file name suffix for a compression (`""`, `".gz"`, `".zst"`). */
export function compressionSuffix(compress: Compression): string {
  return compress === "gzip" ? ".gz" : compress === "zstd" ? ".zst" : "";
}

/**
 * Default compression level: 1 for both. bench/store_bench.ts: gzip 1 writes about twice as fast
 * as gzip 6 for 1-3 points of ratio; zstd 1 about twice as fast as zstd 3 on text-heavy frames.
 */
export function defaultLevel(compress: Compression): number {
  return compress === "none" ? 0 : 1;
}

/**
 * The level to use: `level` when given and not 0, else the default. Throws when it is out of
 * range for the compression (gzip 1-9, zstd 1-22), so a bad option fails at start, not per block.
 */
export function resolveLevel(compress: Compression, level?: number): number {
  if (level === undefined || level === 0 || compress === "none") return defaultLevel(compress);
  const max = compress === "gzip" ? 9 : 22;
  if (!Number.isInteger(level) || level < 1 || level > max) {
    throw new Error(`Invalid ${compress} level ${level}: expected 1-${max} (0 = default)`);
  }
  return level;
}

/**
 * Compresses `data` into one self-contained block (gzip member or zstd frame). Allocates the
 * result; called once per block, never per packet.
 */
export function compressBlock(data: Uint8Array, compress: Compression, level: number): Uint8Array {
  if (compress === "none") return data;
  if (compress === "zstd") {
    const native = zstdCompressNative(data, level);
    if (native !== null) return native;
    // pledgedSrcSize (missing from the type definitions) puts the content size in the frame
    // header, which lets a reader learn block sizes without decompressing.
    const options: ZstdOptions & { pledgedSrcSize: number } = {
      pledgedSrcSize: data.length,
      params: {
        [zc.ZSTD_c_compressionLevel]: level,
        [zc.ZSTD_c_contentSizeFlag]: 1,
        [zc.ZSTD_c_checksumFlag]: 1,
      },
    };
    const out = zstdCompressSync(data, options);
    // Sometimes zlib's streaming end adds an empty second frame after the one holding all the
    // data; drop it so every block is exactly one frame.
    const m: BlockMeasure = { compressedLength: 0, uncompressedLength: -1, skippable: false };
    if (
      measureBlock(out, 0, out.length, "zstd", m) === MEASURE_OK &&
      m.compressedLength < out.length &&
      m.uncompressedLength === data.length
    ) return new Uint8Array(out.buffer, out.byteOffset, m.compressedLength);
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  }
  const g = gzipSync(data, { level });
  if (g[3] !== 0) throw new Error(`Unexpected gzip header flags: expected 0, found ${g[3]}`);
  // Replace zlib's plain 10-byte header by one with the "CC" length subfield; the deflate data,
  // CRC32 and ISIZE that follow are kept as they are.
  const total = GZIP_HEADER_SIZE + g.length - 10;
  const out = new Uint8Array(total);
  out.set(g.subarray(0, 10), 0);
  out[3] = 0x04; // FEXTRA
  const view = new DataView(out.buffer);
  view.setUint16(10, GZIP_XLEN, true);
  out[12] = 0x43; // 'C'
  out[13] = 0x43; // 'C'
  view.setUint16(14, 8, true);
  view.setUint32(16, total, true);
  view.setUint32(20, data.length, true);
  out.set(g.subarray(10), GZIP_HEADER_SIZE);
  return out;
}

/**
 * Most bytes one unit of compressed data (a gzip member, a zstd frame, a block of an index's table)
 * may decompress to, and most compressed bytes read for one: cutcap writes 1 MiB blocks, and the
 * bound keeps a decompression bomb (a small file that inflates to gigabytes) from taking the
 * sensor's memory. Larger units are refused with `unitTooLargeMessage`.
 */
export const MAX_UNIT_BYTES = 64 * 1024 * 1024;

/**
 * A unit that decompresses to more than this is stream-decompressed (stream_inflate.ts) rather
 * than whole, when this process can stream: cutcap's own blocks are 1 MiB, and a bound well below
 * MAX_UNIT_BYTES keeps the trial decompression that finds out cheap.
 */
export const STREAM_ABOVE_BYTES = 8 * 1024 * 1024;

/**
 * Whether the file whose first bytes are `head` is not made of blocks of cutcap's kind (a gzip
 * stream without cutcap's length field, a zstd frame without a content size or a large one), so
 * that reading it in order should stream it rather than decode block by block.
 */
export function isForeignStream(head: Uint8Array, compress: Compression): boolean {
  if (compress === "gzip") {
    const m: BlockMeasure = { compressedLength: 0, uncompressedLength: -1, skippable: false };
    return measureBlock(head, 0, head.length, compress, m) === MEASURE_UNKNOWN;
  }
  if (compress !== "zstd" || head.length < 18) return false;
  const view = new DataView(head.buffer, head.byteOffset, head.length);
  if (view.getUint32(0, true) !== ZSTD_MAGIC) return false;
  // Frame header: descriptor, window byte unless single segment, dictionary id, content size.
  const fhd = head[4];
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][fhd & 3];
  if (fcsFlag === 0 && !singleSegment) return true;
  const size = fcsFlag === 0
    ? head[at]
    : fcsFlag === 1
    ? view.getUint16(at, true) + 256
    : fcsFlag === 2
    ? view.getUint32(at, true)
    : Number(view.getBigUint64(at, true));
  return size > STREAM_ABOVE_BYTES;
}

/** Why a unit was refused: what it is, where, and what to do. */
export function unitTooLargeMessage(what: string, limit = MAX_UNIT_BYTES): string {
  return `${what} decompresses to more than ${limit / 1048576} MiB: expected ` +
    `blocks of at most that (cutcap writes 1 MiB blocks); decompress the file and index the ` +
    `plain pcap instead`;
}

/**
 * Runs a node:zlib call given `maxOutputLength: limit`, turning its RangeError (output over the
 * bound, thrown as soon as it is passed) into a clear Error about `what`.
 */
export function boundedInflate<T>(what: string, inflate: () => T, limit = MAX_UNIT_BYTES): T {
  try {
    return inflate();
  } catch (error) {
    if (error instanceof RangeError) throw new Error(unitTooLargeMessage(what, limit));
    throw error;
  }
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
  const maxOutputLength = MAX_UNIT_BYTES;
  const out = boundedInflate(
    `A ${compress} block`,
    () =>
      compress === "zstd"
        ? zstdDecompressSync(bytes, { maxOutputLength })
        : partial
        ? gunzipSync(bytes, { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength })
        : gunzipSync(bytes, { maxOutputLength }),
  );
  // A plain Uint8Array view, so callers never see Node's Buffer type.
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** Result of measuring a block in a byte window, see `measureBlock`. */
export interface BlockMeasure {
  /** Total bytes of the block (member or frame), or the bytes needed to learn more. */
  compressedLength: number;
  /** Uncompressed length, -1 when the block does not say (a foreign file). */
  uncompressedLength: number;
  /** True for a zstd skippable frame (holds no pcap data). */
  skippable: boolean;
}

/** `measureBlock` found the whole block inside the window. */
export const MEASURE_OK = 0;
/** The window ends before the block's length is known; `compressedLength` = bytes needed. */
export const MEASURE_NEED_MORE = 1;
/** The bytes are not a block cutcap can measure (a foreign gzip member: unknown length). */
export const MEASURE_UNKNOWN = 2;
/** The bytes are not a gzip member / zstd frame at all. */
export const MEASURE_INVALID = 3;

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
  out.skippable = false;
  out.uncompressedLength = -1;
  const have = end - pos;
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  if (compress === "gzip") {
    if (have < 10) return needMore(out, 10);
    if (bytes[pos] !== 0x1f || bytes[pos + 1] !== 0x8b) return MEASURE_INVALID;
    if ((bytes[pos + 3] & 0x04) === 0) return MEASURE_UNKNOWN;
    if (have < GZIP_HEADER_SIZE) return needMore(out, GZIP_HEADER_SIZE);
    if (
      view.getUint16(pos + 10, true) !== GZIP_XLEN || bytes[pos + 12] !== 0x43 ||
      bytes[pos + 13] !== 0x43 || view.getUint16(pos + 14, true) !== 8
    ) return MEASURE_UNKNOWN;
    out.compressedLength = view.getUint32(pos + 16, true);
    out.uncompressedLength = view.getUint32(pos + 20, true);
    if (out.compressedLength < GZIP_HEADER_SIZE + 10) return MEASURE_INVALID;
    return MEASURE_OK;
  }
  if (have < 8) return needMore(out, 8);
  const magic = view.getUint32(pos, true);
  if ((magic & 0xfffffff0) === 0x184d2a50) {
    out.skippable = true;
    out.uncompressedLength = 0;
    out.compressedLength = 8 + view.getUint32(pos + 4, true);
    return MEASURE_OK;
  }
  if (magic !== ZSTD_MAGIC) return MEASURE_INVALID;
  const fhd = bytes[pos + 4];
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const dictFlag = fhd & 3;
  const fcsSize = fcsFlag === 0 ? singleSegment : fcsFlag === 1 ? 2 : fcsFlag === 2 ? 4 : 8;
  const dictSize = dictFlag === 3 ? 4 : dictFlag;
  const fcsPos = pos + 5 + (singleSegment ? 0 : 1) + dictSize;
  let p = fcsPos + fcsSize;
  if (p - pos > have) return needMore(out, p - pos);
  if (fcsSize === 1) out.uncompressedLength = bytes[fcsPos];
  else if (fcsSize === 2) out.uncompressedLength = view.getUint16(fcsPos, true) + 256;
  else if (fcsSize === 4) out.uncompressedLength = view.getUint32(fcsPos, true);
  else if (fcsSize === 8) {
    out.uncompressedLength = view.getUint32(fcsPos, true) +
      view.getUint32(fcsPos + 4, true) * 4294967296;
  }
  for (;;) {
    if (p + 3 > end) return needMore(out, p + 3 - pos);
    const bh = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16);
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    if (type === 3) return MEASURE_INVALID;
    p += 3 + (type === 1 ? 1 : bh >>> 3);
    if (last) break;
  }
  out.compressedLength = p - pos + (checksum ? 4 : 0);
  return MEASURE_OK;
}

function needMore(out: BlockMeasure, bytes: number): number {
  out.compressedLength = bytes;
  return MEASURE_NEED_MORE;
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
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const start = this.data[mid * 4 + 2];
      if (offset < start) hi = mid - 1;
      else if (offset >= start + this.data[mid * 4 + 3]) lo = mid + 1;
      else return mid;
    }
    return -1;
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
