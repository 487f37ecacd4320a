/**
 * Indexes an existing pcap file in place (written by tcpdump, gotm, or cutcap itself when its index
 * is missing or damaged): reads it sequentially, decodes and canonicalizes each packet's flow key,
 * groups packets by key and writes `<pcap>.idx`. Not a capture hot path: a FlowKeyList stands in
 * for the FlowTable (about 100 bytes per flow).
 *
 * Reading goes through src/pcap/scan.ts, the one pcap reader under tcpdump's rules: it reads the
 * file once and also derives the block table of foreign multi-member/multi-frame files (merging
 * units that records straddle). Memory: the flow list and the builder's per-flow arrays (the packet
 * log spills to the index's directory); a compressed unit is decompressed whole up to 8 MiB and
 * stream-decompressed beyond (src/pcap/unit_source.ts).
 */
import { PacketInfo } from "../packet/packet_info.ts";
import { decodePacket } from "../packet/mod.ts";
import { canonicalizeKey } from "./canonical_key.ts";
import type { Compression } from "./index_format.ts";
import { indexPathFor } from "../archive/naming.ts";
import { IndexBuilder } from "./index_builder.ts";
import { FlowKeyList } from "./flow_key_list.ts";
import { scanPcapFile, type ScanRecord } from "../pcap/scan.ts";
import { dirOf } from "../store/pcap_file_writer.ts";

/** Options of `indexPcapFile`. */
export interface IndexPcapOptions {
  /** Interface name stored in the index header (default ""). */
  iface?: string;
  /** Worker number stored in the index header (default -1, unknown). */
  worker?: number;
  /** Where to write the index (default `<pcapPath>.idx`). */
  indexPath?: string;
}

/** What `indexPcapFile` did. */
export interface IndexSummary {
  pcapPath: string;
  indexPath: string;
  linkType: number;
  compress: Compression;
  flows: number;
  packets: number;
  /** 0 when the file holds no packet. */
  firstTs: number;
  lastTs: number;
  pcapBytes: number;
  indexBytes: number;
  /** Blocks in the index's block table (0 for a plain file). */
  blocks: number;
  /** True when a compressed file is one stream: a query decompresses it whole. */
  wholeStream: boolean;
  /** Why reading stopped before the end of the file (truncated or corrupt tail), or "". */
  stopReason: string;
}

/**
 * Indexes the pcap file at `pcapPath` and writes its index. Throws for pcapng (not queryable in
 * place; the message says how to re-cut it) and for files that are not pcap.
 */
export function indexPcapFile(pcapPath: string, opts: IndexPcapOptions = {}): IndexSummary {
  const indexPath = opts.indexPath ?? indexPathFor(pcapPath);
  const indexer = new PacketIndexer(dirOf(indexPath));
  try {
    return indexWith(indexer, pcapPath, indexPath, opts);
  } finally {
    indexer.close();
  }
}

/**
 * Indexes records read from a pcap (a FlowKeyList stands in for the capture's flow table): what
 * `indexPcapFile` does per record, and what a query does over an open file's flushed prefix.
 */
export class PacketIndexer {
  readonly flows: FlowKeyList = new FlowKeyList();
  readonly builder: IndexBuilder;
  readonly #info = new PacketInfo();

  /** `spillDir`: where the builder's packet log spills (see IndexBuilderOptions). */
  constructor(spillDir: string | undefined) {
    this.builder = new IndexBuilder(this.flows, { spillDir });
  }

  /** Decodes one record's flow key and notes the record (`ts` in seconds, `offset` in the stream). */
  add(
    linkType: number,
    buf: Uint8Array,
    at: number,
    caplen: number,
    ts: number,
    offset: number,
    wireLen: number,
  ): void {
    const info = this.#info;
    const key = info.key;
    key.fill(0);
    decodePacket(linkType, buf, at, caplen, info);
    const reversed = canonicalizeKey(key);
    const id = this.flows.idOf(key, reversed);
    this.flows.count(id, wireLen);
    this.builder.record(id, ts, offset, wireLen);
    if (info.innerVlanCount + info.mplsCount > 0) this.builder.noteTags(id, info);
  }

  /** Releases the builder's spill file. */
  close(): void {
    this.builder.close();
  }
}

function indexWith(
  indexer: PacketIndexer,
  pcapPath: string,
  indexPath: string,
  opts: IndexPcapOptions,
): IndexSummary {
  const builder = indexer.builder;
  const onRecord = (r: ScanRecord): void => {
    const ts = r.tsSec + r.tsFrac * (r.nanosecond ? 1e-9 : 1e-6);
    indexer.add(r.linkType, r.data, r.dataOffset, r.caplen, ts, r.offset, r.len);
  };
  const scan = scanPcapFile(pcapPath, onRecord);
  const slash = pcapPath.lastIndexOf("/");
  const indexBytes = builder.write(indexPath, {
    pcapName: pcapPath.slice(slash + 1),
    linkType: scan.linkType,
    snaplen: scan.snaplen,
    nanosecond: scan.nanosecond,
    compress: scan.compress,
    blocks: scan.blocks,
    iface: opts.iface ?? "",
    worker: opts.worker ?? -1,
    pcapSize: scan.fileSize,
    dataSize: scan.dataSize,
    wholeStream: scan.wholeStream,
  });
  return {
    pcapPath,
    indexPath,
    linkType: scan.linkType,
    compress: scan.compress,
    flows: builder.flowCount,
    packets: builder.packetCount,
    firstTs: builder.firstTs,
    lastTs: builder.lastTs,
    pcapBytes: scan.fileSize,
    indexBytes,
    blocks: scan.blocks.length / 4,
    wholeStream: scan.wholeStream,
    stopReason: scan.stopReason,
  };
}
