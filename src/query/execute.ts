/**
 * Runs a query over an archive and streams the answer as one pcap (or pcapng, when the answer spans
 * several link types or the client asks): catalog (which files) → index (which packets) → record
 * reader → k-way merge by time → pcap/pcapng bytes. The stream is pulled: each pull does a
 * bounded amount of synchronous work, so a long query never starves the server, and a client that goes
 * away cancels the stream, which closes every file at once.
 */
import type { Catalog, CatalogEntry } from "../archive/catalog.ts";
import { sharedIndexCache } from "./index_cache.ts";
import { indexPathFor } from "../archive/naming.ts";
import type { Query } from "./ast.ts";
import { type Cursor, CursorHeap } from "./merge.ts";
import { READ_WINDOW, RecordReader } from "../pcap/record_reader.ts";
import { frameDecider, selectPackets } from "./select.ts";
import { closeInputs, type ExtraInput, takeFile, wantedInputs } from "./open_files.ts";
import { timeBounds } from "./match.ts";
import {
  GLOBAL_HEADER_SIZE,
  MAX_CAPLEN,
  writeGlobalHeader,
  writeRecordHeader,
} from "../pcap/format.ts";
import {
  finishPacketBlock,
  packetBlockSize,
  writeInterfaceBlock,
  writePacketBlockHeader,
  writeSectionHeader,
} from "../pcap/pcapng.ts";

/** Answer file format: pcap (one link type) or pcapng (one interface block per link type/snaplen). */
export type AnswerFormat = "pcap" | "pcapng";

/** Limits of one query. */
export interface QueryLimits {
  /** Most packets to return. */
  limit: number;
  /** Most bytes of pcap to return (header included). */
  maxBytes: number;
}

/** How a query ended, for metrics and logs. */
export type QueryOutcome = "complete" | "limited" | "cancelled" | "error";

/** Totals of a finished query. */
export interface QueryResult {
  outcome: QueryOutcome;
  packets: number;
  bytes: number;
  files: number;
  /** Answer format. */
  format: AnswerFormat;
  /** Files skipped because their link type differs from a pcap answer's. */
  skippedFiles: number;
  /** Files left out because their index or pcap could not be read (vanished, damaged), with why. */
  unreadable: { file: string; reason: string }[];
  error?: string;
}

/** Bytes produced per pull: large enough to be efficient, small enough to keep the server responsive. */
const CHUNK = 256 * 1024;
/**
 * Size of a chunk's buffer: the file header, a run of pcapng interface blocks and the largest
 * record always fit in one.
 */
const CHUNK_ROOM = 65536 + 32 + MAX_CAPLEN;

/** Options of queryPcapStream. */
export interface QueryStreamOptions extends QueryLimits {
  /** pcap (default) or pcapng. */
  format?: AnswerFormat;
  onFinish?: (result: QueryResult) => void;
  /**
   * Files besides the catalog's (open files' flushed prefixes, see open_files.ts), gathered before
   * the catalog's list was read; the query closes their descriptors.
   */
  extra?: ExtraInput[];
}

/**
 * Link types of the files a query may read (those in its time range), ascending: more than one
 * means a pcap answer would leave files out, so the answer should be pcapng.
 */
export function candidateLinkTypes(catalog: Catalog, q: Query): number[] {
  const bounds = timeBounds(q);
  const types = new Set(catalog.files({ from: bounds.from, to: bounds.to }).map((e) => e.linkType));
  return [...types].sort((a, b) => a - b);
}

/**
 * Streams the packets of `catalog`'s files that match `q`, merged by time, as a pcap file (or a
 * pcapng file with `format: "pcapng"`).
 */
export function queryPcapStream(
  catalog: Catalog,
  q: Query,
  options: QueryStreamOptions,
): ReadableStream<Uint8Array> {
  const plan = new QueryPlan(catalog, q, options);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          await plan.openDueFiles();
          const chunk = plan.produce(CHUNK);
          if (chunk.length > 0) controller.enqueue(chunk);
          if (plan.finished) {
            controller.close();
            plan.finish(plan.result.outcome);
            return;
          }
          if (chunk.length > 0) return;
        }
      } catch (error) {
        plan.result.error = error instanceof Error ? error.message : String(error);
        plan.finish("error");
        controller.error(error);
      }
    },
    cancel() {
      plan.finish("cancelled");
    },
  }, { highWaterMark: 1 });
}

/** Longest stretch of synchronous query work before the event loop gets a turn, ms. */
const SLICE_MS = 10;

/** Resolves after the event loop has run timers and I/O (a macrotask, not a microtask). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** The state of one running query. */
class QueryPlan {
  readonly result: QueryResult = {
    outcome: "complete",
    packets: 0,
    bytes: 0,
    files: 0,
    format: "pcap",
    skippedFiles: 0,
    unreadable: [],
  };
  finished = false;
  readonly #catalog: Catalog;
  readonly #query: Query;
  readonly #limits: QueryLimits;
  readonly #onFinish?: (result: QueryResult) => void;
  readonly #pending: (CatalogEntry | ExtraInput)[];
  readonly #heap = new CursorHeap();
  #linkType = -1;
  #nanosecond = false;
  #headerSent = false;
  #reported = false;
  /** pcapng: interface number per "linkType/snaplen/resolution", and blocks not yet written. */
  readonly #interfaces = new Map<string, number>();
  readonly #newInterfaces: { linkType: number; snaplen: number; nanosecond: boolean }[] = [];
  /** pcapng: each interface's timestamp resolution, by interface number. */
  readonly #interfaceNanos: boolean[] = [];

  constructor(catalog: Catalog, q: Query, options: QueryStreamOptions) {
    this.result.format = options.format ?? "pcap";
    this.#catalog = catalog;
    this.#query = q;
    this.#limits = options;
    this.#onFinish = options.onFinish;
    const bounds = timeBounds(q);
    this.#pending = catalog.files({ from: bounds.from, to: bounds.to });
    // Open files are more inputs of the same plan, in the same first-packet order.
    const extra = options.extra ?? [];
    const wanted = wantedInputs(extra, catalog, bounds);
    closeInputs(extra.filter((x) => !wanted.includes(x)));
    if (wanted.length > 0) {
      this.#pending = [...this.#pending, ...wanted].sort((a, b) => a.firstTs - b.firstTs);
    }
  }

  /** Produces up to about `budget` bytes of pcap. */
  produce(budget: number): Uint8Array {
    // Each chunk is handed to the stream, so it is a new buffer; one view serves all its records.
    const out = new Uint8Array(Math.max(budget, CHUNK_ROOM));
    const view = new DataView(out.buffer);
    let used = 0;
    if (!this.#headerSent) {
      used = this.#writeHeader(out, view);
      this.#headerSent = true;
    }
    used = this.#writeNewInterfaces(view, used);
    const pcapng = this.result.format === "pcapng";
    while (used < budget) {
      if (this.#due()) break; // opened by the next `openDueFiles`, asynchronously
      const cursor = this.#heap.peek();
      if (!cursor) {
        this.finished = true;
        break;
      }
      const record = cursor.head;
      const size = pcapng ? packetBlockSize(record.caplen) : 16 + record.caplen;
      if (
        this.result.packets >= this.#limits.limit ||
        this.result.bytes + used + size > this.#limits.maxBytes
      ) {
        this.result.outcome = "limited";
        this.finished = true;
        break;
      }
      if (used + size > out.length) break; // the record opens the next chunk
      used += pcapng
        ? this.#writePacketBlock(out, view, used, cursor)
        : this.#writeRecord(out, view, used, cursor);
      this.result.packets++;
      this.#advance(cursor);
    }
    this.result.bytes += used;
    return out.subarray(0, used);
  }

  /** Reports the outcome once and releases every file. */
  finish(outcome: QueryOutcome): void {
    if (this.#reported) return;
    this.#reported = true;
    this.finished = true;
    this.result.outcome = outcome;
    this.#heap.closeAll();
    closeInputs(this.#pending.filter((x) => "index" in x) as ExtraInput[]);
    this.#onFinish?.(this.result);
  }

  /**
   * Opens pending files whose first packet is not after the merge's current head, one at a time,
   * reading indexes asynchronously and giving the event loop a turn every `SLICE_MS`.
   */
  async openDueFiles(): Promise<void> {
    let sliceStart = performance.now();
    while (this.#due()) {
      const entry = this.#pending.shift()!;
      await this.#open(entry);
      // An open file #open left unread (nothing selected): its descriptor goes.
      if ("index" in entry) closeInputs([entry]);
      if (performance.now() - sliceStart > SLICE_MS) {
        await nextTurn();
        sliceStart = performance.now();
      }
    }
  }

  #due(): boolean {
    if (this.#pending.length === 0 || this.#reported) return false;
    const head = this.#heap.peek();
    return !head || this.#pending[0].firstTs <= head.sec + head.nsec / 1e9 + 1e-6;
  }

  /** Moves `cursor` to its next record; a file that fails to read is dropped and reported. */
  #advance(cursor: Cursor): void {
    let more: boolean;
    try {
      more = cursor.advance();
    } catch (error) {
      this.result.unreadable.push({ file: cursor.file, reason: errorText(error) });
      more = false;
    }
    if (!more) cursor.close();
    this.#heap.fixTop(!more);
  }

  async #open(entry: CatalogEntry | ExtraInput): Promise<void> {
    const extra = "index" in entry ? entry : null;
    const path = extra?.absPath ?? `${this.#catalog.outDir}/${entry.path}`;
    let index;
    try {
      index = extra?.index ?? await sharedIndexCache.load(indexPathFor(path));
    } catch (error) {
      this.result.unreadable.push({ file: entry.path, reason: errorText(error) });
      return;
    }
    if (this.#reported) return; // cancelled while the index was read
    const selection = selectPackets(index, this.#query);
    if (selection.offsets.length === 0) return;
    let iface = 0;
    if (this.result.format === "pcapng") {
      iface = this.#interfaceFor(index.header);
    } else if (this.#linkType === -1) {
      this.#linkType = index.header.linkType;
      this.#nanosecond = index.header.nanosecond;
    } else if (index.header.linkType !== this.#linkType) {
      this.result.skippedFiles++;
      return;
    }
    let reader: RecordReader;
    // An open file is read through the descriptor held since the query started.
    const file = extra === null ? null : takeFile(extra);
    try {
      reader = new RecordReader(path, {
        compress: index.header.compress,
        blocks: index.blocks,
        file: file ?? undefined,
      });
    } catch (error) {
      file?.close();
      this.result.unreadable.push({ file: entry.path, reason: errorText(error) });
      return;
    }
    this.result.files++;
    const decides = selection.check && frameDecider(index, this.#query, selection.check);
    const cursor = fileCursor(this.result.files, entry.path, reader, selection.offsets, decides);
    cursor.iface = iface;
    let first = false;
    try {
      first = cursor.advance();
    } catch (error) {
      this.result.unreadable.push({ file: entry.path, reason: errorText(error) });
    }
    if (first) this.#heap.push(cursor);
    else cursor.close();
  }

  /** The pcapng interface of a file's link type, snaplen and resolution (queued when new). */
  #interfaceFor(header: { linkType: number; snaplen: number; nanosecond: boolean }): number {
    const name = `${header.linkType}/${header.snaplen}/${header.nanosecond}`;
    let iface = this.#interfaces.get(name);
    if (iface === undefined) {
      iface = this.#interfaces.size;
      this.#interfaces.set(name, iface);
      this.#interfaceNanos.push(header.nanosecond);
      this.#newInterfaces.push({
        linkType: header.linkType,
        snaplen: header.snaplen,
        nanosecond: header.nanosecond,
      });
    }
    return iface;
  }

  /** Writes the interface blocks of files opened since the last chunk (before their packets). */
  #writeNewInterfaces(view: DataView, at: number): number {
    let used = at;
    for (const iface of this.#newInterfaces.splice(0)) {
      used += writeInterfaceBlock(view, used, iface);
    }
    return used;
  }

  /** Copies the cursor's record as an enhanced packet block of its file's interface. */
  #writePacketBlock(out: Uint8Array, view: DataView, at: number, cursor: Cursor): number {
    const record = cursor.head;
    const iface = cursor.iface ?? 0;
    const nanosecond = this.#interfaceNanos[iface];
    writePacketBlockHeader(view, at, {
      iface,
      sec: cursor.sec,
      frac: nanosecond ? cursor.nsec : Math.floor(cursor.nsec / 1000),
      unitsPerSecond: nanosecond ? 1e9 : 1e6,
      caplen: record.caplen,
      wireLen: record.wireLen,
    });
    out.set(record.bytes.subarray(record.at + 16, record.at + 16 + record.caplen), at + 28);
    return finishPacketBlock(out, view, at);
  }

  #writeHeader(out: Uint8Array, view: DataView): number {
    if (this.result.format === "pcapng") return writeSectionHeader(view, 0);
    writeGlobalHeader(new DataView(out.buffer), 0, {
      linkType: this.#linkType === -1 ? 1 : this.#linkType,
      snaplen: MAX_CAPLEN,
      nanosecond: this.#nanosecond,
    });
    return GLOBAL_HEADER_SIZE;
  }

  /** Copies the cursor's record, converting its timestamp to the answer's precision. */
  #writeRecord(out: Uint8Array, view: DataView, at: number, cursor: Cursor): number {
    const record = cursor.head;
    const frac = this.#nanosecond ? cursor.nsec : Math.floor(cursor.nsec / 1000);
    writeRecordHeader(view, at, cursor.sec, frac, record.caplen, record.wireLen);
    out.set(record.bytes.subarray(record.at + 16, record.at + 16 + record.caplen), at + 16);
    return 16 + record.caplen;
  }
}

/** Room after the last wanted record's start when its length is not known yet (an Ethernet frame). */
const SPAN_SLACK = 16 + 1522;

/**
 * A cursor over the selected offsets of one file; `decides`, when given, drops the records of
 * undecided packets whose frame does not match (select.ts frameDecider).
 */
function fileCursor(
  rank: number,
  file: string,
  reader: RecordReader,
  offsets: Float64Array,
  decides?: (i: number, bytes: Uint8Array, at: number, caplen: number) => boolean,
): Cursor {
  let next = 0;
  // First offset past the reader's span: reads cover the wanted records within one window, so
  // sparse selections do not read whole windows of unwanted packets.
  let far = 0;
  const cursor: Cursor = {
    rank,
    file,
    head: reader.record,
    sec: 0,
    nsec: 0,
    advance() {
      let record;
      do {
        if (next >= offsets.length) return false;
        const at = offsets[next++];
        if (far < next) far = next;
        while (far < offsets.length && offsets[far] - at < READ_WINDOW - SPAN_SLACK) far++;
        record = reader.read(at, offsets[far - 1] + SPAN_SLACK);
      } while (decides && !decides(next - 1, record.bytes, record.at, record.caplen));
      cursor.head = record;
      cursor.sec = record.tsSec;
      cursor.nsec = reader.nanosecond ? record.tsFrac : record.tsFrac * 1000;
      return true;
    },
    close() {
      reader.close();
    },
  };
  return cursor;
}

/** An error's message without the OS error number tail. */
export function errorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/ \(os error \d+\).*$/s, "");
}
