/**
 * The capture worker's only output object: a sequence of pcap files under
 * `<out>/YYYY/MM/DD/YYYY-MM-DDTHH-MM-SS.ffffffZ_<iface>_w<NN>.pcap[.gz|.zst]` (UTC, from the
 * file's first packet time; names from src/archive/naming.ts), rotated by size, by packet time, on demand, or when the link type
 * changes. Names sort by time and say which interface and worker wrote them.
 *
 * Rotation by time uses packet timestamps, so replaying a capture rotates like capturing it did;
 * `rotateIfDue` covers quiet links with the wall clock.
 */
import { type Compression, resolveLevel } from "../pcap/block_format.ts";
import {
  type BeforeRenameHook,
  DIR_MODE,
  type FinalizedFile,
  PcapFileWriter,
  uniquePath,
} from "./pcap_file_writer.ts";
import { RECORD_HEADER_SIZE } from "../pcap/format.ts";
import type { BlockCompressor } from "./compressor.ts";
import { publishOpenState, removeOpenState } from "./open_file.ts";
import { archiveRelative, outputFileName, sanitizeIface } from "../archive/naming.ts";

/** Options for `RotatingOutput`. */
export interface RotatingOutputOptions {
  /** Root output directory. */
  outDir: string;
  /** Interface (or source) name used in file names; characters outside [A-Za-z0-9._-] become "-". */
  iface: string;
  /** Worker number used in file names (`w00`, `w01`, ...). */
  worker: number;
  linkType: number;
  snaplen: number;
  /** Nanosecond timestamps, default false. */
  nanosecond?: boolean;
  /** Block compression, default `none`. */
  compress?: Compression;
  /** Compression level, see BlockWriterOptions (0 or absent = default). */
  level?: number;
  /** Block buffer size, default 1 MiB. */
  blockSize?: number;
  /** Rotate before a record would make the file larger than this many bytes on disk; 0 = off. */
  rotateSize?: number;
  /** Rotate once a packet is this many seconds after the file's first packet; 0 = off. */
  rotateInterval?: number;
  /** Called with each finalized file, after its rename. */
  onFinalized?: (file: FinalizedFile) => void;
  /** Called before each rename (the index sidecar is written here). */
  beforeRename?: BeforeRenameHook;
  /**
   * Compress gzip/zstd blocks on this helper thread while the next block fills (compressor.ts),
   * for every file in turn; its owner closes it after `close()`. Only from a worker (it waits
   * with Atomics). Absent or null: in-line.
   */
  compressor?: BlockCompressor | null;
  /**
   * Write plain (`none`) blocks through glibc's AIO threads while the next block fills
   * (block_sink.ts). Only from a worker (it waits for the writes). Default false.
   */
  aioPlainWrites?: boolean;
  /**
   * Publish the open file's state at each `flush()` to `<outDir>/.open/` (open_file.ts), so
   * queries read the open file's flushed prefix. Default false.
   */
  publishOpenState?: boolean;
}

/** Seconds between attempts to open a new file after opening one failed. */
const OPEN_RETRY_MS = 1000;

/** Rotating pcap output of one worker; see the module comment. */
export class RotatingOutput {
  /** Sequence number of the file the last `write` went to (1, 2, ...; 0 before the first). */
  fileSeq = 0;
  /** Records written (not counting dropped ones). */
  packets = 0;
  /** Records dropped because no file could take them. */
  droppedPackets = 0;
  /** Files finalized. */
  filesFinalized = 0;
  readonly #o: RotatingOutputOptions;
  #linkType: number;
  #snaplen: number;
  #nanosecond: boolean;
  #writer: PcapFileWriter | null = null;
  #seq = 0;
  /** Compression ratio of the last file (0 before one): the next file's size estimate starts from it. */
  #ratio = 0;
  #closedErrors = 0;
  #closedLost = 0;
  #lastError = "";
  #retryAt = 0;
  #closed = false;
  /** Archive-relative path of the last finalized file, "" before the first. */
  #previous = "";
  /** The writer whose state was published last. */
  #published: PcapFileWriter | null = null;

  constructor(options: RotatingOutputOptions) {
    this.#o = options;
    this.#linkType = options.linkType;
    this.#snaplen = options.snaplen;
    this.#nanosecond = options.nanosecond ?? false;
    resolveLevel(options.compress ?? "none", options.level); // fail now, not per file
  }

  /** Write errors so far (failed blocks, failed opens, failed finalizations). */
  get writeErrors(): number {
    return this.#closedErrors + (this.#writer?.writeErrors ?? 0);
  }

  /**
   * Records lost to write errors: refused (`droppedPackets`) or accepted and then lost with a block
   * that could not be written.
   */
  get lostPackets(): number {
    return this.droppedPackets + this.#closedLost + (this.#writer?.lostPackets ?? 0);
  }

  /** Message of the last error, "" when none. */
  get lastError(): string {
    const current = this.#writer?.lastError ?? "";
    return current !== "" ? current : this.#lastError;
  }

  /** The file being written, null between files. */
  get current(): PcapFileWriter | null {
    return this.#writer;
  }

  /**
   * Appends one record (HOT PATH), rotating first when the size or time limit is reached.
   * Returns the record's offset in the decompressed stream of file `fileSeq`, or -1 when it was
   * dropped (no file could be opened or written). Never throws for I/O errors.
   */
  write(
    data: Uint8Array,
    offset: number,
    caplen: number,
    wireLen: number,
    tsSec: number,
    tsFrac: number,
  ): number {
    let w = this.#writer;
    if (w !== null && this.#due(w, caplen, tsSec, tsFrac)) {
      this.rotate();
      w = null;
    }
    if (w === null) w = this.#open(tsSec, tsFrac);
    let at = w === null ? -1 : w.writePacket(data, offset, caplen, wireLen, tsSec, tsFrac);
    if (at < 0 && w !== null) {
      // The file failed (its last block could not be written): finish what it holds and give
      // this record a fresh file, so offsets already handed out never point at other records.
      this.rotate();
      w = this.#open(tsSec, tsFrac);
      if (w !== null) at = w.writePacket(data, offset, caplen, wireLen, tsSec, tsFrac);
    }
    if (at < 0) {
      this.droppedPackets++;
      return -1;
    }
    this.packets++;
    return at;
  }

  /** Records taken but not written to the current file yet. */
  get unflushedPackets(): number {
    return this.#writer?.unflushedPackets ?? 0;
  }

  /**
   * Writes every record taken so far to the current file (a partial block as a complete block)
   * and publishes the file's state for queries (`publishOpenState`). A file that fails to take
   * them is finalized with what it holds. Does nothing when there is nothing new.
   */
  flush(): void {
    const w = this.#writer;
    if (w === null || (w.unflushedPackets === 0 && this.#published === w)) return;
    if (!w.flushAll()) {
      this.rotate();
      return;
    }
    if (this.#o.publishOpenState !== true) return;
    try {
      const o = this.#o;
      const iface = sanitizeIface(o.iface);
      publishOpenState(o.outDir, w.durable(), {
        iface,
        worker: o.worker,
        previous: this.#previous,
      });
      this.#published = w;
    } catch (err) {
      this.#fail(`Cannot publish the state of ${w.tmpPath}: ${message(err)}`);
    }
  }

  /** Rotates when the current file is older than the interval at wall-clock `nowSec`. */
  rotateIfDue(nowSec: number): boolean {
    const w = this.#writer;
    const interval = this.#o.rotateInterval ?? 0;
    if (w === null || interval <= 0) return false;
    if (this.#age(w, nowSec) < interval) return false;
    this.rotate();
    return true;
  }

  /**
   * Finalizes the current file (the next record opens a new one). Returns it, or null when
   * there was none, it was empty, or finalizing failed (counted in `writeErrors`).
   */
  rotate(): FinalizedFile | null {
    const w = this.#writer;
    if (w === null) return null;
    this.#writer = null;
    let file: FinalizedFile | null = null;
    let failure = "";
    // The next file's size estimate starts from this one's compression ratio.
    if (w.ratio > 0) this.#ratio = w.ratio;
    try {
      file = w.finalize(this.#o.beforeRename);
    } catch (err) {
      failure = `Cannot finalize ${w.path}: ${message(err)}`;
    }
    // After finalize: its last flush may have failed too.
    this.#closedErrors += w.writeErrors;
    this.#closedLost += w.lostPackets;
    if (w.lastError !== "") this.#lastError = w.lastError;
    if (failure !== "") this.#fail(failure);
    if (file === null) return null;
    this.#previous = archiveRelative(this.#o.outDir, file.path);
    this.filesFinalized++;
    try {
      this.#o.onFinalized?.(file);
    } catch (err) {
      this.#fail(`onFinalized failed for ${file.path}: ${message(err)}`);
    }
    return file;
  }

  /**
   * Sets the format of following records (the next --read file may have another link type);
   * rotates when it differs from the current file's, since a file has one format.
   */
  setFormat(format: { linkType: number; snaplen?: number; nanosecond?: boolean }): void {
    const snaplen = format.snaplen ?? this.#snaplen;
    const nanosecond = format.nanosecond ?? this.#nanosecond;
    if (
      format.linkType === this.#linkType && snaplen === this.#snaplen &&
      nanosecond === this.#nanosecond
    ) return;
    this.rotate();
    this.#linkType = format.linkType;
    this.#snaplen = snaplen;
    this.#nanosecond = nanosecond;
  }

  /** Finalizes the current file; later writes are dropped. */
  close(): FinalizedFile | null {
    const file = this.rotate();
    this.#closed = true;
    if (this.#o.publishOpenState === true) {
      try {
        removeOpenState(this.#o.outDir, sanitizeIface(this.#o.iface), this.#o.worker);
      } catch (err) {
        this.#fail(`Cannot remove the open file state in ${this.#o.outDir}: ${message(err)}`);
      }
    }
    return file;
  }

  #due(w: PcapFileWriter, caplen: number, tsSec: number, tsFrac: number): boolean {
    const size = this.#o.rotateSize ?? 0;
    if (size > 0 && w.packets > 0 && w.estimatedSize + RECORD_HEADER_SIZE + caplen > size) {
      if (w.ratioKnown) return true;
      // Counted uncompressed: write what is pending as a block (once per file, and only while no
      // file had one) to learn the ratio, then decide on the real estimate.
      w.flushAll();
      return w.estimatedSize + RECORD_HEADER_SIZE + caplen > size;
    }
    const interval = this.#o.rotateInterval ?? 0;
    if (interval <= 0) return false;
    return this.#age(w, tsSec + tsFrac / (this.#nanosecond ? 1e9 : 1e6)) >= interval;
  }

  /** Seconds from the first packet of `w` to time `t`. */
  #age(w: PcapFileWriter, t: number): number {
    return t - w.firstSec - w.firstFrac / (this.#nanosecond ? 1e9 : 1e6);
  }

  #open(tsSec: number, tsFrac: number): PcapFileWriter | null {
    if (this.#closed) return null;
    if (this.#retryAt !== 0 && Date.now() < this.#retryAt) return null;
    const o = this.#o;
    const compress = o.compress ?? "none";
    const micros = Math.min(this.#nanosecond ? Math.floor(tsFrac / 1000) : tsFrac, 999999);
    const rel = outputFileName(tsSec, micros, { iface: o.iface, worker: o.worker, compress });
    try {
      const slash = rel.lastIndexOf("/");
      const dir = `${o.outDir}/${rel.slice(0, slash)}`;
      Deno.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
      const path = uniquePath(`${o.outDir}/${rel}`);
      const w = new PcapFileWriter({
        path,
        linkType: this.#linkType,
        snaplen: this.#snaplen,
        nanosecond: this.#nanosecond,
        compress,
        level: o.level,
        blockSize: o.blockSize,
        seq: this.#seq + 1,
        compressor: o.compressor,
        aioPlainWrites: o.aioPlainWrites,
        expectedRatio: this.#ratio,
      });
      this.#seq++;
      this.fileSeq = this.#seq;
      this.#writer = w;
      this.#retryAt = 0;
      return w;
    } catch (err) {
      this.#fail(`Cannot open an output file in ${o.outDir}: ${message(err)}`);
      this.#retryAt = Date.now() + OPEN_RETRY_MS;
      return null;
    }
  }

  #fail(text: string): void {
    this.#closedErrors++;
    this.#lastError = text;
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
