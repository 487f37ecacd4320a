/**
 * Helpers for the robustness and security tests: cutcap processes whose log lines the test can wait
 * for, Prometheus text parsing, a network namespace with a veth pair, and a free loopback port.
 */

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

/** A cutcap process started by a test. */
export interface CutcapProcess {
  process: Deno.ChildProcess;
  pid: number;
  /** Every stderr line so far. */
  lines: string[];
  /** stdout so far. */
  stdout(): string;
  /** Resolves with the first stderr line matching `pattern` (seen before or later); rejects after `ms`. */
  waitFor(pattern: RegExp, ms?: number): Promise<string>;
  /** SIGTERM (then SIGKILL after `ms`), and the exit code. */
  stop(ms?: number): Promise<number>;
  /** Resolves with the exit code when the process ends by itself. */
  exited: Promise<number>;
}

/**
 * Runs `deno run -A main.ts ARGS` in the background; `denoArgs` replaces `run -A` (to run with other
 * permissions), `prefix` runs it under another command.
 */
export function startCutcap(
  args: string[],
  options: { prefix?: string[]; denoArgs?: string[]; env?: Record<string, string> } = {},
): CutcapProcess {
  const prefix = options.prefix ?? [];
  const command = prefix.length > 0 ? prefix[0] : Deno.execPath();
  const all = [...prefix.slice(1), ...(prefix.length > 0 ? [Deno.execPath()] : [])]
    .concat([...(options.denoArgs ?? ["run", "-A"]), MAIN, ...args]);
  const process = new Deno.Command(command, {
    args: all,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    env: options.env,
  }).spawn();
  const lines: string[] = [];
  let out = "";
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const readLines = async () => {
    let pending = "";
    for await (const chunk of process.stderr) {
      pending += decoder.decode(chunk, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        for (const w of [...waiters]) {
          if (w.pattern.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
    if (pending !== "") lines.push(pending);
  };
  const readOut = async () => {
    for await (const chunk of process.stdout) out += decoder.decode(chunk, { stream: true });
  };
  const reading = Promise.all([readLines(), readOut()]);
  const exited = (async () => {
    const status = await process.status;
    await reading;
    return status.code;
  })();
  return {
    process,
    pid: process.pid,
    lines,
    stdout: () => out,
    exited,
    waitFor(pattern: RegExp, ms = 20_000): Promise<string> {
      const seen = lines.find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(`No log line matching ${pattern} within ${ms} ms; log:\n${lines.join("\n")}`),
          );
        }, ms);
        const done = Promise.race([
          exited.then(() => "exit"),
          new Promise<string>((r) => waiters.push({ pattern, resolve: r })),
        ]);
        done.then((line) => {
          clearTimeout(timer);
          if (line === "exit") {
            const late = lines.find((l) => pattern.test(l));
            if (late !== undefined) resolve(late);
            else {reject(
                new Error(`cutcap exited before logging ${pattern}; log:\n${lines.join("\n")}`),
              );}
          } else resolve(line);
        });
      });
    },
    async stop(ms = 15_000): Promise<number> {
      try {
        process.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      const timer = setTimeout(() => {
        try {
          process.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }, ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Starts `cutcap serve` on a free loopback port (or the given --listen) and waits until it serves. */
export async function startServe(
  args: string[],
): Promise<CutcapProcess & { url: string; port: number }> {
  const listen = args.includes("--listen") ? [] : ["--listen", "127.0.0.1:0"];
  const proc = startCutcap(["serve", ...listen, ...args]);
  const line = await proc.waitFor(/Serving .* on https?:\/\//);
  const m = /on (https?):\/\/(.+):(\d+)$/.exec(line)!;
  const port = Number(m[3]);
  return Object.assign(proc, { url: `${m[1]}://127.0.0.1:${port}`, port });
}

/** A free TCP port on 127.0.0.1 (free when asked; good enough for tests). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Sum of every series of a metric in Prometheus text (optionally only those with a label value). */
export function metricSum(text: string, name: string, label?: [string, string]): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (label && !(m[2] ?? "").includes(`${label[0]}="${label[1]}"`)) continue;
    sum += Number(m[3]);
  }
  return sum;
}

/** Runs a command; throws with its stderr when it fails, returns its stdout. */
export async function sh(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${decoder.decode(out.stderr).trim()}`);
  }
  return decoder.decode(out.stdout);
}

/** A namespace joined to the test's own by a veth pair; capture on `outside`, send from `inside`. */
export interface Veth {
  ns: string;
  inside: string;
  outside: string;
  /** Sends a pcap from inside the namespace with tcpreplay at `pps`; resolves when done. */
  replay(file: string, pps: number): Promise<void>;
  /** Deletes the outside end (the pair goes with it) unless gone already, and makes it again, up. */
  recreate(): Promise<void>;
  /** Removes the pair and the namespace; safe to call twice. */
  remove(): Promise<void>;
}

/** Creates namespace `cc-<tag>-<pid>` and veth pair `cc<tag>a<pid>` (inside) / `cc<tag>b<pid>`. */
export async function createVeth(tag: string): Promise<Veth> {
  const ns = `cc-${tag}-${Deno.pid}`;
  const inside = `cc${tag}a${Deno.pid}`;
  const outside = `cc${tag}b${Deno.pid}`;
  if (outside.length > 15) {
    throw new Error(`Interface name ${outside} too long: expected at most 15 characters`);
  }
  const make = async () => {
    await sh("ip", [
      ...["link", "add", outside, "mtu", "9000", "type", "veth"],
      ...["peer", "name", inside, "mtu", "9000", "netns", ns],
    ]);
    await sh("sysctl", ["-qw", `net.ipv6.conf.${outside}.disable_ipv6=1`]);
    await sh("ip", ["link", "set", outside, "up"]);
    await sh("ip", ["netns", "exec", ns, "ip", "link", "set", inside, "up"]);
  };
  const remove = async () => {
    await sh("ip", ["link", "del", outside]).catch(() => "");
    await sh("ip", ["netns", "del", ns]).catch(() => "");
  };
  try {
    await sh("ip", ["netns", "add", ns]);
    await sh("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    await sh("ip", ["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
    await make();
  } catch (error) {
    await remove();
    throw error;
  }
  return {
    ns,
    inside,
    outside,
    async replay(file: string, pps: number): Promise<void> {
      await sh("ip", ["netns", "exec", ns, "tcpreplay", "-q", `--pps=${pps}`, "-i", inside, file]);
    },
    async recreate(): Promise<void> {
      await sh("ip", ["link", "del", outside]).catch(() => ""); // may be gone already
      await make();
    },
    remove,
  };
}

/** Resident set size of process `pid` in MB (10^6 bytes), from /proc. */
export function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  return kb * 1024 / 1e6;
}

/** Polls `${url}/healthz` every `everyMs` until stopped; reports the slowest answer and failures. */
export function watchHealth(
  url: string,
  everyMs = 100,
  init: RequestInit = {},
): { stop(): Promise<{ probes: number; slowestMs: number; failures: string[] }> } {
  let running = true;
  let probes = 0;
  let slowestMs = 0;
  const failures: string[] = [];
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        const response = await fetch(`${url}/healthz`, {
          ...init,
          signal: AbortSignal.timeout(5_000),
        });
        await response.body?.cancel();
        if (response.status !== 200) failures.push(`status ${response.status}`);
      } catch (error) {
        failures.push(error instanceof Error ? error.message : String(error));
      }
      probes++;
      slowestMs = Math.max(slowestMs, performance.now() - started);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { probes, slowestMs, failures };
    },
  };
}

async function openssl(args: string[]): Promise<void> {
  await sh("openssl", args);
}

/** A CA and a server certificate for 127.0.0.1 / localhost signed by it (P-256 keys). */
export async function makeCertificates(
  dir: string,
): Promise<{ ca: string; cert: string; key: string }> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    ...["req", "-x509", ...ec, "-keyout", `${dir}/ca.key`, "-out", `${dir}/ca.pem`],
    ...["-days", "2", "-subj", "/CN=cutcap test CA"],
    ...["-addext", "basicConstraints=critical,CA:TRUE"],
    ...["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
  ]);
  await openssl([
    ...["req", ...ec, "-keyout", `${dir}/server.key`, "-out", `${dir}/server.csr`],
    ...["-subj", "/CN=127.0.0.1"],
  ]);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n" +
      "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
  await openssl([
    ...["x509", "-req", "-in", `${dir}/server.csr`, "-CA", `${dir}/ca.pem`],
    ...["-CAkey", `${dir}/ca.key`, "-CAcreateserial", "-out", `${dir}/server.pem`],
    ...["-days", "2", "-extfile", `${dir}/server.ext`],
  ]);
  return { ca: `${dir}/ca.pem`, cert: `${dir}/server.pem`, key: `${dir}/server.key` };
}
