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

import { loadZstd, type Zstd, zstdError } from "../../ffi/zstd.ts";

/** ZSTD_cParameter values (zstd.h). */
const ZSTD_C_COMPRESSION_LEVEL = 100;
const ZSTD_C_CONTENT_SIZE_FLAG = 200;
const ZSTD_C_CHECKSUM_FLAG = 201;

let cctx: Deno.PointerValue = null;
let cctxLevel = -1;
let out = new Uint8Array(0);

/** libzstd with this isolate's compression context, or null when either is missing. */
function load(): Zstd | null {
  const z = loadZstd();
  if (z === null) return null;
  cctx ??= z.ZSTD_createCCtx();
  return cctx === null ? null : z;
}

function check(z: Zstd, result: number | bigint, what: string): number {
  const error = zstdError(z, result);
  if (error !== null) throw new Error(`zstd ${what} failed: ${error}`);
  return Number(result);
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
