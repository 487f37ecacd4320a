/**
 * The files still being written, as extra inputs of a query: each worker publishes its open file's
 * flushed prefix (src/store/open_file.ts), and this module indexes that prefix the way
 * `cutcap index` indexes a foreign pcap — incrementally, keeping one index builder per open file
 * between queries, so each query reads only what was flushed since the previous one.
 *
 * Hand-over without tearing or doubling: the inputs are gathered before the caller reads the
 * catalog's list. Each open file is opened then and its descriptor held, so a rename during the
 * query changes nothing for it, and only the published prefix (whole records) is read. A file
 * whose temporary name is gone was finalized: it is read under its final name with its own index.
 * The query drops every input whose final name the catalog lists by then (see `QueryPlan`), so a
 * file counts once, as the catalog's complete file when it has it.
 */
import { type OpenFileState, readOpenStates } from "../store/open_file.ts";
import { PacketIndexer } from "../index/index_pcap.ts";
import { decodeFileIndex, type FileIndex } from "../index/index_reader.ts";
import { indexPathFor } from "../archive/naming.ts";
import { GLOBAL_HEADER_SIZE } from "../pcap/format.ts";
import { RecordReader } from "../pcap/record_reader.ts";
import { sharedIndexCache } from "./index_cache.ts";

/** A file a query reads besides the catalog's: an open file's prefix, or a just-finalized file. */
export interface ExtraInput {
  /** Archive-relative path named in answers: the temporary name while open. */
  path: string;
  /** Archive-relative final name: the input is dropped when the catalog lists it. */
  finalPath: string;
  /** Absolute path, for messages and for opening a finalized file. */
  absPath: string;
  firstTs: number;
  lastTs: number;
  packets: number;
  index: FileIndex;
  /** The open file's descriptor, held since the inputs were gathered; null for a finalized file.
   * Whoever reads the input takes it (and closes it), see `takeFile`. */
  file: Deno.FsFile | null;
}

/** Records indexed between two yields to the event loop. */
const SLICE_RECORDS = 20_000;

/** One open file's index, extended as more of it is flushed. */
class OpenIndex {
  readonly tmp: string;
  readonly ino: number;
  readonly #indexer: PacketIndexer;
  /** Stream offset of the next record to index. */
  #scanned = GLOBAL_HEADER_SIZE;
  #index: FileIndex | null = null;
  #indexedTo = -1;
  /** The extension running now, so concurrent queries wait for it instead of racing it. */
  busy: Promise<FileIndex> | null = null;

  constructor(tmp: string, ino: number, spillDir: string) {
    this.tmp = tmp;
    this.ino = ino;
    this.#indexer = new PacketIndexer(spillDir);
  }

  /**
   * The index of the prefix `state` describes, reading `file` (positioned by each read, so the
   * query may use it afterwards) from where the last call stopped.
   */
  async extend(state: OpenFileState, absPath: string, file: Deno.FsFile): Promise<FileIndex> {
    while (this.busy !== null) await this.busy;
    if (this.#index !== null && this.#indexedTo === state.dataSize) return this.#index;
    const run = this.#extend(state, absPath, file);
    this.busy = run;
    try {
      return await run;
    } finally {
      this.busy = null;
    }
  }

  async #extend(state: OpenFileState, absPath: string, file: Deno.FsFile): Promise<FileIndex> {
    const blocks = Float64Array.from(state.blocks);
    // Not closed: the descriptor belongs to the query.
    const reader = new RecordReader(absPath, { compress: state.compress, blocks, file });
    const scale = reader.nanosecond ? 1e-9 : 1e-6;
    const end = state.dataSize;
    let n = 0;
    while (this.#scanned < end) {
      const at = this.#scanned;
      const r = reader.read(at, end);
      if (at + 16 + r.caplen > end) break; // cannot happen: the prefix holds whole records
      const ts = r.tsSec + r.tsFrac * scale;
      this.#indexer.add(state.linkType, r.bytes, r.at + 16, r.caplen, ts, at, r.wireLen);
      this.#scanned = at + 16 + r.caplen;
      if (++n % SLICE_RECORDS === 0) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    return this.#encode(state, blocks);
  }

  #encode(state: OpenFileState, blocks: Float64Array): FileIndex {
    const bytes = this.#indexer.builder.encode({
      pcapName: state.final.slice(state.final.lastIndexOf("/") + 1),
      linkType: state.linkType,
      snaplen: state.snaplen,
      nanosecond: state.nanosecond,
      compress: state.compress,
      blocks,
      iface: state.iface,
      worker: state.worker,
      pcapSize: state.bytesOnDisk,
      dataSize: state.dataSize,
    });
    this.#index = decodeFileIndex(this.tmp, bytes);
    this.#indexedTo = state.dataSize;
    return this.#index;
  }

  close(): void {
    this.#indexer.close();
  }
}

/** Indexes of open files, kept between queries; one per archive directory and process, shared by
 * the query routes, the page and the exporter so that each open file is indexed once. */
export class OpenFiles {
  readonly outDir: string;
  readonly #indexes = new Map<string, OpenIndex>();

  constructor(outDir: string) {
    this.outDir = outDir.replace(/\/+$/, "") || "/";
  }

  /**
   * The open files' flushed prefixes (descriptors held) and the files their workers finalized
   * last, overlapping [from, to]. Call before reading the catalog's file list.
   */
  async inputs(from = -Infinity, to = Infinity): Promise<ExtraInput[]> {
    const out: ExtraInput[] = [];
    const live = new Set<string>();
    try {
      for (const state of readOpenStates(this.outDir)) {
        if (state.previous !== "") this.#addFinalized(out, state.previous, from, to);
        const input = await this.#openInput(state);
        if (input === null) this.#addFinalized(out, state.final, from, to);
        else {
          live.add(state.tmp);
          if (input.packets > 0 && input.lastTs >= from && input.firstTs <= to) out.push(input);
          else input.file?.close();
        }
      }
    } catch (error) {
      closeInputs(out);
      throw error;
    }
    // Files no longer open: their indexes go.
    for (const [tmp, index] of this.#indexes) {
      if (!live.has(tmp) && index.busy === null) {
        index.close();
        this.#indexes.delete(tmp);
      }
    }
    return out;
  }

  /** The open file of `state` with its index, or null when it is no longer under its temporary name. */
  async #openInput(state: OpenFileState): Promise<ExtraInput | null> {
    const absPath = `${this.outDir}/${state.tmp}`;
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(absPath, { read: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      throw error;
    }
    try {
      const ino = file.statSync().ino ?? 0;
      let open = this.#indexes.get(state.tmp);
      if (open !== undefined && open.ino !== ino) {
        open.close();
        open = undefined;
      }
      if (open === undefined) {
        open = new OpenIndex(state.tmp, ino, this.outDir);
        this.#indexes.set(state.tmp, open);
      }
      const index = await open.extend(state, absPath, file);
      return {
        path: state.tmp,
        finalPath: state.final,
        absPath,
        firstTs: index.header.firstTs,
        lastTs: index.header.lastTs,
        packets: index.header.packetCount,
        index,
        file,
      };
    } catch (error) {
      file.close();
      throw error;
    }
  }

  /** Adds a finalized file under its final name, when it is there and has packets in range. */
  #addFinalized(out: ExtraInput[], rel: string, from: number, to: number): void {
    if (out.some((x) => x.finalPath === rel)) return;
    const absPath = `${this.outDir}/${rel}`;
    let index: FileIndex;
    try {
      index = sharedIndexCache.get(indexPathFor(absPath));
    } catch {
      return; // deleted by retention, or not renamed yet (its temporary name was read instead)
    }
    const h = index.header;
    if (h.packetCount === 0 || h.lastTs < from || h.firstTs > to) return;
    out.push({
      path: rel,
      finalPath: rel,
      absPath,
      firstTs: h.firstTs,
      lastTs: h.lastTs,
      packets: h.packetCount,
      index,
      file: null,
    });
  }
}

/**
 * The inputs a query over `catalog` reads besides its files: those in [from, to] whose final
 * name the catalog does not list (it has the complete file then).
 */
export function wantedInputs(
  extra: readonly ExtraInput[],
  catalog: { get(path: string): unknown },
  bounds: { from?: number; to?: number },
): ExtraInput[] {
  return extra.filter((x) =>
    catalog.get(x.finalPath) === undefined && x.lastTs >= (bounds.from ?? -Infinity) &&
    x.firstTs <= (bounds.to ?? Infinity)
  );
}

/** Closes the descriptors of inputs nobody read. */
export function closeInputs(inputs: readonly ExtraInput[]): void {
  for (const input of inputs) takeFile(input)?.close();
}

/** Takes an input's descriptor: the caller now closes it. */
export function takeFile(input: ExtraInput): Deno.FsFile | null {
  const file = input.file;
  input.file = null;
  return file;
}
