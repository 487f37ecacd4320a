/**
 * Myricom SNF (Sniffer10G) support, as in gotm. With the SNF build of libpcap the NIC itself
 * splits traffic into SNF_NUM_RINGS receive rings by flow hash, and every process or handle that
 * opens the interface takes the next free ring. So instead of PACKET_FANOUT, cutcap starts one
 * worker per ring; the rings are picked by the SNF library through its environment (SNF_NUM_RINGS,
 * SNF_APP_ID, SNF_FLAGS), which workers inherit. Point --libpcap (or CUTCAP_LIBPCAP) at the SNF
 * libpcap.so to use it. Nothing here calls SNF: it only reads the ring count.
 *
 * @module
 */

/** The ring count from SNF_NUM_RINGS, or undefined when the variable is not set. */
export function snfRingCount(): number | undefined {
  const raw = Deno.env.get("SNF_NUM_RINGS");
  if (raw === undefined || raw.trim() === "") return undefined;
  const count = Number(raw.trim());
  if (!Number.isInteger(count) || count < 1 || count > 1024) {
    throw new Error(`Invalid SNF_NUM_RINGS "${raw}": expected an integer 1-1024`);
  }
  return count;
}
