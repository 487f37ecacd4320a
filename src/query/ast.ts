/**
 * The parsed form of a query, shared by both dialects: `ip=1.1.1.1 port=80|port=443 last=4h`
 * and stenographer's BPF subset `host 1.1.1.1 and (port 80 or port 443) and after 4h ago`.
 *
 * Every predicate is already resolved to numbers (addresses as flow-key words, relative times as
 * absolute seconds), so the matcher reads nodes without converting anything per packet.
 */

import { type Family, formatAddress, rangePrefix, type Words } from "./address.ts";

export type { Family, Words };

/** A parsed query: a boolean tree of predicates. */
export type Query = AndQuery | OrQuery | NotQuery | Predicate;

/** A leaf of the query tree. */
export type Predicate =
  | AddressPredicate
  | PortPredicate
  | ProtoPredicate
  | FamilyPredicate
  | VlanPredicate
  | MplsPredicate
  | TimePredicate
  | SensorPredicate
  | RecordPredicate;

/**
 * Predicates on a flow's record in the index rather than its key (src/query/record_terms.ts):
 * Community ID, cut off or not, total size, and the L2 terms (MAC, EtherType).
 */
export type RecordPredicate =
  | CommunityIdPredicate
  | CutPredicate
  | TotalPredicate
  | MacPredicate
  | EtherTypePredicate;

/** The flow's Community ID v1 (`community-id 1:…`, `cid=1:…`), with the seed of the query. */
export interface CommunityIdPredicate {
  readonly type: "cid";
  /** The 20-byte SHA-1 digest the ID spells. */
  readonly digest: Uint8Array;
  /** Its first 4 bytes as the index's cid column holds them (digestPrefix). */
  readonly prefix: number;
  /** The seed flows' IDs are computed with (`--community-id-seed`; 0 by default). */
  readonly seed: number;
}

/** The cutoff refused some packet of the flow (`cut`, `cut=1`), or none (`cut=0`). */
export interface CutPredicate {
  readonly type: "cut";
  readonly cut: boolean;
}

/** The flow's total packets or bytes seen, stored or not (`bytes > 10MB`, `packets > 1000`). */
export interface TotalPredicate {
  readonly type: "total";
  readonly what: "bytes" | "packets";
  readonly op: ">" | ">=" | "<" | "<=";
  readonly value: number;
}

/**
 * A non-IP (L2) flow with this MAC address (`ether host`, `mac=`), as its source (`ether src`:
 * the sender of the flow's first packet) or destination (`ether dst`). IP flows are keyed by
 * their IP addresses and never match.
 */
export interface MacPredicate {
  readonly type: "mac";
  /** The 6 bytes as key words: bytes 0-3 in the first, 4-5 in the high half of the second. */
  readonly words: readonly [number, number];
  readonly dir: "any" | "src" | "dst";
}

/**
 * A non-IP (L2) flow of this EtherType (`ether proto N`, `ethertype=N`, `arp`, `rarp`, `lldp`),
 * or for 802.3 frames of this LLC DSAP << 8 | SSAP (`stp` = 0x4242).
 */
export interface EtherTypePredicate {
  readonly type: "ethertype";
  readonly etherType: number;
}

/** True when every child is (explicit `and`/`&&` and whitespace adjacency). */
export interface AndQuery {
  readonly type: "and";
  /** At least two children; nested `and`s are flattened into one node. */
  readonly children: readonly Query[];
}

/** True when any child is (`or`/`||` and the classic `|`). */
export interface OrQuery {
  readonly type: "or";
  /** At least two children; nested `or`s are flattened into one node. */
  readonly children: readonly Query[];
}

/** Negation (`not`/`!`). */
export interface NotQuery {
  readonly type: "not";
  readonly child: Query;
}

/**
 * Either end of the flow has an address of `family` in [from, to] (inclusive). Covers `host X`,
 * `net X/N`, `net X mask M`, `ip=X` and `ip=X-Y`.
 */
export interface AddressPredicate {
  readonly type: "address";
  readonly family: Family;
  readonly from: Words;
  readonly to: Words;
}

/** TCP, UDP or SCTP with either port in [from, to] (`port N`, `portrange N-M`, `port=N`). */
export interface PortPredicate {
  readonly type: "port";
  readonly from: number;
  readonly to: number;
}

/**
 * IP protocol number. family 0 = IPv4 or IPv6 (`protocol=N`, `proto N`, `tcp`, `udp`, `sctp`, and
 * `ip proto N` as stenographer reads it), 4 = IPv4 only (`icmp`), 6 = IPv6 only (`ip6 proto N`,
 * `icmp6`).
 */
export interface ProtoPredicate {
  readonly type: "proto";
  readonly proto: number;
  readonly family: 0 | Family;
}

/** The packet is IPv4 (`ip`) or IPv6 (`ip6`). */
export interface FamilyPredicate {
  readonly type: "family";
  readonly family: Family;
}

/**
 * Any VLAN tag of the frame has this id (`vlan N`: the outermost or an inner QinQ tag, as
 * stenographer indexes them); untagged packets have id 0 in the flow key.
 */
export interface VlanPredicate {
  readonly type: "vlan";
  readonly vlan: number;
}

/** Any label of the frame's MPLS stack (`mpls N`, stenographer's primitive). */
export interface MplsPredicate {
  readonly type: "mpls";
  readonly label: number;
}

/**
 * Packet time in seconds since the epoch: `after` is `ts >= at`, `before` is `ts < at`, so the
 * two are exact complements and `after T and before U` is the half-open interval [T, U).
 * `last=4h` is `after (now - 4h)`.
 */
export interface TimePredicate {
  readonly type: "time";
  readonly op: "after" | "before";
  readonly at: number;
}

/**
 * The flow was recorded by the sensor of this name (`sensor NAME`, `sensor=NAME`): answered by
 * `cutcap fleet` only; a sensor's own parser refuses it.
 */
export interface SensorPredicate {
  readonly type: "sensor";
  readonly name: string;
}

/** Error raised for malformed query text; `position` is the 0-based character offset. */
export class QueryError extends Error {
  /** 0-based offset in the query text where the problem is. */
  readonly position: number;

  constructor(message: string, position: number) {
    super(message);
    this.name = "QueryError";
    this.position = position;
  }
}

/** Formats seconds since the epoch as RFC 3339 UTC, with microseconds only when needed. */
export function formatTime(at: number): string {
  const micros = Math.round(at * 1e6);
  const ms = Math.floor(micros / 1000);
  const iso = new Date(ms).toISOString(); // 2026-11-23T10:00:00.123Z
  const sub = micros - ms * 1000; // 0-999 microseconds below the millisecond
  const frac = (iso.slice(20, 23) + String(sub).padStart(3, "0")).replace(/0+$/, "");
  return iso.slice(0, 19) + (frac === "" ? "" : "." + frac) + "Z";
}

/**
 * Canonical text of a query: fully parenthesised BPF-subset syntax that parseQuery reads back to
 * an equal tree (ranges that are not one CIDR block use the classic `ip=A-B`).
 */
export function formatQuery(q: Query): string {
  switch (q.type) {
    case "and":
    case "or":
      return "(" + q.children.map(formatQuery).join(` ${q.type} `) + ")";
    case "not":
      return "not " + formatQuery(q.child);
    case "address": {
      const from = formatAddress(q.family, q.from);
      const prefix = rangePrefix(q);
      const bits = q.family === 4 ? 32 : 128;
      if (prefix === bits) return `host ${from}`;
      if (prefix >= 0) return `net ${from}/${prefix}`;
      return `ip=${from}-${formatAddress(q.family, q.to)}`;
    }
    case "port":
      return q.from === q.to ? `port ${q.from}` : `portrange ${q.from}-${q.to}`;
    case "proto":
      if (q.family === 4) return q.proto === 1 ? "icmp" : `(ip and proto ${q.proto})`;
      return (q.family === 6 ? "ip6 " : "") + `proto ${q.proto}`;
    case "family":
      return q.family === 4 ? "ip" : "ip6";
    case "vlan":
      return `vlan ${q.vlan}`;
    case "mpls":
      return `mpls ${q.label}`;
    case "time":
      return `${q.op} ${formatTime(q.at)}`;
    case "cid":
      return `community-id 1:${btoa(String.fromCharCode(...q.digest))}`;
    case "cut":
      return q.cut ? "cut" : "cut=0";
    case "total":
      return `${q.what} ${q.op} ${q.value}`;
    case "mac": {
      const [a, b] = q.words;
      const bytes = [
        a >>> 24,
        (a >>> 16) & 0xff,
        (a >>> 8) & 0xff,
        a & 0xff,
        b >>> 24,
        (b >>> 16) & 0xff,
      ];
      const mac = bytes.map((x) => x.toString(16).padStart(2, "0")).join(":");
      return `ether ${q.dir === "any" ? "host" : q.dir} ${mac}`;
    }
    case "ethertype":
      return `ether proto 0x${q.etherType.toString(16).padStart(4, "0")}`;
    case "sensor":
      return `sensor ${q.name}`;
  }
}
