/**
 * Opening a capture source for a worker: a live interface (through libpcap or an AF_PACKET
 * TPACKET_V3 ring read in JavaScript, optionally joined to a fanout group) or a file, with an
 * optional BPF filter, in one call that closes the source again on failure.
 *
 * @module
 */

import { type LiveOptions, PcapHandle, type PcapStats } from "../../ffi/libpcap.ts";
import { PacketRing } from "./afpacket.ts";
import { joinFanout } from "./fanout.ts";

/** How a live capture reads packets: the kernel's ring read in JavaScript, or libpcap. */
export type CaptureMethod = "afpacket" | "libpcap";

/**
 * What the worker's packet loop reads from: a libpcap handle (`PcapHandle`) or an AF_PACKET ring
 * (`PacketRing`). After `next()` returns 1 (0: nothing within the timeout, -1: error, -2: end of
 * file) the fields describe one packet until the next call; its bytes are
 * `data[offset .. offset + caplen)`.
 */
export interface CaptureSource {
  data: Uint8Array;
  offset: number;
  caplen: number;
  wireLen: number;
  tsSec: number;
  /** Microseconds, or nanoseconds when `nanosecond`. */
  tsFrac: number;
  readonly nanosecond: boolean;
  /** The interface or file. */
  readonly source: string;
  /** A warning from opening it, "" when there was none. */
  readonly warning: string;
  next(): number;
  /** Puts the current packet where a writer caching views per length wants it (see PcapHandle). */
  settle(): void;
  linkType(): number;
  snaplen(): number;
  /** The capture socket (-1 for files). */
  selectableFd(): number;
  /** Counters since the source was opened (live only). */
  stats(): PcapStats;
  lastError(): string;
  close(): void;
}

/** What to capture from; exactly one of `device` and `file`. */
export interface SourceOptions extends LiveOptions {
  /** Interface to capture on live. */
  device?: string;
  /** pcap or pcapng file to read. */
  file?: string;
  /** BPF filter expression (run in the kernel for live captures). */
  filter?: string;
  /** PACKET_FANOUT group to join (live only); every worker of one capture uses the same id. */
  fanoutGroup?: number;
  /** How a live capture reads packets (default libpcap). */
  method?: CaptureMethod;
}

/** Opens the source described by `options`, applies the filter and joins the fanout group. */
export function openSource(options: SourceOptions): CaptureSource {
  const { device, file } = options;
  if ((device === undefined) === (file === undefined)) {
    throw new Error("Invalid capture source: expected exactly one of an interface and a file");
  }
  if (file !== undefined && options.fanoutGroup !== undefined) {
    throw new Error(`Invalid fanout group for file ${file}: fanout applies to live captures only`);
  }
  let source: CaptureSource;
  if (file !== undefined) source = PcapHandle.openOffline(file, { nanosecond: options.nanosecond });
  else if (options.method === "afpacket") source = PacketRing.open(device as string, options);
  else source = PcapHandle.openLive(device as string, options);
  try {
    const filter = options.filter ?? "";
    // The ring installs its filter before it binds (no packet gets in unfiltered).
    if (filter !== "" && source instanceof PcapHandle) source.setFilter(filter);
    if (options.fanoutGroup !== undefined) joinFanout(source.selectableFd(), options.fanoutGroup);
  } catch (err) {
    source.close();
    throw err;
  }
  return source;
}
