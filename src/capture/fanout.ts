/**
 * Kernel load balancing across capture workers: every worker's AF_PACKET socket joins one
 * PACKET_FANOUT group, and the kernel hands each packet to one socket chosen by a flow hash.
 *
 * @module
 */

import { LibcError, setsockopt } from "../../ffi/libc.ts";

/** SOL_PACKET from linux/socket.h. */
export const SOL_PACKET = 263;
/** PACKET_FANOUT from linux/if_packet.h. */
export const PACKET_FANOUT = 18;
/** Fanout by flow hash; the kernel uses the symmetric hash, so both directions of a flow match. */
export const PACKET_FANOUT_HASH = 0;

/**
 * Joins the AF_PACKET socket `fd` (an AF_PACKET ring's, or `PcapHandle.selectableFd()` of an activated live handle)
 * to fanout group `groupId` (0-65535) in hash mode, without defragmentation (see below). All sockets of a group
 * must be bound to the same interface with the same mode.
 */
export function joinFanout(fd: number, groupId: number): void {
  if (!Number.isInteger(groupId) || groupId < 0 || groupId > 0xffff) {
    throw new Error(`Invalid fanout group ${groupId}: expected 0-65535`);
  }
  if (!Number.isInteger(fd) || fd < 0) {
    throw new Error(`Invalid capture socket ${fd} for fanout: expected a live capture's fd`);
  }
  // No PACKET_FANOUT_FLAG_DEFRAG: the kernel would hand over reassembled datagrams, and the archive must hold
  // the frames as they were on the wire. Fragments carry no ports, so the kernel hashes all of a
  // datagram's fragments by address alike and they still meet in one worker.
  const mode = PACKET_FANOUT_HASH;
  try {
    setsockopt(fd, { level: SOL_PACKET, name: PACKET_FANOUT, value: (mode << 16) | groupId });
  } catch (err) {
    if (!(err instanceof LibcError)) throw err;
    throw new Error(`Cannot join fanout group ${groupId} on fd ${fd}: ${fanoutHint(err)}`);
  }
}

function fanoutHint(err: LibcError): string {
  const text = err.message.replace(/^.*failed: /, "");
  switch (err.errno) {
    case 22: // EINVAL
      return `${text}; the group exists with another mode or interface, or fd is not AF_PACKET`;
    case 114: // EALREADY
      return `${text}; the socket already belongs to a fanout group`;
    case 1: // EPERM
    case 13: // EACCES
      return `${text}; needs CAP_NET_RAW`;
  }
  return text;
}
