/**
 * Flow bookkeeping: the flow table (canonical keys, counters, packet-time expiry, TCP close
 * tracking, approximated-LRU eviction), the cutoff policy and the flow-size histogram.
 *
 * @module
 */

export {
  type FlowRemoveHook,
  FlowTable,
  type FlowTableOptions,
  RemoveReason,
} from "./flow_table.ts";
export { Cutoff, type CutoffOptions } from "./cutoff.ts";
export {
  FLOW_SIZE_BUCKET_COUNT,
  FLOW_SIZE_BUCKETS,
  FLOW_SIZE_COUNT,
  FLOW_SIZE_OVERFLOW,
  FLOW_SIZE_SUM,
  FLOW_SIZE_VALUES,
  FlowSizeHistogram,
} from "./size_histogram.ts";
