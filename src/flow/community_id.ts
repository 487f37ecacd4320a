/**
 * Community ID v1 (corelight/community-id-spec): the flow identifier Zeek, Suricata, Arkime and
 * most SIEMs log, so an analyst can pivot from an alert to the packets with one string.
 *
 * `"1:" + base64(sha1(seed . addrA . addrB . proto . 0 . portA . portB))`, seed a big-endian u16,
 * addresses 4 or 16 bytes, the endpoints ordered so the smaller (address, port) comes first; ports
 * only for TCP, UDP, SCTP, ICMP and ICMPv6. ICMP's type and code stand in for the ports (Zeek's
 * mapping: a request type and its reply type pair up, so both directions give one ID; other types
 * are one-directional, type then code, and are not reordered).
 *
 * Computed from a flow key (src/packet/packet_info.ts) when an index is written or a flow record is
 * produced, never per packet. The hash input is at most 40 bytes, one SHA-1 block, hashed here
 * without allocating: node:crypto's createHash costs a hash object and a Buffer per call, which
 * for the million flows of one index grew the writing worker's RSS by ~130 MB before the GC caught
 * up (tests check this SHA-1 against node:crypto's). The decoder puts the mapped ICMP ports into the key (see
 * `icmpPorts`), and the flow table's canonical order is the spec's endpoint order, so a two-way
 * flow's canonical key is the hash input as it is; a one-directional ICMP flow needs the direction
 * of its first packet.
 *
 * @module
 */

const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ICMPV6 = 58;
const IPPROTO_SCTP = 132;
const KIND_IPV4 = 4;
const KIND_IPV6 = 6;

/** Request/reply pairs of ICMPv4 (echo, router, timestamp, information, address mask). */
const ICMP4_PAIRS: readonly [number, number][] = [[8, 0], [10, 9], [13, 14], [15, 16], [17, 18]];
/** Pairs of ICMPv6 (echo, MLD, router and neighbor discovery, who-are-you, home agent). */
const ICMP6_PAIRS: readonly [number, number][] = [
  [128, 129],
  [130, 131],
  [133, 134],
  [135, 136],
  [139, 140],
  [144, 145],
];

/** Counter-type + 1 of each ICMP type (0 = one-directional), per IP version. */
function counterTypes(pairs: readonly [number, number][]): Uint16Array {
  const t = new Uint16Array(256);
  for (const [a, b] of pairs) {
    t[a] = b + 1;
    t[b] = a + 1;
  }
  return t;
}
const ICMP4_COUNTER = counterTypes(ICMP4_PAIRS);
const ICMP6_COUNTER = counterTypes(ICMP6_PAIRS);

/**
 * The (source port, destination port) that stand for an ICMP/ICMPv6 message in a flow key, as
 * `sport << 16 | dport`: type and counter-type for request/reply types, type and code otherwise.
 * Allocation-free (the decoder calls it per ICMP packet).
 */
export function icmpPorts(proto: number, type: number, code: number): number {
  const counter = proto === IPPROTO_ICMPV6 ? ICMP6_COUNTER[type] : ICMP4_COUNTER[type];
  return ((type << 16) | (counter !== 0 ? counter - 1 : code)) >>> 0;
}

/** Whether an ICMP message with this key port pair is one-directional (no counter-type). */
function icmpOneWay(proto: number, sport: number, dport: number): boolean {
  const counter = proto === IPPROTO_ICMPV6
    ? ICMP6_COUNTER[sport & 0xff]
    : ICMP4_COUNTER[sport & 0xff];
  return sport > 0xff || counter === 0 || counter - 1 !== dport;
}

/** Whether Community ID v1 hashes ports for this IP protocol. */
function hasPorts(proto: number): boolean {
  return proto === IPPROTO_TCP || proto === IPPROTO_UDP || proto === IPPROTO_SCTP ||
    proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6;
}

/** Largest seed: the spec packs it into 16 bits. */
export const MAX_COMMUNITY_ID_SEED = 0xffff;

// Hash input scratch: 2 seed + 2 × 16 address + 1 proto + 1 pad + 4 ports, then SHA-1 padding.
const input = new Uint8Array(64);
const inputView = new DataView(input.buffer);
const schedule = new Uint32Array(80);
const state = new Uint32Array(5);

/**
 * The 20-byte SHA-1 digest of a flow's Community ID, or null for a flow that has none (not IP).
 * `key[at .. at + 10)` is a canonical flow key; `firstReversed` says its first packet went B→A
 * (only one-directional ICMP flows need it).
 */
export function communityIdDigest(
  key: Uint32Array,
  at: number,
  firstReversed: boolean,
  seed: number,
): Uint8Array | null {
  if (!hashFlow(key, at, firstReversed, seed)) return null;
  const digest = new Uint8Array(20);
  const view = new DataView(digest.buffer);
  for (let i = 0; i < 5; i++) view.setUint32(i * 4, state[i]);
  return digest;
}

/**
 * The first 4 digest bytes as a little-endian u32 (the index's lookup column, see digestPrefix),
 * or 0 for a flow without a Community ID. Allocates nothing.
 */
export function communityIdPrefix(
  key: Uint32Array,
  at: number,
  firstReversed: boolean,
  seed: number,
): number {
  if (!hashFlow(key, at, firstReversed, seed)) return 0;
  const w = state[0];
  return ((w >>> 24) | ((w >>> 8) & 0xff00) | ((w << 8) & 0xff0000) | (w << 24)) >>> 0;
}

/** SHA-1 of the flow's hash input into `state`; false for a flow without a Community ID. */
function hashFlow(key: Uint32Array, at: number, firstReversed: boolean, seed: number): boolean {
  const meta = key[at + 9];
  const kind = meta >>> 28;
  if (kind !== KIND_IPV4 && kind !== KIND_IPV6) return false;
  const proto = (meta >>> 16) & 0xff;
  const words = kind === KIND_IPV4 ? 1 : 4;
  let a = at;
  let b = at + 4;
  let portA = key[at + 8] >>> 16;
  let portB = key[at + 8] & 0xffff;
  const icmp = proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6;
  if (icmp && firstReversed && icmpOneWay(proto, portB, portA)) {
    // One-directional messages are hashed in the direction they were sent.
    [a, b, portA, portB] = [b, a, portB, portA];
  }
  let n = 0;
  inputView.setUint16(n, seed);
  n += 2;
  for (let i = 0; i < words; i++, n += 4) inputView.setUint32(n, key[a + i]);
  for (let i = 0; i < words; i++, n += 4) inputView.setUint32(n, key[b + i]);
  input[n++] = proto;
  input[n++] = 0;
  if (hasPorts(proto)) {
    inputView.setUint16(n, portA);
    inputView.setUint16(n + 2, portB);
    n += 4;
  }
  sha1Block(n);
  return true;
}

/**
 * SHA-1 (FIPS 180-4) of the first `n` bytes of `input` (n ≤ 55: one block once padded), into
 * `state`.
 */
function sha1Block(n: number): void {
  input.fill(0, n);
  input[n] = 0x80;
  inputView.setUint32(60, n * 8);
  const w = schedule;
  for (let i = 0; i < 16; i++) w[i] = inputView.getUint32(i * 4);
  for (let i = 16; i < 80; i++) {
    const x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
    w[i] = (x << 1) | (x >>> 31);
  }
  let a = 0x67452301;
  let b = 0xefcdab89;
  let c = 0x98badcfe;
  let d = 0x10325476;
  let e = 0xc3d2e1f0;
  for (let i = 0; i < 80; i++) {
    let f: number;
    let k: number;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5a827999;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ed9eba1;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8f1bbcdc;
    } else {
      f = b ^ c ^ d;
      k = 0xca62c1d6;
    }
    const t = (((a << 5) | (a >>> 27)) + f + e + k + w[i]) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = t;
  }
  state[0] = 0x67452301 + a;
  state[1] = 0xefcdab89 + b;
  state[2] = 0x98badcfe + c;
  state[3] = 0x10325476 + d;
  state[4] = 0xc3d2e1f0 + e;
}

/** The Community ID string (`1:` + base64 digest), or "" for a flow that has none. */
export function communityId(
  key: Uint32Array,
  at: number,
  firstReversed: boolean,
  seed: number,
): string {
  const digest = communityIdDigest(key, at, firstReversed, seed);
  return digest === null ? "" : formatCommunityId(digest);
}

/** `1:` + base64 of a digest. */
export function formatCommunityId(digest: Uint8Array): string {
  return "1:" + btoa(String.fromCharCode(...digest));
}

/** The first 4 digest bytes as a little-endian u32: the index's per-flow lookup column. */
export function digestPrefix(digest: Uint8Array): number {
  return (digest[0] | (digest[1] << 8) | (digest[2] << 16) | (digest[3] << 24)) >>> 0;
}

/** Parses `1:<base64 of 20 bytes>` into the digest; null when it is not a v1 Community ID. */
export function parseCommunityId(text: string): Uint8Array | null {
  const m = /^1:([A-Za-z0-9+/]{27}=)$/.exec(text);
  if (m === null) return null;
  try {
    const bin = atob(m[1]);
    return bin.length === 20 ? Uint8Array.from(bin, (c) => c.charCodeAt(0)) : null;
  } catch {
    return null;
  }
}

/** Parses a seed (0-65535); throws a RangeError naming the problem. */
export function parseCommunityIdSeed(text: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n > MAX_COMMUNITY_ID_SEED) {
    throw new RangeError(
      `Invalid Community ID seed "${text}": expected an integer 0-${MAX_COMMUNITY_ID_SEED}`,
    );
  }
  return n;
}
