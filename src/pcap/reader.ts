/**
 * Reads pcap files: plain, or compressed as cutcap writes them (gzip members / zstd frames;
 * other gzip/zstd pcap files work too, decompressed whole). Both byte orders, µs and ns magic.
 *
 * Sequential: `next()` moves to the next record and fills the reader's record fields (no
 * allocation per record; `data` is a long-lived buffer, valid until the next call).
 * Random access: `readRecordAt(offset)` reads the record whose header starts at `offset` of the
 * decompressed stream, decompressing only the block that holds it (small LRU of blocks).
 *
 * Damaged files: every good record before the damage is returned; then `next()` returns false
 * and `damage` says what was wrong, naming the file, the record number and its offset.
 */
import {
  BlockTable,
  type Compression,
  decompressBlock,
  detectCompression,
  isForeignStream,
  readAt,
} from "./block_format.ts";
import { BlockWalker } from "./block_reader.ts";
import { canStream, StreamInflater } from "./stream_inflate.ts";
import { GLOBAL_HEADER_SIZE, MAX_CAPLEN, parseGlobalHeader, RECORD_HEADER_SIZE } from "./format.ts";

/** Options for `PcapReader`. */
export interface PcapReaderOptions {
  /**
   * The file's block table (FinalizedFile.blocks, or from its index): 4 numbers per block. Without
   * it the first `readRecordAt` of a compressed file scans the file for it.
   */
  blocks?: Float64Array;
  /** Decompressed blocks kept for `readRecordAt`, default 4. */
  cacheBlocks?: number;
}

/** Warnings kept in `warnings` (more are only counted). */
const MAX_WARNINGS = 10;
const WINDOW = 1 << 20;
/** First read of a random-access record: the header and a full-size Ethernet frame or more. */
const FIRST_READ = 65536 + RECORD_HEADER_SIZE;

/** A pcap file reader; see the module comment. */
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
  data: Uint8Array;
  dataOffset = 0;

  /** Why sequential reading stopped early; null while none found. */
  damage: string | null = null;
  /** Notes about odd but readable records (first few only). */
  readonly warnings: string[] = [];
  /** Number of warnings, including those not kept. */
  warningCount = 0;

  readonly #file: Deno.FsFile;
  // Sequential window over the decompressed stream.
  #win = new Uint8Array(WINDOW);
  #winView = new DataView(this.#win.buffer);
  #winStart = 0;
  #winLen = 0;
  #pos = 0;
  #ended = false;
  // Sequential source.
  #filePos = 0;
  #fileEof = false;
  #walker: BlockWalker | null = null;
  /** Instead of the walker: a foreign stream read through a streaming decompressor. */
  #stream: StreamInflater | null = null;
  #streamError = "";
  #chunk: Uint8Array = new Uint8Array(0);
  #chunkPos = 0;
  // Random access.
  #blocks: BlockTable | null;
  readonly #cacheSize: number;
  readonly #cacheIndex: number[] = [];
  readonly #cacheData: Uint8Array[] = [];
  readonly #cacheView: DataView[] = [];
  readonly #cacheUse: number[] = [];
  #useClock = 0;
  #rbuf = new Uint8Array(FIRST_READ);
  #rview = new DataView(this.#rbuf.buffer);

  /** Opens `path` and reads its global header; throws when it is not a pcap file. */
  constructor(path: string, options: PcapReaderOptions = {}) {
    this.path = path;
    this.#blocks = options.blocks !== undefined
      ? BlockTable.fromFloat64Array(options.blocks)
      : null;
    this.#cacheSize = Math.max(1, options.cacheBlocks ?? 4);
    this.#file = Deno.openSync(path, { read: true });
    try {
      const head = new Uint8Array(64);
      const n = readAt(this.#file, 0, head, head.length);
      this.compress = detectCompression(head.subarray(0, n));
      if (isForeignStream(head.subarray(0, n), this.compress) && canStream(this.compress)) {
        const size = this.#file.statSync().size;
        this.#stream = new StreamInflater(this.#file, this.compress, 0, size);
      } else if (this.compress !== "none") {
        this.#walker = new BlockWalker(this.#file, this.compress, path);
      }
      if (!this.#ensure(GLOBAL_HEADER_SIZE) && this.#sourceError() !== "") {
        throw new Error(this.#sourceError());
      }
      const h = parseGlobalHeader(this.#win.subarray(0, this.#winLen), this.#sourceName());
      this.littleEndian = h.littleEndian;
      this.nanosecond = h.nanosecond;
      this.versionMajor = h.versionMajor;
      this.versionMinor = h.versionMinor;
      this.snaplen = h.snaplen;
      this.linkType = h.linkType;
      this.#pos = GLOBAL_HEADER_SIZE;
      this.data = this.#win;
    } catch (err) {
      this.#file.close();
      throw err;
    }
  }

  /**
   * Moves to the next record. Returns false at the end of the file or at damage (see `damage`).
   * Allocates nothing per record (compressed files allocate once per decompressed block).
   */
  next(): boolean {
    if (this.#ended) return false;
    const number = this.recordNumber + 1;
    if (!this.#ensure(RECORD_HEADER_SIZE)) {
      const left = this.#winLen - this.#pos;
      if (left > 0 || this.#sourceError() !== "") {
        this.#damaged(number, `truncated record header: expected 16 bytes, found ${left}`);
      }
      this.#ended = true;
      return false;
    }
    const v = this.#winView;
    const p = this.#pos;
    const le = this.littleEndian;
    const caplen = v.getUint32(p + 8, le);
    const len = v.getUint32(p + 12, le);
    if (caplen > MAX_CAPLEN) {
      this.#damaged(number, `invalid captured length ${caplen}: expected at most ${MAX_CAPLEN}`);
      this.#ended = true;
      return false;
    }
    if (!this.#ensure(RECORD_HEADER_SIZE + caplen)) {
      this.#damaged(
        number,
        `truncated record: expected ${RECORD_HEADER_SIZE + caplen} bytes, found ${
          this.#winLen - this.#pos
        }`,
      );
      this.#ended = true;
      return false;
    }
    const q = this.#pos; // #ensure may have moved the window
    this.recordNumber = number;
    this.offset = this.#winStart + q;
    this.tsSec = v.getUint32(q, le);
    this.tsFrac = v.getUint32(q + 4, le);
    this.caplen = caplen;
    this.len = len;
    this.data = this.#win;
    this.dataOffset = q + RECORD_HEADER_SIZE;
    this.#pos = q + RECORD_HEADER_SIZE + caplen;
    if ((caplen > this.snaplen && this.snaplen > 0) || len < caplen) this.#noteOdd();
    return true;
  }

  /**
   * Reads the record whose header starts at `offset` of the decompressed stream into the record
   * fields. Returns false when the file holds no record there (offset past its end); throws when
   * the bytes there are not a valid record. Decompresses only the block holding it.
   */
  readRecordAt(offset: number, blocks?: Float64Array): boolean {
    if (blocks !== undefined && blocks !== this.#blocks?.data) {
      this.#blocks = BlockTable.fromFloat64Array(blocks);
      this.#cacheIndex.length = 0;
      this.#cacheUse.length = 0;
    }
    return this.compress === "none" ? this.#readPlainAt(offset) : this.#readBlockAt(offset);
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
    this.#file.close();
  }

  /** Iterates sequentially; yields the reader itself with the record fields filled. */
  *[Symbol.iterator](): Iterator<PcapReader> {
    while (this.next()) yield this;
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

  #damaged(number: number, what: string): void {
    const source = this.#sourceError();
    this.damage = `Damaged ${this.path}: record ${number} at offset ${
      this.#winStart + this.#pos
    }: ${what}${source !== "" ? ` (${source})` : ""}`;
  }

  #sourceError(): string {
    return this.#walker?.error ?? this.#streamError;
  }

  #sourceName(): string {
    return this.compress === "none" ? this.path : `${this.path} (decompressed)`;
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
      const got = this.#fill(this.#winLen, this.#win.length - this.#winLen);
      if (got === 0) return false;
      this.#winLen += got;
    }
    return true;
  }

  /** Copies up to `max` bytes of the decompressed stream into the window at `at`. */
  #fill(at: number, max: number): number {
    if (this.#stream !== null) return this.#fillStreamed(at, max);
    if (this.#walker === null) {
      if (this.#fileEof) return 0;
      const n = readAt(this.#file, this.#filePos, this.#win.subarray(at), max);
      if (n < max) this.#fileEof = true;
      this.#filePos += n;
      return n;
    }
    while (this.#chunkPos === this.#chunk.length) {
      if (!this.#walker.next()) return 0;
      this.#chunk = this.#walker.decode();
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

  #readPlainAt(offset: number): boolean {
    let n = readAt(this.#file, offset, this.#rbuf, FIRST_READ);
    if (n === 0) return false;
    if (n < RECORD_HEADER_SIZE) {
      throw new Error(
        `Truncated record at offset ${offset} in ${this.path}: expected 16 header bytes, found ${n}`,
      );
    }
    const v = this.#rview;
    const caplen = this.#checkedCaplen(v, 0, offset);
    const total = RECORD_HEADER_SIZE + caplen;
    if (n < total && n === FIRST_READ) {
      if (this.#rbuf.length < total) {
        const grown = new Uint8Array(MAX_CAPLEN + RECORD_HEADER_SIZE);
        grown.set(this.#rbuf);
        this.#rbuf = grown;
        this.#rview = new DataView(grown.buffer);
      }
      n += readAt(this.#file, offset + n, this.#rbuf.subarray(n), total - n);
    }
    if (n < total) {
      throw new Error(
        `Truncated record at offset ${offset} in ${this.path}: expected ${total} bytes, found ${n}`,
      );
    }
    this.#setRecord(this.#rbuf, this.#rview, 0, offset);
    return true;
  }

  #readBlockAt(offset: number): boolean {
    const table = this.#table();
    const i = table.find(offset);
    if (i < 0) return false;
    const slot = this.#cachedSlot(table, i);
    const block = this.#cacheData[slot];
    const v = this.#cacheView[slot];
    const at = offset - table.uncompressedStart(i);
    if (at + RECORD_HEADER_SIZE > block.length) {
      throw new Error(
        `Invalid record offset ${offset} in ${this.path}: its header crosses the end of block ${i}`,
      );
    }
    const caplen = this.#checkedCaplen(v, at, offset);
    if (at + RECORD_HEADER_SIZE + caplen > block.length) {
      throw new Error(
        `Invalid record offset ${offset} in ${this.path}: the record crosses the end of block ${i}`,
      );
    }
    this.#setRecord(block, v, at, offset);
    return true;
  }

  #checkedCaplen(v: DataView, at: number, offset: number): number {
    const caplen = v.getUint32(at + 8, this.littleEndian);
    if (caplen > MAX_CAPLEN) {
      throw new Error(
        `Invalid record at offset ${offset} in ${this.path}: captured length ${caplen}, expected at most ${MAX_CAPLEN}`,
      );
    }
    return caplen;
  }

  #setRecord(bytes: Uint8Array, v: DataView, at: number, offset: number): void {
    this.offset = offset;
    this.tsSec = v.getUint32(at, this.littleEndian);
    this.tsFrac = v.getUint32(at + 4, this.littleEndian);
    this.caplen = v.getUint32(at + 8, this.littleEndian);
    this.len = v.getUint32(at + 12, this.littleEndian);
    this.data = bytes;
    this.dataOffset = at + RECORD_HEADER_SIZE;
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
      // Partial decoding, so the complete records of a damaged last block stay readable; the
      // bounds checks of the caller reject offsets beyond what decoded.
      data = decompressBlock(raw, this.compress, true);
    } catch (err) {
      throw new Error(
        `Corrupt block ${i} in ${this.path} at offset ${table.fileOffset(i)}: ${
          err instanceof Error ? err.message : String(err)
        }`,
      );
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
    this.#cacheView[slot] = new DataView(data.buffer, data.byteOffset, data.length);
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
