/**
 * Ethernet II / 802.3 frames and what an EtherType can lead to: any number of 802.1Q/802.1ad tags,
 * MPLS label stacks, PPPoE sessions, LLC/SNAP, then IPv4 or IPv6.
 */
import { FlowKind, MAX_EXTRA_TAGS, type PacketInfo } from "./packet_info.ts";
import { decodeIpv4 } from "./ipv4.ts";
import { decodeIpv6 } from "./ipv6.ts";

/** IPv4 EtherType. */
export const ETHERTYPE_IPV4 = 0x0800;
/** ARP EtherType. */
export const ETHERTYPE_ARP = 0x0806;
/** 802.1Q VLAN tag. */
export const ETHERTYPE_VLAN = 0x8100;
/** IPv6 EtherType. */
export const ETHERTYPE_IPV6 = 0x86dd;
/** MPLS unicast. */
export const ETHERTYPE_MPLS = 0x8847;
/** MPLS multicast. */
export const ETHERTYPE_MPLS_MC = 0x8848;
/** PPPoE session stage. */
export const ETHERTYPE_PPPOE = 0x8864;
/** 802.1ad service tag (QinQ outer tag). */
export const ETHERTYPE_QINQ = 0x88a8;
/** Pre-standard QinQ outer tag. */
export const ETHERTYPE_QINQ_OLD = 0x9100;

/**
 * Decodes an Ethernet frame at `off`. Returns false only when fewer than 14 bytes are captured
 * (Opaque). A frame whose payload is not a usable IPv4/IPv6 header becomes an L2 key: source and
 * destination MAC plus `etherType` (or `llc` for 802.3 length frames).
 */
export function decodeEthernet(
  data: Uint8Array,
  off: number,
  end: number,
  out: PacketInfo,
): boolean {
  if (end - off < 14) return false;
  const type = (data[off + 12] << 8) | data[off + 13];
  if (decodeEtherPayload(type, data, off + 14, end, out)) return true;
  const key = out.key;
  writeMac(data, off + 6, key, 0);
  writeMac(data, off, key, 4);
  out.kind = FlowKind.L2;
  return true;
}

/**
 * Decodes what follows an EtherType field (`type`; below 0x0600 it is an 802.3 length and an LLC
 * header follows). Sets `vlan` from the outermost tag, `etherType` to the last EtherType seen and
 * `llc` for LLC frames. Returns true when it reached a usable IPv4/IPv6 header (kind set by the IP
 * decoder), false when the caller should key the frame by its link layer. Inner tags' VLAN ids go
 * to `innerVlans` (the first MAX_EXTRA_TAGS of them).
 *
 * Iterative on purpose: a jumbo frame of nested tags must not grow the stack.
 */
export function decodeEtherPayload(
  type: number,
  data: Uint8Array,
  off: number,
  end: number,
  out: PacketInfo,
): boolean {
  let t = type;
  let o = off;
  let tagged = false;
  let snap = false;
  for (;;) {
    switch (t) {
      case ETHERTYPE_VLAN:
      case ETHERTYPE_QINQ:
      case ETHERTYPE_QINQ_OLD:
        if (o + 4 > end) {
          out.etherType = t;
          return false;
        }
        if (!tagged) {
          out.vlan = ((data[o] & 0x0f) << 8) | data[o + 1];
          tagged = true;
        } else if (out.innerVlanCount < MAX_EXTRA_TAGS) {
          out.innerVlans[out.innerVlanCount++] = ((data[o] & 0x0f) << 8) | data[o + 1];
        }
        t = (data[o + 2] << 8) | data[o + 3];
        o += 4;
        continue;
      case ETHERTYPE_IPV4:
        out.etherType = t;
        return decodeIpv4(data, o, end, out);
      case ETHERTYPE_IPV6:
        out.etherType = t;
        return decodeIpv6(data, o, end, out);
      case ETHERTYPE_MPLS:
      case ETHERTYPE_MPLS_MC:
        out.etherType = t;
        return decodeMpls(data, o, end, out);
      case ETHERTYPE_PPPOE:
        out.etherType = t;
        return decodePppoeSession(data, o, end, out);
    }
    if (t >= 0x0600 || snap) {
      out.etherType = t;
      return false;
    }
    // 802.3 length frame: LLC header (DSAP, SSAP, control), maybe SNAP (OUI, EtherType).
    out.etherType = 0;
    if (o + 2 > end) return false;
    const dsap = data[o];
    const ssap = data[o + 1] & 0xfe;
    out.llc = (dsap << 8) | ssap;
    if (
      dsap === 0xaa && ssap === 0xaa && o + 8 <= end && data[o + 2] === 0x03 &&
      data[o + 3] === 0 && data[o + 4] === 0 && (data[o + 5] === 0 || data[o + 5] === 0xf8)
    ) {
      // SNAP with an EtherType OUI: the next two bytes are an EtherType.
      snap = true;
      t = (data[o + 6] << 8) | data[o + 7];
      o += 8;
      continue;
    }
    return false;
  }
}

/**
 * Reads an MPLS label stack up to the bottom-of-stack entry (labels to `mplsLabels`, the first
 * MAX_EXTRA_TAGS of them), then guesses the payload from its first
 * nibble (4 = IPv4, 6 = IPv6; anything else, such as a pseudowire control word, is not decoded).
 */
export function decodeMpls(data: Uint8Array, off: number, end: number, out: PacketInfo): boolean {
  let o = off;
  for (;;) {
    if (o + 4 > end) return false;
    const bottom = data[o + 2] & 0x01;
    if (out.mplsCount < MAX_EXTRA_TAGS) {
      out.mplsLabels[out.mplsCount++] = (data[o] << 12) | (data[o + 1] << 4) | (data[o + 2] >> 4);
    }
    o += 4;
    if (bottom !== 0) break;
  }
  if (o >= end) return false;
  const version = data[o] >> 4;
  if (version === 4) return decodeIpv4(data, o, end, out);
  if (version === 6) return decodeIpv6(data, o, end, out);
  return false;
}

/** PPPoE session header (RFC 2516) and the PPP protocol field: 0x0021 IPv4, 0x0057 IPv6. */
export function decodePppoeSession(
  data: Uint8Array,
  off: number,
  end: number,
  out: PacketInfo,
): boolean {
  if (off + 8 > end || data[off + 1] !== 0) return false;
  const proto = (data[off + 6] << 8) | data[off + 7];
  if (proto === 0x0021) return decodeIpv4(data, off + 8, end, out);
  if (proto === 0x0057) return decodeIpv6(data, off + 8, end, out);
  return false;
}

/** Writes the 6-byte MAC at `off` into key words `w` (bytes 0-3) and `w + 1` (bytes 4-5, high half). */
export function writeMac(data: Uint8Array, off: number, key: Uint32Array, w: number): void {
  key[w] = (data[off] << 24) | (data[off + 1] << 16) | (data[off + 2] << 8) | data[off + 3];
  key[w + 1] = (data[off + 4] << 24) | (data[off + 5] << 16);
}
