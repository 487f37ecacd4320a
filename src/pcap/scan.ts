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

/**
 * Reads a pcap file (plain, gzip or zstd) from start to end, calling `onRecord` for each record.
 * Throws for pcapng and non-pcap files; a truncated or corrupt tail ends the scan (see `stopReason`).
 */
export function scanPcapFile(path: string, onRecord: (rec: ScanRecord) => void): ScanResult {
  const reader = new PcapReader(path, { accept: "tcpdump" });
  try {
    const rec = new ScanRecord();
    rec.linkType = reader.linkType;
    rec.nanosecond = reader.nanosecond;
    while (reader.next()) {
      rec.offset = reader.offset;
      rec.sec = reader.tsSec;
      rec.frac = reader.tsFrac;
      rec.caplen = reader.caplen;
      rec.wireLen = reader.len;
      rec.buf = reader.data;
      rec.at = reader.dataOffset;
      onRecord(rec);
    }
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
