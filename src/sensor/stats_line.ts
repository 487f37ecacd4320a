/**
 * gotm's per-worker stats line: `if=en0 W=00 flows=35 removed=183 bytes=2206834 pkts=5000 output=2346
 * outpct=46.9 recvd=5268 dropped=0 ifdropped=0`. bytes, pkts, output and removed count since the previous
 * line; flows is the current number of active flows; recvd, dropped and ifdropped are libpcap's totals.
 */
import { Counter } from "../worker/counters.ts";

/** The counters a stats line needs from the previous line, to print differences. */
export interface StatsSnapshot {
  packets: number;
  bytes: number;
  written: number;
  removed: number;
}

/** Reads a snapshot from a worker's counters. */
export function snapshot(counters: Float64Array): StatsSnapshot {
  return {
    packets: counters[Counter.PacketsSeen],
    bytes: counters[Counter.BytesSeen],
    written: counters[Counter.PacketsWritten],
    removed: counters[Counter.FlowsExpired] + counters[Counter.FlowsClosed] +
      counters[Counter.FlowsEvicted] + counters[Counter.FlowsFlushed],
  };
}

/**
 * Formats one stats line's fields (without the timestamp the logger adds): the differences from
 * `previous` to `now`, a snapshot of `counters` that becomes the next line's `previous` (read once:
 * the worker keeps counting meanwhile, and a second read would drop what it counted in between).
 */
export function statsFields(
  label: string,
  index: number,
  counters: Float64Array,
  snapshots: { previous: StatsSnapshot; now: StatsSnapshot },
): Record<string, string | number> {
  const { previous, now } = snapshots;
  const packets = now.packets - previous.packets;
  const written = now.written - previous.written;
  return {
    if: label,
    W: String(index).padStart(2, "0"),
    flows: counters[Counter.FlowsActive],
    removed: now.removed - previous.removed,
    bytes: now.bytes - previous.bytes,
    pkts: packets,
    output: written,
    outpct: packets > 0 ? Number((written / packets * 100).toFixed(1)) : 0,
    recvd: counters[Counter.PcapReceived],
    dropped: counters[Counter.PcapDropped],
    ifdropped: counters[Counter.PcapIfDropped],
  };
}
