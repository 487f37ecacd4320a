/**
 * Many address predicates under one `or` (a generated `host a or host b or …` of thousands of hosts)
 * as sorted, merged ranges searched in O(log n) per flow, instead of one comparison per host; many
 * port predicates (`port=1|port=2|…`) as one 64 Ki-entry bitmap, one lookup per port.
 *
 * Built once per `or` node (at first use, kept in a WeakMap) and read without allocating.
 */
import { META_NO_PORTS } from "../packet/packet_info.ts";
import type { AddressPredicate, OrQuery, PortPredicate, Query } from "./ast.ts";
import { compareWords, type Words } from "./address.ts";

/** Fewest address children of an `or` worth a sorted set (below it a linear scan is as fast). */
const MIN_SET_SIZE = 8;

/** Sorted, non-overlapping inclusive ranges of one family, 4 words per bound. */
class RangeSet {
  readonly #from: Uint32Array;
  readonly #to: Uint32Array;
  readonly size: number;

  constructor(ranges: AddressPredicate[]) {
    const sorted = ranges.slice().sort((a, b) => compareWords(a.from, b.from));
    const merged: { from: Words; to: Words }[] = [];
    for (const r of sorted) {
      const last = merged[merged.length - 1];
      if (last && compareWords(r.from, last.to) <= 0) {
        if (compareWords(r.to, last.to) > 0) last.to = r.to;
      } else {
        merged.push({ from: r.from, to: r.to });
      }
    }
    this.size = merged.length;
    this.#from = new Uint32Array(merged.length * 4);
    this.#to = new Uint32Array(merged.length * 4);
    merged.forEach((r, i) => {
      this.#from.set(r.from, i * 4);
      this.#to.set(r.to, i * 4);
    });
  }

  /** True when the address at key[at..at+3] lies in one of the ranges. */
  has(key: Uint32Array, at: number): boolean {
    // Last range whose start is <= the address.
    let lo = 0;
    let hi = this.size - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (compareAt(this.#from, mid * 4, key, at) <= 0) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found >= 0 && compareAt(this.#to, found * 4, key, at) >= 0;
  }
}

/** Compares the 4 words at a[ai..] with b[bi..], unsigned: negative, 0 or positive. */
function compareAt(a: Uint32Array, ai: number, b: Uint32Array, bi: number): number {
  for (let i = 0; i < 4; i++) {
    const x = a[ai + i];
    const y = b[bi + i];
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** An `or` node split into its address children (as sets per family), port children and the rest. */
export interface OrPlan {
  v4: RangeSet;
  v6: RangeSet;
  /** ports[p] is 1 when a port child covers p; null when the port children are few (in `rest`). */
  ports: Uint8Array | null;
  /** Children in no set, evaluated one by one. */
  rest: readonly Query[];
}

const plans = new WeakMap<OrQuery, OrPlan | null>();

/** The plan of an `or` node with many address children; null when a plain scan is as good. */
export function orPlan(q: OrQuery): OrPlan | null {
  if (q.children.length < MIN_SET_SIZE) return null;
  let plan = plans.get(q);
  if (plan === undefined) {
    plan = buildPlan(q);
    plans.set(q, plan);
  }
  return plan;
}

function buildPlan(q: OrQuery): OrPlan | null {
  const addresses = q.children.filter((c): c is AddressPredicate => c.type === "address");
  const ports = q.children.filter((c): c is PortPredicate => c.type === "port");
  const addressSets = addresses.length >= MIN_SET_SIZE;
  const portSet = ports.length >= MIN_SET_SIZE;
  if (!addressSets && !portSet) return null;
  const rest = q.children.filter((c) =>
    !(addressSets && c.type === "address") && !(portSet && c.type === "port")
  );
  const inSets = addressSets ? addresses : [];
  return {
    v4: new RangeSet(inSets.filter((a) => a.family === 4)),
    v6: new RangeSet(inSets.filter((a) => a.family === 6)),
    ports: portSet ? portBitmap(ports) : null,
    rest,
  };
}

function portBitmap(ports: PortPredicate[]): Uint8Array {
  const bits = new Uint8Array(65536);
  for (const p of ports) bits.fill(1, p.from, p.to + 1);
  return bits;
}

/**
 * True when the flow key at key[off..] matches one of the plan's sets: an address of either end,
 * or (TCP, UDP or SCTP over IPv4/IPv6, as a port predicate) either port.
 */
export function planMatchesKey(plan: OrPlan, key: Uint32Array, off: number): boolean {
  const meta = key[off + 9]; // key words: 8 = the two ports, 9 = kind, protocol, VLAN
  const kind = meta >>> 28;
  if (planHasAddress(plan, key, off, kind)) return true;
  if (plan.ports === null || (kind !== 4 && kind !== 6)) return false;
  const proto = (meta >>> 16) & 0xff;
  if (proto !== 6 && proto !== 17 && proto !== 132) return false;
  if ((meta & META_NO_PORTS) !== 0) return false; // a packet without ports has no port
  const ports = key[off + 8];
  return plan.ports[ports >>> 16] === 1 || plan.ports[ports & 0xffff] === 1;
}

/**
 * True when either end of the flow key at key[off..] (address words 0-3 and 4-7) is in the plan's
 * set of its family; `kind` is the key's kind (4 or 6; anything else never matches).
 */
export function planHasAddress(plan: OrPlan, key: Uint32Array, off: number, kind: number): boolean {
  const set = kind === 4 ? plan.v4 : kind === 6 ? plan.v6 : null;
  if (set === null || set.size === 0) return false;
  return set.has(key, off) || set.has(key, off + 4);
}
