/**
 * The system's libzstd, opened once per isolate: block compression (src/pcap/zstd_native.ts) and
 * streaming decompression (the decoder in src/pcap/codec/zstd.ts, fed by stream_inflate.ts) share
 * it. null where it cannot be loaded (no libzstd.so.1, or no --allow-ffi): callers then fall back
 * to node:zlib or refuse.
 *
 * @module
 */

const SYMBOLS = {
  ZSTD_createCCtx: { parameters: [], result: "pointer" },
  ZSTD_CCtx_setParameter: { parameters: ["pointer", "i32", "i32"], result: "usize" },
  ZSTD_compress2: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
    result: "usize",
  },
  ZSTD_compressBound: { parameters: ["usize"], result: "usize" },
  ZSTD_createDStream: { parameters: [], result: "pointer" },
  ZSTD_freeDStream: { parameters: ["pointer"], result: "usize" },
  ZSTD_decompressStream: { parameters: ["pointer", "buffer", "buffer"], result: "usize" },
  ZSTD_isError: { parameters: ["usize"], result: "u32" },
  ZSTD_getErrorName: { parameters: ["usize"], result: "pointer" },
} as const;

/** libzstd's functions. */
export type Zstd = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let zstd: Zstd | null | undefined;

/** libzstd, or null when it cannot be loaded here. */
export function loadZstd(): Zstd | null {
  if (zstd === undefined) {
    try {
      zstd = Deno.dlopen("libzstd.so.1", SYMBOLS).symbols;
    } catch {
      zstd = null;
    }
  }
  return zstd;
}

/** libzstd's name for the error a size_t result holds, or null when it holds none. */
export function zstdError(z: Zstd, result: number | bigint): string | null {
  const code = BigInt(result);
  if (z.ZSTD_isError(code) === 0) return null;
  const name = z.ZSTD_getErrorName(code);
  return name === null ? String(code) : Deno.UnsafePointerView.getCString(name);
}
