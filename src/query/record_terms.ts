/**
 * Query predicates answered from a flow's record in the index rather than from its key: Community
 * ID, cut off, total size, MAC and EtherType of L2 flows. Kept apart from match.ts, which calls
 * `recordMatches` for them; they are constant over a flow, so they never need packet times.
 *
 * @module
 */
import type { FileIndex } from "../index/index_reader.ts";
import { communityIdDigest, communityIdPrefix } from "../flow/community_id.ts";
import type { CommunityIdPredicate, RecordPredicate } from "./ast.ts";

const KEY_WORDS = 10;
const KIND_L2 = 1;

/** Where a flow's record is: the index and the flow's number in it. */
export interface FlowRecordRef {
  index: FileIndex;
  flow: number;
}

/** Whether flow `ref.flow` of `ref.index` has the property `q` asks for. */
export function recordMatches(q: RecordPredicate, ref: FlowRecordRef): boolean {
  const { index, flow } = ref;
  switch (q.type) {
    case "cid":
      return cidMatches(q, ref);
    case "cut":
      return (index.cutPacket[flow] !== 0) === q.cut;
    case "total": {
      const v = q.what === "bytes" ? index.totalBytes[flow] : index.totalPackets[flow];
      if (q.op === ">") return v > q.value;
      if (q.op === ">=") return v >= q.value;
      return q.op === "<" ? v < q.value : v <= q.value;
    }
    case "mac": {
      const keys = index.keys;
      const at = flow * KEY_WORDS;
      if (keys[at + 9] >>> 28 !== KIND_L2) return false;
      const reversed = (index.flowState[flow] & 1) === 1;
      const [w0, w1] = q.words;
      const isA = keys[at] === w0 && keys[at + 1] === w1;
      const isB = keys[at + 4] === w0 && keys[at + 5] === w1;
      if (q.dir === "any") return isA || isB;
      return (q.dir === "src") !== reversed ? isA : isB;
    }
    case "ethertype": {
      const at = flow * KEY_WORDS;
      return index.keys[at + 9] >>> 28 === KIND_L2 &&
        (index.keys[at + 8] & 0xffff) === q.etherType;
    }
  }
}

/**
 * Compares the index's 4-byte digest prefix first when it was written with the asked seed, and
 * hashes only the flows that pass (or every flow of an index without the column).
 */
function cidMatches(q: CommunityIdPredicate, ref: FlowRecordRef): boolean {
  const { index, flow } = ref;
  const prefixes = index.cidPrefix;
  if (prefixes !== null && index.header.cidSeed === q.seed) {
    if (prefixes[flow] !== q.prefix) return false;
  } else {
    const reversed = (index.flowState[flow] & 1) === 1;
    if (communityIdPrefix(index.keys, flow * KEY_WORDS, reversed, q.seed) !== q.prefix) {
      return false;
    }
  }
  const reversed = (index.flowState[flow] & 1) === 1;
  const d = communityIdDigest(index.keys, flow * KEY_WORDS, reversed, q.seed);
  if (d === null) return false;
  for (let i = 0; i < 20; i++) if (d[i] !== q.digest[i]) return false;
  return true;
}
