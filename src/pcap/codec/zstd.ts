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
  type Codec,
  MEASURE_INVALID,
  MEASURE_OK,
  needMore,
  plainBytes,
  STREAM_ABOVE_BYTES,
  StreamCorruption,
  type StreamDecoder,
} from "./codec.ts";

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
  if ((magic & SKIPPABLE_MASK) === SKIPPABLE_MAGIC) {
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
