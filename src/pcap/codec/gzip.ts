/**
 * gzip blocks: each a complete gzip member (RFC 1952) carrying one extra-field subfield (FEXTRA,
 * ID "CC", 8 bytes: member length and uncompressed length, both u32 little-endian), so a reader
 * finds block boundaries by reading 24-byte headers instead of inflating everything, like BGZF
 * does. gzip tools ignore the field. Compression through node:zlib; streaming through libz (FFI).
 */
import { constants as zc, gunzipSync, gzipSync, inflateRawSync } from "node:zlib";
import { loadZlib } from "../../../ffi/zlib.ts";
import {
  type BlockMeasure,
  boundedInflate,
  type Codec,
  MAX_UNIT_BYTES,
  MEASURE_INVALID,
  MEASURE_OK,
  MEASURE_UNKNOWN,
  needMore,
  plainBytes,
  type ScanUnit,
  StreamCorruption,
  type StreamDecoder,
  unitTooLargeMessage,
} from "./codec.ts";
import type { FileWindow } from "./window.ts";

/** Size of the gzip member header cutcap writes (10 fixed + 2 XLEN + 12 subfield). */
export const GZIP_HEADER_SIZE = 24;
const GZIP_XLEN = 12;

/** The gzip codec. */
export const gzip = {
  name: "gzip",
  suffix: ".gz",
  otherSuffixes: [],
  indexCode: 1,
  // bench/store_bench.ts: level 1 writes about twice as fast as 6 for 1-3 points of ratio.
  defaultLevel: 1,
  maxLevel: 9,
  unitName: "gzip member",
  detect: (head: Uint8Array): boolean => head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b,
  compress: compressMember,
  decompress: (bytes: Uint8Array, partial: boolean, maxOutputLength: number): Uint8Array =>
    plainBytes(
      partial
        ? gunzipSync(bytes, { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength })
        : gunzipSync(bytes, { maxOutputLength }),
    ),
  measure: measureMember,
  isForeignStream(head: Uint8Array): boolean {
    const m: BlockMeasure = { compressedLength: 0, uncompressedLength: -1, skippable: false };
    return measureMember(head, 0, head.length, m) === MEASURE_UNKNOWN;
  },
  scanUnit: scanMember,
  // gunzip reads consecutive members on.
  decompressUnits: (comp: Uint8Array): Uint8Array =>
    plainBytes(
      boundedInflate("A gzip block", () => gunzipSync(comp, { maxOutputLength: MAX_UNIT_BYTES })),
    ),
  canStream: (): boolean => loadZlib() !== null,
  streamDecoder: (): StreamDecoder => new GzipStreamDecoder(),
} as const satisfies Codec;

function compressMember(data: Uint8Array, level: number): Uint8Array {
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

function measureMember(bytes: Uint8Array, pos: number, end: number, out: BlockMeasure): number {
  out.skippable = false;
  out.uncompressedLength = -1;
  const have = end - pos;
  if (have < 10) return needMore(out, 10);
  if (bytes[pos] !== 0x1f || bytes[pos + 1] !== 0x8b) return MEASURE_INVALID;
  if ((bytes[pos + 3] & 0x04) === 0) return MEASURE_UNKNOWN;
  if (have < GZIP_HEADER_SIZE) return needMore(out, GZIP_HEADER_SIZE);
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  if (
    view.getUint16(pos + 10, true) !== GZIP_XLEN || bytes[pos + 12] !== 0x43 ||
    bytes[pos + 13] !== 0x43 || view.getUint16(pos + 14, true) !== 8
  ) return MEASURE_UNKNOWN;
  out.compressedLength = view.getUint32(pos + 16, true);
  out.uncompressedLength = view.getUint32(pos + 20, true);
  if (out.compressedLength < GZIP_HEADER_SIZE + 10) return MEASURE_INVALID;
  return MEASURE_OK;
}

/** One gzip member at `pos` of a file (a foreign one too: its length found by inflating it). */
function scanMember(win: FileWindow, pos: number, limit: number): ScanUnit | null | string {
  let avail = win.ensure(pos, 65536);
  let h = win.view(pos, avail);
  if (h[0] !== 0x1f || h[1] !== 0x8b) {
    return win.allZero(pos) ? null : `trailing data after the last gzip member at byte ${pos}`;
  }
  if (avail < 10) return `truncated gzip header at byte ${pos}`;
  if (h[2] !== 8) return `unsupported gzip method ${h[2]} at byte ${pos}: expected 8 (deflate)`;
  const flg = h[3];
  let p = 10;
  if (flg & 4) p += 2 + (h[10] | (h[11] << 8));
  if (flg & 8) {
    while (p < avail && h[p] !== 0) p++;
    p++;
  }
  if (flg & 16) {
    while (p < avail && h[p] !== 0) p++;
    p++;
  }
  if (flg & 2) p += 2;
  if (p >= avail) return `truncated gzip header at byte ${pos}`;
  // Inflate with a window that grows until the member's end (and 8-byte trailer) is inside it.
  let want = Math.max(avail, 4 * 1024 * 1024);
  for (;;) {
    avail = win.ensure(pos, want);
    h = win.view(pos, avail);
    const atEof = pos + avail >= win.size;
    let res: { buffer: Uint8Array; engine: { bytesWritten: number } };
    try {
      res = boundedInflate(`The gzip member at byte ${pos}`, () =>
        inflateRawSync(
          h.subarray(p),
          {
            info: true,
            finishFlush: zc.Z_SYNC_FLUSH,
            maxOutputLength: limit,
          } as unknown as Parameters<typeof inflateRawSync>[1],
        ), limit) as unknown as typeof res;
    } catch (e) {
      const message = (e as Error).message;
      return message.startsWith("The gzip member")
        ? message
        : `corrupt gzip member at byte ${pos}: ${message}`;
    }
    const used = res.engine.bytesWritten;
    // With Z_SYNC_FLUSH a cut-off stream returns what it could; the stream ended only if input
    // remains for the 8-byte trailer after the consumed deflate data.
    if (p + used + 8 <= avail) {
      return { skip: 0, compLen: p + used + 8, data: res.buffer };
    }
    if (atEof) return `truncated gzip member at byte ${pos}`;
    if (avail >= limit) return unitTooLargeMessage(`The gzip member at byte ${pos}`, limit);
    want = avail * 2;
  }
}

/** z_stream on LP64 (zlib.h): 112 bytes. */
const Z_STREAM_SIZE = 112;
const Z_OK = 0;
const Z_STREAM_END = 1;
const Z_BUF_ERROR = -5;
const Z_NO_FLUSH = 0;

/** libz's inflate over consecutive members. */
class GzipStreamDecoder implements StreamDecoder {
  consumed = 0;
  unitEnd = true;
  readonly #state = new Uint8Array(Z_STREAM_SIZE);
  readonly #view = new DataView(this.#state.buffer);

  constructor() {
    const z = loadZlib();
    if (z === null) {
      throw new Error("Cannot stream gzip: libz.so.1 not loadable (needs --allow-ffi)");
    }
    const version = z.zlibVersion();
    const versionBytes = new TextEncoder().encode(
      `${version === null ? "1" : Deno.UnsafePointerView.getCString(version)}\0`,
    );
    // 15 + 16: a gzip wrapper, 32 KiB window.
    const rc = z.inflateInit2_(this.#state, 31, versionBytes, Z_STREAM_SIZE);
    if (rc !== Z_OK) throw new Error(`Cannot stream gzip: inflateInit2 failed (${rc})`);
  }

  startsUnit(first: number): boolean {
    return first === 0x1f;
  }

  decode(input: Uint8Array, inPos: number, inEnd: number, out: Uint8Array): number {
    const z = loadZlib()!;
    const s = this.#view;
    const inPtr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(input)) as bigint;
    const outPtr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(out)) as bigint;
    s.setBigUint64(0, inPtr + BigInt(inPos), true);
    s.setUint32(8, inEnd - inPos, true);
    s.setBigUint64(24, outPtr, true);
    s.setUint32(32, out.length, true);
    const rc = z.inflate(this.#state, Z_NO_FLUSH);
    this.consumed = inEnd - inPos - s.getUint32(8, true);
    if (rc === Z_STREAM_END) {
      z.inflateReset(this.#state);
      this.unitEnd = true;
    } else if (rc === Z_OK || rc === Z_BUF_ERROR) {
      this.unitEnd = false;
    } else {
      throw new StreamCorruption(` (zlib error ${rc})`, this.consumed);
    }
    return out.length - s.getUint32(32, true);
  }

  close(): void {
    loadZlib()!.inflateEnd(this.#state);
  }
}
