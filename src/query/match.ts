/**
 * Evaluates a parsed query against flow keys (src/packet/packet_info.ts layout) and packet times,
 * and translates it to an equivalent tcpdump filter for testing against tcpdump as an oracle.
 *
 * Semantics per predicate (the same as tcpdump/libpcap on the same packet):
 *   address  either end's address is in [from, to] and the key's kind is the predicate's family
 *            (tcpdump `ip host X` / `ip6 net N`: never ARP, unlike bare BPF `host X`)
 *   port     kind IPv4/IPv6, protocol TCP, UDP or SCTP, either key port in [from, to]. A packet
 *            without ports (later fragment, transport header cut off: the key's NO_PORTS bit) has
 *            no port, as in tcpdump and stenographer; indexes written before that bit existed
 *            give such packets port 0
 *   proto    kind IPv4/IPv6 (or only the given one) and the key's IP protocol
 *   family   the key's kind
 *   vlan     any VLAN tag of the frame (stenographer): the outermost id is in the key, inner ones
 *            in the packet's decoded tags, else the flow's extra tags (its record: a flow matches
 *            when some packet of it carries the tag); untagged packets have id 0, so `vlan 0` =
 *            untagged or a tag with id 0
 *   mpls     any label of the frame's MPLS stack (the packet's decoded labels, else the flow's
 *            extra tags). flowTruth is Unknown when only some packets of the flow carry it: those
 *            packets are decided by decoding their frames (select.ts, execute.ts)
 *   time     after: ts >= at; before: ts < at
 *
 * Per-packet functions allocate nothing: they walk the tree with switch statements and read the
 * key by offset.
 */

import { familyBits, formatAddress, rangePrefix, rangeToCidrs, type Words } from "./address.ts";
import type { Query } from "./ast.ts";
import { orPlan, planMatchesKey } from "./address_set.ts";
import { META_NO_PORTS } from "../packet/packet_info.ts";
import { type FlowRecordRef, recordMatches } from "./record_terms.ts";

export type { FlowRecordRef };

// Flow key word offsets and kind values (src/packet/packet_info.ts; literals because its
// FlowKind is a const enum).
const WORD_PORTS = 8;
const WORD_META = 9;
const KIND_IPV4 = 4;
const KIND_IPV6 = 6;

/** Three-valued answer of flowTruth: a predicate over a time interval may be neither. */
export const Truth = { False: 0, True: 1, Unknown: 2 } as const;
/** A value of Truth. */
export type Truth = typeof Truth[keyof typeof Truth];

/** A time interval in seconds; `from > to` means empty (nothing can match). */
export interface TimeBounds {
  from: number;
  to: number;
}

/** Options of queryToBpf. */
export interface BpfOptions {
  /**
   * Emit an Ethernet-only filter that also sees through up to two VLAN tags (802.1Q, 802.1ad,
   * 0x9100) the way the flow key does. Without it the filter is for untagged traffic on any link
   * type, and queries with `vlan` yield null.
   */
  vlanTags?: boolean;
}

const TAG_VLAN = 1 << 24; // ExtraTagKind.Vlan << 24 (src/index/index_format.ts)
const TAG_MPLS = 2 << 24; // ExtraTagKind.Mpls << 24
const KIND_MARKER = 3; // ExtraTagKind.Marker
const MARKER_UNIFORM = 1; // ExtraTagMarker.Uniform
const MARKER_INCOMPLETE = 2; // ExtraTagMarker.Incomplete

/** One packet's inner VLAN ids and MPLS labels, as src/packet's decoder fills them. */
export interface PacketTags {
  innerVlans: Uint16Array;
  innerVlanCount: number;
  mplsLabels: Uint32Array;
  mplsCount: number;
}

/** True when the flow of `rec` carries the extra tag `entry` (an inner VLAN id, an MPLS label). */
function hasExtraTag(rec: FlowRecordRef | undefined, entry: number): boolean {
  if (rec === undefined) return false;
  const { index, flow } = rec;
  if (flow >= index.tagCount.length) return false;
  const tags = index.tags;
  for (let i = index.tagStart[flow], end = i + index.tagCount[flow]; i < end; i++) {
    if (tags[i] === entry) return true;
  }
  return false;
}

/**
 * Truth over the packets of `rec`'s flow of "carries the extra tag `entry`": False when no packet
 * can (not listed, list complete), True when all do (listed, uniform flow), else Unknown.
 */
function extraTagTruth(rec: FlowRecordRef | undefined, entry: number): Truth {
  if (rec === undefined) return Truth.False;
  const { index, flow } = rec;
  if (flow >= index.tagCount.length) return Truth.False;
  const tags = index.tags;
  let listed = false;
  let marker = 0;
  for (let i = index.tagStart[flow], end = i + index.tagCount[flow]; i < end; i++) {
    const t = tags[i];
    if (t === entry) listed = true;
    else if (t >>> 24 === KIND_MARKER) marker = t & 0xffffff;
  }
  if (listed) return (marker & MARKER_UNIFORM) !== 0 ? Truth.True : Truth.Unknown;
  return (marker & MARKER_INCOMPLETE) !== 0 ? Truth.Unknown : Truth.False;
}

/** True when `tags` (one packet's) hold VLAN id `id` among the inner tags. */
function hasInnerVlan(tags: PacketTags, id: number): boolean {
  for (let i = 0; i < tags.innerVlanCount; i++) if (tags.innerVlans[i] === id) return true;
  return false;
}

/** True when `tags` (one packet's) hold MPLS label `label`. */
function hasMplsLabel(tags: PacketTags, label: number): boolean {
  for (let i = 0; i < tags.mplsCount; i++) if (tags.mplsLabels[i] === label) return true;
  return false;
}

/** True when the address at key[base..base+3] is within [from, to] (unsigned lexicographic). */
function inRange(key: Uint32Array, base: number, from: Words, to: Words): boolean {
  for (let i = 0; i < 4; i++) {
    const k = key[base + i];
    if (k !== from[i]) {
      if (k < from[i]) return false;
      break;
    }
  }
  for (let i = 0; i < 4; i++) {
    const k = key[base + i];
    if (k !== to[i]) return k < to[i];
  }
  return true;
}

/**
 * Value of a predicate that depends only on the key or the flow's record (`rec`; without it record
 * predicates are false) or, for `vlan`/`mpls`, on one packet's decoded `tags` when given (else on
 * the flow's: some packet carries it); time predicates are not passed here.
 */
function keyMatches(
  q: Query,
  key: Uint32Array,
  off: number,
  rec: FlowRecordRef | undefined,
  tags?: PacketTags,
): boolean {
  const meta = key[off + WORD_META];
  const kind = meta >>> 28;
  switch (q.type) {
    case "address":
      return kind === q.family &&
        (inRange(key, off, q.from, q.to) || inRange(key, off + 4, q.from, q.to));
    case "port": {
      if (kind !== KIND_IPV4 && kind !== KIND_IPV6) return false;
      const proto = (meta >>> 16) & 0xff;
      if (proto !== 6 && proto !== 17 && proto !== 132) return false;
      if ((meta & META_NO_PORTS) !== 0) return false;
      const ports = key[off + WORD_PORTS];
      const a = ports >>> 16;
      const b = ports & 0xffff;
      return (a >= q.from && a <= q.to) || (b >= q.from && b <= q.to);
    }
    case "proto":
      if (kind !== KIND_IPV4 && kind !== KIND_IPV6) return false;
      if (q.family !== 0 && kind !== q.family) return false;
      return ((meta >>> 16) & 0xff) === q.proto;
    case "family":
      return kind === q.family;
    case "vlan":
      if ((meta & 0xfff) === q.vlan) return true;
      return tags !== undefined ? hasInnerVlan(tags, q.vlan) : hasExtraTag(rec, TAG_VLAN | q.vlan);
    case "mpls":
      return tags !== undefined
        ? hasMplsLabel(tags, q.label)
        : hasExtraTag(rec, TAG_MPLS | q.label);
    case "cid":
    case "cut":
    case "total":
    case "mac":
    case "ethertype":
      return rec !== undefined && recordMatches(q, rec);
    default:
      return false;
  }
}

/**
 * Match of one packet: its flow key at key[keyOffset..], its time in seconds, for record
 * predicates (Community ID, cut, totals, L2) where its flow's record is, and its decoded inner
 * VLAN ids and MPLS labels when known (exact; without them `vlan`/`mpls` ask the flow's).
 */
export function packetMatches(
  q: Query,
  key: Uint32Array,
  keyOffset: number,
  tsSec: number,
  rec?: FlowRecordRef,
  tags?: PacketTags,
): boolean {
  switch (q.type) {
    case "and": {
      const c = q.children;
      for (let i = 0; i < c.length; i++) {
        if (!packetMatches(c[i], key, keyOffset, tsSec, rec, tags)) return false;
      }
      return true;
    }
    case "or": {
      const plan = orPlan(q);
      if (plan !== null && planMatchesKey(plan, key, keyOffset)) {
        return true;
      }
      const c = plan === null ? q.children : plan.rest;
      for (let i = 0; i < c.length; i++) {
        if (packetMatches(c[i], key, keyOffset, tsSec, rec, tags)) return true;
      }
      return false;
    }
    case "not":
      return !packetMatches(q.child, key, keyOffset, tsSec, rec, tags);
    case "time":
      return q.op === "after" ? tsSec >= q.at : tsSec < q.at;
    default:
      return keyMatches(q, key, keyOffset, rec, tags);
  }
}

/**
 * Three-valued match of a flow whose packets lie in [firstTs, lastTs]: True when every packet of
 * the flow matches (no per-packet check needed), False when none can, Unknown otherwise.
 * Key and record predicates are exact; a time predicate is Unknown when the interval straddles
 * its bound; `vlan`/`mpls` are Unknown when only some of the flow's packets may carry the tag.
 * With firstTs = lastTs = a packet's time it is that packet's match, Unknown only for its tags.
 */
export function flowTruth(
  q: Query,
  key: Uint32Array,
  keyOffset: number,
  firstTs: number,
  lastTs: number,
  rec?: FlowRecordRef,
): Truth {
  switch (q.type) {
    case "and": {
      let result: Truth = Truth.True;
      const c = q.children;
      for (let i = 0; i < c.length; i++) {
        const t = flowTruth(c[i], key, keyOffset, firstTs, lastTs, rec);
        if (t === Truth.False) return Truth.False;
        if (t === Truth.Unknown) result = Truth.Unknown;
      }
      return result;
    }
    case "or": {
      const plan = orPlan(q);
      if (plan !== null && planMatchesKey(plan, key, keyOffset)) {
        return Truth.True;
      }
      let result: Truth = Truth.False;
      const c = plan === null ? q.children : plan.rest;
      for (let i = 0; i < c.length; i++) {
        const t = flowTruth(c[i], key, keyOffset, firstTs, lastTs, rec);
        if (t === Truth.True) return Truth.True;
        if (t === Truth.Unknown) result = Truth.Unknown;
      }
      return result;
    }
    case "not": {
      const t = flowTruth(q.child, key, keyOffset, firstTs, lastTs, rec);
      return t === Truth.Unknown ? t : t === Truth.True ? Truth.False : Truth.True;
    }
    case "time":
      if (q.op === "after") {
        if (firstTs >= q.at) return Truth.True;
        return lastTs < q.at ? Truth.False : Truth.Unknown;
      }
      if (lastTs < q.at) return Truth.True;
      return firstTs >= q.at ? Truth.False : Truth.Unknown;
    case "vlan":
      if ((key[keyOffset + WORD_META] & 0xfff) === q.vlan) return Truth.True;
      return extraTagTruth(rec, TAG_VLAN | q.vlan);
    case "mpls":
      return extraTagTruth(rec, TAG_MPLS | q.label);
    default:
      return keyMatches(q, key, keyOffset, rec) ? Truth.True : Truth.False;
  }
}

/** True when the query has a `vlan` or `mpls` term (may need packets' decoded tags). */
export function usesExtraTags(q: Query): boolean {
  return hasTerm(q, (t) => t.type === "vlan" || t.type === "mpls");
}

/** True when some term (leaf) of `q` satisfies `test`. */
function hasTerm(q: Query, test: (term: Query) => boolean): boolean {
  switch (q.type) {
    case "and":
    case "or":
      return q.children.some((c) => hasTerm(c, test));
    case "not":
      return hasTerm(q.child, test);
    default:
      return test(q);
  }
}

/** True when the query has a time predicate, so packets must be checked one by one. */
export function needsPacketTimes(q: Query): boolean {
  return hasTerm(q, (t) => t.type === "time");
}

interface Hull {
  // Closed outer bounds of the times where a node may be true (t) and may be false (f).
  tLo: number;
  tHi: number;
  fLo: number;
  fHi: number;
}

function hull(q: Query): Hull {
  switch (q.type) {
    case "and":
    case "or": {
      const hs = q.children.map(hull);
      // and: true needs all children true (intersect), false needs any false (span); or: dual.
      const meet = (lo: number[], hi: number[]) => [Math.max(...lo), Math.min(...hi)];
      const span = (lo: number[], hi: number[]) => {
        const live = lo.map((l, i) => [l, hi[i]]).filter(([l, h]) => l <= h);
        return live.length === 0
          ? [Infinity, -Infinity]
          : [Math.min(...live.map((x) => x[0])), Math.max(...live.map((x) => x[1]))];
      };
      const tl = hs.map((h) => h.tLo), th = hs.map((h) => h.tHi);
      const fl = hs.map((h) => h.fLo), fh = hs.map((h) => h.fHi);
      const [tLo, tHi] = q.type === "and" ? meet(tl, th) : span(tl, th);
      const [fLo, fHi] = q.type === "and" ? span(fl, fh) : meet(fl, fh);
      return { tLo, tHi, fLo, fHi };
    }
    case "not": {
      const h = hull(q.child);
      return { tLo: h.fLo, tHi: h.fHi, fLo: h.tLo, fHi: h.tHi };
    }
    case "time":
      return q.op === "after"
        ? { tLo: q.at, tHi: Infinity, fLo: -Infinity, fHi: q.at }
        : { tLo: -Infinity, tHi: q.at, fLo: q.at, fHi: Infinity };
    default:
      return { tLo: -Infinity, tHi: Infinity, fLo: -Infinity, fHi: Infinity };
  }
}

/**
 * A safe outer bound [from, to] of the times of packets that can match, for pruning whole files:
 * (-Infinity, Infinity) without time predicates; from > to when no time can match.
 */
export function timeBounds(q: Query): TimeBounds {
  const h = hull(q);
  return h.tLo <= h.tHi ? { from: h.tLo, to: h.tHi } : { from: Infinity, to: -Infinity };
}

// ---- translation to a tcpdump filter ----

/** A folded BPF expression: a parenthesised filter string or a constant. */
type Bpf = string | boolean;

/** Where a VLAN predicate is evaluated: plain mode (null), or a frame with 0, 1 or 2 tags. */
type VlanContext = null | 0 | 1 | 2;

class Untranslatable extends Error {}

/** Largest number of CIDR blocks a range may expand to before queryToBpf gives up. */
const MAX_RANGE_BLOCKS = 64;

function bpfAnd(parts: Bpf[]): Bpf {
  const live: string[] = [];
  for (const p of parts) {
    if (p === false) return false;
    if (p !== true) live.push(p);
  }
  if (live.length === 0) return true;
  return live.length === 1 ? live[0] : "(" + live.join(" and ") + ")";
}

function bpfOr(parts: Bpf[]): Bpf {
  const live: string[] = [];
  for (const p of parts) {
    if (p === true) return true;
    if (p !== false) live.push(p);
  }
  if (live.length === 0) return false;
  return live.length === 1 ? live[0] : "(" + live.join(" or ") + ")";
}

function bpfNot(p: Bpf): Bpf {
  return typeof p === "boolean" ? !p : `(not ${p})`;
}

function portBpf(from: number, to: number): string {
  return from === to ? `(port ${from})` : `(portrange ${from}-${to})`;
}

function toBpf(q: Query, ctx: VlanContext): Bpf {
  switch (q.type) {
    case "and":
      return bpfAnd(q.children.map((c) => toBpf(c, ctx)));
    case "or":
      return bpfOr(q.children.map((c) => toBpf(c, ctx)));
    case "not":
      return bpfNot(toBpf(q.child, ctx));
    case "time":
    case "sensor":
      throw new Untranslatable();
    case "address": {
      const fam = q.family === 4 ? "ip" : "ip6";
      const prefix = rangePrefix(q);
      if (prefix === 0) return `(${fam})`;
      if (prefix === familyBits(q.family)) {
        return `(${fam} host ${formatAddress(q.family, q.from)})`;
      }
      const blocks = rangeToCidrs(q, { limit: MAX_RANGE_BLOCKS });
      if (blocks === null) throw new Untranslatable();
      return bpfOr(blocks.map((b) => {
        const a = formatAddress(b.family, b.words);
        return b.prefix === familyBits(b.family)
          ? `(${fam} host ${a})`
          : `(${fam} net ${a}/${b.prefix})`;
      }));
    }
    case "port":
      return portBpf(q.from, q.to);
    case "proto":
      if (q.family === 4) return `(ip proto ${q.proto})`;
      if (q.family === 6) return `(ip6 proto ${q.proto})`;
      return `(ip proto ${q.proto} or ip6 proto ${q.proto})`;
    case "family":
      return q.family === 4 ? "(ip)" : "(ip6)";
    case "vlan": {
      if (ctx === null) throw new Untranslatable();
      if (ctx === 0) return q.vlan === 0;
      // Any tag: the ids are read at fixed ether[] offsets, which `vlan` keywords do not move.
      const ids = [14, 18].slice(0, ctx).map((at) => `(ether[${at}:2] & 0xfff = ${q.vlan})`);
      return bpfOr(ids);
    }
    case "mpls":
      throw new Untranslatable(); // libpcap's `mpls N` sees one label of the stack, not any
    default:
      // Record predicates (Community ID, cut, totals, L2 terms) have no BPF equivalent here.
      throw new Untranslatable();
  }
}

/** Removes time predicates that are top-level conjuncts (the caller filters times itself). */
function stripTopLevelTime(q: Query): Query | null {
  if (q.type === "time") return null;
  if (q.type !== "and") return q;
  const kept: Query[] = [];
  for (const c of q.children) {
    const s = stripTopLevelTime(c);
    if (s !== null) kept.push(s);
  }
  if (kept.length === 0) return null;
  return kept.length === 1 ? kept[0] : { type: "and", children: kept };
}

function tpid(offset: number): string {
  return `(ether[${offset}:2] = 0x8100 or ether[${offset}:2] = 0x88a8 or ether[${offset}:2] = 0x9100)`;
}

/**
 * libpcap's `vlan` keyword shifts the offsets of everything after it in the filter text, even
 * across `or`, so the tag-aware filter is laid out in a fixed order: untagged branch first (no
 * `vlan` keyword yet), then one tag, then two. VLAN ids are read with `ether[14:2]` and
 * `ether[18:2]`, which the shift does not move. Frames with three or more tags match nothing.
 */
function vlanAwareBpf(q: Query): Bpf {
  return bpfOr([
    bpfAnd([`(not ${tpid(12)})`, toBpf(q, 0)]),
    bpfAnd([
      tpid(12),
      "vlan",
      bpfOr([
        bpfAnd([`(not ${tpid(16)})`, toBpf(q, 1)]),
        bpfAnd([tpid(16), "vlan", `(not ${tpid(20)})`, toBpf(q, 2)]),
      ]),
    ]),
  ]);
}

/**
 * Best-effort translation to an equivalent tcpdump filter, ignoring time predicates that are
 * top-level conjuncts. "" means every packet; null when no equivalent exists (a time predicate
 * under `or`/`not`, a range needing more than 64 CIDR blocks, `vlan` without `vlanTags`, a query
 * that can never match).
 */
export function queryToBpf(q: Query, opts: BpfOptions = {}): string | null {
  const stripped = stripTopLevelTime(q);
  if (stripped === null) return "";
  try {
    const f = opts.vlanTags ? vlanAwareBpf(stripped) : toBpf(stripped, null);
    if (f === true) return "";
    return f === false ? null : f;
  } catch (e) {
    if (e instanceof Untranslatable) return null;
    throw e;
  }
}
