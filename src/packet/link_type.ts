/**
 * Link-layer header types: the DLT_* values libpcap returns for live handles and the LINKTYPE_*
 * values pcap files store. They agree except for raw IP (DLT_RAW 12 live, LINKTYPE_RAW 101 in
 * files), so the decoder accepts both.
 */

/** BSD loopback: 4-byte address family in the writer's host byte order. */
export const DLT_NULL = 0;
/** Ethernet (and 802.3). */
export const DLT_EN10MB = 1;
/** Raw IP, version from the first nibble (live value on Linux). */
export const DLT_RAW = 12;
/** Raw IP as stored in pcap files. */
export const LINKTYPE_RAW = 101;
/** OpenBSD loopback: 4-byte address family in network byte order. */
export const DLT_LOOP = 108;
/** Linux cooked capture v1 (16-byte header). */
export const DLT_LINUX_SLL = 113;
/** Raw IPv4 only. */
export const DLT_IPV4 = 228;
/** Raw IPv6 only. */
export const DLT_IPV6 = 229;
/** Linux cooked capture v2 (20-byte header). */
export const DLT_LINUX_SLL2 = 276;

/** Names of the link types worth naming in logs and status pages (decoded or not). */
const NAMES: ReadonlyMap<number, string> = new Map([
  [DLT_NULL, "NULL"],
  [DLT_EN10MB, "EN10MB"],
  [6, "IEEE802"],
  [8, "SLIP"],
  [9, "PPP"],
  [10, "FDDI"],
  [DLT_RAW, "RAW"],
  [50, "PPP_HDLC"],
  [51, "PPP_ETHER"],
  [LINKTYPE_RAW, "RAW"],
  [104, "C_HDLC"],
  [105, "IEEE802_11"],
  [107, "FRELAY"],
  [DLT_LOOP, "LOOP"],
  [DLT_LINUX_SLL, "LINUX_SLL"],
  [119, "PRISM_HEADER"],
  [127, "IEEE802_11_RADIO"],
  [143, "DOCSIS"],
  [192, "PPI"],
  [195, "IEEE802_15_4_WITHFCS"],
  [DLT_IPV4, "IPV4"],
  [DLT_IPV6, "IPV6"],
  [DLT_LINUX_SLL2, "LINUX_SLL2"],
]);

/** Short name of a link type (`EN10MB`, `LINUX_SLL`, ...); `LINKTYPE_<n>` for others. */
export function linkTypeName(n: number): string {
  return NAMES.get(n) ?? `LINKTYPE_${n}`;
}

/** Whether `decodePacket` understands this link type (others decode as Opaque). */
export function isDecodedLinkType(n: number): boolean {
  switch (n) {
    case DLT_NULL:
    case DLT_EN10MB:
    case DLT_RAW:
    case LINKTYPE_RAW:
    case DLT_LOOP:
    case DLT_LINUX_SLL:
    case DLT_IPV4:
    case DLT_IPV6:
    case DLT_LINUX_SLL2:
      return true;
  }
  return false;
}
