/**
 * One pcap output file, written under a hidden temporary name (`.<final name>.tmp` in the final
 * directory) and renamed only once it is flushed, synced and indexed, so a finished name always
 * holds a complete file and a crash leaves a temporary file for recovery.ts to repair.
 */
import type { Compression } from "../pcap/block_format.ts";
import { BlockWriter, type BlockWriterOptions } from "./block_writer.ts";
import {
  GLOBAL_HEADER_SIZE,
  MAX_CAPLEN,
  RECORD_HEADER_SIZE,
  writeGlobalHeader,
  writeRecordHeader,
} from "../pcap/format.ts";
import { Writeback } from "./writeback.ts";
import { numberedPath, tempPathFor } from "../archive/naming.ts";

/** Options for `PcapFileWriter`. */
export interface PcapFileWriterOptions extends BlockWriterOptions {
  /** Final path; the file is written as `.<basename>.tmp` beside it. */
  path: string;
  /** LINKTYPE_* of every record. */
  linkType: number;
  /** Snapshot length written in the header; longer records are cut to it (0 = 262144). */
  snaplen: number;
  /** Nanosecond timestamps (tsFrac in ns), default false (µs). */
  nanosecond?: boolean;
  /** Caller's sequence number for this file, passed through to `FinalizedFile.seq`. */
  seq?: number;
  /**
   * Compressed bytes per uncompressed byte of the previous file, for `estimatedSize` until this
   * file's first block is on disk.
   */
  expectedRatio?: number;
}

/** Facts about a finished output file, handed to the index and catalog. */
export interface FinalizedFile {
  /** Final path. */
  path: string;
  /** Temporary path the file was written under; exists only until the rename. */
  tmpPath: string;
  /** Sequence number given by the owner (RotatingOutput: its `fileSeq`), 0 when none. */
  seq: number;
  linkType: number;
  snaplen: number;
  nanosecond: boolean;
  compress: Compression;
  /** Records in the file. */
  packets: number;
  /** First and last record time, seconds since the epoch (double, ~0.25 µs precision). */
  firstTs: number;
  lastTs: number;
  /**
   * Size of the decompressed pcap stream (global header included). A record offset returned by
   * `writePacket` that is >= this value was lost to a write error.
   */
  bytesUncompressed: number;
  /** Size of the file on disk. */
  bytesOnDisk: number;
  /**
   * Block table of a compressed file, 4 numbers per block: file offset, compressed length,
   * uncompressed start, uncompressed length. Empty for plain files (they need none).
   */
  blocks: Float64Array;
  /** True when recovery.ts repaired this file after a crash (its index must be rebuilt by reading it). */
  recovered: boolean;
}

/** Hook called after the file is synced and before it is renamed (the index sidecar goes here). */
export type BeforeRenameHook = (info: FinalizedFile) => void;

/** Largest number of cached source views, see `#copy`. */
const VIEW_CACHE_LIMIT = 4096;
/**
 * Packets up to this length are copied byte by byte when no cached view fits (live rings):
 * below it a loop costs less than creating a view (bench/pipeline.ts --source ring).
 */
const SHORT_COPY = 128;

/** `path`, or `path` with `_1`, `_2`, ... before `.pcap` when it (or its temporary file) exists. */
export function uniquePath(path: string): string {
  let candidate = path;
  for (let n = 1; pathExists(candidate) || pathExists(tempPathFor(candidate)); n++) {
    candidate = numberedPath(path, n);
  }
  return candidate;
}

/** True when something exists at `path` (a dangling symlink counts). */
export function pathExists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The directory part of a path ("." when there is none). */
export function dirOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}

/**
 * Mode of every file cutcap writes in the archive: the owner writes, the group (`--group`, inherited
 * through the folders' set-group-ID bit) reads, others nothing — captured traffic is not for every
 * local account.
 */
export const FILE_MODE = 0o640;
/** Mode of the archive's folders (see FILE_MODE). */
export const DIR_MODE = 0o750;

/**
 * Creates a new file `<dir>/<prefix><random><suffix>` exclusively (O_CREAT|O_EXCL: an existing file or
 * a planted symlink at that name makes it fail instead of being followed or truncated), so a
 * privileged phase never writes through a link someone else placed in the archive.
 */
export function createTempFile(
  dir: string,
  prefix: string,
  suffix: string,
): { path: string; file: Deno.FsFile } {
  const path = `${dir}/${prefix}${crypto.randomUUID()}${suffix}`;
  return {
    path,
    file: Deno.openSync(path, { read: true, write: true, createNew: true, mode: FILE_MODE }),
  };
}

/** Proves `dir` writable by creating and removing an exclusive, unpredictably named empty file. */
export function probeWritable(dir: string, prefix: string): void {
  const { path, file } = createTempFile(dir, prefix, "");
  file.close();
  Deno.removeSync(path);
}

/** fsyncs a directory, so a rename or create in it survives a crash. */
export function syncDir(dir: string): void {
  const d = Deno.openSync(dir, { read: true });
  try {
    d.syncSync();
  } finally {
    d.close();
  }
}

/** Writes one pcap file; see the module comment. */
export class PcapFileWriter {
  /** Final path. */
  readonly path: string;
  /** Temporary path while writing. */
  readonly tmpPath: string;
  readonly linkType: number;
  readonly snaplen: number;
  readonly nanosecond: boolean;
  readonly compress: Compression;
  readonly seq: number;
  /** First packet time (seconds and fraction), valid once `packets` > 0. */
  firstSec = 0;
  firstFrac = 0;
  /** Last packet time. */
  lastSec = 0;
  lastFrac = 0;
  /** The blocks, and where each block's records are (pending, in flight, on disk, lost). */
  readonly #bw: BlockWriter;
  readonly #file: Deno.FsFile;
  readonly #expectedRatio: number;
  /** Units of a second of `firstFrac`/`lastFrac`. */
  readonly #fracScale: number;
  #closed = false;
  // Views of exactly `caplen` bytes of the caller's buffer, so copying a packet needs no
  // subarray() per packet once every length has been seen (TypedArray.set copies whole arrays;
  // a byte loop is ten times slower).
  #viewSource: Uint8Array | null = null;
  #viewOffset = -1;
  readonly #views = new Map<number, Uint8Array>();

  /** Creates the temporary file (throws if it cannot) and buffers the global header. */
  constructor(options: PcapFileWriterOptions) {
    this.path = options.path;
    this.tmpPath = tempPathFor(options.path);
    this.linkType = options.linkType;
    // A snaplen of 0 (some capture files say so) or above libpcap's limit would make records
    // unreadable or empty; the limit is what readers accept.
    this.snaplen = options.snaplen > 0 && options.snaplen <= MAX_CAPLEN
      ? options.snaplen
      : MAX_CAPLEN;
    this.nanosecond = options.nanosecond ?? false;
    this.#fracScale = this.nanosecond ? 1e9 : 1e6;
    this.compress = options.compress ?? "none";
    this.#expectedRatio = options.expectedRatio ?? 0;
    this.seq = options.seq ?? 0;
    this.#file = Deno.openSync(this.tmpPath, { write: true, createNew: true, mode: FILE_MODE });
    try {
      this.#bw = new BlockWriter(this.#file, {
        ...options,
        writeback: Writeback.forFile(this.tmpPath),
      });
    } catch (err) {
      this.#file.close();
      Deno.removeSync(this.tmpPath);
      throw err;
    }
    writeGlobalHeader(this.#bw.view, 0, {
      linkType: this.linkType,
      snaplen: this.snaplen,
      nanosecond: this.nanosecond,
    });
    this.#bw.used = GLOBAL_HEADER_SIZE;
  }

  /** Records accepted and not lost to a write error. */
  get packets(): number {
    const bw = this.#bw;
    return bw.recordsWritten + bw.recordsInFlight + bw.records;
  }

  /** Size of the decompressed stream so far (pending block included). */
  get bytesUncompressed(): number {
    return this.#bw.streamOffset + this.#bw.used;
  }

  /** Bytes written to the file so far. */
  get bytesOnDisk(): number {
    return this.#bw.bytesOnDisk;
  }

  /**
   * Expected file size if it were flushed now: exact for `none`; otherwise the bytes on disk plus
   * the pending and in-flight blocks scaled by the compression ratio seen so far in this file, or
   * before its first block is on disk by `expectedRatio`, or without one counted uncompressed (an
   * upper bound: see `ratioKnown`).
   */
  get estimatedSize(): number {
    const bw = this.#bw;
    // A block in flight is not on disk yet: it counts like the pending one.
    const written = bw.streamWritten;
    const unwritten = bw.inFlightBytes + bw.used;
    if (this.compress === "none") return bw.bytesOnDisk + unwritten;
    const ratio = written > 0 ? bw.bytesOnDisk / written : this.#expectedRatio || 1;
    return bw.bytesOnDisk + unwritten * ratio;
  }

  /**
   * False while `estimatedSize` counts compressed output uncompressed (no block of this file on
   * disk and no ratio from a previous file): rotating on it made files a compression ratio too small.
   */
  get ratioKnown(): boolean {
    return this.compress === "none" || this.#expectedRatio > 0 || this.#bw.streamWritten > 0;
  }

  /** Compressed bytes per uncompressed byte so far (0 before any block is on disk). */
  get ratio(): number {
    const written = this.#bw.streamWritten;
    return written > 0 ? this.#bw.bytesOnDisk / written : 0;
  }

  /** Records accepted by `writePacket` and then lost with a block that could not be written. */
  get lostPackets(): number {
    return this.#bw.recordsLost;
  }

  /** Failed block writes. */
  get writeErrors(): number {
    return this.#bw.writeErrors;
  }

  /** Message of the last write error, "" when none. */
  get lastError(): string {
    return this.#bw.lastError;
  }

  /** True once a block write failed: the file takes no more records. */
  get failed(): boolean {
    return this.#bw.failed;
  }

  /**
   * Appends one record (HOT PATH: allocates nothing). Copies `caplen` bytes of `data` from
   * `offset`, cut to the snaplen; `wireLen` is written as given, even below `caplen` (an archive
   * keeps what it read, as tcpdump -w does). Returns the offset of the record header in the decompressed
   * stream, or -1 when the file failed (the record was not taken; write it to a new file).
   */
  writePacket(
    data: Uint8Array,
    offset: number,
    caplen: number,
    wireLen: number,
    tsSec: number,
    tsFrac: number,
  ): number {
    const bw = this.#bw;
    if (bw.failed || this.#closed) return -1;
    if (caplen > this.snaplen) caplen = this.snaplen;
    const need = RECORD_HEADER_SIZE + caplen;
    if (need > bw.buffer.length - bw.used) {
      if (!this.#flushBlock()) return -1;
      if (need > bw.buffer.length) bw.grow(need);
    }
    const pos = bw.used;
    writeRecordHeader(bw.view, pos, tsSec, tsFrac, caplen, wireLen);
    this.#copy(data, offset, caplen, pos + RECORD_HEADER_SIZE);
    bw.used = pos + need;
    if (bw.records === 0 && this.packets === 0) {
      this.firstSec = tsSec;
      this.firstFrac = tsFrac;
    }
    bw.records++;
    this.lastSec = tsSec;
    this.lastFrac = tsFrac;
    return bw.streamOffset + pos;
  }

  /** Writes the pending block now. Returns false when the write failed. */
  flush(): boolean {
    return this.#flushBlock();
  }

  /** Records taken but not in the file yet: the pending block and a block in flight. */
  get unflushedPackets(): number {
    return this.#bw.records + this.#bw.recordsInFlight;
  }

  /**
   * Writes every record taken so far to the file: the block in flight, then the pending one as a
   * complete block of its own however small (a gzip member / zstd frame), waiting for it. Returns
   * false when a write failed (the file then takes no more records).
   */
  flushAll(): boolean {
    if (this.#flushBlock()) this.#bw.drain();
    return !this.#bw.failed;
  }

  /**
   * The file as it is on disk now, without a block in flight (right after `flushAll`): records,
   * time range, sizes and block table of its complete blocks.
   */
  durable(): FinalizedFile {
    return this.#info();
  }

  /**
   * Flushes, fsyncs, calls `beforeRename(info)`, renames to the final name and fsyncs the
   * directory. A file that ended up with no records is deleted instead and null returned: it
   * would only add an empty index and catalog entry (files open at their first packet, so this
   * happens only when every block write failed). Throws when sync, hook or rename fail; the
   * temporary file then stays for recovery.
   */
  finalize(beforeRename?: BeforeRenameHook): FinalizedFile | null {
    if (this.#closed) {
      throw new Error(`Cannot finalize ${this.path}: expected an open file, found it closed`);
    }
    if (this.#flushBlock()) this.#bw.drain();
    this.#closed = true;
    try {
      if (this.#bw.recordsWritten === 0) {
        this.#file.close();
        Deno.removeSync(this.tmpPath);
        return null;
      }
      this.#bw.sync();
    } catch (err) {
      this.#closeQuietly();
      throw err;
    }
    this.#file.close();
    const info = this.#info();
    beforeRename?.(info);
    Deno.renameSync(this.tmpPath, this.path);
    syncDir(dirOf(this.path));
    return info;
  }

  /** Closes the file without finalizing it (the temporary file stays, as after a crash). */
  abandon(): void {
    if (this.#closed) return;
    this.#closed = true;
    // A helper's buffer must be free before the next file uses it.
    this.#bw.discard();
    this.#closeQuietly();
  }

  #info(): FinalizedFile {
    return {
      path: this.path,
      tmpPath: this.tmpPath,
      seq: this.seq,
      linkType: this.linkType,
      snaplen: this.snaplen,
      nanosecond: this.nanosecond,
      compress: this.compress,
      packets: this.#bw.recordsWritten,
      firstTs: this.firstSec + this.firstFrac / this.#fracScale,
      lastTs: this.#bw.lastWrittenTs,
      bytesUncompressed: this.#bw.streamWritten,
      bytesOnDisk: this.#bw.bytesOnDisk,
      blocks: this.compress === "none" ? new Float64Array(0) : this.#bw.blocks.toFloat64Array(),
      recovered: false,
    };
  }

  /** Hands the pending block to the block writer; false when a write failed. */
  #flushBlock(): boolean {
    return this.#bw.flush(this.lastSec + this.lastFrac / this.#fracScale);
  }

  #copy(data: Uint8Array, offset: number, caplen: number, pos: number): void {
    const buffer = this.#bw.buffer;
    if (offset === this.#viewOffset && data === this.#viewSource) {
      this.#copyCached(data, offset, caplen, pos);
      return;
    }
    if (offset === 0 && caplen === data.length) {
      buffer.set(data, pos);
      return;
    }
    if (data !== this.#viewSource) {
      // Another source (a new handle, or libpcap moved its buffer): views at this offset now.
      this.#viewSource = data;
      this.#viewOffset = offset;
      this.#views.clear();
      this.#copyCached(data, offset, caplen, pos);
      return;
    }
    // The same memory at another place: a live capture's ring, where packets lie wherever the
    // kernel put them and no view would be used twice. Short packets are copied byte by byte,
    // which is cheaper than making a view; longer ones through one view.
    if (caplen <= SHORT_COPY) {
      for (let i = 0; i < caplen; i++) buffer[pos + i] = data[offset + i];
    } else {
      buffer.set(data.subarray(offset, offset + caplen), pos);
    }
  }

  #copyCached(data: Uint8Array, offset: number, caplen: number, pos: number): void {
    let view = this.#views.get(caplen);
    if (view === undefined) {
      if (this.#views.size >= VIEW_CACHE_LIMIT) this.#views.clear();
      view = data.subarray(offset, offset + caplen);
      this.#views.set(caplen, view);
    }
    this.#bw.buffer.set(view, pos);
  }

  #closeQuietly(): void {
    try {
      this.#file.close();
    } catch {
      // Already closed.
    }
  }
}
