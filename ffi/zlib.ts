/**
 * The system's libz, for streaming inflation with bounded buffers (the decoder in
 * src/pcap/codec/gzip.ts): node:zlib's synchronous calls return a unit's whole output. null where
 * it cannot be loaded (no libz.so.1, or no --allow-ffi).
 *
 * @module
 */

const SYMBOLS = {
  inflateInit2_: { parameters: ["buffer", "i32", "buffer", "i32"], result: "i32" },
  inflate: { parameters: ["buffer", "i32"], result: "i32" },
  inflateReset: { parameters: ["buffer"], result: "i32" },
  inflateEnd: { parameters: ["buffer"], result: "i32" },
  zlibVersion: { parameters: [], result: "pointer" },
} as const;

/** libz's functions. */
export type Zlib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let zlib: Zlib | null | undefined;

/** libz, or null when it cannot be loaded here. */
export function loadZlib(): Zlib | null {
  if (zlib === undefined) {
    try {
      zlib = Deno.dlopen("libz.so.1", SYMBOLS).symbols;
    } catch {
      zlib = null;
    }
  }
  return zlib;
}
