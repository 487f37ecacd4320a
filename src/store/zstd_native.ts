/**
 * zstd block compression straight through the system's libzstd (FFI), used by compressBlock when
 * it can be loaded.
 *
 * Why: node:zlib's zstdCompressSync goes through a streaming wrapper and compresses the capture
 * bench's 1 MiB blocks at about 300 MB/s on this machine; one ZSTD_compress2 call into a reused
 * output buffer does about 490 MB/s, which is most of the gap between zstd and uncompressed
 * output. The frames are the same kind (content size in the header, checksum), so readers,
 * recovery and `zstd -d` see no difference. Without libzstd or --allow-ffi, callers fall back to
 * node:zlib.
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
  ZSTD_isError: { parameters: ["usize"], result: "u32" },
  ZSTD_getErrorName: { parameters: ["usize"], result: "pointer" },
} as const;

/** ZSTD_cParameter values (zstd.h). */
const ZSTD_C_COMPRESSION_LEVEL = 100;
const ZSTD_C_CONTENT_SIZE_FLAG = 200;
const ZSTD_C_CHECKSUM_FLAG = 201;

type Zstd = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Zstd | null | undefined;
let cctx: Deno.PointerValue = null;
let cctxLevel = -1;
let out = new Uint8Array(0);

function load(): Zstd | null {
  if (lib === undefined) {
    try {
      lib = Deno.dlopen("libzstd.so.1", SYMBOLS).symbols;
      cctx = lib.ZSTD_createCCtx();
      if (cctx === null) lib = null;
    } catch {
      lib = null;
    }
  }
  return lib;
}

function check(z: Zstd, result: number | bigint, what: string): number {
  const code = BigInt(result);
  if (z.ZSTD_isError(code) !== 0) {
    const name = z.ZSTD_getErrorName(code);
    const text = name === null ? String(code) : Deno.UnsafePointerView.getCString(name);
    throw new Error(`zstd ${what} failed: ${text}`);
  }
  return Number(code);
}

/**
 * Compresses `data` into one zstd frame with its content size and a checksum, at `level`; null
 * when libzstd cannot be used here (the caller then uses node:zlib). Returns a new array.
 */
export function zstdCompressNative(data: Uint8Array, level: number): Uint8Array | null {
  const z = load();
  if (z === null) return null;
  if (cctxLevel !== level) {
    check(z, z.ZSTD_CCtx_setParameter(cctx, ZSTD_C_COMPRESSION_LEVEL, level), "level");
    check(z, z.ZSTD_CCtx_setParameter(cctx, ZSTD_C_CONTENT_SIZE_FLAG, 1), "content size");
    check(z, z.ZSTD_CCtx_setParameter(cctx, ZSTD_C_CHECKSUM_FLAG, 1), "checksum");
    cctxLevel = level;
  }
  const bound = Number(z.ZSTD_compressBound(BigInt(data.length)));
  if (out.length < bound) out = new Uint8Array(bound);
  const n = check(
    z,
    z.ZSTD_compress2(cctx, out, BigInt(out.length), data, BigInt(data.length)),
    "compression",
  );
  return out.slice(0, n);
}
