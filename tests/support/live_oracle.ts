/**
 * tcpdump capturing beside cutcap on the same interface: the independent record of what was on the
 * wire and when (both read the kernel's timestamp of the same frame).
 */
import type { OraclePacket } from "./oracle.ts";

/** A tcpdump writing what it captures to a file. */
export interface LiveTcpdump {
  /** Ends the capture (SIGINT: tcpdump writes out what it holds) and waits for it. */
  stop(): Promise<void>;
}

/**
 * Starts `tcpdump -i IFACE -w PATH FILTER` (packet-buffered, immediate mode) and resolves once it
 * listens.
 */
export async function startTcpdump(
  iface: string,
  path: string,
  filter: string,
): Promise<LiveTcpdump> {
  const child = new Deno.Command("tcpdump", {
    args: ["-i", iface, "-w", path, "-U", "--immediate-mode", "-nn", filter],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = Date.now() + 10_000;
  while (!log.includes("listening on")) {
    const { value, done } = await reader.read();
    if (done || Date.now() > deadline) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`tcpdump did not start listening on ${iface}: ${log}`);
    }
    log += value;
  }
  const drained = (async () => {
    while (!(await reader.read()).done);
  })();
  return {
    async stop(): Promise<void> {
      try {
        child.kill("SIGINT");
      } catch {
        // already gone
      }
      await child.status;
      await drained;
    },
  };
}

/**
 * The packets of `wanted` with no packet of the same bytes in `pool` within 5 ms (tcpdump and cutcap
 * each get their own kernel timestamp of a frame, a few microseconds apart); each match is used once.
 */
export function matchByBytes(wanted: OraclePacket[], pool: OraclePacket[]): string[] {
  const times = new Map<string, number[]>();
  for (const p of pool) times.set(p.hex, [...(times.get(p.hex) ?? []), Number(p.ts)]);
  const missing: string[] = [];
  for (const p of wanted) {
    const list = times.get(p.hex) ?? [];
    const i = list.findIndex((t) => Math.abs(t - Number(p.ts)) < 0.005);
    if (i < 0) missing.push(`${p.ts} ${p.hex.slice(0, 40)}...`);
    else list.splice(i, 1);
  }
  return missing;
}
