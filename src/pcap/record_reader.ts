/**
 * The query's view of the one pcap reader (reader.ts): records at the offsets the index hands
 * the query, asked for in ascending order, with the query's error wording (the file, the offset,
 * what is wrong there). Keeps one decompressed block, as a query holds many files open at once.
 */
import type { Compression } from "./block_format.ts";
import { PcapReader, QUERY_WORDING, READ_WINDOW } from "./reader.ts";

export { READ_WINDOW } from "./reader.ts";

/** One record, valid until the next read. */
export interface RecordView {
  bytes: Uint8Array;
  /** Offset of the 16-byte record header in `bytes`. */
  at: number;
  tsSec: number;
  tsFrac: number;
  caplen: number;
  wireLen: number;
}

/** Reads records of one pcap file by their uncompressed offsets. */
export class RecordReader {
  readonly #reader: PcapReader;
  /** True when the file's timestamps count nanoseconds. */
  readonly nanosecond: boolean;
  readonly record: RecordView = {
    bytes: new Uint8Array(0),
    at: 0,
    tsSec: 0,
    tsFrac: 0,
    caplen: 0,
    wireLen: 0,
  };

  /**
   * `options.file`: the file already open (an open output file, held across its rename); the
   * reader closes it. Otherwise `path` is opened.
   */
  constructor(
    path: string,
    options: { compress: Compression; blocks: Float64Array; file?: Deno.FsFile },
  ) {
    this.#reader = new PcapReader(path, {
      ...options,
      cacheBlocks: 1,
      wording: QUERY_WORDING,
    });
    this.nanosecond = this.#reader.nanosecond;
  }

  /**
   * Reads the record whose header starts at `offset`; throws naming the file when it is not there.
   * `spanEnd` is where the caller's next wanted records end (as far as it knows): a plain file is
   * read up to there (at most READ_WINDOW), not a whole window, when the wanted records are sparse.
   */
  read(offset: number, spanEnd = offset + READ_WINDOW): RecordView {
    const r = this.#reader;
    r.readRecordAt(offset, undefined, spanEnd);
    const record = this.record;
    record.bytes = r.data;
    record.at = r.dataOffset - 16;
    record.tsSec = r.tsSec;
    record.tsFrac = r.tsFrac;
    record.caplen = r.caplen;
    record.wireLen = r.len;
    return record;
  }

  close(): void {
    this.#reader.close();
  }
}
