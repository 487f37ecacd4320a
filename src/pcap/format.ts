/**
 * The classic pcap file format (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-03.html):
 * a 24-byte global header, then records of a 16-byte header and the captured bytes.
 * cutcap writes little-endian (host order on every machine it runs on) and reads both orders.
 * Every pcap magic number and the caplen limit are defined here and nowhere else.
 */
import { PCAPNG_SHB } from "./pcapng.ts";

/** Global header size in bytes. */
export const GLOBAL_HEADER_SIZE = 24;
/** Record header size in bytes. */
export const RECORD_HEADER_SIZE = 16;
/**
 * Hard upper bound for a record's captured length. libpcap rejects larger records as corrupt
 * (its MAXIMUM_SNAPLEN), so a reader that finds one stops there instead of allocating for it.
 */
export const MAX_CAPLEN = 262144;

/** Magic number of microsecond-resolution files, as written in the file's byte order. */
export const MAGIC_MICROS = 0xa1b2c3d4;
/** Magic number of nanosecond-resolution files. */
export const MAGIC_NANOS = 0xa1b23c4d;
/**
 * Magic number of the "modified" pcap format (Alexey Kuznetsov's patches): microseconds, and
 * 24-byte record headers (the usual 16 and ifindex, protocol, pkt_type, padding).
 */
export const MAGIC_MODIFIED = 0xa1b2cd34;
/** Record header size of the modified format. */
export const MODIFIED_RECORD_HEADER_SIZE = 24;

/** What a file's first four bytes say about it, see `sniffMagic`. */
export interface PcapMagic {
  littleEndian: boolean;
  nanosecond: boolean;
  /** The modified format: 24-byte record headers. */
  modified: boolean;
}

const SNIFFED: ReadonlyMap<number, PcapMagic> = new Map([
  [MAGIC_MICROS, { littleEndian: true, nanosecond: false, modified: false }],
  [MAGIC_NANOS, { littleEndian: true, nanosecond: true, modified: false }],
  [MAGIC_MODIFIED, { littleEndian: true, nanosecond: false, modified: true }],
  [swap32(MAGIC_MICROS), { littleEndian: false, nanosecond: false, modified: false }],
  [swap32(MAGIC_NANOS), { littleEndian: false, nanosecond: true, modified: false }],
  [swap32(MAGIC_MODIFIED), { littleEndian: false, nanosecond: false, modified: true }],
]);

/** `value` with its four bytes in the opposite order. */
export function swap32(value: number): number {
  return (((value & 0xff) << 24) | ((value & 0xff00) << 8) | ((value >>> 8) & 0xff00) |
    (value >>> 24)) >>> 0;
}

/**
 * Byte order, precision and record header size of a pcap file whose first four bytes, read
 * little-endian, are `magicLE`; null when they are not a pcap magic number. With `modified`
 * false the modified format counts as not pcap (only the scan for indexing reads it).
 */
export function sniffMagic(magicLE: number, modified = false): PcapMagic | null {
  const found = SNIFFED.get(magicLE) ?? null;
  return found !== null && found.modified && !modified ? null : found;
}

/** Parsed global header of a pcap file. */
export interface PcapHeader {
  /** True when the file's numbers are little-endian. */
  littleEndian: boolean;
  /** True for nanosecond timestamps (magic a1b23c4d), false for microseconds. */
  nanosecond: boolean;
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  /** LINKTYPE_* value (low 16 bits of the header's network field). */
  linkType: number;
  /** The modified format (24-byte record headers); only when asked to accept it. */
  modified: boolean;
}

/** Writes a version 2.4 global header, little-endian, at `pos` of `view`. */
export function writeGlobalHeader(
  view: DataView,
  pos: number,
  options: { linkType: number; snaplen: number; nanosecond: boolean },
): void {
  view.setUint32(pos, options.nanosecond ? MAGIC_NANOS : MAGIC_MICROS, true);
  view.setUint16(pos + 4, 2, true);
  view.setUint16(pos + 6, 4, true);
  view.setInt32(pos + 8, 0, true); // thiszone: always UTC
  view.setUint32(pos + 12, 0, true); // sigfigs
  view.setUint32(pos + 16, options.snaplen, true);
  view.setUint32(pos + 20, options.linkType, true);
}

/** Writes a record header, little-endian, at `pos` of `view`. Allocates nothing. */
export function writeRecordHeader(
  view: DataView,
  pos: number,
  tsSec: number,
  tsFrac: number,
  caplen: number,
  wireLen: number,
): void {
  view.setUint32(pos, tsSec, true);
  view.setUint32(pos + 4, tsFrac, true);
  view.setUint32(pos + 8, caplen, true);
  view.setUint32(pos + 12, wireLen, true);
}

/**
 * Parses a global header from the first 24 bytes of `bytes` (starting at `pos`). Throws an Error
 * naming `name` when the header is short or the magic number is not a pcap one (with `modified`
 * false, the modified format's is not).
 */
export function parseGlobalHeader(
  bytes: Uint8Array,
  name: string,
  pos = 0,
  modified = false,
): PcapHeader {
  const have = bytes.length - pos;
  if (have < GLOBAL_HEADER_SIZE) {
    throw new Error(
      `Truncated pcap header in ${name}: expected ${GLOBAL_HEADER_SIZE} bytes, found ${
        Math.max(have, 0)
      }`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + pos, GLOBAL_HEADER_SIZE);
  const magic = sniffMagic(view.getUint32(0, true), modified);
  if (magic === null) {
    const be = view.getUint32(0, false);
    const hex = be.toString(16).padStart(8, "0");
    const hint = be === PCAPNG_SHB ? " (pcapng is not supported)" : "";
    throw new Error(
      `Not a pcap file ${name}: expected magic ${hexMagic(MAGIC_MICROS)} or ${
        hexMagic(MAGIC_NANOS)
      }, found ${hex}${hint}`,
    );
  }
  const littleEndian = magic.littleEndian;
  return {
    littleEndian,
    nanosecond: magic.nanosecond,
    versionMajor: view.getUint16(4, littleEndian),
    versionMinor: view.getUint16(6, littleEndian),
    snaplen: view.getUint32(16, littleEndian),
    linkType: view.getUint32(20, littleEndian) & 0xffff,
    modified: magic.modified,
  };
}

/** A magic number as error messages show it: 8 hex digits. */
export function hexMagic(magic: number): string {
  return magic.toString(16).padStart(8, "0");
}
