/**
 * Network namespaces for live tests. A process can only capture on interfaces of its own namespace, so
 * a test creates one namespace holding one end of a veth pair (MTU 9000) and keeps the peer end in its
 * own namespace, without any address and with IPv6 disabled on both sides, so nothing but the test's
 * traffic crosses it. Traffic is a pcap sent with `ip netns exec <ns> tcpreplay -i <inside>`; every
 * frame arrives on the outside end, where the code under test captures.
 *
 * Names are `cc<tag><n>-<pid>` (at most 15 characters, the kernel's limit): unique per test process and
 * per pair, so test files running in parallel never collide.
 */
import { sh } from "./process.ts";
import { rootOnly } from "./root.ts";

/**
 * Capture filter for the address ranges tests send from: whatever else the kernel might send on a
 * veth is not the test's traffic.
 */
export const TEST_NETS = "net 198.18.0.0/15 or net 2001:db8::/32";

/** A namespace joined to the test's namespace by a veth pair. */
export interface Veth {
  /** Namespace name (`ip netns exec <ns> ...`). */
  ns: string;
  /** veth end inside the namespace: tcpreplay sends here. */
  inside: string;
  /** veth end in the test's namespace: capture here. */
  outside: string;
  /** Runs a command inside the namespace; throws with its stderr when it fails. */
  exec(cmd: string, args: string[]): Promise<string>;
  /** Sends a pcap file from inside the namespace; resolves to tcpreplay's count of packets sent. */
  replay(file: string, options?: ReplayOptions): Promise<number>;
  /** Starts sending a pcap in a loop until `stop` is called (for captures that must stay busy). */
  replayForever(file: string, options?: ReplayOptions): RunningReplay;
  /** Deletes the outside end (the pair goes with it) unless gone already, and makes it again, up. */
  recreate(): Promise<void>;
  /** Deletes the pair and the namespace; safe to call twice. */
  remove(): Promise<void>;
}

/** tcpreplay pacing. */
export interface ReplayOptions {
  /** Packets per second, default 20000 (a rate the veth and a 2-core machine keep without loss). */
  pps?: number;
}

/** A tcpreplay running in a loop. */
export interface RunningReplay {
  /** Ends tcpreplay and waits for it. */
  stop(): Promise<void>;
}

let pairs = 0;

/**
 * Creates the next free namespace for `tag`. Test files run in parallel inside one process (one
 * pid, a pair counter per file), so two files with the same tag would pick the same name: the
 * namespace's creation decides who owns a number, and the loser takes the next one.
 */
async function claimNamespace(tag: string): Promise<{ n: string; ns: string }> {
  for (let attempt = 0; attempt < 36; attempt++) {
    const n = (pairs++).toString(36);
    const ns = `cc-${tag}${n}-${Deno.pid}`;
    try {
      await sh("ip", ["netns", "add", ns]);
      return { n, ns };
    } catch (error) {
      if (!String(error).includes("File exists")) throw error;
    }
  }
  throw new Error(`No free namespace name for tag ${tag}`);
}

/** Creates a namespace and veth pair; `tag` is one or two letters naming the test file. */
export async function createVeth(tag: string): Promise<Veth> {
  const { n, ns } = await claimNamespace(tag);
  const inside = `cc${tag}${n}a${Deno.pid}`;
  const outside = `cc${tag}${n}b${Deno.pid}`;
  if (outside.length > 15) {
    await sh("ip", ["netns", "del", ns]).catch(() => "");
    throw new Error(`Interface name ${outside} too long: expected at most 15 characters`);
  }
  const exec = (cmd: string, args: string[]) => sh("ip", ["netns", "exec", ns, cmd, ...args]);
  const remove = async (): Promise<void> => {
    await sh("ip", ["link", "del", outside]).catch(() => "");
    await sh("ip", ["netns", "del", ns]).catch(() => "");
  };
  const replayArgs = (file: string, options: ReplayOptions, loop: boolean): string[] => [
    "tcpreplay",
    "-q",
    `--pps=${options.pps ?? 20000}`,
    ...(loop ? ["--loop=0"] : []),
    "-i",
    inside,
    file,
  ];
  const link = async (): Promise<void> => {
    await sh("ip", [
      ...["link", "add", outside, "mtu", "9000", "type", "veth"],
      ...["peer", "name", inside, "mtu", "9000", "netns", ns],
    ]);
    await sh("sysctl", ["-qw", `net.ipv6.conf.${outside}.disable_ipv6=1`]);
    await sh("ip", ["link", "set", outside, "up"]);
    await exec("ip", ["link", "set", inside, "up"]);
  };
  try {
    await exec("sysctl", ["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    await exec("sysctl", ["-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    await link();
    await exec("ip", ["link", "set", "lo", "up"]);
  } catch (error) {
    await remove();
    throw error;
  }
  return {
    ns,
    inside,
    outside,
    exec,
    remove,
    async recreate(): Promise<void> {
      await sh("ip", ["link", "del", outside]).catch(() => ""); // may be gone already
      await link();
    },
    async replay(file: string, options: ReplayOptions = {}): Promise<number> {
      const out = await sh("ip", ["netns", "exec", ns, ...replayArgs(file, options, false)]);
      const sent = /Successful packets:\s+(\d+)/.exec(out);
      if (sent === null) throw new Error(`No packet count in tcpreplay's output: ${out}`);
      return Number(sent[1]);
    },
    replayForever(file: string, options: ReplayOptions = {}): RunningReplay {
      const child = new Deno.Command("ip", {
        args: ["netns", "exec", ns, ...replayArgs(file, options, true)],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      return {
        async stop(): Promise<void> {
          try {
            child.kill("SIGTERM");
          } catch {
            // already gone
          }
          await child.status;
        },
      };
    },
  };
}

/** Options of `rootTest`. */
export interface RootTestOptions {
  /** Create a namespace and veth pair for the test (removed afterwards, also on failure); needs `tag`. */
  veth?: string;
  /** What root is needed for, shown when the test is ignored; default: the veth pair or a live capture. */
  why?: string;
  /** Ignore the test for another reason (a missing tool outside CI, see browser.ts). */
  ignore?: boolean;
}

/** What a root test receives: a fresh temporary directory, and the veth pair when one was asked for. */
export interface RootTestContext {
  dir: string;
  veth: Veth | undefined;
}

/**
 * A Deno.test that needs root (`rootOnly`: ignored outside CI without root, a failure under CI=true).
 * The body gets a temporary directory, removed afterwards, and with `options.veth` a namespace and
 * veth pair.
 */
export function rootTest(
  name: string,
  body: (context: RootTestContext) => Promise<void>,
  options: RootTestOptions = {},
): void {
  const why = options.why ??
    (options.veth === undefined ? "a live capture" : "a network namespace and veth pair");
  Deno.test(rootOnly(why, {
    name,
    ignore: options.ignore,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "cc-root-" });
      let veth: Veth | undefined;
      try {
        if (options.veth !== undefined) veth = await createVeth(options.veth);
        await body({ dir, veth });
      } finally {
        await veth?.remove();
        await Deno.remove(dir, { recursive: true });
      }
    },
  }));
}
