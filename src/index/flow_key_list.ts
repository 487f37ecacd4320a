/**
 * Flow keys numbered in order of first appearance (ids 0, 1, 2, ...), for indexing without a
 * flow table: `cutcap index` of foreign pcaps and tests. A Map keyed by a string of the key's
 * words finds a key's id (about 100 bytes per flow; not a capture hot path).
 *
 * @module
 */
import { KEY_WORDS } from "../packet/packet_info.ts";
import type { FlowKeySource } from "./index_builder.ts";

/** Distinct keys and their ids; a FlowKeySource for IndexBuilder. Keys are never removed. */
export class FlowKeyList implements FlowKeySource {
  #keys = new Uint32Array(1024 * KEY_WORDS);
  readonly #ids = new Map<string, number>();

  /** Number of distinct keys. */
  get size(): number {
    return this.#ids.size;
  }

  /** The id of `key`, a new one (the next number) when the key is new. */
  idOf(key: Uint32Array): number {
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
      }
      this.#keys.set(key.subarray(0, KEY_WORDS), id * KEY_WORDS);
    }
    return id;
  }

  /** Copies the key of `id` into `out[at .. at + KEY_WORDS)`. */
  copyKey(id: number, out: Uint32Array, at = 0): void {
    const base = id * KEY_WORDS;
    for (let i = 0; i < KEY_WORDS; i++) out[at + i] = this.#keys[base + i];
  }
}
