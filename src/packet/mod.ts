/**
 * Packet decoding: link header → IP header → transport ports, into one reusable PacketInfo.
 *
 * Decoding policy (which flow a frame lands in):
 * - IPv4/IPv6 packets are keyed by addresses, IP protocol and ports (TCP, UDP, SCTP, DCCP, UDP-Lite;
 *   ICMP/ICMPv6 type and code mapped as Community ID does, 0 for other protocols), plus the outermost VLAN id. Link types: Ethernet (any number
 *   of 802.1Q/802.1ad/0x9100 tags, MPLS label stacks, PPPoE sessions, LLC/SNAP), Linux cooked
 *   (SLL, SLL2), BSD loopback (NULL, LOOP) and raw IP (RAW, IPV4, IPV6). Tunnels are keyed by
 *   their outer header. IPv4 fragments after the first and IPv6 fragments with a non-zero offset
 *   keep addresses and protocol with ports 0 (they carry no transport header).
 * - Ports are read whenever their 4 bytes are captured (a snaplen-cut segment stays in its
 *   connection's flow, as tshark also shows them); if the transport header is cut off before
 *   them, the packet keeps addresses and protocol with ports 0 and the key's NO_PORTS bit (as
 *   later fragments do), so it has no port at all, not port 0. If the IPv6 extension-header chain
 *   is cut off (or longer than 16 headers), the protocol is the type of the header where the walk
 *   stopped. IP length fields only shrink the packet; a length of 0 (BIG TCP / GSO) is ignored.
 * - Ethernet-family frames whose payload is not IPv4/IPv6 (ARP, STP, LLDP, CDP, ...) get kind L2,
 *   keyed by the MAC pair and the EtherType (802.3 length frames: EtherType 0 and the LLC
 *   DSAP << 8 | SSAP as the type; SNAP frames: the SNAP EtherType), so each such conversation is
 *   its own flow instead of one catch-all flow. The type fills both halves of the ports word, so
 *   the flow table's canonical swap of the two ends leaves it intact. Linux cooked frames carry
 *   only the sender's address: end B is zero.
 * - IP packets whose IP header is unusable (cut before the 20/40 fixed bytes, wrong version
 *   nibble, IHL < 5) fall back to L2 keying on Ethernet and cooked links, and to Opaque on
 *   links without addresses (RAW, NULL, LOOP, IPV4, IPV6).
 * - Unknown link types, frames shorter than their link header, and non-IP frames on NULL/LOOP
 *   are Opaque with an all-zero key: one flow per capture (the flow table may split by meta only).
 *
 * `decodePacket` never throws and never reads outside `data[offset, offset + caplen)`: every read is
 * checked against that end, and length fields only ever shrink it.
 */
import { FlowKind, KEY_WORDS, META_NO_PORTS, type PacketInfo } from "./packet_info.ts";
import { carriesPorts } from "./transport.ts";
import {
  DLT_EN10MB,
  DLT_IPV4,
  DLT_IPV6,
  DLT_LINUX_SLL,
  DLT_LINUX_SLL2,
  DLT_LOOP,
  DLT_NULL,
  DLT_RAW,
  LINKTYPE_RAW,
} from "./link_type.ts";
import { decodeEthernet } from "./ethernet.ts";
import { decodeSll, decodeSll2 } from "./sll.ts";
import { decodeLoop, decodeNull } from "./null_loop.ts";
import { decodeRaw } from "./raw.ts";
import { decodeIpv4 } from "./ipv4.ts";
import { decodeIpv6 } from "./ipv6.ts";

export { FlowKind, KEY_WORDS, META_NO_PORTS, PacketInfo } from "./packet_info.ts";
export * from "./link_type.ts";
export { describeKey, type KeyDescription } from "./describe.ts";

/**
 * Decodes one frame of link type `linkType` (DLT_* or LINKTYPE_* value, without the pcap header's
 * FCS bits) stored in `data[offset, offset + caplen)` into `out`, overwriting every field.
 * Never throws; see the module comment for the policy.
 */
export function decodePacket(
  linkType: number,
  data: Uint8Array,
  offset: number,
  caplen: number,
  out: PacketInfo,
): void {
  reset(out);
  let end = offset + caplen;
  if (end > data.length) end = data.length;
  if (!(offset >= 0 && end > offset)) return;
  let ok = false;
  switch (linkType) {
    case DLT_EN10MB:
      ok = decodeEthernet(data, offset, end, out);
      break;
    case DLT_LINUX_SLL:
      ok = decodeSll(data, offset, end, out);
      break;
    case DLT_LINUX_SLL2:
      ok = decodeSll2(data, offset, end, out);
      break;
    case DLT_RAW:
    case LINKTYPE_RAW:
      ok = decodeRaw(data, offset, end, out);
      break;
    case DLT_IPV4:
      ok = decodeIpv4(data, offset, end, out);
      break;
    case DLT_IPV6:
      ok = decodeIpv6(data, offset, end, out);
      break;
    case DLT_NULL:
      ok = decodeNull(data, offset, end, out);
      break;
    case DLT_LOOP:
      ok = decodeLoop(data, offset, end, out);
      break;
  }
  const key = out.key;
  if (!ok) {
    // A failed decoder may have set vlan or etherType on the way; Opaque means all zero.
    reset(out);
    return;
  }
  if (out.kind === FlowKind.L2) {
    const type = out.etherType !== 0 ? out.etherType : out.llc;
    key[8] = (type << 16) | type;
    key[9] = (FlowKind.L2 << 28) | out.vlan;
  } else {
    key[8] = (out.srcPort << 16) | out.dstPort;
    const noPorts = !out.hasPorts && carriesPorts(out.ipProto) ? META_NO_PORTS : 0;
    key[9] = (out.kind << 28) | (out.ipProto << 16) | noPorts | out.vlan;
  }
}

function reset(out: PacketInfo): void {
  const key = out.key;
  for (let i = 0; i < KEY_WORDS; i++) key[i] = 0;
  out.kind = FlowKind.Opaque;
  out.ipProto = 0;
  out.srcPort = 0;
  out.dstPort = 0;
  out.vlan = 0;
  out.tcpFlags = 0;
  out.laterFragment = false;
  out.hasPorts = false;
  out.innerVlanCount = 0;
  out.mplsCount = 0;
  out.etherType = 0;
  out.llc = 0;
}
