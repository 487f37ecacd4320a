/**
 * Large-flow detection, as in gotm: a flow is reported when its byte count crosses a threshold T, then
 * again at 2T, 4T, 8T, ... The level is derived from the byte counts before and after a packet, so no
 * per-flow state is kept and flows below T cost one comparison.
 */

/** The doubling level `bytes` has reached: -1 below `threshold`, 0 from T, 1 from 2T, 2 from 4T, ... */
export function largeFlowLevel(bytes: number, threshold: number): number {
  return bytes < threshold ? -1 : Math.floor(Math.log2(bytes / threshold));
}

/** The level a packet moved its flow into, or -1 when it crossed none. */
export function crossedLevel(before: number, after: number, threshold: number): number {
  const level = largeFlowLevel(after, threshold);
  return level > largeFlowLevel(before, threshold) ? level : -1;
}
