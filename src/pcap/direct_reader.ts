/**
 * The replay fast path: records of a plain little-endian pcap file parsed from large reads, for
 * ffi/libpcap.ts's offline handle (OfflineOptions.direct), which hands over to libpcap at the
 * first record this reader leaves alone. Packets are handed out where they were read (`data` is
 * always the same array, `offset` varies); `settle` moves one to offset 0 (copyWithin, no
 * allocation) when a writer that reuses views per length is about to copy it, so only stored
 * packets are moved. Allocates nothing per record.
 */
import {
  GLOBAL_HEADER_SIZE,
  MAGIC_MICROS,
  MAGIC_NANOS,
  MAX_CAPLEN,
  RECORD_HEADER_SIZE,
} from "./format.ts";

/** Bytes read from the file at a time. */
const CHUNK = 1 << 20;

/** Where `DirectReader.next` puts a record: the packet fields of a capture handle. */
export interface RecordFields {
  tsSec: number;
  tsFrac: number;
  caplen: number;
  wireLen: number;
  data: Uint8Array;
  offset: number;
}

/**
 * Sequential reader of a plain pcap file's records; see the module comment. `next()` returns
 * false when it cannot hand out the record at `recordOffset` (end of file, or a record for
 * libpcap to judge: longer than `maxCaplen`, or cut off by the end of the file).
 */
export class DirectReader {
  /** True once the file ended exactly after a complete record. */
  ended = false;
  readonly #file: Deno.FsFile;
  /** [0, MAX_CAPLEN): where settle() moves a packet; then the data read from the file. */
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  readonly #maxCaplen: number;
  /** File offset of #buf[MAX_CAPLEN]. */
  #chunkAt = 0;
  #pos = MAX_CAPLEN;
  #have = MAX_CAPLEN;
  #eof = false;

  private constructor(file: Deno.FsFile, maxCaplen: number, start: number) {
    this.#file = file;
    this.#maxCaplen = maxCaplen;
    this.#buf = new Uint8Array(MAX_CAPLEN + CHUNK + MAX_CAPLEN + RECORD_HEADER_SIZE);
    this.#view = new DataView(this.#buf.buffer);
    this.#chunkAt = start;
  }

  /**
   * A direct reader for `path` positioned after its global header, or null when the file is not
   * one it reads (a regular file, little-endian, version 2.4, timestamps in the precision asked
   * for) or cannot be opened a second time.
   */
  static open(path: string, nanosecond: boolean, maxCaplen: number): DirectReader | null {
    let file: Deno.FsFile | undefined;
    try {
      // A FIFO or a terminal cannot be read twice; only regular files.
      if (!Deno.statSync(path).isFile) return null;
      file = Deno.openSync(path, { read: true });
      const head = new Uint8Array(GLOBAL_HEADER_SIZE);
      let got = 0;
      while (got < GLOBAL_HEADER_SIZE) {
        const n = file.readSync(head.subarray(got));
        if (n === null || n === 0) break;
        got += n;
      }
      const dv = new DataView(head.buffer);
      if (
        got === GLOBAL_HEADER_SIZE &&
        dv.getUint32(0, true) === (nanosecond ? MAGIC_NANOS : MAGIC_MICROS) &&
        dv.getUint16(4, true) === 2 && dv.getUint16(6, true) === 4 && maxCaplen > 0
      ) {
        const reader = new DirectReader(file, Math.min(maxCaplen, MAX_CAPLEN), GLOBAL_HEADER_SIZE);
        file = undefined;
        return reader;
      }
      return null;
    } catch {
      return null;
    } finally {
      file?.close();
    }
  }

  /** File offset of the next record (where libpcap continues after a hand-over). */
  get recordOffset(): number {
    return this.#chunkAt + this.#pos - MAX_CAPLEN;
  }

  /**
   * Reads the next record into `h`'s packet fields; see the class comment. The hot path of a
   * replay: 16 is RECORD_HEADER_SIZE, written out so the per-record path reads no module binding.
   */
  next(h: RecordFields): boolean {
    let p = this.#pos;
    if (this.#have - p < 16) {
      if (!this.#fill()) return false;
      p = this.#pos;
    }
    const view = this.#view;
    const caplen = view.getUint32(p + 8, true);
    if (caplen > this.#maxCaplen) return false;
    if (this.#have - p < 16 + caplen) {
      if (!this.#fill()) return false;
      p = this.#pos;
    }
    // Unsigned, as the pcap format defines it (2038 and later are not negative).
    h.tsSec = view.getUint32(p, true);
    h.tsFrac = view.getUint32(p + 4, true);
    h.caplen = caplen;
    h.wireLen = view.getUint32(p + 12, true);
    h.data = this.#buf;
    h.offset = p + 16;
    this.#pos = p + 16 + caplen;
    return true;
  }

  /** Moves the packet `h` holds (from this reader) to offset 0 of `data`; see the module comment. */
  settle(h: RecordFields): void {
    const at = h.offset;
    if (at !== 0) {
      this.#buf.copyWithin(0, at, at + h.caplen);
      h.offset = 0;
    }
  }

  /**
   * Moves the unread bytes to the front of the chunk area and reads more. False when no complete
   * record is available: at a clean end of file (sets `ended`) or a cut-off record.
   */
  #fill(): boolean {
    const buf = this.#buf;
    const keep = this.#have - this.#pos;
    if (!this.#eof) {
      buf.copyWithin(MAX_CAPLEN, this.#pos, this.#have);
      this.#chunkAt += this.#pos - MAX_CAPLEN;
      this.#pos = MAX_CAPLEN;
      this.#have = MAX_CAPLEN + keep;
      const end = MAX_CAPLEN + CHUNK + keep;
      while (this.#have < end) {
        let n: number | null;
        try {
          n = this.#file.readSync(buf.subarray(this.#have, end));
        } catch {
          n = null; // libpcap reads the rest and reports the error its own way
        }
        if (n === null || n === 0) {
          this.#eof = true;
          break;
        }
        this.#have += n;
      }
    }
    const p = this.#pos;
    const avail = this.#have - p;
    if (
      avail >= RECORD_HEADER_SIZE && avail >= RECORD_HEADER_SIZE + this.#view.getUint32(p + 8, true)
    ) {
      return true;
    }
    // Nothing left at all is a clean end; a partial record is libpcap's to report.
    if (avail === 0 && this.#eof) this.ended = true;
    return false;
  }

  /** Closes the file. */
  close(): void {
    try {
      this.#file.close();
    } catch {
      // Already closed.
    }
  }
}
