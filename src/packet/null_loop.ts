/**
 * BSD loopback encapsulations: a 4-byte address family, then the IP packet. DLT_NULL stores it in the
 * writing host's byte order (unknown to the reader), DLT_LOOP in network order.
 */
import type { PacketInfo } from "./packet_info.ts";
import { decodeIpv4 } from "./ipv4.ts";
import { decodeIpv6 } from "./ipv6.ts";

/**
 * Decodes a DLT_NULL frame. Address families fit in 16 bits, so a value with high bits set was
 * written by a host of the other byte order and is swapped (as tcpdump does). Returns false (Opaque)
 * for a cut header, a family other than IPv4/IPv6, or an unusable IP header.
 */
export function decodeNull(data: Uint8Array, off: number, end: number, out: PacketInfo): boolean {
  if (end - off < 4) return false;
  let af = data[off] | (data[off + 1] << 8) | (data[off + 2] << 16) | (data[off + 3] << 24);
  if ((af & 0xffff0000) !== 0) {
    af = (data[off] << 24) | (data[off + 1] << 16) | (data[off + 2] << 8) | data[off + 3];
  }
  return decodeFamily(af, data, off + 4, end, out);
}

/** Decodes a DLT_LOOP frame (family in network byte order); same policy as `decodeNull`. */
export function decodeLoop(data: Uint8Array, off: number, end: number, out: PacketInfo): boolean {
  if (end - off < 4) return false;
  const af = (data[off] << 24) | (data[off + 1] << 16) | (data[off + 2] << 8) | data[off + 3];
  return decodeFamily(af, data, off + 4, end, out);
}

function decodeFamily(
  af: number,
  data: Uint8Array,
  off: number,
  end: number,
  out: PacketInfo,
): boolean {
  switch (af) {
    case 2: // AF_INET everywhere
      return decodeIpv4(data, off, end, out);
    case 10: // AF_INET6: Linux
    case 24: // NetBSD, OpenBSD, BSD/OS
    case 28: // FreeBSD, DragonFly
    case 30: // macOS
      return decodeIpv6(data, off, end, out);
  }
  return false;
}
