/**
 * Opening a capture source for a worker: a live interface (optionally joined to a fanout group)
 * or a file, with an optional BPF filter, in one call that closes the handle again on failure.
 *
 * @module
 */

import { type LiveOptions, PcapHandle } from "../../ffi/libpcap.ts";
import { joinFanout } from "./fanout.ts";

/** What to capture from; exactly one of `device` and `file`. */
export interface SourceOptions extends LiveOptions {
  /** Interface to capture on live. */
  device?: string;
  /** pcap or pcapng file to read. */
  file?: string;
  /** BPF filter expression applied in libpcap (kernel for live captures). */
  filter?: string;
  /** PACKET_FANOUT group to join (live only); every worker of one capture uses the same id. */
  fanoutGroup?: number;
}

/** Opens the source described by `options`, applies the filter and joins the fanout group. */
export function openSource(options: SourceOptions): PcapHandle {
  const { device, file } = options;
  if ((device === undefined) === (file === undefined)) {
    throw new Error("Invalid capture source: expected exactly one of an interface and a file");
  }
  if (file !== undefined && options.fanoutGroup !== undefined) {
    throw new Error(`Invalid fanout group for file ${file}: fanout applies to live captures only`);
  }
  const handle = file !== undefined
    ? PcapHandle.openOffline(file, { nanosecond: options.nanosecond })
    : PcapHandle.openLive(device as string, options);
  try {
    if (options.filter !== undefined && options.filter !== "") handle.setFilter(options.filter);
    if (options.fanoutGroup !== undefined) joinFanout(handle.selectableFd(), options.fanoutGroup);
  } catch (err) {
    handle.close();
    throw err;
  }
  return handle;
}
