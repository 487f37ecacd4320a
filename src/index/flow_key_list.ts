/**
 * Flow keys numbered in order of first appearance (ids 0, 1, 2, ...), for indexing without a
 * flow table: `cutcap index` of foreign pcaps and tests. A Map keyed by a string of the key's
 * words finds a key's id (about 100 bytes per flow; not a capture hot path).
 *
 * @module
 */
import { KEY_WORDS } from "../packet/packet_info.ts";
import type { FlowRecordSource } from "./index_builder.ts";
import { FlowEnd } from "../flow/flow_table.ts";

/**
 * Distinct keys and their ids; a FlowKeySource for IndexBuilder. Keys are never removed. Without a
 * flow table the totals are the packets counted with `count` (all of them are in the file), no
 * flow is cut and how flows ended is unknown.
 */
export class FlowKeyList implements FlowRecordSource {
  #keys = new Uint32Array(1024 * KEY_WORDS);
  /** Per id: packets, bytes, first packet B→A (0/1). */
  #facts = new Float64Array(1024 * 3);
  readonly #ids = new Map<string, number>();

  /** Number of distinct keys. */
  get size(): number {
    return this.#ids.size;
  }

  /**
   * The id of canonical `key`, a new one (the next number) when the key is new; `reversed` says
   * the packet went B→A (canonicalizeKey's answer), kept for the flow's first packet.
   */
  idOf(key: Uint32Array, reversed = false): number {
    let s = "";
    for (let i = 0; i < KEY_WORDS; i++) s += String.fromCharCode(key[i] & 0xffff, key[i] >>> 16);
    let id = this.#ids.get(s);
    if (id === undefined) {
      id = this.#ids.size;
      this.#ids.set(s, id);
      if ((id + 1) * KEY_WORDS > this.#keys.length) {
        const grown = new Uint32Array(this.#keys.length * 2);
        grown.set(this.#keys);
        this.#keys = grown;
        const facts = new Float64Array(this.#facts.length * 2);
        facts.set(this.#facts);
        this.#facts = facts;
      }
      this.#keys.set(key.subarray(0, KEY_WORDS), id * KEY_WORDS);
      this.#facts[id * 3 + 2] = reversed ? 1 : 0;
    }
    return id;
  }

  /** Counts one packet of `wireLen` bytes in flow `id`. */
  count(id: number, wireLen: number): void {
    this.#facts[id * 3]++;
    this.#facts[id * 3 + 1] += wireLen;
  }

  packetsOf(id: number): number {
    return this.#facts[id * 3];
  }

  bytesOf(id: number): number {
    return this.#facts[id * 3 + 1];
  }

  cutPacketOf(_id: number): number {
    return 0;
  }

  firstReversedOf(id: number): boolean {
    return this.#facts[id * 3 + 2] === 1;
  }

  endOf(_id: number): FlowEnd {
    return FlowEnd.Unknown;
  }

  /** Copies the key of `id` into `out[at .. at + KEY_WORDS)`. */
  copyKey(id: number, out: Uint32Array, at = 0): void {
    const base = id * KEY_WORDS;
    for (let i = 0; i < KEY_WORDS; i++) out[at + i] = this.#keys[base + i];
  }
}
