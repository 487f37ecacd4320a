/**
 * The decoder's output: one reusable object per worker, overwritten for every packet so that
 * decoding allocates nothing. Decoders in this folder fill it; the flow table reads `key`.
 *
 * Flow key layout (KEY_WORDS u32 words, written in packet direction: A = source, B = destination;
 * the flow table orders the two ends canonically):
 *   words 0-3  address A   IPv4: word 0 = address (big-endian value, e.g. 198.18.0.1 = 0xc6120001),
 *                                words 1-3 = 0
 *                          IPv6: the 16 bytes as 4 big-endian words
 *                          L2:   MAC bytes 0-3 in word 0, bytes 4-5 in the high half of word 1
 *   words 4-7  address B   same encoding
 *   word 8     ports       portA << 16 | portB (TCP, UDP, SCTP, DCCP, UDP-Lite; ICMP/ICMPv6: type
 *                          and counter-type or code as Community ID maps them, see
 *                          src/flow/community_id.ts); 0 for fragments after the first and other
 *                          protocols; for L2 flows the type
 *                          (EtherType, or the LLC DSAP << 8 | SSAP of an 802.3 frame) in the low 16
 *                          bits AND repeated in the high 16 bits, so that swapping the two halves
 *                          (what the flow table does when it swaps the ends) leaves it unchanged
 *   word 9     meta        kind << 28 | ipProto << 16 | NO_PORTS (bit 12) | vlan (outermost VLAN id,
 *                          12 bits). NO_PORTS: a TCP/UDP/SCTP/DCCP/UDP-Lite packet whose ports were
 *                          not read (a later fragment, or a transport header the snaplen cut off):
 *                          it has no port, so `port 0` does not select it
 */
export const KEY_WORDS = 10;

/** Most inner VLAN tags and MPLS labels a packet's PacketInfo keeps (deeper ones are not kept). */
export const MAX_EXTRA_TAGS = 8;

/** Meta-word bit of a port protocol's packet that carries no ports (see the layout above). */
export const META_NO_PORTS = 0x1000;

/** What a frame decoded to; the `kind` field of the key's meta word. */
export const enum FlowKind {
  /** Nothing usable: unknown link type or a frame too short for its link header. */
  Opaque = 0,
  /** Non-IP frame (ARP, STP, LLDP, ...) keyed by its MAC pair and EtherType. */
  L2 = 1,
  Ipv4 = 4,
  Ipv6 = 6,
}

/** Per-packet decode result, overwritten by every decode call. */
export class PacketInfo {
  /** Flow key in packet direction, see the layout above. */
  readonly key: Uint32Array = new Uint32Array(KEY_WORDS);
  kind: FlowKind = FlowKind.Opaque;
  /** IP protocol number (6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6, ...), 0 when not IP. */
  ipProto = 0;
  srcPort = 0;
  dstPort = 0;
  /** Outermost 802.1Q/802.1ad VLAN id, 0 when untagged. */
  vlan = 0;
  /** TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10), 0 when not TCP or truncated. */
  tcpFlags = 0;
  /** True for IP fragments after the first (no transport header, ports are 0). */
  laterFragment = false;
  /** True when srcPort/dstPort were read from a transport header. */
  hasPorts = false;
  /** VLAN ids of the tags inside the outermost one (QinQ inner first), `innerVlanCount` of them. */
  readonly innerVlans: Uint16Array = new Uint16Array(MAX_EXTRA_TAGS);
  innerVlanCount = 0;
  /** MPLS labels of the stack, outermost first, `mplsCount` of them. */
  readonly mplsLabels: Uint32Array = new Uint32Array(MAX_EXTRA_TAGS);
  mplsCount = 0;
  /**
   * Last EtherType seen (after VLAN tags; 0x8847 for MPLS, 0x8864 for PPPoE; the SLL protocol
   * field on Linux cooked captures), 0 for 802.3 length frames and links without one.
   */
  etherType = 0;
  /** LLC DSAP << 8 | SSAP (command/response bit cleared) of an 802.3 length frame, else 0. */
  llc = 0;
}
