/**
 * The one pcap reader: plain, or compressed as cutcap writes them (gzip members / zstd frames;
 * other gzip/zstd pcap files work too, decompressed whole or streamed). Both byte orders, µs and ns
 * magic.
 *
 * Sequential: `next()` moves to the next record and fills the reader's record fields (no
 * allocation per record; `data` is a long-lived buffer, valid until the next call). Crash recovery
 * and `cutcap index`'s archive names read this way; indexing in place reads under tcpdump's rules
 * (`accept`, scan.ts is its view), and replay through `DirectReader` below, a view of `next`.
 * Random access: `readRecordAt(offset)` reads the record whose header starts at `offset` of the
 * decompressed stream, decompressing only the block that holds it (small LRU of blocks); a plain
 * file is read through a window that covers the caller's next wanted records (`spanEnd`), a block
 * larger than STREAM_ABOVE_BYTES (a foreign file indexed as one stream) is stream-decompressed
 * from its start with bounded buffers. Queries read this way (record_reader.ts is their view).
 * How random-access errors are worded is the caller's (`wording`): the messages tests and
 * operators know from each caller, one set of checks.
 *
 * Damaged files: every good record before the damage is returned; then `next()` returns false
 * and `damage` says what was wrong, naming the file, the record number and its offset.
 */
import {
  BlockTable,
  type Compression,
  decompressBlock,
  decompressBlockRange,
  detectCompression,
  isForeignStream,
  readAt,
  STREAM_ABOVE_BYTES,
} from "./block_format.ts";
import { BlockWalker } from "./block_reader.ts";
import { canStream, StreamInflater } from "./stream_inflate.ts";
import {
  GLOBAL_HEADER_SIZE,
  hexMagic,
  MAGIC_MICROS,
  MAGIC_NANOS,
  MAX_CAPLEN,
  MODIFIED_RECORD_HEADER_SIZE,
  parseGlobalHeader,
  type PcapHeader,
  RECORD_HEADER_SIZE,
  sniffMagic,
} from "./format.ts";
import { PCAPNG_SHB } from "./pcapng.ts";
import { UnitSource } from "./unit_source.ts";

/** Largest read from a plain file at once: the span of the wanted records it covers, at most this. */
export const READ_WINDOW = 256 * 1024;

/**
 * How random access reports a record it cannot read; `block` is the block's number, -1 for a
 * plain file. `missing` returning null means "no record there": readRecordAt returns false.
 */
export interface RandomAccessWording {
  missing(path: string, offset: number, plain: boolean): string | null;
  short(path: string, offset: number, need: number, found: number, block: number): string;
  caplen(path: string, offset: number, caplen: number): string;
  notPcap(path: string, magic: number): string | null;
}

/** The reader's own wording (recovery, tests of cutcap's files): expected vs found. */
export const FILE_WORDING: RandomAccessWording = {
  missing: () => null,
  short: (path, offset, need, found, block) =>
    block >= 0
      ? `Invalid record offset ${offset} in ${path}: ${
        need === RECORD_HEADER_SIZE ? "its header" : "the record"
      } crosses the end of block ${block}`
      : `Truncated record at offset ${offset} in ${path}: expected ${
        need === RECORD_HEADER_SIZE ? "16 header" : need
      } bytes, found ${found}`,
  caplen: (path, offset, caplen) =>
    `Invalid record at offset ${offset} in ${path}: captured length ${caplen}, expected at most ${MAX_CAPLEN}`,
  notPcap: () => null, // parseGlobalHeader's message
};

/** A query's wording: the file, the offset its index promised, what is wrong there. */
export const QUERY_WORDING: RandomAccessWording = {
  missing: (path, offset, plain) =>
    plain
      ? QUERY_WORDING.short(path, offset, 0, 0, -1)
      : `${path}: no block holds offset ${offset}`,
  short: (path, offset) =>
    `${path}: record at offset ${offset} is cut short (file damaged or truncated)`,
  caplen: (path, offset, caplen) => `${path}: record at offset ${offset} claims ${caplen} bytes`,
  notPcap: (path, magic) => `${path}: not a pcap file (magic 0x${magic.toString(16)})`,
};

/** Options for `PcapReader`. */
export interface PcapReaderOptions {
  /**
   * The file's block table (FinalizedFile.blocks, or from its index): 4 numbers per block. Without
   * it the first `readRecordAt` of a compressed file scans the file for it.
   */
  blocks?: Float64Array;
  /** Decompressed blocks kept for `readRecordAt`, default 4. */
  cacheBlocks?: number;
  /** The codec, when the caller knows it (from an index); else detected from the file's head. */
  compress?: Compression;
  /** The file already open (an open output file, held across its rename); closed by `close`. */
  file?: Deno.FsFile;
  /** How random-access errors are worded, default FILE_WORDING. */
  wording?: RandomAccessWording;
  /**
   * What sequential reading accepts. "cutcap" (default): the formats cutcap reads and writes,
   * damage worded for its own files. "tcpdump": everything tcpdump reads — the modified format,
   * libpcap's per-link-type caplen limits, any unit layout of a compressed file (unit_source.ts,
   * which also yields the block table, `unitTable`), a record of wire length 0 in a streamed unit
   * taken for garbage — with libpcap's wording of damage and the indexer's of refusals.
   */
  accept?: "cutcap" | "tcpdump";
  /** Largest captured length read (at most MAX_CAPLEN; libpcap's limit for the replay view). */
  maxCaplen?: number;
}

/** libpcap's max_snaplen_for_dlt: a larger caplen is a corrupt file, not a big packet. */
function maxCaplenFor(linkType: number): number {
  if (linkType === 231) return 128 * 1024 * 1024; // DBUS
  if (linkType === 279) return 8 * 1024 * 1024; // EBHSCR
  if (linkType === 249) return 1024 * 1024; // USBPCAP
  return MAX_CAPLEN;
}

/** Message for a file that is not a pcap that can be indexed in place (tcpdump rules). */
function cannotIndex(path: string, magic: number): Error {
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

/** Warnings kept in `warnings` (more are only counted). */
const MAX_WARNINGS = 10;
const WINDOW = 1 << 20;
/** Default span of a random-access read: the header and a full-size Ethernet frame or more. */
const FIRST_READ = 65536 + RECORD_HEADER_SIZE;

/** The one pcap reader; see the module comment. */
export class PcapReader {
  readonly path: string;
  readonly compress: Compression;
  readonly littleEndian: boolean;
  readonly nanosecond: boolean;
  readonly versionMajor: number;
  readonly versionMinor: number;
  readonly snaplen: number;
  readonly linkType: number;

  /** Current record: its number in sequential order (1-based; readRecordAt leaves it alone). */
  recordNumber = 0;
  /** Current record: offset of its header in the decompressed stream. */
  offset = 0;
  tsSec = 0;
  /** Fraction of a second: µs, or ns when `nanosecond`. */
  tsFrac = 0;
  /** Captured length (bytes in `data`). */
  caplen = 0;
  /** Original length on the wire. */
  len = 0;
  /** Buffer holding the current record's bytes, from `dataOffset`, `caplen` long. */
  data: Uint8Array = new Uint8Array(0);
  dataOffset = 0;

  /** Why sequential reading stopped early; null while none found. */
  damage: string | null = null;
  /** Notes about odd but readable records (first few only). */
  readonly warnings: string[] = [];
  /** Number of warnings, including those not kept. */
  warningCount = 0;

  readonly #file: Deno.FsFile;
  readonly #wording: RandomAccessWording;
  readonly #tcpdump: boolean;
  /** Record header size (24 in the modified format) and the largest caplen accepted. */
  #hdrLen = RECORD_HEADER_SIZE;
  #maxCaplen = MAX_CAPLEN;
  // Sequential window over the decompressed stream (allocated by the first sequential read).
  #win: Uint8Array = new Uint8Array(0);
  #winView = new DataView(this.#win.buffer);
  #winStart = 0;
  #winLen = 0;
  #pos = 0;
  #started = false;
  #ended = false;
  // Sequential source.
  #filePos = 0;
  #fileEof = false;
  #walker: BlockWalker | null = null;
  /** Instead of the walker, under tcpdump rules: the file's units, whatever their layout. */
  #units: UnitSource | null = null;
  /** Instead of the walker: a foreign stream read through a streaming decompressor. */
  #stream: StreamInflater | null = null;
  #streamError = "";
  #chunk: Uint8Array = new Uint8Array(0);
  #chunkPos = 0;
  // Random access: the bytes held (a plain file's window, a cached block or a streamed window).
  #blocks: BlockTable | null;
  #held: Uint8Array = new Uint8Array(0);
  #heldView = new DataView(this.#held.buffer);
  /** Decompressed-stream offset of #held[0], and valid bytes from there. */
  #heldStart = 0;
  #heldLen = 0;
  /** Block whose bytes are held, -1 for a plain window. */
  #heldBlock = -1;
  #scratch: Uint8Array = new Uint8Array(0);
  readonly #cacheSize: number;
  readonly #cacheIndex: number[] = [];
  readonly #cacheData: Uint8Array[] = [];
  readonly #cacheUse: number[] = [];
  #useClock = 0;
  /** The streamed block being read (see the module comment), its window and where it starts. */
  #bigStream: StreamInflater | null = null;
  #bigBlock = -1;
  #bigBuffer: Uint8Array = new Uint8Array(0);
  #bigStart = 0;
  #bigLen = 0;

  /** Opens `path` and reads its global header; throws when it is not a pcap file. */
  constructor(path: string, options: PcapReaderOptions = {}) {
    this.path = path;
    this.#wording = options.wording ?? FILE_WORDING;
    this.#tcpdump = options.accept === "tcpdump";
    this.#maxCaplen = Math.min(options.maxCaplen ?? MAX_CAPLEN, MAX_CAPLEN);
    this.#blocks = options.blocks !== undefined
      ? BlockTable.fromFloat64Array(options.blocks)
      : null;
    this.#cacheSize = Math.max(1, options.cacheBlocks ?? 4);
    this.#file = options.file ?? Deno.openSync(path, { read: true });
    try {
      if (options.compress !== undefined) this.compress = options.compress;
      else {
        const head = new Uint8Array(64);
        const n = readAt(this.#file, 0, head, 64);
        if (n < 4 && this.#tcpdump) {
          throw new Error(`Cannot index ${path}: expected a pcap file, found ${n} bytes`);
        }
        this.compress = detectCompression(head.subarray(0, n));
      }
      const h = this.#tcpdump ? this.#readForeignHeader() : this.#readHeader();
      this.littleEndian = h.littleEndian;
      this.nanosecond = h.nanosecond;
      this.versionMajor = h.versionMajor;
      this.versionMinor = h.versionMinor;
      this.snaplen = h.snaplen;
      this.linkType = h.linkType;
    } catch (err) {
      this.#stream?.close();
      this.#bigStream?.close();
      this.#units?.close();
      // A file handed in stays the caller's when the reader cannot be made.
      if (options.file === undefined) this.#file.close();
      throw err;
    }
  }

  /**
   * Moves to the next record. Returns false at the end of the file or at damage (see `damage`).
   * Allocates nothing per record (compressed files allocate once per decompressed block).
   */
  next(): boolean {
    if (this.#ended) return false;
    if (!this.#started) this.#startSequential();
    const number = this.recordNumber + 1;
    const hdrLen = this.#hdrLen;
    if (!this.#ensure(hdrLen)) {
      const left = this.#winLen - this.#pos;
      if (left > 0 || this.#sourceError() !== "") {
        this.#damaged(number, `truncated record header: expected ${hdrLen} bytes, found ${left}`);
      }
      return this.#end();
    }
    const v = this.#winView;
    const p = this.#pos;
    const le = this.littleEndian;
    const caplen = v.getUint32(p + 8, le);
    const len = v.getUint32(p + 12, le);
    if (caplen > this.#maxCaplen) {
      this.#damaged(
        number,
        `invalid captured length ${caplen}: expected at most ${this.#maxCaplen}`,
        `invalid packet capture length ${caplen}, bigger than maximum of ${this.#maxCaplen}`,
      );
      return this.#end();
    }
    if (len === 0 && this.#units !== null && this.#units.streaming) return this.#garbage(number);
    if (!this.#ensure(hdrLen + caplen)) {
      this.#damaged(
        number,
        `truncated record: expected ${hdrLen + caplen} bytes, found ${this.#winLen - this.#pos}`,
      );
      return this.#end();
    }
    const q = this.#pos; // #ensure may have moved the window
    this.recordNumber = number;
    this.#setRecord(this.#win, v, q, this.#winStart + q);
    this.dataOffset = q + hdrLen;
    this.#pos = q + hdrLen + caplen;
    this.#units?.noteRecord(this.offset, this.offset + hdrLen + caplen);
    if ((caplen > this.snaplen && this.snaplen > 0) || len < caplen) this.#noteOdd();
    return true;
  }

  /**
   * Under tcpdump rules, the block table of a compressed file read to its end (4 numbers per
   * block; empty for a plain file): what the units held, merged where records straddle them.
   */
  unitTable(): Float64Array {
    return this.#units?.blockTable() ?? new Float64Array(0);
  }

  /** Decompressed bytes of the file read so far (sequentially). */
  get bytesRead(): number {
    return this.#units !== null ? this.#units.produced : this.#winStart + this.#winLen;
  }

  /** Offset in the decompressed stream of the next record sequential reading would return. */
  get nextOffset(): number {
    return this.#started ? this.#winStart + this.#pos : GLOBAL_HEADER_SIZE;
  }

  /** Bytes of an incomplete last record where sequential reading stopped. */
  get pending(): number {
    return this.#winLen - this.#pos;
  }

  #end(): boolean {
    this.#ended = true;
    return false;
  }

  /**
   * A record of wire length 0 in a streamed unit (tcpdump rules): garbage, what a bomb of zeros
   * parses as; refuses a file with no record before it.
   */
  #garbage(number: number): boolean {
    const what = `record ${number} has wire length 0: expected a packet, found garbage ` +
      `(a decompression bomb or a damaged file)`;
    if (number === 1) throw new Error(`Cannot index ${this.path}: ${what}`);
    this.damage = what;
    return this.#end();
  }

  /**
   * Reads the record whose header starts at `offset` of the decompressed stream into the record
   * fields. Returns false when the file holds no record there (offset past its end; unless the
   * wording says that is an error); throws when the bytes there are not a valid record.
   * Decompresses only the block holding it. `spanEnd`: where the caller's next wanted records
   * end, as far as it knows; a plain file is read up to there (at most READ_WINDOW) at once.
   */
  readRecordAt(offset: number, blocks?: Float64Array, spanEnd = offset + FIRST_READ): boolean {
    if (blocks !== undefined && blocks !== this.#blocks?.data) {
      this.#blocks = BlockTable.fromFloat64Array(blocks);
      this.#cacheIndex.length = 0;
      this.#cacheUse.length = 0;
      this.#heldLen = 0;
    }
    const w = this.#wording;
    if (!this.#holds(offset, RECORD_HEADER_SIZE)) {
      if (!this.#bring(offset, RECORD_HEADER_SIZE, spanEnd)) {
        const missing = w.missing(this.path, offset, this.compress === "none");
        if (missing === null) return false;
        throw new Error(missing);
      }
      if (!this.#holds(offset, RECORD_HEADER_SIZE)) this.#short(offset, RECORD_HEADER_SIZE);
    }
    const caplen = this.#heldView.getUint32(offset - this.#heldStart + 8, this.littleEndian);
    if (caplen > MAX_CAPLEN) throw new Error(w.caplen(this.path, offset, caplen));
    const total = RECORD_HEADER_SIZE + caplen;
    if (!this.#holds(offset, total)) {
      this.#bring(offset, total, spanEnd);
      if (!this.#holds(offset, total)) this.#short(offset, total);
    }
    const at = offset - this.#heldStart;
    this.#setRecord(this.#held, this.#heldView, at, offset);
    return true;
  }

  /** The current record's bytes as a view (allocates a view; for convenience outside hot paths). */
  packet(): Uint8Array {
    return this.data.subarray(this.dataOffset, this.dataOffset + this.caplen);
  }

  /** The block table of a compressed file, 4 numbers per block (scans the file if none was given). */
  blockTable(): Float64Array {
    return this.#table().toFloat64Array();
  }

  #table(): BlockTable {
    if (this.#blocks === null) this.#blocks = this.#scanBlocks();
    return this.#blocks;
  }

  /** Closes the file. */
  close(): void {
    this.#stream?.close();
    this.#bigStream?.close();
    this.#units?.close();
    this.#file.close();
  }

  /** Iterates sequentially; yields the reader itself with the record fields filled. */
  *[Symbol.iterator](): Iterator<PcapReader> {
    while (this.next()) yield this;
  }

  /**
   * The global header: through random access when that costs nothing (a plain file, or a block
   * table given), else through the sequential source (a compressed file read in order).
   */
  #readHeader(): PcapHeader {
    let bytes: Uint8Array;
    let name = this.path;
    if (this.compress === "none" || this.#blocks !== null) {
      if (!this.#bring(0, GLOBAL_HEADER_SIZE, GLOBAL_HEADER_SIZE)) {
        const missing = this.#wording.missing(this.path, 0, this.compress === "none");
        if (missing !== null) throw new Error(missing);
      }
      bytes = this.#held.subarray(0, this.#heldStart === 0 ? this.#heldLen : 0);
      if (this.compress !== "none") name = `${this.path} (decompressed)`;
    } else {
      this.#startSequential();
      if (this.#winLen < GLOBAL_HEADER_SIZE && this.#sourceError() !== "") {
        throw new Error(this.#sourceError());
      }
      bytes = this.#win.subarray(0, this.#winLen);
      name = `${this.path} (decompressed)`;
    }
    const magic = bytes.length >= 4
      ? new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true)
      : 0;
    if (bytes.length < 4 || sniffMagic(magic) === null) {
      const wrong = bytes.length < GLOBAL_HEADER_SIZE && this.#wording !== FILE_WORDING
        ? this.#wording.short(this.path, 0, GLOBAL_HEADER_SIZE, bytes.length, -1)
        : this.#wording.notPcap(this.path, magic);
      if (wrong !== null) throw new Error(wrong);
    }
    return parseGlobalHeader(bytes, name);
  }

  /** Sets up the sequential source from the file's start and reads past the global header. */
  #startSequential(): void {
    this.#started = true;
    this.#win = new Uint8Array(WINDOW);
    this.#winView = new DataView(this.#win.buffer);
    if (this.compress !== "none" && this.#tcpdump) {
      this.#units = new UnitSource(this.#file, this.compress);
    } else if (this.compress !== "none") {
      const head = new Uint8Array(64);
      const n = readAt(this.#file, 0, head, head.length);
      if (isForeignStream(head.subarray(0, n), this.compress) && canStream(this.compress)) {
        const size = this.#file.statSync().size;
        this.#stream = new StreamInflater(this.#file, this.compress, 0, size);
      } else {
        this.#walker = new BlockWalker(this.#file, this.compress, this.path);
      }
    }
    this.#ensure(GLOBAL_HEADER_SIZE);
    this.#pos = Math.min(GLOBAL_HEADER_SIZE, this.#winLen);
  }

  /**
   * The global header under tcpdump rules (read in order: the modified format, libpcap's caplen
   * limit of the link type), refusing what cannot be indexed in the indexer's words.
   */
  #readForeignHeader(): PcapHeader {
    this.#startSequential();
    const have = this.#winLen;
    const v = this.#winView;
    const magic = have >= 4 ? sniffMagic(v.getUint32(0, true), true) : null;
    if (have >= 4 && magic === null) throw cannotIndex(this.path, v.getUint32(0, true));
    if (magic === null || have < GLOBAL_HEADER_SIZE) {
      const source = this.#sourceError();
      throw new Error(
        source !== ""
          ? `Cannot index ${this.path}: ${source}, and no complete block before it`
          : `Cannot index ${this.path}: expected a pcap file, found ${this.bytesRead} bytes of data`,
      );
    }
    this.#units?.noteRecord(0, GLOBAL_HEADER_SIZE);
    const h = parseGlobalHeader(this.#win.subarray(0, have), this.path, 0, true);
    if (h.modified) this.#hdrLen = MODIFIED_RECORD_HEADER_SIZE;
    this.#maxCaplen = maxCaplenFor(h.linkType);
    return h;
  }

  #noteOdd(): void {
    this.warningCount++;
    if (this.warnings.length >= MAX_WARNINGS) return;
    const what = this.len < this.caplen
      ? `original length ${this.len} is less than captured length ${this.caplen}`
      : `captured length ${this.caplen} exceeds the snaplen ${this.snaplen}`;
    this.warnings.push(
      `Record ${this.recordNumber} at offset ${this.offset} in ${this.path}: ${what}`,
    );
  }

  /**
   * Records why sequential reading stopped: cutcap's wording names the file, the record and its
   * offset; tcpdump rules use libpcap's (`libpcapWhat` when given, else the source's error, else
   * tcpdump's truncation message).
   */
  #damaged(number: number, what: string, libpcapWhat?: string): void {
    const source = this.#sourceError();
    if (this.#tcpdump) {
      const left = this.#winLen - this.#pos;
      this.damage = libpcapWhat ??
        (source !== "" ? source : `truncated dump file: last record incomplete (${left} bytes)`);
      return;
    }
    this.damage = `Damaged ${this.path}: record ${number} at offset ${
      this.#winStart + this.#pos
    }: ${what}${source !== "" ? ` (${source})` : ""}`;
  }

  #sourceError(): string {
    return this.#walker?.error ?? this.#units?.error ?? this.#streamError;
  }

  /** Makes `n` bytes available at #pos in the window; false when the stream ends first. */
  #ensure(n: number): boolean {
    while (this.#winLen - this.#pos < n) {
      if (this.#pos > 0) {
        this.#win.copyWithin(0, this.#pos, this.#winLen);
        this.#winStart += this.#pos;
        this.#winLen -= this.#pos;
        this.#pos = 0;
      }
      // A record longer than the window (a caplen beyond MAX_CAPLEN, tcpdump rules): the window
      // doubles as its bytes arrive, so memory follows the data, not the length a header claims.
      if (this.#winLen === this.#win.length) this.#growWindow();
      const got = this.#fill(this.#winLen, this.#win.length - this.#winLen);
      if (got === 0) return false;
      this.#winLen += got;
    }
    return true;
  }

  #growWindow(): void {
    const grown = new Uint8Array(this.#win.length * 2);
    grown.set(this.#win.subarray(0, this.#winLen));
    this.#win = grown;
    this.#winView = new DataView(grown.buffer);
  }

  /** Copies up to `max` bytes of the decompressed stream into the window at `at`. */
  #fill(at: number, max: number): number {
    if (this.#stream !== null) return this.#fillStreamed(at, max);
    if (this.#walker === null && this.#units === null) {
      if (this.#fileEof) return 0;
      const n = readAt(this.#file, this.#filePos, this.#win.subarray(at), max);
      if (n < max) this.#fileEof = true;
      this.#filePos += n;
      return n;
    }
    while (this.#chunkPos === this.#chunk.length) {
      const chunk = this.#walker === null
        ? this.#units!.next()
        : this.#walker.next()
        ? this.#walker.decode()
        : null;
      if (chunk === null) return 0;
      this.#chunk = chunk;
      this.#chunkPos = 0;
    }
    const n = Math.min(max, this.#chunk.length - this.#chunkPos);
    this.#win.set(this.#chunk.subarray(this.#chunkPos, this.#chunkPos + n), at);
    this.#chunkPos += n;
    return n;
  }

  /** #fill from a streamed foreign file; a decoding error ends the stream (see #sourceError). */
  #fillStreamed(at: number, max: number): number {
    if (this.#streamError !== "") return 0;
    try {
      return this.#stream!.read(this.#win.subarray(at, at + max));
    } catch (err) {
      this.#streamError = `Corrupt ${this.compress} stream in ${this.path}: ${
        err instanceof Error ? err.message : String(err)
      }`;
      return 0;
    }
  }

  #setRecord(bytes: Uint8Array, v: DataView, at: number, offset: number): void {
    const le = this.littleEndian;
    this.offset = offset;
    this.tsSec = v.getUint32(at, le);
    this.tsFrac = v.getUint32(at + 4, le);
    this.caplen = v.getUint32(at + 8, le);
    this.len = v.getUint32(at + 12, le);
    this.data = bytes;
    this.dataOffset = at + RECORD_HEADER_SIZE;
  }

  #holds(offset: number, length: number): boolean {
    return offset >= this.#heldStart && offset + length <= this.#heldStart + this.#heldLen;
  }

  #short(offset: number, need: number): never {
    const found = Math.max(0, this.#heldStart + this.#heldLen - offset);
    throw new Error(this.#wording.short(this.path, offset, need, found, this.#heldBlock));
  }

  /**
   * Brings bytes from `offset` on into #held: a window of a plain file (`length` bytes, or up to
   * `spanEnd`, at most READ_WINDOW), or the block holding it. False when the file holds nothing
   * at `offset`.
   */
  #bring(offset: number, length: number, spanEnd: number): boolean {
    if (this.compress === "none") {
      const want = Math.max(length, Math.min(READ_WINDOW, spanEnd - offset));
      if (this.#scratch.length < want) this.#scratch = new Uint8Array(Math.max(want, FIRST_READ));
      this.#hold(this.#scratch, offset, readAt(this.#file, offset, this.#scratch, want), -1);
      return this.#heldLen > 0;
    }
    const table = this.#table();
    const i = table.find(offset);
    if (i < 0) return false;
    if (
      table.compressedLength(i) > STREAM_ABOVE_BYTES ||
      table.uncompressedLength(i) > STREAM_ABOVE_BYTES
    ) {
      this.#bringStreamed(table, i, offset, length);
    } else {
      const slot = this.#cachedSlot(table, i);
      this.#hold(
        this.#cacheData[slot],
        table.uncompressedStart(i),
        this.#cacheData[slot].length,
        i,
      );
    }
    return true;
  }

  #hold(bytes: Uint8Array, start: number, length: number, block: number): void {
    if (bytes !== this.#held) {
      this.#held = bytes;
      this.#heldView = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    this.#heldStart = start;
    this.#heldLen = length;
    this.#heldBlock = block;
  }

  /**
   * Brings [offset, offset+length) of a streamed block into the stream window, decompressing on
   * from where the window is (from the block's start when the offset lies behind it).
   */
  #bringStreamed(table: BlockTable, block: number, offset: number, length: number): void {
    if (this.#bigStream === null || this.#bigBlock !== block || offset < this.#bigStart) {
      this.#bigStream?.close();
      const at = table.fileOffset(block);
      this.#bigStream = new StreamInflater(
        this.#file,
        this.compress,
        at,
        at + table.compressedLength(block),
      );
      this.#bigBlock = block;
      this.#bigStart = table.uncompressedStart(block);
      this.#bigLen = 0;
      if (this.#bigBuffer.length === 0) {
        this.#bigBuffer = new Uint8Array(READ_WINDOW * 4 + MAX_CAPLEN + RECORD_HEADER_SIZE);
      }
    }
    const buffer = this.#bigBuffer;
    const stream = this.#bigStream;
    try {
      // Skip whole windows before the offset.
      while (this.#bigStart + this.#bigLen <= offset) {
        this.#bigStart += this.#bigLen;
        this.#bigLen = stream.read(buffer);
        if (this.#bigLen === 0) break;
      }
      const drop = Math.min(offset - this.#bigStart, this.#bigLen);
      buffer.copyWithin(0, drop, this.#bigLen);
      this.#bigStart += drop;
      this.#bigLen -= drop;
      if (this.#bigLen < length) this.#bigLen += stream.read(buffer.subarray(this.#bigLen));
    } catch (e) {
      throw new Error(`${this.path}: ${(e as Error).message}`);
    }
    this.#hold(buffer, this.#bigStart, this.#bigLen, block);
  }

  /** Index of the cache slot holding block `i`, decompressing it on a miss. */
  #cachedSlot(table: BlockTable, i: number): number {
    this.#useClock++;
    const hit = this.#cacheIndex.indexOf(i);
    if (hit >= 0) {
      this.#cacheUse[hit] = this.#useClock;
      return hit;
    }
    const length = table.compressedLength(i);
    const raw = new Uint8Array(length);
    const n = readAt(this.#file, table.fileOffset(i), raw, length);
    if (n < length) {
      throw new Error(
        `Truncated block ${i} in ${this.path} at offset ${
          table.fileOffset(i)
        }: expected ${length} bytes, found ${n}`,
      );
    }
    let data: Uint8Array;
    try {
      data = decompressBlockRange(raw, this.compress);
    } catch (err) {
      // A damaged block yields the records its complete part decodes to (the bounds checks of
      // readRecordAt reject offsets beyond them); only a block with nothing to decode is refused.
      try {
        data = decompressBlock(raw, this.compress, true);
      } catch {
        throw new Error(
          `Corrupt block ${i} in ${this.path} at offset ${table.fileOffset(i)}: ${
            err instanceof Error ? err.message : String(err)
          }`,
        );
      }
    }
    let slot = this.#cacheIndex.length;
    if (slot >= this.#cacheSize) {
      slot = 0;
      for (let s = 1; s < this.#cacheUse.length; s++) {
        if (this.#cacheUse[s] < this.#cacheUse[slot]) slot = s;
      }
    }
    this.#cacheIndex[slot] = i;
    this.#cacheData[slot] = data;
    this.#cacheUse[slot] = this.#useClock;
    return slot;
  }

  /** Builds the block table by walking the file (decompressing only blocks that lack a size). */
  #scanBlocks(): BlockTable {
    const table = new BlockTable();
    const walker = new BlockWalker(this.#file, this.compress, this.path);
    let start = 0;
    while (walker.next()) {
      const length = walker.uncompressedLength >= 0 && !walker.truncated
        ? walker.uncompressedLength
        : walker.decode().length;
      table.push(walker.fileOffset, walker.length, start, length);
      start += length;
    }
    return table;
  }
}

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
 * The replay fast path's view of the reader: records of a plain little-endian pcap file for
 * ffi/libpcap.ts's offline handle (OfflineOptions.direct), which hands over to libpcap at the
 * first record this view leaves alone (`next` false: longer than libpcap's `maxCaplen`, cut off
 * by the end of the file, or a read error; libpcap reports those its own way). Packets are handed
 * out where they were read (`data` is always the reader's window, `offset` varies); `settle`
 * moves one to offset 0 (copyWithin, no allocation) when a writer that reuses views per length is
 * about to copy it, so only stored packets are moved. Allocates nothing per record.
 */
export class DirectReader {
  /** True once the file ended exactly after a complete record. */
  ended = false;
  readonly #reader: PcapReader;

  private constructor(reader: PcapReader) {
    this.#reader = reader;
  }

  /**
   * A direct reader for `path` positioned after its global header, or null when the file is not
   * one it reads (a regular plain file, little-endian, version 2.4, timestamps in the precision
   * asked for) or cannot be opened a second time.
   */
  static open(path: string, nanosecond: boolean, maxCaplen: number): DirectReader | null {
    let reader: PcapReader | undefined;
    try {
      // A FIFO or a terminal cannot be read twice; only regular files.
      if (!Deno.statSync(path).isFile || maxCaplen <= 0) return null;
      reader = new PcapReader(path, { maxCaplen });
      if (
        reader.compress === "none" && reader.littleEndian && reader.nanosecond === nanosecond &&
        reader.versionMajor === 2 && reader.versionMinor === 4
      ) {
        const direct = new DirectReader(reader);
        reader = undefined;
        return direct;
      }
      return null;
    } catch {
      return null;
    } finally {
      reader?.close();
    }
  }

  /** File offset of the next record (where libpcap continues after a hand-over). */
  get recordOffset(): number {
    return this.#reader.nextOffset;
  }

  /** Reads the next record into `h`'s packet fields; see the class comment. */
  next(h: RecordFields): boolean {
    const r = this.#reader;
    try {
      if (!r.next()) {
        this.ended = r.damage === null;
        return false;
      }
    } catch {
      return false; // a read error: libpcap reads from here and reports it
    }
    h.tsSec = r.tsSec;
    h.tsFrac = r.tsFrac;
    h.caplen = r.caplen;
    h.wireLen = r.len;
    h.data = r.data;
    h.offset = r.dataOffset;
    return true;
  }

  /**
   * Moves the packet `h` holds (from this reader) to offset 0 of `data`: the bytes before it are
   * read already, and it ends where the unread ones start, so nothing unread is overwritten.
   */
  settle(h: RecordFields): void {
    const at = h.offset;
    if (at !== 0) {
      h.data.copyWithin(0, at, at + h.caplen);
      h.offset = 0;
    }
  }

  /** Closes the file. */
  close(): void {
    try {
      this.#reader.close();
    } catch {
      // Already closed.
    }
  }
}
