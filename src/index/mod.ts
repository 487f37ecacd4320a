/**
 * Per-file indexes (flows and packet offsets of one pcap file, format in index_format.ts), and indexing foreign pcaps.
 *
 * @module
 */

export {
  type Compression,
  compressionCode,
  compressionFromCode,
  INDEX_VERSION,
} from "./index_format.ts";
export {
  type FlowKeySource,
  IndexBuilder,
  type IndexBuilderOptions,
  type IndexMeta,
  writeFileDurably,
} from "./index_builder.ts";
export { FlowKeyList } from "./flow_key_list.ts";
export {
  decodeFileIndex,
  type FileIndex,
  type FileIndexHeader,
  findBlock,
  readFileIndex,
  type ReadHeaderOptions,
  readIndexHeader,
} from "./index_reader.ts";
export { indexPcapFile, type IndexPcapOptions, type IndexSummary } from "./index_pcap.ts";
export { canonicalizeKey } from "./canonical_key.ts";
