/**
 * Runs the real capture worker (src/worker/worker.ts) on a capture file inside this process and times it:
 * cutcap's in-process rate, without the process and main-thread start-up that `cutcap --read`'s
 * wall time includes. Wall time counts from the worker's go (file and output open) to its "done"
 * (last file closed, fsynced, indexed, renamed); CPU time is the worker thread's own (from
 * /proc/self/task), read as the worker finishes.
 *
 * Run alone: deno run -A bench/worker_run.ts FILE [cutcap capture options...]
 *
 * @module
 */
import { parseCaptureArgs } from "../src/config.ts";
import { allocateControl, allocateCounters, Control, Counter } from "../src/worker/counters.ts";
import type { WorkerMessage, WorkerSetup } from "../src/worker/protocol.ts";
import { BlockCompressor } from "../src/store/compressor.ts";

/** What one worker run did. */
export interface WorkerRun {
  packets: number;
  stored: number;
  /** From go to done. */
  seconds: number;
  /** The worker thread's user + system CPU seconds over its whole life (start-up included). */
  cpuSeconds: number;
  /** The same from go to its last file: the packets' cost, without loading and opening. */
  goCpuSeconds: number;
  packetsPerSecond: number;
  /** Seconds the worker spent writing indexes (its IndexBuildSeconds counter). */
  indexSeconds: number;
}

const WORKER_URL = new URL("../src/worker/worker.ts", import.meta.url);

/**
 * user + system seconds of every thread of process `pid` (default this one) whose name starts
 * with `prefix` ("" for all), by thread id.
 */
export function threadsCpu(prefix: string, pid: number | "self" = "self"): Map<string, number> {
  const out = new Map<string, number>();
  for (const entry of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/task/${entry.name}/stat`);
      const open = stat.indexOf("(");
      const close = stat.lastIndexOf(")");
      if (!stat.slice(open + 1, close).startsWith(prefix)) continue;
      const f = stat.slice(close + 2).split(" ");
      out.set(entry.name, (Number(f[11]) + Number(f[12])) / 100);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/**
 * Replays `file` through one capture worker configured by `args` (cutcap capture options; --read
 * is added) and returns its timing. The output directory given by --out is left as written.
 */
export function runWorkerOnce(file: string, args: string[]): Promise<WorkerRun> {
  const config = parseCaptureArgs(["--read", file, ...args]);
  const counters = allocateCounters();
  const control = allocateControl();
  const setup: WorkerSetup = {
    index: 0,
    label: "read",
    source: { kind: "offline", files: [file] },
    config,
    counters,
    control,
  };
  // As the main thread can: a compression helper started here, handed over with the setup.
  const helper = config.compress === "none" ? undefined : BlockCompressor.startHelper();
  if (helper !== undefined) setup.compressor = helper.setup;
  const before = threadsCpu("worker");
  const worker = new Worker(WORKER_URL, { type: "module" });
  let started = 0;
  let stored = 0;
  let cpu = 0;
  let cpuAtGo = 0;
  /** CPU seconds of the worker thread this run started (the one not there before). */
  const workerCpu = (): number => {
    let seconds = 0;
    for (const [tid, s] of threadsCpu("worker")) {
      if (!before.has(tid)) seconds = Math.max(seconds, s);
    }
    return seconds;
  };
  return new Promise<WorkerRun>((resolve, reject) => {
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      reject(new Error(`Worker crashed: ${event.message}`));
    };
    worker.onmessage = (event: MessageEvent<WorkerMessage>) => {
      const m = event.data;
      if (m.type === "ready") {
        cpuAtGo = workerCpu();
        started = performance.now();
        Atomics.store(control, Control.Go, 1);
        Atomics.notify(control, Control.Go);
      } else if (m.type === "finalized") {
        stored += m.file.packets;
        // The thread is still alive here: the last file is the last thing before "done".
        cpu = Math.max(cpu, workerCpu());
      } else if (m.type === "fatal") {
        worker.terminate();
        helper?.worker.terminate();
        reject(new Error(`Worker failed: ${m.message}`));
      } else if (m.type === "done") {
        const seconds = (performance.now() - started) / 1000;
        worker.terminate();
        helper?.worker.terminate();
        const packets = counters[Counter.PacketsSeen];
        resolve({
          packets,
          stored,
          seconds,
          cpuSeconds: cpu,
          goCpuSeconds: cpu - cpuAtGo,
          packetsPerSecond: packets / seconds,
          indexSeconds: counters[Counter.IndexBuildSeconds],
        });
      }
    };
    worker.postMessage(setup);
  });
}

if (import.meta.main) {
  const [file, ...rest] = Deno.args;
  if (file === undefined) throw new Error("Missing FILE: expected a pcap file to replay");
  const out = await Deno.makeTempDir({ prefix: "cutcap-worker-run-" });
  try {
    const runs = Number(Deno.env.get("RUNS") ?? 3);
    for (let r = 0; r < runs; r++) {
      await Deno.remove(out, { recursive: true }).catch(() => {});
      const run = await runWorkerOnce(file, ["--out", out, "--byte-cutoff", "65536", ...rest]);
      console.log(
        `${run.packets} packets, ${run.stored} stored, ${run.seconds.toFixed(3)} s, cpu ` +
          `${run.cpuSeconds.toFixed(2)} s, ${
            (run.packetsPerSecond / 1e3).toFixed(0)
          } kpps, index ` +
          `${(run.indexSeconds * 1000).toFixed(0)} ms`,
      );
    }
  } finally {
    await Deno.remove(out, { recursive: true }).catch(() => {});
  }
}
