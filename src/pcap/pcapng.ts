/**
 * Writing pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html): the answer
 * format when one answer spans several link types or snaplens. A section header block, one
 * interface description block per (link type, snaplen, timestamp resolution), then enhanced
 * packet blocks naming their interface. Little-endian throughout; writers allocate nothing.
 */

/** Block type of a section header block (also the file's first four bytes). */
export const PCAPNG_SHB = 0x0a0d0d0a;
/** Block type of an interface description block. */
export const PCAPNG_IDB = 1;
/** Block type of an enhanced packet block. */
export const PCAPNG_EPB = 6;
/** Byte-order magic inside the section header. */
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Whether the section header block at the start of `view` is little-endian (its byte-order magic). */
export function pcapngLittleEndian(view: DataView): boolean {
  return view.getUint32(8, true) === BYTE_ORDER_MAGIC;
}

/** Bytes of the section header block written by writeSectionHeader. */
export const SECTION_HEADER_SIZE = 28;
/** Bytes of an interface block: 20, plus 12 for the if_tsresol option of nanosecond interfaces. */
export function interfaceBlockSize(nanosecond: boolean): number {
  return nanosecond ? 32 : 20;
}

/** Bytes of an enhanced packet block carrying `caplen` bytes. */
export function packetBlockSize(caplen: number): number {
  return 32 + ((caplen + 3) & ~3);
}

/** Writes a section header block (version 1.0, section length unknown) at `pos`. */
export function writeSectionHeader(view: DataView, pos: number): number {
  view.setUint32(pos, PCAPNG_SHB, true);
  view.setUint32(pos + 4, SECTION_HEADER_SIZE, true);
  view.setUint32(pos + 8, BYTE_ORDER_MAGIC, true);
  view.setUint16(pos + 12, 1, true);
  view.setUint16(pos + 14, 0, true);
  view.setInt32(pos + 16, -1, true); // section length: -1 = not given (64 bits)
  view.setInt32(pos + 20, -1, true);
  view.setUint32(pos + 24, SECTION_HEADER_SIZE, true);
  return SECTION_HEADER_SIZE;
}

/**
 * Writes an interface description block at `pos`; timestamps of its packets count microseconds,
 * or nanoseconds (if_tsresol = 9) when `nanosecond`. Returns its size.
 */
export function writeInterfaceBlock(
  view: DataView,
  pos: number,
  options: { linkType: number; snaplen: number; nanosecond: boolean },
): number {
  const size = interfaceBlockSize(options.nanosecond);
  view.setUint32(pos, PCAPNG_IDB, true);
  view.setUint32(pos + 4, size, true);
  view.setUint16(pos + 8, options.linkType, true);
  view.setUint16(pos + 10, 0, true);
  view.setUint32(pos + 12, options.snaplen, true);
  let at = pos + 16;
  if (options.nanosecond) {
    view.setUint16(at, 9, true); // if_tsresol
    view.setUint16(at + 2, 1, true);
    view.setUint32(at + 4, 9, true); // 10^-9, then 3 bytes of padding (zero)
    view.setUint32(at + 8, 0, true); // opt_endofopt
    at += 12;
  }
  view.setUint32(at, size, true);
  return size;
}

/**
 * Writes an enhanced packet block's header for interface `iface` at `pos`: the time is
 * `sec` seconds plus `frac` units of the interface's resolution (`unitsPerSecond` 1e6 or 1e9).
 * The caller copies the `caplen` captured bytes to `pos + 28` and then calls finishPacketBlock.
 */
export function writePacketBlockHeader(
  view: DataView,
  pos: number,
  packet: {
    iface: number;
    sec: number;
    frac: number;
    unitsPerSecond: number;
    caplen: number;
    wireLen: number;
  },
): void {
  const size = packetBlockSize(packet.caplen);
  view.setUint32(pos, PCAPNG_EPB, true);
  view.setUint32(pos + 4, size, true);
  view.setUint32(pos + 8, packet.iface, true);
  // 64-bit sec * units + frac as two exact 32-bit halves (the product exceeds 2^53).
  const units = packet.unitsPerSecond;
  const a = Math.floor(packet.sec / 65536) * units; // < 2^46
  const b = (packet.sec % 65536) * units + packet.frac; // < 2^47
  const aHigh = Math.floor(a / 65536);
  let low = (a % 65536) * 65536 + (b % 4294967296);
  let high = aHigh + Math.floor(b / 4294967296);
  if (low >= 4294967296) {
    low -= 4294967296;
    high += 1;
  }
  view.setUint32(pos + 12, high, true);
  view.setUint32(pos + 16, low, true);
  view.setUint32(pos + 20, packet.caplen, true);
  view.setUint32(pos + 24, packet.wireLen, true);
}

/** Zero-pads the packet data and writes the trailing length; returns the block's size. */
export function finishPacketBlock(out: Uint8Array, view: DataView, pos: number): number {
  const caplen = view.getUint32(pos + 20, true);
  const size = packetBlockSize(caplen);
  out.fill(0, pos + 28 + caplen, pos + size - 4);
  view.setUint32(pos + size - 4, size, true);
  return size;
}
