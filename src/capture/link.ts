/**
 * What Linux says about a capture interface, from /sys/class/net: its link state (a cable pulled
 * or a peer gone leaves the capture handle open and silent) and the link type libpcap gives it.
 */

/** The interface's operstate (`up`, `down`, `lowerlayerdown`, `unknown`, …); undefined if absent. */
export function linkState(iface: string): string | undefined {
  try {
    return Deno.readTextFileSync(`/sys/class/net/${iface}/operstate`).trim();
  } catch {
    return undefined;
  }
}

/** True for operstates in which nothing can arrive (`unknown` is what loopback and tun report). */
export function linkIsDown(state: string | undefined): boolean {
  return state === "down" || state === "lowerlayerdown" || state === "notpresent";
}

/** The DLT libpcap gives a Linux interface, for the common ARPHRD types; undefined otherwise. */
export function linkTypeOf(iface: string): number | undefined {
  if (iface === "any") return 113; // DLT_LINUX_SLL
  let arphrd: number;
  try {
    arphrd = Number(Deno.readTextFileSync(`/sys/class/net/${iface}/type`).trim());
  } catch {
    return undefined;
  }
  // ARPHRD_ETHER and ARPHRD_LOOPBACK capture as DLT_EN10MB; ARPHRD_NONE (tun) as DLT_RAW.
  return arphrd === 1 || arphrd === 772 ? 1 : arphrd === 65534 ? 12 : undefined;
}
