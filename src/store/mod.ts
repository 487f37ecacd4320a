/**
 * On-disk pcap output: block-compressed writing, rotation, crash recovery and reading.
 * See each module's comment; the capture worker uses `RotatingOutput`, start-up calls
 * `recoverTempFiles`, queries use `PcapReader`.
 */
export {
  type Compression,
  compressionSuffix,
  defaultLevel,
  detectCompression,
} from "./block_format.ts";
export { type BlockWriterOptions, DEFAULT_BLOCK_SIZE } from "./block_writer.ts";
export {
  type BeforeRenameHook,
  type FinalizedFile,
  PcapFileWriter,
  type PcapFileWriterOptions,
  tempPathFor,
} from "./pcap_file_writer.ts";
export {
  GLOBAL_HEADER_SIZE,
  MAX_CAPLEN,
  parseGlobalHeader,
  type PcapHeader,
  RECORD_HEADER_SIZE,
} from "./pcap_format.ts";
export { PcapReader, type PcapReaderOptions } from "./pcap_reader.ts";
export {
  recoverTempFile,
  recoverTempFiles,
  type RecoveryHooks,
  type RecoveryReport,
} from "./recovery.ts";
export {
  outputFileName,
  type OutputNameFields,
  parseOutputFileName,
  RotatingOutput,
  type RotatingOutputOptions,
  sanitizeIface,
} from "./rotation.ts";
