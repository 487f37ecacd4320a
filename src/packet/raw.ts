/**
 * Raw IP links (DLT_RAW / LINKTYPE_RAW): no link header, the version nibble says IPv4 or IPv6.
 */
import type { PacketInfo } from "./packet_info.ts";
import { decodeIpv4 } from "./ipv4.ts";
import { decodeIpv6 } from "./ipv6.ts";

/** Decodes a raw IP frame; false (Opaque) for an empty frame, another version or a cut IP header. */
export function decodeRaw(data: Uint8Array, off: number, end: number, out: PacketInfo): boolean {
  if (off >= end) return false;
  const version = data[off] >> 4;
  if (version === 4) return decodeIpv4(data, off, end, out);
  if (version === 6) return decodeIpv6(data, off, end, out);
  return false;
}
