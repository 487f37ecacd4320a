/**
 * The scan of a pcap file for indexing it in place (src/index/index_pcap.ts), whoever wrote it:
 * plain pcap (both byte orders, µs and ns, and the "modified" 24-byte record header variant), and
 * any file of a codec (gzip: one stream or independent members; zstd: one frame or independent
 * frames; each codec finds its units, codec/*.ts `scanUnit`). Besides the records it reports the
 * block table of a compressed file, which a query needs to seek. Unlike PcapReader (reader.ts,
 * for cutcap's own files), it accepts every foreign file tcpdump reads, and libpcap's per-link-type
 * caplen limits.
 *
 * Blocks are the file's units (gzip members / zstd frames). A record that straddles two of them (only possible
 * in files that other tools compressed) merges those blocks into one, so that in the reported table
 * every record lies inside one block. A file compressed as one stream yields one block. Every unit
 * (member, frame, merged block) is decompressed whole only up to `MAX_UNIT_BYTES` (64 MiB): from a
 * larger one on (a foreign file compressed as one big stream, or a decompression bomb) the rest of
 * the file is stream-decompressed with bounded buffers (stream_inflate.ts) and becomes one streamed
 * block, so memory never follows the uncompressed size. In a streamed block a record of wire length
 * 0 (what a bomb of zeros parses as) is garbage, not a packet: it ends the scan at once.
 */
import { codec, type Compression, detectCompression } from "./codecs.ts";
import { MAX_UNIT_BYTES, STREAM_ABOVE_BYTES } from "./codec/codec.ts";
import { FileWindow } from "./codec/window.ts";
import { canStream, StreamInflater } from "./stream_inflate.ts";
import {
  GLOBAL_HEADER_SIZE,
  hexMagic,
  MAGIC_MICROS,
  MAGIC_NANOS,
  MAX_CAPLEN,
  MODIFIED_RECORD_HEADER_SIZE,
  RECORD_HEADER_SIZE,
  sniffMagic,
} from "./format.ts";
import { PCAPNG_SHB } from "./pcapng.ts";

/** One record as the reader sees it; the same object is overwritten for every record. */
export class ScanRecord {
  /** Offset of the record header in the uncompressed pcap stream. */
  offset = 0;
  sec = 0;
  /** Fraction of a second: microseconds, or nanoseconds when the file is nanosecond. */
  frac = 0;
  caplen = 0;
  wireLen = 0;
  /** Buffer holding the packet bytes, valid only during the callback. */
  buf: Uint8Array = new Uint8Array(0);
  /** Index of the first packet byte in `buf`. */
  at = 0;
  /** The file's link type (from the global header, same for every record). */
  linkType = 0;
  /** The file's timestamps are nanoseconds (`frac` unit). */
  nanosecond = false;
}

/** What a scan found besides the records. */
export interface ScanResult {
  linkType: number;
  snaplen: number;
  nanosecond: boolean;
  compress: Compression;
  /** Block table (4 numbers per block), empty for a plain file. */
  blocks: Float64Array;
  /** True when the compressed file was one stream (or blocks had to be merged into one). */
  wholeStream: boolean;
  /** Size of the file on disk. */
  fileSize: number;
  /** Bytes of the uncompressed pcap stream that were read. */
  dataSize: number;
  records: number;
  /** Why reading stopped before the end of the data, or "" when it did not. */
  stopReason: string;
}

/** libpcap's max_snaplen_for_dlt: a larger caplen is a corrupt file, not a big packet. */
function maxCaplen(linkType: number): number {
  if (linkType === 231) return 128 * 1024 * 1024; // DBUS
  if (linkType === 279) return 8 * 1024 * 1024; // EBHSCR
  if (linkType === 249) return 1024 * 1024; // USBPCAP
  return MAX_CAPLEN;
}

/** Message for a file that is not a pcap we can index in place. */
function notPcap(path: string, magic: number): Error {
  if (magic === PCAPNG_SHB) {
    return new Error(
      `Cannot index ${path} in place: expected a pcap file, found pcapng (not queryable in place; ` +
        `re-cut it with: cutcap capture --read ${path} --out DIR)`,
    );
  }
  return new Error(
    `Cannot index ${path}: expected a pcap file (magic ${hexMagic(MAGIC_MICROS)} or ${
      hexMagic(MAGIC_NANOS)
    }, optionally gzip or zstd compressed), found magic 0x${hexMagic(magic)}`,
  );
}

/** Reassembles pcap records from chunks of the uncompressed stream. */
class Assembler {
  readonly rec = new ScanRecord();
  started = false;
  stopped = false;
  stopReason = "";
  linkType = 0;
  snaplen = 0;
  nanosecond = false;
  records = 0;
  /** Uncompressed bytes pushed so far. */
  pushed = 0;
  #le = true;
  #hdrLen = 16;
  #maxCap = MAX_CAPLEN;
  #carry = new Uint8Array(65536);
  #carryLen = 0;
  /** Uncompressed offset of the first carried byte (start of the pending record). */
  #carryStart = 0;
  readonly #path: string;
  readonly #onRecord: (rec: ScanRecord) => void;
  /** Records of wire length 0 are garbage (set while stream-decompressing, see the module doc). */
  strict = false;
  /** Called when a record (or the global header) started before the current chunk. */
  onStraddle: (startOffset: number) => void = () => {};

  constructor(path: string, onRecord: (rec: ScanRecord) => void) {
    this.#path = path;
    this.#onRecord = onRecord;
  }

  get pending(): number {
    return this.#carryLen;
  }

  push(chunk: Uint8Array): void {
    if (this.stopped) return;
    const chunkStart = this.pushed;
    this.pushed += chunk.length;
    let pos = 0;
    if (this.#carryLen > 0) {
      // Complete the straddling piece byte-exactly from this chunk, then parse the rest in place.
      const need = this.#needed(this.#carry, 0, this.#carryLen);
      if (need < 0) return;
      const take = Math.min(need - this.#carryLen, chunk.length);
      this.#appendCarry(chunk, 0, take);
      pos = take;
      if (this.#carryLen < need) return;
      const again = this.#needed(this.#carry, 0, this.#carryLen);
      if (again < 0) return;
      if (again > this.#carryLen) {
        const more = Math.min(again - this.#carryLen, chunk.length - pos);
        this.#appendCarry(chunk, pos, more);
        pos += more;
        if (this.#carryLen < again) return;
      }
      this.onStraddle(this.#carryStart);
      this.#consume(this.#carry, 0, this.#carryStart);
      this.#carryLen = 0;
      if (this.stopped) return;
    }
    while (!this.stopped) {
      const avail = chunk.length - pos;
      if (avail === 0) break;
      const need = this.#needed(chunk, pos, avail);
      if (need < 0) return;
      if (need > avail) {
        this.#carryLen = 0;
        this.#carryStart = chunkStart + pos;
        this.#appendCarry(chunk, pos, avail);
        return;
      }
      pos += this.#consume(chunk, pos, chunkStart + pos);
    }
  }

  /**
   * Bytes the next unit (global header or record) needs given `avail` bytes at `at`; when fewer than
   * a record header are available, the header length. -1 when the data is invalid (scan stops).
   */
  #needed(buf: Uint8Array, at: number, avail: number): number {
    if (!this.started) {
      if (avail < 4) return 24;
      const magic = u32le(buf, at);
      if (sniffMagic(magic, true) === null) throw notPcap(this.#path, magic);
      return GLOBAL_HEADER_SIZE;
    }
    if (avail < this.#hdrLen) return this.#hdrLen;
    const caplen = this.#u32(buf, at + 8);
    if (caplen > this.#maxCap) {
      this.stopped = true;
      this.stopReason =
        `invalid packet capture length ${caplen}, bigger than maximum of ${this.#maxCap}`;
      return -1;
    }
    if (this.strict && this.#u32(buf, at + 12) === 0) return this.#garbage();
    return this.#hdrLen + caplen;
  }

  /** Stops at a record of wire length 0 in a streamed block; refuses a file with no record before. */
  #garbage(): number {
    const what = `record ${this.records + 1} has wire length 0: expected a packet, found garbage ` +
      `(a decompression bomb or a damaged file)`;
    if (this.records === 0) throw new Error(`Cannot index ${this.#path}: ${what}`);
    this.stopped = true;
    this.stopReason = what;
    return -1;
  }

  /** Consumes one complete unit at `at` (stream offset `offset`); returns its length. */
  #consume(buf: Uint8Array, at: number, offset: number): number {
    if (!this.started) {
      const magic = sniffMagic(u32le(buf, at), true)!;
      this.#le = magic.littleEndian;
      this.nanosecond = magic.nanosecond;
      this.#hdrLen = magic.modified ? MODIFIED_RECORD_HEADER_SIZE : RECORD_HEADER_SIZE;
      this.snaplen = this.#u32(buf, at + 16);
      this.linkType = this.#u32(buf, at + 20) & 0xffff;
      this.#maxCap = maxCaplen(this.linkType);
      this.rec.linkType = this.linkType;
      this.rec.nanosecond = this.nanosecond;
      this.started = true;
      return 24;
    }
    const r = this.rec;
    r.offset = offset;
    r.sec = this.#u32(buf, at);
    r.frac = this.#u32(buf, at + 4);
    r.caplen = this.#u32(buf, at + 8);
    r.wireLen = this.#u32(buf, at + 12);
    r.buf = buf;
    r.at = at + this.#hdrLen;
    this.records++;
    this.#onRecord(r);
    return this.#hdrLen + r.caplen;
  }

  #appendCarry(src: Uint8Array, from: number, n: number): void {
    if (this.#carryLen + n > this.#carry.length) {
      let cap = this.#carry.length * 2;
      while (cap < this.#carryLen + n) cap *= 2;
      const c = new Uint8Array(cap);
      c.set(this.#carry.subarray(0, this.#carryLen));
      this.#carry = c;
    }
    this.#carry.set(src.subarray(from, from + n), this.#carryLen);
    this.#carryLen += n;
  }

  #u32(buf: Uint8Array, at: number): number {
    return this.#le
      ? (buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)) >>> 0
      : ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0;
  }
}

function u32le(buf: Uint8Array, at: number): number {
  return (buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)) >>> 0;
}

/**
 * Reads a pcap file (plain, gzip or zstd) from start to end, calling `onRecord` for each record.
 * Throws for pcapng and non-pcap files; a truncated or corrupt tail ends the scan (see `stopReason`).
 */
export function scanPcapFile(path: string, onRecord: (rec: ScanRecord) => void): ScanResult {
  const f = Deno.openSync(path, { read: true });
  try {
    const size = f.statSync().size;
    const head = new Uint8Array(4);
    let got = 0;
    while (got < 4) {
      const n = f.readSync(head.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    if (got < 4) {
      throw new Error(`Cannot index ${path}: expected a pcap file, found ${size} bytes`);
    }
    const asm = new Assembler(path, onRecord);
    const compress: Compression = detectCompression(head);
    let blocks: Float64Array = new Float64Array(0);
    let wholeStream = false;
    let stopReason = "";
    if (compress !== "none") {
      const r = scanBlocks(f, size, asm, compress);
      blocks = r.blocks;
      stopReason = r.stopReason;
    } else {
      f.seekSync(0, Deno.SeekMode.Start);
      const chunk = new Uint8Array(4 * 1024 * 1024);
      while (!asm.stopped) {
        const n = f.readSync(chunk);
        if (n === null || n === 0) break;
        asm.push(chunk.subarray(0, n));
      }
    }
    if (compress !== "none") wholeStream = blocks.length === 4;
    if (!asm.started) {
      throw new Error(
        stopReason !== ""
          ? `Cannot index ${path}: ${stopReason}, and no complete block before it`
          : `Cannot index ${path}: expected a pcap file, found ${asm.pushed} bytes of data`,
      );
    }
    if (asm.stopped) stopReason = asm.stopReason;
    else if (stopReason === "" && asm.pending > 0) {
      stopReason = `truncated dump file: last record incomplete (${asm.pending} bytes)`;
    }
    return {
      linkType: asm.linkType,
      snaplen: asm.snaplen,
      nanosecond: asm.nanosecond,
      compress,
      blocks,
      wholeStream,
      fileSize: size,
      dataSize: asm.pushed,
      records: asm.records,
      stopReason,
    };
  } finally {
    f.close();
  }
}

/** Reads the units of a compressed file into the assembler; returns its block table. */
function scanBlocks(
  f: Deno.FsFile,
  size: number,
  asm: Assembler,
  compress: Compression,
): { blocks: Float64Array; stopReason: string } {
  const win = new FileWindow(f, size);
  const c = codec(compress);
  const streams = canStream(compress);
  const limit = streams ? STREAM_ABOVE_BYTES : MAX_UNIT_BYTES;
  // Per raw unit: compOffset, compLen, uncompOffset, uncompLen, joinWithNext.
  let raw = new Float64Array(5 * 64);
  let n = 0;
  let stopReason = "";
  let pos = 0;
  asm.onStraddle = (startOffset: number): void => {
    // The unit being pushed is n-1; mark every unit from the one holding startOffset.
    for (let i = n - 2; i >= 0; i--) {
      raw[i * 5 + 4] = 1;
      if (raw[i * 5 + 2] <= startOffset) break;
    }
  };
  while (pos < size && !asm.stopped) {
    const u = c.scanUnit(win, pos, limit);
    if (u === null) break;
    if (typeof u === "string" && u.includes(TOO_LARGE) && streams) {
      // The rest of the file becomes one streamed block (see the module doc).
      const start = asm.pushed;
      asm.strict = true;
      if (n * 5 === raw.length) raw = grow(raw);
      raw.set([pos, size - pos, start, 0, 0], n * 5);
      n++;
      stopReason = streamRest(f, compress, pos, size, asm);
      raw[(n - 1) * 5 + 3] = asm.pushed - start;
      break;
    }
    if (typeof u === "string") {
      stopReason = u;
      break;
    }
    if (n * 5 === raw.length) raw = grow(raw);
    // The block starts at the frame itself, so that a reader can hand it to a decompressor as is.
    raw[n * 5] = pos + u.skip;
    raw[n * 5 + 1] = u.compLen;
    raw[n * 5 + 2] = asm.pushed;
    raw[n * 5 + 3] = u.data.length;
    raw[n * 5 + 4] = 0;
    n++;
    asm.push(u.data);
    pos += u.skip + u.compLen;
  }
  // Merge runs joined by straddling records, so that every record lies inside one block.
  const out: number[] = [];
  for (let i = 0; i < n;) {
    let j = i;
    while (j < n - 1 && raw[j * 5 + 4] === 1) j++;
    const compOff = raw[i * 5];
    const compEnd = raw[j * 5] + raw[j * 5 + 1];
    const unOff = raw[i * 5 + 2];
    const unEnd = raw[j * 5 + 2] + raw[j * 5 + 3];
    if (unEnd > unOff) out.push(compOff, compEnd - compOff, unOff, unEnd - unOff);
    i = j + 1;
  }
  return { blocks: Float64Array.from(out), stopReason };
}

/** What every unit-too-large message says (unitTooLargeMessage). */
const TOO_LARGE = `decompresses to more than ${STREAM_ABOVE_BYTES / 1048576} MiB`;
/** Decompressed bytes handed to the assembler at once while streaming. */
const STREAM_CHUNK = 1024 * 1024;

function grow(raw: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> {
  const r2 = new Float64Array(raw.length * 2);
  r2.set(raw);
  return r2;
}

/**
 * Stream-decompresses the file from `pos` to its end into the assembler; returns why it stopped
 * early ("" at a clean end).
 */
function streamRest(
  f: Deno.FsFile,
  compress: Compression,
  pos: number,
  size: number,
  asm: Assembler,
): string {
  const inflater = new StreamInflater(f, compress, pos, size);
  const chunk = new Uint8Array(STREAM_CHUNK);
  try {
    while (!asm.stopped) {
      const n = inflater.read(chunk);
      if (n === 0) break;
      asm.push(chunk.subarray(0, n));
    }
    return "";
  } catch (e) {
    const message = (e as Error).message;
    if (message.startsWith("Cannot index")) throw e;
    return message;
  } finally {
    inflater.close();
  }
}
