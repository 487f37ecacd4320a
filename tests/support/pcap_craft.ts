/**
 * Hand-built frames and pcap files for tests that need exact headers (VLAN stacks, MPLS labels,
 * fragments, cut-off transport headers, out-of-order times). Written byte by byte here, sharing
 * no code with cutcap, so tcpdump and tshark judge both.
 */

/** One record of a crafted pcap. */
export interface CraftedRecord {
  /** Time in microseconds since the epoch. */
  us: number;
  /** The frame as it was on the wire. */
  frame: Uint8Array;
  /** Bytes kept (caplen); default the whole frame. */
  caplen?: number;
}

/** Concatenates byte arrays. */
export function bytes(...parts: (Uint8Array | number[])[]): Uint8Array {
  const arrays = parts.map((p) => p instanceof Uint8Array ? p : Uint8Array.from(p));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

function u16(n: number): number[] {
  return [(n >> 8) & 255, n & 255];
}

function ipv4Bytes(text: string): number[] {
  return text.split(".").map(Number);
}

function ipv6Bytes(text: string): number[] {
  const [head, tail] = text.split("::");
  const groups = (s: string | undefined) => s ? s.split(":").map((g) => parseInt(g, 16)) : [];
  const h = groups(head);
  const t = groups(tail);
  const all = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap(u16);
}

/** UDP header and payload. */
export function udp(sport: number, dport: number, payload = new Uint8Array(8)): Uint8Array {
  return bytes([...u16(sport), ...u16(dport), ...u16(8 + payload.length), 0, 0], payload);
}

/** A 20-byte TCP header (ACK) and payload. */
export function tcp(sport: number, dport: number, payload = new Uint8Array(0)): Uint8Array {
  return bytes(
    [...u16(sport), ...u16(dport), 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0x20, 0, 0, 0, 0, 0],
    payload,
  );
}

/** An IPv4 packet (no options); `fragment` is the 13-bit offset in 8-byte units, `more` the MF bit. */
export function ipv4(
  src: string,
  dst: string,
  proto: number,
  payload: Uint8Array,
  opts: { fragment?: number; more?: boolean } = {},
): Uint8Array {
  const flagsOffset = (opts.more ? 0x2000 : 0) | (opts.fragment ?? 0);
  return bytes(
    [0x45, 0, ...u16(20 + payload.length), 0, 7, ...u16(flagsOffset), 64, proto, 0, 0],
    ipv4Bytes(src),
    ipv4Bytes(dst),
    payload,
  );
}

/** An IPv6 packet; `ext` are extension headers as [type, body] (body padded to 8n - 2 bytes). */
export function ipv6(
  src: string,
  dst: string,
  nh: number,
  payload: Uint8Array,
  ext: [number, Uint8Array][] = [],
): Uint8Array {
  let chain = payload;
  let next = nh;
  for (let i = ext.length - 1; i >= 0; i--) {
    const [type, body] = ext[i];
    const header = type === 44
      ? bytes([next, 0], body.subarray(0, 6))
      : bytes([next, (body.length + 2) / 8 - 1], body);
    chain = bytes(header, chain);
    next = type;
  }
  return bytes(
    [0x60, 0, 0, 0, ...u16(chain.length), next, 64],
    ipv6Bytes(src),
    ipv6Bytes(dst),
    chain,
  );
}

/** An IPv6 fragment header body (6 bytes): offset in 8-byte units, more-fragments bit. */
export function fragmentHeader(offset: number, more: boolean): Uint8Array {
  return Uint8Array.from([...u16((offset << 3) | (more ? 1 : 0)), 0, 0, 0, 9]);
}

/** An Ethernet frame; `tags` are [TPID, VLAN id] pairs, outermost first. */
export function ethernet(
  etherType: number,
  payload: Uint8Array,
  tags: [number, number][] = [],
): Uint8Array {
  return bytes(
    [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2],
    tags.flatMap(([tpid, vid]) => [...u16(tpid), ...u16(vid)]),
    u16(etherType),
    payload,
  );
}

/** An MPLS label stack (outermost first) in front of `payload`. */
export function mpls(labels: number[], payload: Uint8Array): Uint8Array {
  const stack = labels.flatMap((label, i) => {
    const bottom = i === labels.length - 1 ? 1 : 0;
    return [(label >> 12) & 255, (label >> 4) & 255, ((label & 15) << 4) | bottom, 64];
  });
  return bytes(stack, payload);
}

/** A Linux cooked (SLL) frame carrying `etherType`. */
export function sll(etherType: number, payload: Uint8Array): Uint8Array {
  return bytes([0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 3, 0, 0], u16(etherType), payload);
}

/** A pcap file (little-endian, microseconds) with the records in the given order. */
export function pcapFile(linkType: number, snaplen: number, records: CraftedRecord[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const header = new DataView(new ArrayBuffer(24));
  header.setUint32(0, 0xa1b2c3d4, true);
  header.setUint16(4, 2, true);
  header.setUint16(6, 4, true);
  header.setUint32(16, snaplen, true);
  header.setUint32(20, linkType, true);
  parts.push(new Uint8Array(header.buffer));
  for (const r of records) {
    const caplen = Math.min(r.caplen ?? r.frame.length, r.frame.length);
    const rh = new DataView(new ArrayBuffer(16));
    rh.setUint32(0, Math.floor(r.us / 1e6), true);
    rh.setUint32(4, r.us % 1e6, true);
    rh.setUint32(8, caplen, true);
    rh.setUint32(12, r.frame.length, true);
    parts.push(new Uint8Array(rh.buffer), r.frame.subarray(0, caplen));
  }
  return bytes(...parts);
}
