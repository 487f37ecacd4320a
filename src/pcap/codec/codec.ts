/**
 * What a block codec provides (one file per codec beside this one, listed in ../codecs.ts), and the
 * bounds every codec's decompression keeps.
 */
import type { FileWindow } from "./window.ts";

/** A way of compressing a pcap file in independent blocks; see ../codecs.ts. */
export interface Codec {
  /** The `--compress` value and the name in messages. */
  readonly name: string;
  /** File name suffix cutcap writes (`""`, `".gz"`, `".zst"`). */
  readonly suffix: string;
  /** Suffixes other tools give such files, recognised when naming a replayed file. */
  readonly otherSuffixes: readonly string[];
  /** Value in an index's flags word (bits 1-2, see index_format.ts). */
  readonly indexCode: number;
  /** The level used when none is given (0: the codec has no levels). */
  readonly defaultLevel: number;
  /** Highest level (levels run from 1; 0: the codec has no levels). */
  readonly maxLevel: number;
  /** What one block is called in messages ("gzip member"). */
  readonly unitName: string;
  /** Whether a file starting with `head` (at least 4 bytes when there are) is of this codec. */
  detect(head: Uint8Array): boolean;
  /** One self-contained block holding `data`. Allocates the result; once per block. */
  compress(data: Uint8Array, level: number): Uint8Array;
  /**
   * One block's bytes, at most `maxOutputLength` (throws RangeError beyond). With `partial`, a
   * truncated block yields what its complete part decodes to.
   */
  decompress(bytes: Uint8Array, partial: boolean, maxOutputLength: number): Uint8Array;
  /** Measures the block at `bytes[pos]` (window ends at `end`): a MEASURE_* code, `out` filled. */
  measure(bytes: Uint8Array, pos: number, end: number, out: BlockMeasure): number;
  /**
   * Whether a file starting with `head` is not made of blocks of cutcap's kind (so reading it in
   * order should stream it rather than decode block by block).
   */
  isForeignStream(head: Uint8Array): boolean;
  /**
   * Decodes the unit at file offset `pos` of any file of this codec (foreign ones too), at most
   * `limit` bytes of output: null at a clean end, a string saying why it is unreadable (a
   * `unitTooLargeMessage` when it is larger than `limit`).
   */
  scanUnit(win: FileWindow, pos: number, limit: number): ScanUnit | null | string;
  /**
   * Decompresses a block of an index's block table, which may hold several units (a foreign
   * file's records straddling them); at most MAX_UNIT_BYTES.
   */
  decompressUnits(comp: Uint8Array): Uint8Array;
  /** Whether this process can stream-decompress (native library loadable, --allow-ffi). */
  canStream(): boolean;
  /** A streaming decoder (bounded buffers, for large foreign units); throws when it cannot. */
  streamDecoder(): StreamDecoder;
}

/**
 * A located compressed unit of a foreign file (unit_source.ts): its compressed length and its
 * decompressed bytes.
 */
export interface ScanUnit {
  /** Bytes before the unit's data that hold no pcap data (zstd skippable frames). */
  skip: number;
  compLen: number;
  data: Uint8Array;
}

/** Decodes one codec's stream in pieces; see stream_inflate.ts, which feeds it. */
export interface StreamDecoder {
  /**
   * Decodes from `input[inPos, inEnd)` into `out`; returns bytes produced and sets `consumed`
   * and `unitEnd` (a member/frame ended: the data may end cleanly here). Throws a
   * StreamCorruption on corrupt data.
   */
  decode(input: Uint8Array, inPos: number, inEnd: number, out: Uint8Array): number;
  /** Input bytes the last `decode` used. */
  consumed: number;
  /** The last `decode` ended a unit. */
  unitEnd: boolean;
  /** Whether `first`, the first byte of a unit, can start one (else: trailing data or padding). */
  startsUnit(first: number): boolean;
  /** Frees the decoder's native state. */
  close(): void;
}

/** Corrupt data met by a StreamDecoder; the caller names the offset. */
export class StreamCorruption extends Error {
  /**
   * `detail` follows "corrupt <codec> data near byte N"; `consumed`: input bytes used before
   * the error was found.
   */
  constructor(readonly detail: string, readonly consumed: number) {
    super(detail);
  }
}

/** Result of measuring a block in a byte window, see `Codec.measure`. */
export interface BlockMeasure {
  /** Total bytes of the block (member or frame), or the bytes needed to learn more. */
  compressedLength: number;
  /** Uncompressed length, -1 when the block does not say (a foreign file). */
  uncompressedLength: number;
  /** True for a zstd skippable frame (holds no pcap data). */
  skippable: boolean;
}

/** `measure` found the whole block inside the window. */
export const MEASURE_OK = 0;
/** The window ends before the block's length is known; `compressedLength` = bytes needed. */
export const MEASURE_NEED_MORE = 1;
/** The bytes are not a block cutcap can measure (a foreign gzip member: unknown length). */
export const MEASURE_UNKNOWN = 2;
/** The bytes are not a block of this codec at all. */
export const MEASURE_INVALID = 3;

/** Sets `out` for MEASURE_NEED_MORE: `bytes` are needed. */
export function needMore(out: BlockMeasure, bytes: number): number {
  out.compressedLength = bytes;
  return MEASURE_NEED_MORE;
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

/** A node:zlib result as a plain Uint8Array view, so callers never see Node's Buffer type. */
export function plainBytes(out: Uint8Array): Uint8Array {
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}
