/**
 * Capture sources for the workers: the libpcap handle with its allocation-free `next()`, the
 * AF_PACKET TPACKET_V3 ring read in JavaScript, kernel fanout, the SNF ring count, interface
 * listing and privilege dropping.
 *
 * @module
 */

export {
  defaultInterface,
  findAllDevs,
  type Libpcap,
  libpcapVersion,
  type LiveOptions,
  loadLibpcap,
  type OfflineOptions,
  type PcapDevice,
  PcapHandle,
  type PcapStats,
} from "../../ffi/libpcap.ts";
export { dropPrivileges, getuid } from "../../ffi/libc.ts";
export { joinFanout, PACKET_FANOUT, PACKET_FANOUT_HASH, SOL_PACKET } from "./fanout.ts";
export { snfRingCount } from "./snf.ts";
export {
  type CaptureMethod,
  type CaptureSource,
  openSource,
  type SourceOptions,
} from "./source.ts";
export { PacketRing, type RingLayout, ringLayout, type RingOptions } from "./afpacket.ts";
