/**
 * IPv6 header (RFC 8200) and the extension headers between it and the transport header.
 */
import { FlowKind, type PacketInfo } from "./packet_info.ts";
import { decodeTransport } from "./transport.ts";

/** Hop-by-hop options. */
const HOPOPTS = 0;
/** Routing header. */
const ROUTING = 43;
/** Fragment header. */
const FRAGMENT = 44;
/** Authentication header (length in 4-byte units). */
const AH = 51;
/** Destination options. */
const DSTOPTS = 60;

/**
 * Longest extension-header chain followed. Real packets carry at most a handful; the bound keeps a
 * crafted jumbo frame of 8-byte headers from costing thousands of steps.
 */
export const MAX_IPV6_EXT_HEADERS = 16;

/**
 * Decodes the IPv6 header at `off` and walks hop-by-hop, routing, destination options, fragment and
 * AH headers to the upper-layer protocol. Returns false, writing nothing, when fewer than 40 bytes
 * are captured or the version nibble is not 6.
 *
 * `ipProto` is the upper-layer protocol; when the chain is cut off by the capture, or longer than
 * MAX_IPV6_EXT_HEADERS, it is the type of the header where the walk stopped, with ports 0. A fragment
 * header with a non-zero offset sets `laterFragment` (ports 0). A non-zero payload length limits the
 * packet; 0 (jumbogram or offload) does not.
 */
export function decodeIpv6(data: Uint8Array, off: number, end: number, out: PacketInfo): boolean {
  if (end - off < 40) return false;
  if (data[off] >> 4 !== 6) return false;
  const plen = (data[off + 4] << 8) | data[off + 5];
  if (plen !== 0 && off + 40 + plen < end) end = off + 40 + plen;
  const key = out.key;
  out.kind = FlowKind.Ipv6;
  for (let i = 0; i < 4; i++) {
    const a = off + 8 + (i << 2);
    key[i] = (data[a] << 24) | (data[a + 1] << 16) | (data[a + 2] << 8) | data[a + 3];
    const b = a + 16;
    key[i + 4] = (data[b] << 24) | (data[b + 1] << 16) | (data[b + 2] << 8) | data[b + 3];
  }
  let nh = data[off + 6];
  let o = off + 40;
  for (let n = 0;; n++) {
    switch (nh) {
      case HOPOPTS:
      case ROUTING:
      case DSTOPTS:
      case AH: {
        if (n === MAX_IPV6_EXT_HEADERS || o + 2 > end) {
          out.ipProto = nh;
          return true;
        }
        const next = data[o];
        o += nh === AH ? (data[o + 1] + 2) << 2 : (data[o + 1] + 1) << 3;
        nh = next;
        break;
      }
      case FRAGMENT: {
        if (n === MAX_IPV6_EXT_HEADERS || o + 4 > end) {
          out.ipProto = nh;
          return true;
        }
        const next = data[o];
        if ((((data[o + 2] << 8) | data[o + 3]) & 0xfff8) !== 0) {
          out.ipProto = next;
          out.laterFragment = true;
          return true;
        }
        o += 8;
        nh = next;
        break;
      }
      default:
        out.ipProto = nh;
        decodeTransport(nh, data, o, end, out);
        return true;
    }
  }
}
