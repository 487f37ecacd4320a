/**
 * Canonical (direction-independent) flow keys, ordered exactly as src/flow/flow_table.ts orders them
 * in `FlowTable.observe` (which keeps its version inline on the hot path), so that keys in indexes
 * built from foreign pcaps equal the keys the capture worker stores.
 */
/**
 * Puts `key` (packet direction, layout of packet_info.ts) in canonical order in place: the end with
 * the smaller address words (compared as unsigned words 0-3 vs 4-7), then the smaller port, is A.
 * When the ends are swapped the two 16-bit halves of word 8 are swapped too (as the FlowTable does,
 * also for L2 keys whose word 8 holds the EtherType). Returns true when it swapped.
 */
export function canonicalizeKey(key: Uint32Array): boolean {
  let cmp = 0;
  for (let i = 0; i < 4; i++) {
    const a = key[i];
    const b = key[i + 4];
    if (a !== b) {
      cmp = a < b ? -1 : 1;
      break;
    }
  }
  const ports = key[8];
  if (cmp === 0) {
    const pa = ports >>> 16;
    const pb = ports & 0xffff;
    cmp = pa < pb ? -1 : pa > pb ? 1 : 0;
  }
  if (cmp <= 0) return false;
  for (let i = 0; i < 4; i++) {
    const t = key[i];
    key[i] = key[i + 4];
    key[i + 4] = t;
  }
  key[8] = (((ports & 0xffff) << 16) | (ports >>> 16)) >>> 0;
  return true;
}
