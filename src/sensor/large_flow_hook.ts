/**
 * What the main thread does when a worker reports a large flow: one log line, and — like gotm's hook for
 * asking a switch to drop the flow upstream — optionally a command run through `sh -c` with the flow in its
 * environment (CUTCAP_FLOW_PROTO, _SRC, _SRC_PORT, _DST, _DST_PORT, _VLAN, _BYTES, _THRESHOLD).
 */
import type { KeyDescription } from "../packet/describe.ts";
import { logInfo, logWarn } from "../log.ts";

/** Logs the crossing and runs `command` (if any) without waiting for it. */
export function reportLargeFlow(
  flow: KeyDescription,
  sizes: { bytes: number; threshold: number },
  command: string | undefined,
): void {
  logInfo("Large flow", {
    proto: flow.proto,
    src: flow.src,
    sport: flow.srcPort,
    dst: flow.dst,
    dport: flow.dstPort,
    vlan: flow.vlan,
    bytes: sizes.bytes,
    threshold: sizes.threshold,
  });
  if (command === undefined) return;
  const child = new Deno.Command("sh", {
    args: ["-c", command],
    stdin: "null",
    env: {
      CUTCAP_FLOW_PROTO: String(flow.proto),
      CUTCAP_FLOW_SRC: flow.src,
      CUTCAP_FLOW_SRC_PORT: String(flow.srcPort),
      CUTCAP_FLOW_DST: flow.dst,
      CUTCAP_FLOW_DST_PORT: String(flow.dstPort),
      CUTCAP_FLOW_VLAN: String(flow.vlan),
      CUTCAP_FLOW_BYTES: String(sizes.bytes),
      CUTCAP_FLOW_THRESHOLD: String(sizes.threshold),
    },
  }).spawn();
  child.status.then((status) => {
    if (!status.success) logWarn(`--large-flow-command exited with ${status.code}`);
  });
}
