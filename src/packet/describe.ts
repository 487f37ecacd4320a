/**
 * Human-readable view of a flow key (logs, JSON APIs, tests): not on the per-packet path.
 */
import { FlowKind } from "./packet_info.ts";

/**
 * Names of the L2 flow types queries and flow records use: EtherTypes, and for 802.3 frames the
 * LLC DSAP << 8 | SSAP (`stp`: 0x42, 0x42).
 */
export const ETHER_TYPES: Readonly<Record<string, number>> = Object.freeze({
  arp: 0x0806,
  rarp: 0x8035,
  lldp: 0x88cc,
  stp: 0x4242,
  vlan: 0x8100,
  eapol: 0x888e,
  lacp: 0x8809,
  ptp: 0x88f7,
  mpls: 0x8847,
  pppoe: 0x8864,
  cdp: 0x2000,
});

/** Name of an L2 flow type (ETHER_TYPES), else its number as 0x hex. */
export function etherTypeName(type: number): string {
  for (const [name, value] of Object.entries(ETHER_TYPES)) if (value === type) return name;
  return `0x${type.toString(16).padStart(4, "0")}`;
}

/** A flow key spelled out. */
export interface KeyDescription {
  /** "opaque", "l2", "ipv4" or "ipv6". */
  kind: string;
  /** End A: dotted IPv4, RFC 5952 IPv6, or aa:bb:cc:dd:ee:ff; "" for Opaque. */
  src: string;
  /** End B, same spelling. */
  dst: string;
  /** Port of end A (high half of the ports word); for L2 keys the type (repeated). */
  srcPort: number;
  /** Port of end B (low half of the ports word); for L2 keys the type. */
  dstPort: number;
  /** IP protocol number, 0 for L2 and Opaque. */
  proto: number;
  /** Outermost VLAN id, 0 when untagged. */
  vlan: number;
  /** L2 keys: EtherType, or LLC DSAP << 8 | SSAP for 802.3 frames; 0 for other kinds. */
  etherType: number;
}

/** Spells out a flow key (packet-direction or canonical; words as laid out in packet_info.ts). */
export function describeKey(key: Uint32Array): KeyDescription {
  const meta = key[9];
  const kind = meta >>> 28;
  const ports = key[8];
  const d: KeyDescription = {
    kind: "opaque",
    src: "",
    dst: "",
    srcPort: ports >>> 16,
    dstPort: ports & 0xffff,
    proto: (meta >>> 16) & 0xff,
    vlan: meta & 0x0fff,
    etherType: 0,
  };
  switch (kind) {
    case FlowKind.Ipv4:
      d.kind = "ipv4";
      d.src = formatIpv4(key[0]);
      d.dst = formatIpv4(key[4]);
      break;
    case FlowKind.Ipv6:
      d.kind = "ipv6";
      d.src = formatIpv6(key, 0);
      d.dst = formatIpv6(key, 4);
      break;
    case FlowKind.L2:
      d.kind = "l2";
      d.src = formatMac(key, 0);
      d.dst = formatMac(key, 4);
      d.etherType = ports & 0xffff;
      break;
    default:
      d.kind = kind === FlowKind.Opaque ? "opaque" : `kind${kind}`;
  }
  return d;
}

function formatIpv4(w: number): string {
  return `${w >>> 24}.${(w >>> 16) & 0xff}.${(w >>> 8) & 0xff}.${w & 0xff}`;
}

function formatMac(key: Uint32Array, w: number): string {
  const bytes = [
    key[w] >>> 24,
    (key[w] >>> 16) & 0xff,
    (key[w] >>> 8) & 0xff,
    key[w] & 0xff,
    key[w + 1] >>> 24,
    (key[w + 1] >>> 16) & 0xff,
  ];
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/**
 * RFC 5952: lowercase hex without leading zeros, the longest run (first on a tie) of two or more
 * zero groups as "::", and IPv4-mapped addresses as ::ffff:a.b.c.d.
 */
export function formatIpv6(key: ArrayLike<number>, w = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 4; i++) groups.push(key[w + i] >>> 16, key[w + i] & 0xffff);
  if (
    groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 &&
    groups[5] === 0xffff
  ) {
    return `::ffff:${formatIpv4(key[w + 3])}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number): string => g.toString(16);
  if (bestStart < 0) return groups.map(hex).join(":");
  const head = groups.slice(0, bestStart).map(hex).join(":");
  const tail = groups.slice(bestStart + bestLen).map(hex).join(":");
  return `${head}::${tail}`;
}
