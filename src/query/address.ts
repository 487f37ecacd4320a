/**
 * IP address text <-> flow-key words, prefixes and ranges. Everything here runs at parse time only
 * (never per packet), so it favours clarity: 128-bit arithmetic is done with BigInt.
 *
 * Word layout follows the flow key (src/packet/packet_info.ts): four big-endian u32 words; an IPv4
 * address lives in word 0 and words 1-3 are 0, so one lexicographic comparison of four words orders
 * addresses of either family.
 */
import { formatIpv6 } from "../packet/describe.ts";

/** Address family, equal to the flow key's kind value (4 = IPv4, 6 = IPv6). */
export type Family = 4 | 6;

/** Four unsigned 32-bit words of an address in flow-key layout. */
export type Words = readonly [number, number, number, number];

/** A parsed address. */
export interface ParsedAddress {
  family: Family;
  words: Words;
}

/** A CIDR block: a network address and a prefix length. */
export interface Cidr {
  family: Family;
  words: Words;
  prefix: number;
}

/** Number of address bits in a family. */
export function familyBits(family: Family): number {
  return family === 4 ? 32 : 128;
}

/** Parses strict dotted-quad IPv4 (no leading zeros, which inet_aton would read as octal). */
export function parseIpv4(text: string): number | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    value = value * 256 + n;
  }
  return value;
}

/** Parses RFC 4291 IPv6 text (`::` compression, trailing dotted IPv4); zone ids are rejected. */
export function parseIpv6(text: string): Words | null {
  if (text.length < 2 || text.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const tail = halves.length === 2 ? (halves[1] === "" ? [] : halves[1].split(":")) : [];
  const groups: number[] = [];
  const tailGroups: number[] = [];
  // A dotted IPv4 suffix is only legal as the very last group and stands for two groups.
  const last = halves.length === 2 ? tail : head;
  if (last.length > 0 && last[last.length - 1].includes(".")) {
    const v4 = parseIpv4(last.pop() as string);
    if (v4 === null) return null;
    last.push((v4 >>> 16).toString(16), (v4 & 0xffff).toString(16));
  }
  for (const [src, dst] of [[head, groups], [tail, tailGroups]] as const) {
    for (const g of src) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return null;
      dst.push(parseInt(g, 16));
    }
  }
  if (halves.length === 2) {
    // "::" must stand for at least one zero group.
    const missing = 8 - groups.length - tailGroups.length;
    if (missing < 1) return null;
    for (let i = 0; i < missing; i++) groups.push(0);
  }
  groups.push(...tailGroups);
  if (groups.length !== 8) return null;
  return [
    (groups[0] * 0x10000 + groups[1]) >>> 0,
    (groups[2] * 0x10000 + groups[3]) >>> 0,
    (groups[4] * 0x10000 + groups[5]) >>> 0,
    (groups[6] * 0x10000 + groups[7]) >>> 0,
  ];
}

/** Parses an IPv4 or IPv6 address; null when it is neither. */
export function parseAddress(text: string): ParsedAddress | null {
  if (text.includes(":")) {
    const words = parseIpv6(text);
    return words === null ? null : { family: 6, words };
  }
  const v4 = parseIpv4(text);
  return v4 === null ? null : { family: 4, words: [v4, 0, 0, 0] };
}

/** Formats words as dotted quad (IPv4) or RFC 5952 text (IPv6), the same text flow records show. */
export function formatAddress(family: Family, words: Words): string {
  if (family === 6) return formatIpv6(words);
  const v = words[0];
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** Words -> unsigned integer of familyBits(family) bits. */
export function wordsToBigInt(family: Family, words: Words): bigint {
  if (family === 4) return BigInt(words[0] >>> 0);
  let v = 0n;
  for (const w of words) v = (v << 32n) | BigInt(w >>> 0);
  return v;
}

/** Unsigned integer -> words (inverse of wordsToBigInt). */
export function bigIntToWords(family: Family, value: bigint): Words {
  if (family === 4) return [Number(value & 0xffffffffn), 0, 0, 0];
  return [
    Number((value >> 96n) & 0xffffffffn),
    Number((value >> 64n) & 0xffffffffn),
    Number((value >> 32n) & 0xffffffffn),
    Number(value & 0xffffffffn),
  ];
}

/** Lexicographic unsigned comparison of two word quadruples: negative, 0 or positive. */
export function compareWords(a: Words, b: Words): number {
  for (let i = 0; i < 4; i++) {
    if (a[i] !== b[i]) return (a[i] >>> 0) < (b[i] >>> 0) ? -1 : 1;
  }
  return 0;
}

function hostMask(family: Family, prefix: number): bigint {
  return (1n << BigInt(familyBits(family) - prefix)) - 1n;
}

/**
 * The first and last address of a prefix, and whether `words` had host bits set (a CIDR such as
 * 10.0.0.1/8 is rejected by the parser, like tcpdump does).
 */
export function prefixRange(
  cidr: Cidr,
): { from: Words; to: Words; hostBitsSet: boolean } {
  const value = wordsToBigInt(cidr.family, cidr.words);
  const host = hostMask(cidr.family, cidr.prefix);
  const network = value & ~host;
  return {
    from: bigIntToWords(cidr.family, network),
    to: bigIntToWords(cidr.family, network | host),
    hostBitsSet: network !== value,
  };
}

/** Prefix length of a netmask, or -1 when the mask is not a contiguous run of leading ones. */
export function maskToPrefix(family: Family, mask: Words): number {
  const bits = familyBits(family);
  const value = wordsToBigInt(family, mask);
  for (let prefix = 0; prefix <= bits; prefix++) {
    const expected = ((1n << BigInt(bits)) - 1n) & ~hostMask(family, prefix);
    if (expected === value) return prefix;
  }
  return -1;
}

/** An inclusive address range of one family. */
export interface AddressRange {
  family: Family;
  from: Words;
  to: Words;
}

/** Prefix length when the range is exactly one CIDR block, else -1. */
export function rangePrefix(range: AddressRange): number {
  const { family } = range;
  const a = wordsToBigInt(family, range.from);
  const b = wordsToBigInt(family, range.to);
  if (b < a) return -1;
  const size = b - a + 1n;
  // A block has a power-of-two size and starts on a multiple of it.
  if ((size & (size - 1n)) !== 0n || a % size !== 0n) return -1;
  let prefix = familyBits(family);
  for (let s = size; s > 1n; s >>= 1n) prefix--;
  return prefix;
}

/**
 * The minimal list of CIDR blocks covering exactly the range, or null when more than `opts.limit`
 * blocks are needed (an IPv6 range can need up to 254).
 */
export function rangeToCidrs(range: AddressRange, opts: { limit: number }): Cidr[] | null {
  const { family } = range;
  const limit = opts.limit;
  const bits = BigInt(familyBits(family));
  let a = wordsToBigInt(family, range.from);
  const b = wordsToBigInt(family, range.to);
  const out: Cidr[] = [];
  while (a <= b) {
    // Largest aligned block starting at a that does not pass b.
    let size = 1n;
    let log = 0n;
    while (log < bits && a % (size * 2n) === 0n && a + size * 2n - 1n <= b) {
      size *= 2n;
      log++;
    }
    if (out.length === limit) return null;
    out.push({ family, words: bigIntToWords(family, a), prefix: Number(bits - log) });
    a += size;
  }
  return out;
}
