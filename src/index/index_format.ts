/**
 * The per-file index format ("CCIX", version 2; version 1 is still read).
 *
 * One index file sits beside every finalized pcap file, named `<pcap path>.idx`
 * (`2024/05/01/eth0-w0-....pcap.gz` → `2024/05/01/eth0-w0-....pcap.gz.idx`). It is written to a hidden
 * temporary name, fsynced and renamed before the pcap file itself is renamed into view, so a visible pcap
 * normally has a complete index; a missing or damaged one is rebuilt from the pcap (see index_pcap.ts).
 *
 * All integers and floats are little-endian. Every section starts at a multiple of 8 bytes, so a reader
 * can map the f64 sections as Float64Array views without copying.
 *
 * Header (fixed part, 96 bytes)
 * ```
 * off size  field
 *   0   4   magic        "CCIX"
 *   4   2   version      2 (1: no flow records section, see below)
 *   6   2   headerLen    bytes of the whole header (fixed part + strings + zero padding to 8)
 *   8   4   flags        bit 0      timestamps in the pcap are nanoseconds (pcap magic a1b23c4d)
 *                        bits 1-2   compression of the pcap file: 0 none, 1 gzip, 2 zstd
 *                        bit 3      packet offsets are f64 (else u32: chosen when the uncompressed
 *                                   pcap stream is shorter than 4 GiB)
 *                        bit 4      the block table is one block covering a whole foreign compressed
 *                                   stream (a query decompresses the whole file to read any packet)
 *                        bit 5      packet times are f64 seconds (else u32 microseconds after firstTs:
 *                                   chosen when the file spans less than 4294 s)
 *                        bit 6      bit 7 is known (the writer tracked time order; clear in older
 *                                   indexes, whose order a query checks itself)
 *                        bit 7      some packet's time is earlier than a packet before it in the
 *                                   file (replayed or reordered input, a clock step): a query sorts
 *                                   this file's packets by time; files without it are never sorted
 *                        bit 8      the extra-tags section is present (below)
 *  12   4   linkType     pcap LINKTYPE_* of the file (low 16 bits of the pcap header's network field)
 *  16   4   snaplen      snaplen from the pcap global header
 *  20   4   flowCount    F, flows in this file
 *  24   4   packetCount  N, packets in this file (all flows)
 *  28   4   blockCount   B, compressed blocks (0 for a plain pcap)
 *  32   8   firstTs      f64 seconds, earliest packet time (0 when N = 0)
 *  40   8   lastTs       f64 seconds, latest packet time (0 when N = 0)
 *  48   8   pcapSize     f64 bytes of the pcap file on disk (0 when unknown); a catalog compares it with
 *                        the file's size to notice a pcap that changed after it was indexed
 *  56   8   dataSize     f64 bytes of the uncompressed pcap stream, 24-byte global header included
 *                        (= pcapSize for a plain file; 0 when unknown)
 *  64   8   wireBytes    f64 sum of the wire lengths of the indexed packets
 *  72   8   indexLen     f64 bytes of this index file, trailer included (detects truncation cheaply)
 *  80   4   worker       capture worker number (0xffffffff when unknown, e.g. a foreign pcap)
 *  84   2   ifaceLen     bytes of the interface name (UTF-8)
 *  86   2   nameLen      bytes of the pcap file's base name (UTF-8)
 *  88   2   cidSeed      Community ID seed of the records section's cid column (version 2; 0 in 1)
 *  90   2   reserved     0
 *  92   4   headerCrc    CRC-32 (zlib polynomial) of header bytes [0, 92) followed by [96, headerLen)
 *  96   …   iface bytes, then pcap base name bytes, then zeros up to headerLen
 * ```
 *
 * Sections, in this order, each starting at a multiple of 8 (F flows, N packets, B blocks):
 * ```
 * keys      F × 10 u32   canonical flow key, layout of src/packet/packet_info.ts (A = the end with the
 *                        smaller address words, then port)
 * firstTs   F × f64      time of the flow's first packet in this file, seconds
 * lastTs    F × f64      time of the flow's last packet in this file (version 2: a flow cut off
 *                        earlier that sent in this file with none of its packets stored has a
 *                        flow with pktCount 0, and both times are its latest packet's time)
 * bytes     F × f64      sum of wire lengths of the flow's packets in this file
 * pktStart  F × u32      index of the flow's first packet in the packet section
 * pktCount  F × u32      number of the flow's packets in this file (the flow's packets are
 *                        pktStart .. pktStart+pktCount-1); + 4 zero bytes when F is odd
 * offsets   N × u32|f64  byte offset of each packet's record header in the uncompressed pcap stream
 *                        (width by flag bit 3); + 4 zero bytes when u32 and N is odd
 * times     N × u32|f64  each packet's timestamp: u32 microseconds after the header's firstTs, rounded
 *                        to the nearest (flag bit 5 clear), or f64 seconds (bit 5 set); + 4 zero bytes
 *                        when u32 and N is odd. Either way about 1 µs resolution (an f64 of current
 *                        Unix time resolves ~0.24 µs); the exact sec/frac is in the record header at the
 *                        offset. Flow first/last times above are the exact f64 seconds.
 * blocks    B × 4 f64    per block: compressed offset in the file, compressed length, uncompressed
 *                        start offset, uncompressed length; sorted, contiguous in the uncompressed stream,
 *                        and every record lies wholly inside one block. A block is one gzip member or
 *                        zstd frame as cutcap writes them; in a foreign file whose records straddle
 *                        members/frames, the straddled ones are merged into one block that holds
 *                        several (decompress them all: decompressBlockRange in src/pcap/block_format.ts)
 * flow records (version 2 only), per flow in the flow sections' order:
 * totPackets F × f64     packets the flow had seen (stored or not, both directions) by the end of
 *                        this file, or by its removal from the flow table if that came first
 * totBytes   F × f64     their wire bytes, likewise
 * cutPacket  F × f64     number (1-based) of the flow's first packet the cutoff refused, 0 = not cut
 *                        (by the same moment)
 * state      F × u32     bit 0: the flow's first packet went from end B to end A (so B is its
 *                        source); bits 1-3: how it ended (FlowEnd in src/flow/flow_table.ts: 0
 *                        unknown, 1 open, 2 fin, 3 rst, 4 idle, 5 evicted, 6 shutdown)
 * cid        F × u32     first 4 bytes of the flow's Community ID SHA-1 digest with seed cidSeed
 *                        (little-endian), 0 for flows without one (not IP): a lookup compares
 *                        these and hashes only the candidates
 * ```
 * A version 1 index reads as if totPackets/totBytes were the stored counts, no flow cut, the end
 * unknown, the first packet from end A, and Community IDs computed when asked.
 * Extra tags (only when flag bit 8 is set; issue 13), after every other section (versions 1 and 2): the VLAN ids
 * inside a flow's outermost tag (QinQ inner tags) and its MPLS labels, which the flow key does not
 * hold, so `vlan N` finds any tag of a frame and `mpls N` any label of the stack:
 * ```
 * tagTotal  u32 + u32 0  T, entries in `tags`
 * tagStart  F × u32      index of the flow's first entry in `tags`
 * tagCount  F × u32      its number of entries (the distinct tags and labels of the flow's packets
 *                        in this file, in order of first appearance)
 * tags      T × u32      kind << 24 | value: kind 1 = VLAN id (12 bits), 2 = MPLS label (20 bits),
 *                        3 = the flow's marker, its last entry (value bit 0: every packet of the
 *                        flow in this file carries exactly the listed tags and labels; bit 1: the
 *                        list is incomplete, the flow showed more than it keeps); + 4 zero bytes
 *                        when T is odd
 * ```
 * A query decides `vlan N` / `mpls N` per flow from these when the marker makes it certain (no
 * entry N and a complete list: no packet matches; uniform with N: every packet does), else per
 * packet by decoding the stored frame (src/query/select.ts). Entries written before the marker
 * existed read as neither uniform nor incomplete.
 * Flows are sorted by firstTs (ties: order of first appearance in the file). The packet section is
 * grouped by flow in the same order; within a flow, packets are in file order.
 *
 * Trailer (8 bytes): u32 CRC-32 of every byte before it, then the end magic "XICC". A torn, truncated
 * or bit-flipped index fails the check and is rebuilt from its pcap file.
 *
 * Size: 8 bytes per packet (up to 16 for files over 4 GiB or 71 minutes) plus 104 bytes per flow
 * (72 in version 1):
 * about 2.2-2.6% of the pcap bytes on a web-like mix with and without a 64 KiB flow cutoff (see the
 * measurement in tests/index_builder_test.ts). The share grows with tiny flows (scans, DNS).
 */
import { codec, type Compression } from "../pcap/codecs.ts";

/** First four bytes of every index file. */
export const INDEX_MAGIC = 0x58494343; // "CCIX" read as a little-endian u32
/** Last four bytes of every index file. */
export const INDEX_END_MAGIC = 0x43434958; // "XICC" read as a little-endian u32
/** Format version written by this code. */
export const INDEX_VERSION = 2;
/** Oldest format version still read. */
export const INDEX_VERSION_MIN = 1;
/** Bytes of the fixed part of the header. */
export const HEADER_FIXED = 96;
/** Bytes of the trailer (crc + end magic). */
export const TRAILER_LEN = 8;
/** Byte offset of the header CRC inside the fixed header. */
export const HEADER_CRC_AT = 92;
/** Worker number stored when the writer is unknown. */
export const UNKNOWN_WORKER = 0xffffffff;

/** Flag bits of the header's flags word. */
export const enum IndexFlag {
  Nanosecond = 1,
  CompressShift = 1,
  CompressMask = 6,
  WideOffsets = 8,
  WholeStream = 16,
  WideTimes = 32,
  TimeOrderKnown = 64,
  TimesGoBack = 128,
  ExtraTags = 256,
}

/** Kind of an extra-tags entry (value = kind << 24 | id). */
export const enum ExtraTagKind {
  Vlan = 1,
  Mpls = 2,
  /** The flow's marker entry: value bits ExtraTagMarker. */
  Marker = 3,
}

/** Bits of the value of a flow's marker entry (ExtraTagKind.Marker). */
export const enum ExtraTagMarker {
  /** Every packet of the flow in the file carries exactly the flow's listed tags and labels. */
  Uniform = 1,
  /** The flow showed more tags or labels than the list keeps. */
  Incomplete = 2,
}

export type { Compression } from "../pcap/codecs.ts";
export { compressionFromCode } from "../pcap/codecs.ts";

/** Numeric code of a compression in the flags word (the codec table's index code). */
export function compressionCode(c: Compression): number {
  return codec(c).indexCode;
}

/** Byte offsets of each section of an index file. */
export interface SectionLayout {
  keys: number;
  firstTs: number;
  lastTs: number;
  bytes: number;
  pktStart: number;
  pktCount: number;
  offsets: number;
  times: number;
  blocks: number;
  /** Flow records (version 2); in version 1 all five equal `trailer`. */
  totPackets: number;
  totBytes: number;
  cutPacket: number;
  state: number;
  cid: number;
  /** The extra-tags section (= trailer when absent). */
  extraTags: number;
  trailer: number;
  /** Total index length in bytes, trailer included. */
  total: number;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Header length for given string byte lengths (fixed part + strings, padded to 8). */
export function headerLength(ifaceLen: number, nameLen: number): number {
  return align8(HEADER_FIXED + ifaceLen + nameLen);
}

/** Section offsets for an index with the given header length and counts. */
export function sectionLayout(
  headerLen: number,
  counts: {
    flows: number;
    packets: number;
    blocks: number;
    wideOffsets: boolean;
    wideTimes: boolean;
    /** Format version; default INDEX_VERSION. */
    version?: number;
    /** Entries of the extra-tags section; undefined when it is absent. */
    extraTags?: number;
  },
): SectionLayout {
  const f = counts.flows;
  const n = counts.packets;
  const keys = headerLen;
  const firstTs = keys + f * 40;
  const lastTs = firstTs + f * 8;
  const bytes = lastTs + f * 8;
  const pktStart = bytes + f * 8;
  const pktCount = pktStart + f * 4;
  const offsets = align8(pktCount + f * 4);
  const times = align8(offsets + n * (counts.wideOffsets ? 8 : 4));
  const blocks = align8(times + n * (counts.wideTimes ? 8 : 4));
  const totPackets = blocks + counts.blocks * 32;
  const records = (counts.version ?? INDEX_VERSION) >= 2;
  const totBytes = totPackets + (records ? f * 8 : 0);
  const cutPacket = totBytes + (records ? f * 8 : 0);
  const state = cutPacket + (records ? f * 8 : 0);
  const cid = state + (records ? f * 4 : 0);
  const extraTags = cid + (records ? f * 4 : 0);
  const trailer = extraTags +
    (counts.extraTags === undefined ? 0 : 8 + f * 8 + align8(counts.extraTags * 4));
  return {
    keys,
    firstTs,
    lastTs,
    bytes,
    pktStart,
    pktCount,
    offsets,
    times,
    blocks,
    totPackets,
    totBytes,
    cutPacket,
    state,
    cid,
    extraTags,
    trailer,
    total: trailer + TRAILER_LEN,
  };
}
