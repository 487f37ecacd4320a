/**
 * The pcap file format and its block-compressed variants: headers, codecs, blocks, and reading.
 *
 * @module
 */
export {
  type Compression,
  compressionSuffix,
  defaultLevel,
  detectCompression,
} from "./block_format.ts";
export {
  GLOBAL_HEADER_SIZE,
  MAX_CAPLEN,
  parseGlobalHeader,
  type PcapHeader,
  RECORD_HEADER_SIZE,
} from "./format.ts";
export {
  codec,
  COMPRESSED_SUFFIX_PATTERN,
  COMPRESSED_SUFFIXES,
  compressionFromCode,
  compressionFromSuffix,
  COMPRESSIONS,
  isCompression,
} from "./codecs.ts";
export type { Codec } from "./codec/codec.ts";
export { scanPcapFile, type ScanRecord, type ScanResult } from "./scan.ts";
export { RecordReader, type RecordView } from "./record_reader.ts";
export { decompressBlockRange, findBlock } from "./block_format.ts";
export { PcapReader, type PcapReaderOptions, READ_WINDOW } from "./reader.ts";
