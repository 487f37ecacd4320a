/**
 * The per-worker flow table: maps a packet's flow key to a flow id and keeps the flow's counters.
 *
 * Layout (typed arrays only, so the hot path allocates nothing and the GC sees a handful of
 * large objects instead of a million small ones):
 *
 * - per-flow records indexed by flow id, 64 bytes (one cache line) each, holding what a packet
 *   reads and writes: canonical key, state bits and serial, packet and byte counts, last
 *   timestamp; nothing else. Free ids are chained in a list and reused first, so the ids in
 *   use stay dense.
 * - a hash index: open addressing with linear probing over a power-of-two number of slots,
 *   load factor <= 0.5. A slot is one Int32: flow id + 1 (0 = empty) in the low 27 bits and
 *   the top 5 bits of the flow's hash above them, which lets a probe skip 31 of 32 non-matching
 *   slots without touching their records, at half the memory of storing the whole hash (8 MB
 *   less per million flows). Removal uses backward-shift deletion, so there are no tombstones
 *   and probe chains never degrade.
 *
 * Memory: the records are allocated once for `maxFlows`; the kernel backs such a large
 * zero-filled allocation with pages only when they are first written, so resident memory follows
 * the number of ids ever in use, like doubling growth, but without copies and without leaving
 * freed generations in the allocator (measured with the columns of the time: 1M flows, doubling
 * from 65536 = 165 MB RSS, reserving = 140 MB; 72 bytes per flow, 72 MB, now). The index is a
 * prefix of one allocation sized for `maxFlows`; it doubles (and is rebuilt from the records)
 * when the load factor would pass 0.5, so a small table keeps a small, cache-friendly index. No
 * allocation happens after construction.
 *
 * Time is packet time: every expiry decision compares packet timestamps, never the wall clock,
 * so replaying a file and capturing live behave the same. Expiry is also checked lazily when a
 * packet hits an existing flow, so whether a packet starts a new flow never depends on how far
 * the incremental sweep has got; the sweep only reclaims ids and reports removals.
 *
 * @module
 */

import { KEY_WORDS } from "../packet/packet_info.ts";
import { FlowSizeHistogram } from "./size_histogram.ts";

// observe() and hashWords() are unrolled for 10-word keys: fail loudly if the layout
// in packet_info.ts changes.
if (KEY_WORDS !== 10) throw new Error(`Unsupported KEY_WORDS ${KEY_WORDS}: expected 10`);

/** Why a flow left the table; passed to {@linkcode FlowTableOptions.onRemove}. */
export const enum RemoveReason {
  /** No packet for more than `flowTimeout` seconds of packet time. */
  Idle = 0,
  /** TCP connection closed (RST, or FIN from both sides) and then idle for `closeLinger`
   * seconds, or a new SYN reused its ports. */
  Closed = 1,
  /** Pushed out to make room for a new flow at `maxFlows` (approximated LRU). */
  Evicted = 2,
  /** Removed by {@linkcode FlowTable.expireAll} (shutdown, end of a file). */
  Shutdown = 3,
}

/** The {@linkcode FlowEnd} of a flow removed for `reason` whose table state said `end`. */
export function endOfRemoval(reason: RemoveReason, end: FlowEnd): FlowEnd {
  if (end === FlowEnd.Fin || end === FlowEnd.Rst) return end;
  if (reason === RemoveReason.Idle) return FlowEnd.Idle;
  if (reason === RemoveReason.Evicted) return FlowEnd.Evicted;
  return reason === RemoveReason.Shutdown ? FlowEnd.Shutdown : end;
}

/**
 * How a flow ended, as flow records report it (the index's flow state, bits 1-3). Closed flows
 * say FIN (a FIN from both ends) or RST; the others say why the table let them go.
 */
export const enum FlowEnd {
  /** Not known: an index of format 1, or a pcap indexed without a flow table. */
  Unknown = 0,
  /** Still in the table when the file was finalized. */
  Open = 1,
  Fin = 2,
  Rst = 3,
  Idle = 4,
  Evicted = 5,
  /** Removed when the capture stopped. */
  Shutdown = 6,
}

/** Label for each {@linkcode FlowEnd}, indexed by its value. */
export const FLOW_END_NAMES: readonly string[] = Object.freeze([
  "unknown",
  "open",
  "fin",
  "rst",
  "idle",
  "evicted",
  "shutdown",
]);

/** Called for every flow removed, before its id can be reused. */
export type FlowRemoveHook = (id: number, reason: RemoveReason) => void;

/** Options of {@linkcode FlowTable}. */
export interface FlowTableOptions {
  /** Most flows held at once; a new flow beyond it evicts an old one. Default 1_000_000. */
  maxFlows?: number;
  /** Idle expiry in seconds of packet time. Default 300. */
  flowTimeout?: number;
  /** How long a closed TCP flow stays (idle, packet time, seconds) to collect its last
   * packets. Default 5. */
  closeLinger?: number;
  /** Flows the hash index holds before its first doubling (capped by maxFlows). Default 65536.
   * Each doubling rebuilds the index from the records, a pause in observe() that grows with
   * the table (measured 15 ms at 64k flows, 120 ms at 512k): for live capture set it to the
   * expected peak (up to maxFlows; the index costs 16 bytes per flow of capacity). */
  initialCapacity?: number;
  /**
   * Called for every removed flow (idle, closed, evicted, shutdown) BEFORE the id is reused:
   * the accessors still return the flow's data during the call. It runs synchronously inside
   * `observe()`/`expire*()`, so it must not call `observe()` or `expire*()` itself.
   */
  onRemove?: FlowRemoveHook;
  /** Histogram that receives each removed flow's byte count. Default: a new one, see `sizes`. */
  histogram?: FlowSizeHistogram;
  /** Hash seed; default random (makes crafted colliding keys useless across processes). */
  seed?: number;
}

// Per-flow state bits. 0 means the id is free.
const LIVE = 1;
/** FIN seen from end A (the canonical smaller end). */
const FIN_A = 2;
/** FIN seen from end B. */
const FIN_B = 4;
/** RST seen, or FIN from both ends. */
const CLOSED = 8;
/** The flow's first packet went B→A: B is the initiator. */
const FIRST_REVERSED = 16;
/** The packet count passed 2^32 at least once: its high part is in the packetsHigh map. */
const WRAPPED = 32;
/** The cutoff refused a packet of the flow: its number is in the cutAt column. */
const CUT = 64;
/** The state word's bits above the flags hold the flow's serial, modulo 2^25. */
const SERIAL_SHIFT = 7;
const SERIAL_MASK = (1 << 25) - 1;

const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_ACK = 0x10;
const IPPROTO_TCP = 6;

/** Largest maxFlows: the 64-byte records stay within one 4 GiB allocation. */
const MAX_FLOWS_LIMIT = 1 << 26;
/** Index slot: id + 1 (at most MAX_FLOWS_LIMIT) in the low bits, a hash tag in the rest. */
const SLOT_ID_BITS = 27;
const SLOT_ID_MASK = (1 << SLOT_ID_BITS) - 1;
/** Flows sampled per eviction (Redis' maxmemory-samples default is 5; 8 is closer to true LRU). */
const EVICTION_SAMPLES = 8;
/** Flow ids the incremental sweep visits per observe() call. */
const SWEEP_STEP = 64;
/** Visits per call once a sweep pass has run longer than one sweep interval (catching up). */
const SWEEP_STEP_BEHIND = 1024;

/**
 * Per-flow record, 64 bytes (one cache line): the fields a packet reads and writes, viewed as
 * u32 words (key, state, packet count) and as f64 slots (bytes, last timestamp). One column
 * per field would cost one cache miss per column per packet once the table outgrows the CPU
 * caches. The serial shares the state word (the flags need 7 bits of it), and a flow's first
 * timestamp is not kept: the index has each file's first time of every flow, and nothing else
 * needs it.
 */
const RECORD_WORDS = 16;
const RECORD_F64 = 8;
/** u32 word: state bits (LIVE, FIN_A, ...) and the serial above them; 0 = free id. */
const W_STATE = 10;
/** u32 word: packet count modulo 2^32 (the high part is in a map, see WRAPPED); for a free
 * id: the next free id + 1 (0 = end of the free list). */
const W_PACKETS = 11;
/** f64 slot: byte count (wire length). */
const F_BYTES = 6;
/** f64 slot: latest packet timestamp, seconds. */
const F_LAST_TS = 7;
const TWO_32 = 4294967296;

/** Flow table with canonical (direction-independent) keys, packet-time expiry and TCP close tracking. */
export class FlowTable {
  /** Packets of the flow before the last observed packet (0 for a new flow). */
  packetsBefore = 0;
  /** Bytes (wire length) of the flow before the last observed packet (0 for a new flow). */
  bytesBefore = 0;
  /** Whether the last observed packet started a new flow. */
  isNew = false;
  /** Whether the last observed packet went B→A (A = the end with the smaller address, port). */
  reversed = false;

  /** Flows created since construction. */
  started = 0;
  /** Flows removed after `flowTimeout` seconds idle. */
  expiredIdle = 0;
  /** TCP flows removed after closing (linger over, or port reuse by a new SYN). */
  closed = 0;
  /** Flows evicted at `maxFlows`. */
  evicted = 0;
  /** Flows removed by `expireAll()`. Invariant: started = active + expiredIdle + closed +
   * evicted + flushed. */
  flushed = 0;

  /** Most flows held at once. */
  readonly maxFlows: number;
  /** Idle expiry, seconds of packet time. */
  readonly flowTimeout: number;
  /** Linger of closed TCP flows, seconds of packet time. */
  readonly closeLinger: number;
  /** Receives the byte count of every removed flow. */
  readonly sizes: FlowSizeHistogram;
  /** Removal hook, see {@linkcode FlowTableOptions.onRemove}. May be replaced at any time. */
  onRemove: FlowRemoveHook | undefined;

  /** Per flow id: number (1-based) of the flow's first packet the cutoff refused, 0 = none yet.
   * Allocated for maxFlows but written only for cut flows, so pages are backed only for them. */
  readonly #cutAt: Float64Array;
  /** Records as u32 words, RECORD_WORDS per flow. */
  readonly #u32: Uint32Array;
  /** The same records as f64 slots, RECORD_F64 per flow. */
  readonly #f64: Float64Array;
  /** Packet count / 2^32 of flows with the WRAPPED bit (a flow passing 4G packets is rare
   * enough for a Map; the entry is created once per 2^32 packets). */
  readonly #packetsHigh = new Map<number, number>();
  /** Head of the free-id list (chained through W_PACKETS), -1 = empty. */
  #freeHead = -1;
  /** Ids below this have been handed out at least once; ids >= it are untouched. */
  #highWater = 0;
  #active = 0;
  #nextSerial = 1;
  /** The observed packet's time, see observe(). */
  readonly #packetTs = new Float64Array(1);

  /** Hash index: slot s = flow id + 1 (0 = empty) | hash tag, see slotOf(). Only the first
   * mask + 1 entries are in use. */
  readonly #index: Int32Array;
  #mask: number;
  /** Live flows the index takes before doubling (half its slots). */
  #indexLimit: number;

  readonly #seed: number;
  #rng: number;

  readonly #sweepInterval: number;
  #nextSweep = -Infinity;
  #sweepCursor = -1;
  #sweepStart = 0;

  constructor(options: FlowTableOptions = {}) {
    const maxFlows = options.maxFlows ?? 1_000_000;
    const flowTimeout = options.flowTimeout ?? 300;
    const closeLinger = options.closeLinger ?? 5;
    const initialCapacity = options.initialCapacity ?? 65536;
    if (!Number.isSafeInteger(maxFlows) || maxFlows < 1 || maxFlows > MAX_FLOWS_LIMIT) {
      throw new RangeError(
        `Invalid maxFlows ${maxFlows}: expected an integer 1-${MAX_FLOWS_LIMIT}`,
      );
    }
    if (!(flowTimeout > 0) || !Number.isFinite(flowTimeout)) {
      throw new RangeError(`Invalid flowTimeout ${flowTimeout}: expected seconds > 0`);
    }
    if (!(closeLinger >= 0) || !Number.isFinite(closeLinger)) {
      throw new RangeError(`Invalid closeLinger ${closeLinger}: expected seconds >= 0`);
    }
    if (!Number.isSafeInteger(initialCapacity) || initialCapacity < 1) {
      throw new RangeError(
        `Invalid initialCapacity ${initialCapacity}: expected a positive integer`,
      );
    }
    this.maxFlows = maxFlows;
    this.flowTimeout = flowTimeout;
    this.closeLinger = closeLinger;
    this.sizes = options.histogram ?? new FlowSizeHistogram();
    this.onRemove = options.onRemove;
    this.#seed = options.seed === undefined
      ? crypto.getRandomValues(new Uint32Array(1))[0] | 0
      : options.seed | 0;
    this.#rng = (this.#seed ^ 0x9e3779b9) | 1;
    // Sweep often enough that a flow is reported within ~1 s of its expiry, and at least 4
    // times per timeout so short timeouts behave.
    this.#sweepInterval = Math.min(1, flowTimeout / 4);

    let records: ArrayBuffer;
    try {
      records = new ArrayBuffer(maxFlows * RECORD_WORDS * 4);
      this.#index = new Int32Array(indexSlotsFor(maxFlows));
      this.#cutAt = new Float64Array(maxFlows);
    } catch (e) {
      throw new RangeError(
        `Cannot reserve memory for maxFlows ${maxFlows}: expected about ${
          Math.ceil(maxFlows * 72 / 1048576)
        } MiB of address space to be available`,
        { cause: e },
      );
    }
    this.#u32 = new Uint32Array(records);
    this.#f64 = new Float64Array(records);
    const slots = indexSlotsFor(Math.min(initialCapacity, maxFlows));
    this.#mask = slots - 1;
    this.#indexLimit = slots / 2;
  }

  /** Live flows (including expired ones the sweep has not reached yet). */
  get active(): number {
    return this.#active;
  }

  /** Live flows the hash index holds before it doubles (never more than needed for maxFlows). */
  get capacity(): number {
    return Math.min(this.#indexLimit, this.maxFlows);
  }

  /** Upper bound (exclusive) of ids ever used: iterate `0 <= id < idLimit` with `isLive(id)`. */
  get idLimit(): number {
    return this.#highWater;
  }

  /** Bytes of records, columns and index in use, i.e. resident once touched (the reserved but
   * never written part of the allocations is not counted). */
  get memoryBytes(): number {
    return this.#highWater * RECORD_WORDS * 4 + (this.#mask + 1) * 4;
  }

  /**
   * HOT PATH. Finds or creates the flow of a packet and counts the packet in it.
   *
   * Sets `packetsBefore`, `bytesBefore` (the flow's counts BEFORE this packet), `isNew` and
   * `reversed`, then adds the packet (packets + 1, bytes + wireLen, lastTs). May remove other
   * flows first (incremental sweep, eviction at maxFlows), calling `onRemove` for each.
   *
   * @param key flow key in packet direction (see packet_info.ts); not modified, not retained
   * @param tsSec packet timestamp in seconds (fractional)
   * @param wireLen original wire length (pcap `len`)
   * @param tcpFlags TCP flags byte, 0 when not TCP
   * @returns the flow id, valid until the flow is removed; a removed flow's id is reused by
   *   the next new flow (possibly this very packet's), so tell flows apart by `isNew` or
   *   `serialOf(id)`, not by id
   */
  observe(key: Uint32Array, tsSec: number, wireLen: number, tcpFlags: number): number {
    // A fractional number passed to a function V8 does not inline is boxed in a new heap
    // number, once per packet (measured: 220 scavenges per 14M packets, 15 without). This
    // wrapper is small enough to be inlined into the caller, and hands the time over unboxed
    // through a typed array.
    this.#packetTs[0] = tsSec;
    return this.#observe(key, wireLen, tcpFlags);
  }

  #observe(key: Uint32Array, wireLen: number, tcpFlags: number): number {
    const tsSec = this.#packetTs[0];
    if (this.#sweepCursor >= 0 || tsSec >= this.#nextSweep) this.#sweepStep(tsSec);

    // Canonical order: the end with the smaller (address, port) is A. The key is read into
    // locals once; the canonical words, their hash and the lookup work on those locals, with no
    // scratch array and no call (this is most of the flow table's per-packet time).
    const ports = key[8];
    const meta = key[9];
    const k0 = key[0];
    const k1 = key[1];
    const k2 = key[2];
    const k3 = key[3];
    const k4 = key[4];
    const k5 = key[5];
    const k6 = key[6];
    const k7 = key[7];
    let rev: boolean;
    if (k0 !== k4) rev = k0 > k4;
    else if (k1 !== k5) rev = k1 > k5;
    else if (k2 !== k6) rev = k2 > k6;
    else if (k3 !== k7) rev = k3 > k7;
    else rev = ports >>> 16 > (ports & 0xffff);
    const c0 = rev ? k4 : k0;
    const c1 = rev ? k5 : k1;
    const c2 = rev ? k6 : k2;
    const c3 = rev ? k7 : k3;
    const c4 = rev ? k0 : k4;
    const c5 = rev ? k1 : k5;
    const c6 = rev ? k2 : k6;
    const c7 = rev ? k3 : k7;
    const c8 = rev ? (((ports & 0xffff) << 16) | (ports >>> 16)) >>> 0 : ports;

    // hashWords() over c0..c9 (meta), written out: the same value for the same key.
    const seed = this.#seed;
    let ha = Math.imul(seed ^ c0, 0x9e3779b1);
    let hb = Math.imul(~seed ^ c1, 0x85ebca77);
    ha = Math.imul(((ha << 15) | (ha >>> 17)) ^ c2, 0x9e3779b1);
    hb = Math.imul(((hb << 13) | (hb >>> 19)) ^ c3, 0x85ebca77);
    ha = Math.imul(((ha << 15) | (ha >>> 17)) ^ c4, 0x9e3779b1);
    hb = Math.imul(((hb << 13) | (hb >>> 19)) ^ c5, 0x85ebca77);
    ha = Math.imul(((ha << 15) | (ha >>> 17)) ^ c6, 0x9e3779b1);
    hb = Math.imul(((hb << 13) | (hb >>> 19)) ^ c7, 0x85ebca77);
    ha = Math.imul(((ha << 15) | (ha >>> 17)) ^ c8, 0x9e3779b1);
    hb = Math.imul(((hb << 13) | (hb >>> 19)) ^ meta, 0x85ebca77);
    let h = ((ha << 15) | (ha >>> 17)) ^ Math.imul((hb << 13) | (hb >>> 19), 0xc2b2ae3d);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;

    // Lookup (linear probing; the stored hash tag spares most non-matching records a visit).
    let id = -1;
    {
      const index = this.#index;
      const mask = this.#mask;
      const u32 = this.#u32;
      const tag = h >>> SLOT_ID_BITS;
      for (let s = h & mask;; s = (s + 1) & mask) {
        const entry = index[s];
        if (entry === 0) break;
        if (entry >>> SLOT_ID_BITS !== tag) continue;
        const b = ((entry & SLOT_ID_MASK) - 1) * RECORD_WORDS;
        if (
          u32[b] === c0 && u32[b + 1] === c1 && u32[b + 2] === c2 && u32[b + 3] === c3 &&
          u32[b + 4] === c4 && u32[b + 5] === c5 && u32[b + 6] === c6 && u32[b + 7] === c7 &&
          u32[b + 8] === c8 && u32[b + 9] === meta
        ) {
          id = (entry & SLOT_ID_MASK) - 1;
          break;
        }
      }
    }
    if (id >= 0) {
      const idle = tsSec - this.#f64[id * RECORD_F64 + F_LAST_TS];
      const st = this.#u32[id * RECORD_WORDS + W_STATE];
      if (idle > this.flowTimeout) {
        this.#remove(id, RemoveReason.Idle);
        id = -1;
      } else if (
        (st & CLOSED) !== 0 &&
        (idle > this.closeLinger ||
          (((meta >>> 16) & 0xff) === IPPROTO_TCP && (tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN))
      ) {
        // Linger over, or a fresh SYN on a closed connection: port reuse, a new flow.
        this.#remove(id, RemoveReason.Closed);
        id = -1;
      }
    }

    let st: number;
    if (id < 0) {
      if (this.#active >= this.maxFlows) this.#evictOne(tsSec);
      else if (this.#active >= this.#indexLimit) this.#growIndex();
      id = this.#allocate();
      this.#insert(id, h);
      const u32 = this.#u32;
      const f64 = this.#f64;
      const base = id * RECORD_WORDS;
      u32[base] = c0;
      u32[base + 1] = c1;
      u32[base + 2] = c2;
      u32[base + 3] = c3;
      u32[base + 4] = c4;
      u32[base + 5] = c5;
      u32[base + 6] = c6;
      u32[base + 7] = c7;
      u32[base + 8] = c8;
      u32[base + 9] = meta;
      u32[base + W_PACKETS] = 1;
      f64[id * RECORD_F64 + F_BYTES] = wireLen;
      f64[id * RECORD_F64 + F_LAST_TS] = tsSec;
      const serial = (this.#nextSerial++ & SERIAL_MASK) << SERIAL_SHIFT;
      st = (rev ? LIVE | FIRST_REVERSED : LIVE) | serial;
      this.#active++;
      this.started++;
      this.isNew = true;
      this.packetsBefore = 0;
      this.bytesBefore = 0;
    } else {
      const u32 = this.#u32;
      const f64 = this.#f64;
      const base = id * RECORD_WORDS;
      const fbase = id * RECORD_F64;
      st = u32[base + W_STATE];
      const low = u32[base + W_PACKETS];
      const bytes = f64[fbase + F_BYTES];
      let packets = low;
      if (low === 0xffffffff || (st & WRAPPED) !== 0) {
        const high = this.#packetsHigh.get(id) ?? 0;
        packets = high * TWO_32 + low;
        if (low === 0xffffffff) {
          this.#packetsHigh.set(id, high + 1);
          st |= WRAPPED;
        }
      }
      u32[base + W_PACKETS] = low + 1; // wraps to 0 after 0xffffffff
      f64[fbase + F_BYTES] = bytes + wireLen;
      // Timestamps from several queues may be slightly out of order; never move lastTs back.
      if (tsSec > f64[fbase + F_LAST_TS]) f64[fbase + F_LAST_TS] = tsSec;
      this.isNew = false;
      this.packetsBefore = packets;
      this.bytesBefore = bytes;
    }
    this.reversed = rev;

    if (tcpFlags !== 0 && ((meta >>> 16) & 0xff) === IPPROTO_TCP) {
      if ((tcpFlags & TCP_RST) !== 0) st |= CLOSED;
      if ((tcpFlags & TCP_FIN) !== 0) {
        st |= rev ? FIN_B : FIN_A;
        if ((st & (FIN_A | FIN_B)) === (FIN_A | FIN_B)) st |= CLOSED;
      }
    }
    this.#u32[id * RECORD_WORDS + W_STATE] = st;
    return id;
  }

  /**
   * Removes every flow idle for more than `flowTimeout` (or closed and idle for more than
   * `closeLinger`) at `nowSec`, in one full pass. For a quiet link: the worker calls it on
   * capture timeouts with its clock (in the same time base as packet timestamps).
   * @returns the number of flows removed
   */
  expireIdle(nowSec: number): number {
    let removed = 0;
    for (let id = 0; id < this.#highWater; id++) {
      const st = this.#u32[id * RECORD_WORDS + W_STATE];
      if (st === 0) continue;
      const idle = nowSec - this.#f64[id * RECORD_F64 + F_LAST_TS];
      if (idle > this.flowTimeout) {
        this.#remove(id, RemoveReason.Idle);
        removed++;
      } else if ((st & CLOSED) !== 0 && idle > this.closeLinger) {
        this.#remove(id, RemoveReason.Closed);
        removed++;
      }
    }
    return removed;
  }

  /**
   * Removes every flow (reason Shutdown), e.g. at shutdown or the end of an offline file.
   * @returns the number of flows removed
   */
  expireAll(): number {
    let removed = 0;
    for (let id = 0; id < this.#highWater; id++) {
      if (this.#u32[id * RECORD_WORDS + W_STATE] !== 0) {
        this.#remove(id, RemoveReason.Shutdown);
        removed++;
      }
    }
    this.#sweepCursor = -1;
    this.#nextSweep = -Infinity;
    return removed;
  }

  /** Whether `id` holds a flow now. */
  isLive(id: number): boolean {
    return id >= 0 && id < this.#highWater && this.#u32[id * RECORD_WORDS + W_STATE] !== 0;
  }

  /**
   * Number of this flow's lifetime in this table (1, 2, 3, ... in creation order, modulo 2^25:
   * it shares the state word, as nothing in the capture path needs it; the index builder learns
   * of a flow's end through onRemove).
   */
  serialOf(id: number): number {
    return (this.#u32[id * RECORD_WORDS + W_STATE] >>> SERIAL_SHIFT) & SERIAL_MASK;
  }

  /** Packets counted in the flow (both directions, stored or not). */
  packetsOf(id: number): number {
    const low = this.#u32[id * RECORD_WORDS + W_PACKETS];
    return (this.#u32[id * RECORD_WORDS + W_STATE] & WRAPPED) === 0
      ? low
      : (this.#packetsHigh.get(id) ?? 0) * TWO_32 + low;
  }

  /** Bytes (wire length) counted in the flow (both directions, stored or not). */
  bytesOf(id: number): number {
    return this.#f64[id * RECORD_F64 + F_BYTES];
  }

  /** Latest packet timestamp of the flow, seconds. */
  lastTsOf(id: number): number {
    return this.#f64[id * RECORD_F64 + F_LAST_TS];
  }

  /** Whether the TCP flow saw a RST or a FIN from both ends. */
  closedOf(id: number): boolean {
    return (this.#u32[id * RECORD_WORDS + W_STATE] & CLOSED) !== 0;
  }

  /**
   * Notes that the cutoff refused packet number `packet` (1-based) of the flow, unless an earlier
   * one was: the cutoff is monotonic (counts only grow), so every later packet is refused too.
   * Allocation-free; the worker calls it for refused packets.
   */
  markCut(id: number, packet: number): void {
    // The state word is in the cache line observe() just wrote; the column is read only once.
    const at = id * RECORD_WORDS + W_STATE;
    const st = this.#u32[at];
    if ((st & CUT) !== 0) return;
    this.#u32[at] = st | CUT;
    this.#cutAt[id] = packet;
  }

  /** Number (1-based) of the flow's first packet the cutoff refused; 0 when none was. */
  cutPacketOf(id: number): number {
    return (this.#u32[id * RECORD_WORDS + W_STATE] & CUT) === 0 ? 0 : this.#cutAt[id];
  }

  /** How the flow ended so far: FIN or RST when the TCP connection closed, else Open. */
  endOf(id: number): FlowEnd {
    const st = this.#u32[id * RECORD_WORDS + W_STATE];
    if ((st & CLOSED) === 0) return FlowEnd.Open;
    return (st & (FIN_A | FIN_B)) === (FIN_A | FIN_B) ? FlowEnd.Fin : FlowEnd.Rst;
  }

  /** Whether the flow's first packet went B→A (the canonical B end initiated it). */
  firstReversedOf(id: number): boolean {
    return (this.#u32[id * RECORD_WORDS + W_STATE] & FIRST_REVERSED) !== 0;
  }

  /** Copies the flow's canonical key (A = smaller end) into `out[at .. at + KEY_WORDS)`. */
  copyKey(id: number, out: Uint32Array, at = 0): void {
    const u32 = this.#u32;
    const base = id * RECORD_WORDS;
    for (let i = 0; i < KEY_WORDS; i++) out[at + i] = u32[base + i];
  }

  #insert(id: number, h: number): void {
    const index = this.#index;
    const mask = this.#mask;
    let s = h & mask;
    while (index[s] !== 0) s = (s + 1) & mask;
    index[s] = slotOf(id, h);
  }

  #allocate(): number {
    const head = this.#freeHead;
    if (head >= 0) {
      this.#freeHead = this.#u32[head * RECORD_WORDS + W_PACKETS] - 1;
      return head;
    }
    // Free list empty: every id below highWater is live, and active < maxFlows here.
    return this.#highWater++;
  }

  // Doubles the index in place (it is a prefix of a buffer sized for maxFlows) and re-inserts
  // every live flow, hashing its key from the record.
  #growIndex(): void {
    const slots = (this.#mask + 1) * 2;
    if (slots > this.#index.length) return; // already sized for maxFlows
    this.#index.fill(0, 0, slots);
    this.#mask = slots - 1;
    this.#indexLimit = slots / 2;
    const u32 = this.#u32;
    for (let id = 0; id < this.#highWater; id++) {
      if (u32[id * RECORD_WORDS + W_STATE] !== 0) {
        this.#insert(id, hashWords(u32, id * RECORD_WORDS, this.#seed));
      }
    }
  }

  #remove(id: number, reason: RemoveReason): void {
    const hook = this.onRemove;
    try {
      if (hook !== undefined) hook(id, reason);
    } finally {
      this.sizes.observe(this.#f64[id * RECORD_F64 + F_BYTES]);
      if (reason === RemoveReason.Idle) this.expiredIdle++;
      else if (reason === RemoveReason.Closed) this.closed++;
      else if (reason === RemoveReason.Evicted) this.evicted++;
      else this.flushed++;
      this.#unindex(id);
      const base = id * RECORD_WORDS;
      if ((this.#u32[base + W_STATE] & WRAPPED) !== 0) this.#packetsHigh.delete(id);
      this.#u32[base + W_STATE] = 0;
      this.#u32[base + W_PACKETS] = this.#freeHead + 1;
      this.#freeHead = id;
      this.#active--;
    }
  }

  // Backward-shift deletion: after emptying slot i, walk the rest of the probe run and move
  // back every entry whose home slot is not cyclically in (i, j], so lookups never stop early.
  #unindex(id: number): void {
    const index = this.#index;
    const mask = this.#mask;
    // Home slots are recomputed from the records' keys (the slots keep only a tag of the
    // hash): removals are rare next to packets, and probe runs at load <= 0.5 are short.
    const u32 = this.#u32;
    const seed = this.#seed;
    let i = hashWords(u32, id * RECORD_WORDS, seed) & mask;
    while ((index[i] & SLOT_ID_MASK) !== id + 1) i = (i + 1) & mask;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const entry = index[j];
      if (entry === 0) break;
      const home = hashWords(u32, ((entry & SLOT_ID_MASK) - 1) * RECORD_WORDS, seed) & mask;
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      index[i] = entry;
      i = j;
    }
    index[i] = 0;
  }

  /**
   * Approximated LRU, as Redis does for maxmemory: sample EVICTION_SAMPLES random live flows
   * and evict the one seen least recently. Exact LRU would need a linked list touched on every
   * packet; sampling costs nothing until the table is full and picks, with 8 samples, a flow
   * older than ~89% of the table on average (the expected max rank of 8 uniform samples).
   * A victim that is in fact idle-expired or closed-and-lingered is reported as such.
   */
  #evictOne(tsSec: number): void {
    const u32 = this.#u32;
    const f64 = this.#f64;
    const limit = this.#highWater;
    let victim = -1;
    let oldest = Infinity;
    let x = this.#rng;
    for (let sampled = 0, tries = 0; sampled < EVICTION_SAMPLES && tries < 64; tries++) {
      // xorshift32: deterministic per seed, no allocation.
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const id = (x >>> 0) % limit;
      if (u32[id * RECORD_WORDS + W_STATE] === 0) continue;
      sampled++;
      const last = f64[id * RECORD_F64 + F_LAST_TS];
      if (last < oldest) {
        oldest = last;
        victim = id;
      }
    }
    this.#rng = x;
    if (victim < 0) {
      // Only when the table is mostly holes, which cannot happen when it is full; be safe.
      for (let id = 0; id < limit; id++) {
        if (u32[id * RECORD_WORDS + W_STATE] !== 0) {
          victim = id;
          break;
        }
      }
    }
    const idle = tsSec - f64[victim * RECORD_F64 + F_LAST_TS];
    if (idle > this.flowTimeout) this.#remove(victim, RemoveReason.Idle);
    else if ((u32[victim * RECORD_WORDS + W_STATE] & CLOSED) !== 0 && idle > this.closeLinger) {
      this.#remove(victim, RemoveReason.Closed);
    } else this.#remove(victim, RemoveReason.Evicted);
  }

  /**
   * Incremental sweep: a pass starts every sweep interval of packet time and visits
   * SWEEP_STEP ids per observe() call, so no single packet pays for a full pass over 1M flows.
   * A pass that lags more than one interval speeds up to SWEEP_STEP_BEHIND ids per call.
   */
  #sweepStep(tsSec: number): void {
    if (this.#sweepCursor < 0) {
      this.#sweepCursor = 0;
      this.#sweepStart = tsSec;
      this.#nextSweep = tsSec + this.#sweepInterval;
    }
    const limit = this.#highWater;
    const step = tsSec - this.#sweepStart > this.#sweepInterval ? SWEEP_STEP_BEHIND : SWEEP_STEP;
    let id = this.#sweepCursor;
    const end = Math.min(limit, id + step);
    for (; id < end; id++) {
      const st = this.#u32[id * RECORD_WORDS + W_STATE];
      if (st === 0) continue;
      const idle = tsSec - this.#f64[id * RECORD_F64 + F_LAST_TS];
      if (idle > this.flowTimeout) this.#remove(id, RemoveReason.Idle);
      else if ((st & CLOSED) !== 0 && idle > this.closeLinger) {
        this.#remove(id, RemoveReason.Closed);
      }
    }
    this.#sweepCursor = id >= limit ? -1 : id;
  }
}

/**
 * Seeded hash of the 10 key words of `w` from `base`, as an int32: two independent
 * multiply-xor-rotate lanes (so the dependency chain is half as long as murmur3's, measured
 * 2x faster here) and murmur3's finalizer. Linear-probe lengths on structured keys (sequential
 * addresses and ports, IPv6) match the ideal for load 0.5. The random seed keeps crafted
 * colliding keys from working across processes; this is not a cryptographic defence.
 */
function hashWords(w: Uint32Array, base: number, seed: number): number {
  let a = Math.imul(seed ^ w[base], 0x9e3779b1);
  let b = Math.imul(~seed ^ w[base + 1], 0x85ebca77);
  a = Math.imul(((a << 15) | (a >>> 17)) ^ w[base + 2], 0x9e3779b1);
  b = Math.imul(((b << 13) | (b >>> 19)) ^ w[base + 3], 0x85ebca77);
  a = Math.imul(((a << 15) | (a >>> 17)) ^ w[base + 4], 0x9e3779b1);
  b = Math.imul(((b << 13) | (b >>> 19)) ^ w[base + 5], 0x85ebca77);
  a = Math.imul(((a << 15) | (a >>> 17)) ^ w[base + 6], 0x9e3779b1);
  b = Math.imul(((b << 13) | (b >>> 19)) ^ w[base + 7], 0x85ebca77);
  a = Math.imul(((a << 15) | (a >>> 17)) ^ w[base + 8], 0x9e3779b1);
  b = Math.imul(((b << 13) | (b >>> 19)) ^ w[base + 9], 0x85ebca77);
  let h = ((a << 15) | (a >>> 17)) ^ Math.imul((b << 13) | (b >>> 19), 0xc2b2ae3d);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

/** Index slots for `cap` flows: a power of two with load factor <= 0.5. */
/** An index slot: `id + 1` with the top bits of the flow's hash `h` above it. */
function slotOf(id: number, h: number): number {
  return ((h >>> SLOT_ID_BITS) << SLOT_ID_BITS) | (id + 1);
}

function indexSlotsFor(cap: number): number {
  let slots = 16;
  while (slots < cap * 2) slots *= 2;
  return slots;
}
