/**
 * Transport headers: only the two port fields and the TCP flags matter for the flow key.
 *
 * Ports are taken whenever the 4 port bytes are inside the capture (and inside the IP packet's own
 * length), even if the rest of the header is cut off: a snaplen-cut frame then still lands in its
 * connection's flow. This is also what tshark shows for such frames.
 */
import type { PacketInfo } from "./packet_info.ts";
import { icmpPorts } from "../flow/community_id.ts";

/** IP protocol numbers the decoders care about. */
export const IPPROTO_ICMP = 1;
/** TCP. */
export const IPPROTO_TCP = 6;
/** UDP. */
export const IPPROTO_UDP = 17;
/** DCCP (ports in the same place as TCP/UDP). */
export const IPPROTO_DCCP = 33;
/** ICMPv6. */
export const IPPROTO_ICMPV6 = 58;
/** SCTP. */
export const IPPROTO_SCTP = 132;
/** UDP-Lite. */
export const IPPROTO_UDPLITE = 136;

/** True for the IP protocols whose headers start with two ports. */
export function carriesPorts(proto: number): boolean {
  return proto === IPPROTO_TCP || proto === IPPROTO_UDP || proto === IPPROTO_SCTP ||
    proto === IPPROTO_DCCP || proto === IPPROTO_UDPLITE;
}

/**
 * Reads source/destination ports (TCP, UDP, SCTP, DCCP, UDP-Lite) and the TCP flags of the header
 * at `off`; for ICMP/ICMPv6 the type and code as Community ID maps them to ports (type and
 * counter-type for request/reply pairs, so both directions are one flow; else type and code);
 * leaves them 0 for other protocols (GRE, ESP, ...) and when cut off.
 */
export function decodeTransport(
  proto: number,
  data: Uint8Array,
  off: number,
  end: number,
  out: PacketInfo,
): void {
  switch (proto) {
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
      if (off + 2 <= end) {
        const ports = icmpPorts(proto, data[off], data[off + 1]);
        out.srcPort = ports >>> 16;
        out.dstPort = ports & 0xffff;
      }
      break;
    case IPPROTO_TCP:
      if (off + 14 <= end) out.tcpFlags = data[off + 13];
      // falls through
    case IPPROTO_UDP:
    case IPPROTO_SCTP:
    case IPPROTO_DCCP:
    case IPPROTO_UDPLITE:
      if (off + 4 <= end) {
        out.srcPort = (data[off] << 8) | data[off + 1];
        out.dstPort = (data[off + 2] << 8) | data[off + 3];
        out.hasPorts = true;
      }
  }
}
