/**
 * Shared-memory layout between BlockCompressor (compressor.ts) and its helper thread
 * (compress_worker.ts).
 */

/** Slots of the Int32 control block. */
export const enum Ctl {
  /** Set to 1 by the helper once it waits for blocks. */
  Ready,
  /** Incremented by the owner for every block handed over. */
  Request,
  /** Set by the helper to the request number it finished. */
  Done,
  /** Non-zero: the helper leaves its loop. */
  Stop,
  /** Raw slot of the block to compress. */
  Slot,
  /** Bytes of the block. */
  Length,
  /** The codec, by its index code (src/pcap/codecs.ts). */
  Kind,
  /** Compression level (already resolved). */
  Level,
  /** Bytes of the compressed block in the output buffer, -1 when compressing failed. */
  Result,
  /** Bytes of the error message, when Result is -1. */
  ErrorLength,
  Slots,
}

/** Longest error message passed back. */
export const ERROR_BYTES = 1024;

/** The helper's setup message: shared buffers and the raw slot size. */
export interface CompressorSetup {
  control: SharedArrayBuffer;
  raw: SharedArrayBuffer;
  output: SharedArrayBuffer;
  error: SharedArrayBuffer;
  slotSize: number;
}
