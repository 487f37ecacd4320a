/**
 * The scan of a pcap file for indexing it in place (src/index/index_pcap.ts), whoever wrote it: a
 * view of the one reader (reader.ts) under tcpdump's rules — plain pcap (both byte orders, µs and
 * ns, and the "modified" 24-byte record header variant), any file of a codec whatever its units
 * (unit_source.ts), libpcap's per-link-type caplen limits — reporting besides the records the
 * block table of a compressed file, which a query needs to seek. Every record lies inside one
 * block of that table; a unit too large to hold is stream-decompressed with bounded buffers, and a
 * record of wire length 0 there (what a bomb of zeros parses as) ends the scan at once.
 */
import type { Compression } from "./codecs.ts";
import { PcapReader } from "./reader.ts";

/**
 * The current record as the reader holds it (valid only during the callback): offset of its header
 * in the uncompressed stream, time (`tsFrac` in µs, or ns when `nanosecond`), lengths, and its
 * bytes `data[dataOffset .. dataOffset + caplen)`.
 */
export type ScanRecord = Pick<
  PcapReader,
  | "offset"
  | "tsSec"
  | "tsFrac"
  | "caplen"
  | "len"
  | "data"
  | "dataOffset"
  | "linkType"
  | "nanosecond"
>;

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

/**
 * Reads a pcap file (plain, gzip or zstd) from start to end, calling `onRecord` for each record.
 * Throws for pcapng and non-pcap files; a truncated or corrupt tail ends the scan (see `stopReason`).
 */
export function scanPcapFile(path: string, onRecord: (rec: ScanRecord) => void): ScanResult {
  const reader = new PcapReader(path, { accept: "tcpdump" });
  try {
    while (reader.next()) onRecord(reader);
    const blocks = reader.unitTable();
    return {
      linkType: reader.linkType,
      snaplen: reader.snaplen,
      nanosecond: reader.nanosecond,
      compress: reader.compress,
      blocks,
      wholeStream: reader.compress !== "none" && blocks.length === 4,
      fileSize: Deno.statSync(path).size,
      dataSize: reader.bytesRead,
      records: reader.recordNumber,
      stopReason: reader.damage ?? "",
    };
  } finally {
    reader.close();
  }
}
