/**
 * IPv4 header (RFC 791): addresses, protocol, options skipped by IHL, fragments.
 */
import { FlowKind, type PacketInfo } from "./packet_info.ts";
import { decodeTransport } from "./transport.ts";

/**
 * Decodes the IPv4 header at `off`. Returns false, writing nothing, when it is not a usable IPv4
 * header: fewer than 20 bytes captured, version nibble not 4, or IHL below 5 (the caller then keys
 * the frame by its link layer). Options cut off by the snaplen still give an IPv4 key (the
 * addresses are in the fixed part) with ports 0.
 *
 * A total-length field at least as large as the header limits the packet (Ethernet padding and
 * trailers are not the transport header); a smaller one is ignored instead of rejecting the packet,
 * because segmentation offload (BIG TCP) writes 0 there. Later fragments (offset != 0) keep their
 * protocol and get ports 0 and `laterFragment`; the first fragment keeps its ports.
 */
export function decodeIpv4(data: Uint8Array, off: number, end: number, out: PacketInfo): boolean {
  if (end - off < 20) return false;
  const b0 = data[off];
  if (b0 >> 4 !== 4) return false;
  const hl = (b0 & 0x0f) << 2;
  if (hl < 20) return false;
  const total = (data[off + 2] << 8) | data[off + 3];
  if (total >= hl && off + total < end) end = off + total;
  const proto = data[off + 9];
  const key = out.key;
  out.kind = FlowKind.Ipv4;
  out.ipProto = proto;
  key[0] = (data[off + 12] << 24) | (data[off + 13] << 16) | (data[off + 14] << 8) | data[off + 15];
  key[4] = (data[off + 16] << 24) | (data[off + 17] << 16) | (data[off + 18] << 8) | data[off + 19];
  if ((((data[off + 6] & 0x1f) << 8) | data[off + 7]) !== 0) {
    out.laterFragment = true;
    return true;
  }
  if (off + hl <= end) decodeTransport(proto, data, off + hl, end, out);
  return true;
}
