/**
 * Processes and ports for tests: commands run to completion (`sh`, `shell`), cutcap running in the
 * background (`startCutcap`) whose log lines a test waits for, cutcap's servers (`startServer`,
 * `startServe`) on a loopback port, and a free port for a child to bind.
 */

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

/** Runs a command; throws with its stderr when it fails, returns its stdout. */
export async function sh(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${decoder.decode(out.stderr).trim()}`);
  }
  return decoder.decode(out.stdout);
}

/** Result of a shell script. */
export interface ShellResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

/** Runs `sh -c script` and returns its exit code and output, whether it failed or not. */
export async function shell(script: string): Promise<ShellResult> {
  const r = await new Deno.Command("sh", { args: ["-c", script], stdout: "piped", stderr: "piped" })
    .output();
  return { code: r.code, stdout: r.stdout, stderr: decoder.decode(r.stderr) };
}

/** Quotes a path for sh. */
export function q(path: string): string {
  return `'${path.replaceAll("'", "'\\''")}'`;
}

/** A TCP port on 127.0.0.1 nobody listens on right now (closed again at once, so a child can bind it). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How a cutcap subprocess ended. */
export interface CutcapExit {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** A cutcap running in the background. */
export interface CutcapProcess {
  process: Deno.ChildProcess;
  pid: number;
  /** Every complete stderr line so far. */
  lines: string[];
  /** Everything it wrote to stderr so far (its log). */
  log(): string;
  /** Everything it wrote to stdout so far. */
  stdout(): string;
  /** True while it has not exited. */
  alive(): boolean;
  /**
   * Resolves with the first stderr line matching `pattern` (seen before or later); rejects with the
   * log when it exits first or `ms` pass.
   */
  waitFor(pattern: RegExp, ms?: number): Promise<string>;
  /** Sends a signal (ignored when it already exited). */
  kill(signal: Deno.Signal): void;
  /** SIGTERM (then SIGKILL after `ms`), and the exit code. */
  stop(ms?: number): Promise<number>;
  /** Resolves when it exits, its output read to the end. */
  exited: Promise<CutcapExit>;
}

/** Options of `startCutcap`. */
export interface StartOptions {
  /** Runs it under another command (e.g. `["setpriv", "--reuid=nobody"]`). */
  prefix?: string[];
  /** Replaces `run -A` (to run with other permissions). */
  denoArgs?: string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** Starts `deno run -A main.ts ARGS` in the background. */
export function startCutcap(args: string[], options: StartOptions = {}): CutcapProcess {
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
  let err = "";
  let out = "";
  let ended = false;
  const waiters = new Set<() => void>();
  const wake = () => waiters.forEach((w) => w());
  const readErr = async () => {
    let pending = "";
    for await (const text of process.stderr.pipeThrough(new TextDecoderStream())) {
      err += text;
      pending += text;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      lines.push(...parts);
      wake();
    }
    if (pending !== "") lines.push(pending);
  };
  const readOut = async () => {
    for await (const text of process.stdout.pipeThrough(new TextDecoderStream())) out += text;
  };
  const reading = Promise.all([readErr(), readOut()]);
  const exited = (async (): Promise<CutcapExit> => {
    const status = await process.status;
    await reading;
    ended = true;
    wake();
    return { code: status.code, signal: status.signal, stdout: out, stderr: err };
  })();
  const kill = (signal: Deno.Signal): void => {
    if (ended) return;
    try {
      process.kill(signal);
    } catch {
      // Exited meanwhile.
    }
  };
  return {
    process,
    pid: process.pid,
    lines,
    log: () => err,
    stdout: () => out,
    alive: () => !ended,
    exited,
    kill,
    async waitFor(pattern: RegExp, ms = 30_000): Promise<string> {
      const deadline = Date.now() + ms;
      for (let seen = 0;;) {
        for (; seen < lines.length; seen++) if (pattern.test(lines[seen])) return lines[seen];
        if (ended) throw new Error(`cutcap exited before logging ${pattern}; log:\n${err}`);
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(`No log line matching ${pattern} within ${ms} ms; log:\n${err}`);
        }
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            waiters.delete(done);
            resolve();
          };
          const timer = setTimeout(done, Math.min(left, 500));
          waiters.add(done);
        });
      }
    },
    async stop(ms = 15_000): Promise<number> {
      kill("SIGTERM");
      const timer = setTimeout(() => kill("SIGKILL"), ms);
      const { code } = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** A cutcap server (serve, fleet) and where it answers. */
export interface ServerProcess extends CutcapProcess {
  /** Base URL on 127.0.0.1, e.g. http://127.0.0.1:40123 (https with --tls-cert). */
  url: string;
  port: number;
}

/** The line a server logs once it listens: `Serving … on URL` or `Fleet coordinator on URL …`. */
const LISTENING = /(?:^|\s)(?:Serving .*|Fleet coordinator) on (https?):\/\/\S*?:(\d+)(?:\s|$)/;

/**
 * Starts `cutcap ARGS` (a server command) listening on 127.0.0.1:`port` (default: a port the
 * kernel picks, read from its log) unless ARGS give --listen; resolves once it says where it serves.
 */
export async function startServer(
  args: string[],
  options: StartOptions & { port?: number } = {},
): Promise<ServerProcess> {
  const listen = args.includes("--listen") ? [] : ["--listen", `127.0.0.1:${options.port ?? 0}`];
  const proc = startCutcap([...args, ...listen], options);
  let line: string;
  try {
    line = await proc.waitFor(LISTENING);
  } catch (error) {
    await proc.stop(1_000);
    throw error;
  }
  const [, scheme, port] = LISTENING.exec(line)!;
  return Object.assign(proc, { url: `${scheme}://127.0.0.1:${port}`, port: Number(port) });
}

/** Starts `cutcap serve --out OUTDIR EXTRA` (see `startServer`). */
export function startServe(
  outDir: string,
  extra: string[] = [],
  options: StartOptions & { port?: number } = {},
): Promise<ServerProcess> {
  return startServer(["serve", "--out", outDir, ...extra], options);
}
