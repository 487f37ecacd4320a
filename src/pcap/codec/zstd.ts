/**
 * zstd blocks: each one frame with the content size in its header and a checksum; a frame's
 * compressed length is found by walking its block headers. Compression through libzstd
 * (zstd_native.ts, FFI) or else node:zlib; streaming through libzstd.
 */
import { constants as zc, zstdCompressSync, zstdDecompressSync, type ZstdOptions } from "node:zlib";
import { loadZstd, zstdError } from "../../../ffi/zstd.ts";
import { zstdCompressNative } from "../zstd_native.ts";
import {
  type BlockMeasure,
  boundedInflate,
  type Codec,
  MAX_UNIT_BYTES,
  MEASURE_INVALID,
  MEASURE_OK,
  needMore,
  plainBytes,
  type ScanUnit,
  STREAM_ABOVE_BYTES,
  StreamCorruption,
  type StreamDecoder,
  unitTooLargeMessage,
} from "./codec.ts";
import type { FileWindow } from "./window.ts";

const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184d2a50-0x184d2a5f. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

/** The zstd codec. */
export const zstd = {
  name: "zstd",
  suffix: ".zst",
  otherSuffixes: [".zstd"],
  indexCode: 2,
  // bench/store_bench.ts: level 1 about twice as fast as 3 on text-heavy frames.
  defaultLevel: 1,
  maxLevel: 22,
  unitName: "zstd frame",
  detect: (head: Uint8Array): boolean =>
    head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f &&
    head[3] === 0xfd,
  compress: compressFrame,
  decompress: (bytes: Uint8Array, _partial: boolean, maxOutputLength: number): Uint8Array =>
    plainBytes(zstdDecompressSync(bytes, { maxOutputLength })),
  measure: measureFrame,
  isForeignStream,
  scanUnit: scanFrame,
  decompressUnits: decompressFrames,
  canStream: (): boolean => loadZstd() !== null,
  streamDecoder: (): StreamDecoder => new ZstdStreamDecoder(),
} as const satisfies Codec;

function compressFrame(data: Uint8Array, level: number): Uint8Array {
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
    measureFrame(out, 0, out.length, m) === MEASURE_OK &&
    m.compressedLength < out.length &&
    m.uncompressedLength === data.length
  ) return new Uint8Array(out.buffer, out.byteOffset, m.compressedLength);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

function measureFrame(bytes: Uint8Array, pos: number, end: number, out: BlockMeasure): number {
  out.skippable = false;
  out.uncompressedLength = -1;
  const have = end - pos;
  if (have < 8) return needMore(out, 8);
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const magic = view.getUint32(pos, true);
  if (isSkippable(magic)) {
    out.skippable = true;
    out.uncompressedLength = 0;
    out.compressedLength = 8 + view.getUint32(pos + 4, true);
    return MEASURE_OK;
  }
  if (magic !== ZSTD_MAGIC) return MEASURE_INVALID;
  const fhd = bytes[pos + 4];
  const fcsSize = contentSizeSize(fhd);
  const p = pos + frameHeaderSize(fhd);
  const fcsPos = p - fcsSize;
  if (p - pos > have) return needMore(out, p - pos);
  if (fcsSize === 1) out.uncompressedLength = bytes[fcsPos];
  else if (fcsSize === 2) out.uncompressedLength = view.getUint16(fcsPos, true) + 256;
  else if (fcsSize === 4) out.uncompressedLength = view.getUint32(fcsPos, true);
  else if (fcsSize === 8) {
    out.uncompressedLength = view.getUint32(fcsPos, true) +
      view.getUint32(fcsPos + 4, true) * 4294967296;
  }
  const blocksEnd = walkBlocks(bytes, p, end);
  if (blocksEnd === RESERVED_BLOCK) return MEASURE_INVALID;
  if (blocksEnd < 0) return needMore(out, -blocksEnd - 2 - pos);
  out.compressedLength = blocksEnd - pos + checksumSize(fhd);
  return MEASURE_OK;
}

/** Whether a frame's first four bytes (little-endian) are a skippable frame's magic. */
function isSkippable(magic: number): boolean {
  return (magic & SKIPPABLE_MASK) === SKIPPABLE_MAGIC;
}

/** Bytes of the content-size field of a frame with descriptor `fhd`. */
function contentSizeSize(fhd: number): number {
  const fcsFlag = fhd >> 6;
  return fcsFlag === 0 ? (fhd >> 5) & 1 : fcsFlag === 1 ? 2 : fcsFlag === 2 ? 4 : 8;
}

/** Bytes from a frame's magic to its first block: magic, descriptor, window, dictionary id, size. */
function frameHeaderSize(fhd: number): number {
  const singleSegment = (fhd >> 5) & 1;
  return 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][fhd & 3] + contentSizeSize(fhd);
}

/** Bytes of the checksum after a frame's last block. */
function checksumSize(fhd: number): number {
  return (fhd >> 2) & 1 ? 4 : 0;
}

/** `walkBlocks` met a block of the reserved type: not a zstd frame. */
const RESERVED_BLOCK = -1;

/**
 * Walks a frame's block headers from `p`: the offset just past its last block (which may lie
 * beyond `end`); RESERVED_BLOCK; or, when a block header lies beyond `end`, -(bytes needed up to
 * offset X) encoded as -X - 2.
 */
function walkBlocks(bytes: Uint8Array, p: number, end: number): number {
  for (;;) {
    if (p + 3 > end) return -(p + 3) - 2;
    const bh = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16);
    const type = (bh >> 1) & 3;
    if (type === 3) return RESERVED_BLOCK;
    p += 3 + (type === 1 ? 1 : bh >>> 3);
    if (bh & 1) return p;
  }
}

function u32le(buf: Uint8Array, at: number): number {
  return (buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)) >>> 0;
}

/** Bytes of the skippable frames at `at` (0 when none), or -1 when `buf` ends inside one. */
function skippableLength(buf: Uint8Array, at: number): number {
  let p = at;
  while (p + 4 <= buf.length && isSkippable(u32le(buf, p))) {
    if (p + 8 > buf.length) return -1;
    p += 8 + u32le(buf, p + 4);
    if (p > buf.length) return -1;
  }
  return p - at;
}

/**
 * Length of the zstd frame at `at`, found by walking its block headers (no decompression);
 * -1 when `buf` ends first, -2 when there is no zstd magic at `at`, -3 for a reserved block type.
 */
function frameLength(buf: Uint8Array, at: number): number {
  if (at + 4 > buf.length) return -1;
  if (u32le(buf, at) !== ZSTD_MAGIC) return -2;
  if (at + 5 > buf.length) return -1;
  const fhd = buf[at + 4];
  const end = walkBlocks(buf, at + frameHeaderSize(fhd), buf.length);
  if (end === RESERVED_BLOCK) return -3;
  if (end < 0) return -1;
  const p = end + checksumSize(fhd);
  return p > buf.length ? -1 : p - at;
}

/** One zstd frame of a file, with any skippable frames before it counted in its compressed span. */
function scanFrame(win: FileWindow, pos: number, limit: number): ScanUnit | null | string {
  let want = 4 * 1024 * 1024;
  for (;;) {
    const avail = win.ensure(pos, want);
    if (avail === 0) return null;
    const v = win.view(pos, avail);
    const atEof = pos + avail >= win.size;
    const skip = skippableLength(v, 0);
    let n = skip < 0 ? -1 : skip === avail ? -4 : frameLength(v, skip);
    if (n === -4) {
      if (atEof) return null;
      n = -1;
    }
    if (n === -1) {
      if (atEof) {
        // A cut-off foreign stream (a frame over 1 MiB compressed that declares no size or more
        // than a block; cutcap's blocks are 1 MiB) is streamed: its complete records stay readable.
        return avail - skip > 1024 * 1024 && isForeignStream(v.subarray(skip))
          ? unitTooLargeMessage(`The zstd frame at byte ${pos}`, limit)
          : `truncated zstd frame at byte ${pos}`;
      }
      if (avail >= limit) return unitTooLargeMessage(`The zstd frame at byte ${pos}`, limit);
      want = avail * 2;
      continue;
    }
    if (n === -2) {
      return win.allZero(pos + skip)
        ? null
        : `trailing data after the last zstd frame at byte ${pos + skip}`;
    }
    if (n === -3) return `corrupt zstd frame at byte ${pos + skip}`;
    const what = `The zstd frame at byte ${pos + skip}`;
    try {
      const frame = v.subarray(skip, skip + n);
      const data = boundedInflate(
        what,
        () => zstdDecompressSync(frame, { maxOutputLength: limit }),
        limit,
      );
      return { skip, compLen: n, data };
    } catch (e) {
      const message = (e as Error).message;
      return message.startsWith(what)
        ? message
        : `corrupt zstd frame at byte ${pos + skip}: ${message}`;
    }
  }
}

/**
 * Decompresses a block of consecutive frames (skippable ones skipped): node:zlib's
 * zstdDecompressSync stops after the first frame, so frames are walked here.
 */
function decompressFrames(comp: Uint8Array): Uint8Array {
  const maxOutputLength = MAX_UNIT_BYTES;
  const parts: Uint8Array[] = [];
  let total = 0;
  for (let at = 0; at < comp.length;) {
    const skip = skippableLength(comp, at);
    if (skip < 0) throw new Error(`Invalid zstd block: skippable frame cut at byte ${at}`);
    at += skip;
    if (at >= comp.length) break;
    const n = frameLength(comp, at);
    if (n < 0) {
      throw new Error(
        `Invalid zstd block: expected a complete frame at byte ${at}, found ${
          n === -1 ? "the end of the data" : n === -2 ? "no zstd magic" : "a reserved block type"
        }`,
      );
    }
    const frame = comp.subarray(at, at + n);
    const d = boundedInflate("A zstd block", () => zstdDecompressSync(frame, { maxOutputLength }));
    parts.push(d);
    total += d.length;
    if (total > MAX_UNIT_BYTES) throw new Error(unitTooLargeMessage("A zstd block"));
    at += n;
  }
  if (parts.length === 1) return plainBytes(parts[0]);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A frame without a content size, or a larger one than STREAM_ABOVE_BYTES, is a foreign stream. */
function isForeignStream(head: Uint8Array): boolean {
  if (head.length < 18) return false;
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

/** libzstd's streaming decompression over consecutive frames (skippable ones included). */
class ZstdStreamDecoder implements StreamDecoder {
  consumed = 0;
  unitEnd = true;
  /** ZSTD_inBuffer: pointer, size, pos. */
  readonly #in = new Uint8Array(24);
  readonly #inView = new DataView(this.#in.buffer);
  /** ZSTD_outBuffer: pointer, size, pos. */
  readonly #out = new Uint8Array(24);
  readonly #outView = new DataView(this.#out.buffer);
  #dstream: Deno.PointerValue;

  constructor() {
    const z = loadZstd();
    if (z === null) {
      throw new Error("Cannot stream zstd: libzstd.so.1 not loadable (needs --allow-ffi)");
    }
    this.#dstream = z.ZSTD_createDStream();
    if (this.#dstream === null) throw new Error("Cannot stream zstd: ZSTD_createDStream failed");
  }

  startsUnit(_first: number): boolean {
    return true; // libzstd judges what follows a frame itself
  }

  decode(input: Uint8Array, inPos: number, inEnd: number, out: Uint8Array): number {
    const z = loadZstd()!;
    const inPtr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(input)) as bigint;
    const outPtr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(out)) as bigint;
    const o = this.#outView;
    o.setBigUint64(0, outPtr, true);
    o.setBigUint64(8, BigInt(out.length), true);
    o.setBigUint64(16, 0n, true);
    const i = this.#inView;
    i.setBigUint64(0, inPtr, true);
    i.setBigUint64(8, BigInt(inEnd), true);
    i.setBigUint64(16, BigInt(inPos), true);
    const rc = z.ZSTD_decompressStream(this.#dstream, this.#out, this.#in);
    const error = zstdError(z, rc);
    if (error !== null) throw new StreamCorruption(`: ${error}`, 0);
    this.consumed = Number(i.getBigUint64(16, true)) - inPos;
    // 0: a frame ended (the next call starts the next frame).
    this.unitEnd = BigInt(rc) === 0n;
    return Number(o.getBigUint64(16, true));
  }

  close(): void {
    if (this.#dstream !== null) loadZstd()!.ZSTD_freeDStream(this.#dstream);
    this.#dstream = null;
  }
}
