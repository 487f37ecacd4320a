/**
 * Linux cooked captures (the "any" device): SLL (16-byte header) and SLL2 (20-byte header). The
 * protocol field is an EtherType for most device types; there is no destination address.
 */
import { FlowKind, type PacketInfo } from "./packet_info.ts";
import { decodeEtherPayload } from "./ethernet.ts";

/** SLL protocol value announcing an 802.2 LLC frame. */
const LINUX_SLL_P_802_2 = 0x0004;

/**
 * Decodes a LINUX_SLL frame. Returns false when the 16-byte header is cut (Opaque). Non-IP payloads
 * become L2 keys: sender's link-layer address (first 6 bytes) as end A, zero as end B.
 */
export function decodeSll(data: Uint8Array, off: number, end: number, out: PacketInfo): boolean {
  if (end - off < 16) return false;
  const halen = (data[off + 4] << 8) | data[off + 5];
  const proto = (data[off + 14] << 8) | data[off + 15];
  return decodeCooked(proto, data, off + 6, halen, off + 16, end, out);
}

/** Decodes a LINUX_SLL2 frame; same policy as `decodeSll`. */
export function decodeSll2(data: Uint8Array, off: number, end: number, out: PacketInfo): boolean {
  if (end - off < 20) return false;
  const proto = (data[off] << 8) | data[off + 1];
  return decodeCooked(proto, data, off + 12, data[off + 11], off + 20, end, out);
}

function decodeCooked(
  proto: number,
  data: Uint8Array,
  addrOff: number,
  halen: number,
  payload: number,
  end: number,
  out: PacketInfo,
): boolean {
  // Below 0x0600 the field is a Linux packet type (netlink family, ...), not a length: only
  // 802.2 frames carry an LLC header worth reading.
  if (proto >= 0x0600 || proto === LINUX_SLL_P_802_2) {
    if (decodeEtherPayload(proto === LINUX_SLL_P_802_2 ? 0 : proto, data, payload, end, out)) {
      return true;
    }
  } else {
    out.etherType = proto;
  }
  const key = out.key;
  let hi = 0;
  let lo = 0;
  const n = halen < 6 ? halen : 6;
  for (let i = 0; i < n; i++) {
    const b = data[addrOff + i];
    if (i < 4) hi |= b << (24 - (i << 3));
    else lo |= b << (56 - (i << 3));
  }
  key[0] = hi;
  key[1] = lo;
  out.kind = FlowKind.L2;
  return true;
}
