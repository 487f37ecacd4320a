/**
 * cutcap as a running subprocess (`deno run -A main.ts ...`), for end-to-end tests that signal it,
 * watch its log lines while it runs, and scrape its HTTP server.
 */

/** How a cutcap subprocess ended. */
export interface SensorExit {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** A running cutcap. */
export interface SensorProcess {
  pid: number;
  /** Everything it wrote to stderr so far (its log). */
  log(): string;
  /** Waits until its log matches `pattern`; throws with the log when it exits or the time runs out. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends a signal (ignored when it already exited). */
  kill(signal: Deno.Signal): void;
  /** Resolves when it exits. */
  exited: Promise<SensorExit>;
}

/** Options of `startCutcap`. */
export interface StartOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
}

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Starts `cutcap ARGS` from the repository's main.ts. */
export function startCutcap(args: string[], options: StartOptions = {}): SensorProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  }).spawn();
  let err = "";
  let out = "";
  let ended = false;
  const waiters = new Set<() => void>();
  const wake = () => waiters.forEach((w) => w());
  const pump = async (stream: ReadableStream<Uint8Array>, add: (text: string) => void) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      add(text);
      wake();
    }
  };
  const pumped = Promise.all([
    pump(child.stderr, (t) => err += t),
    pump(child.stdout, (t) => out += t),
  ]);
  const exited = (async (): Promise<SensorExit> => {
    const status = await child.status;
    await pumped;
    ended = true;
    wake();
    return { code: status.code, signal: status.signal, stdout: out, stderr: err };
  })();
  return {
    pid: child.pid,
    log: () => err,
    exited,
    kill(signal: Deno.Signal): void {
      if (ended) return;
      try {
        child.kill(signal);
      } catch {
        // exited meanwhile
      }
    },
    async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = err.match(pattern);
        if (match) return match;
        if (ended) throw new Error(`cutcap exited before logging ${pattern}:\n${err}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`cutcap did not log ${pattern} in ${timeoutMs} ms:\n${err}`);
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
  };
}

/** A TCP port nobody listens on right now (for --listen). */
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
