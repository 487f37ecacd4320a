/**
 * The capture's write path: records into blocks (plain, gzip member, zstd frame), blocks into files
 * under their temporary names, rotation into final names. The capture worker uses `RotatingOutput`.
 */
export { type BlockWriterOptions, DEFAULT_BLOCK_SIZE } from "./block_writer.ts";
export { BlockCompressor, type CompressorSetup } from "./compressor.ts";
export {
  type BeforeRenameHook,
  type FinalizedFile,
  PcapFileWriter,
  type PcapFileWriterOptions,
} from "./pcap_file_writer.ts";
export { RotatingOutput, type RotatingOutputOptions } from "./rotation.ts";
