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
  /** The worker thread's counters from go to its last file (runNs / 1e9 is goCpuSeconds). */
  goThread: ThreadSample;
  /** From go to its counters showing `expectPackets` packets (when asked for, and seen). */
  lastPacketThread?: ThreadSample;
}

const WORKER_URL = new URL("../src/worker/worker.ts", import.meta.url);

/** What the kernel counts for one thread (/proc/PID/task/TID): CPU time, page faults, sleeps. */
export interface ThreadSample {
  /** CPU time on the CPU, ns (schedstat: exact, not in ticks). */
  runNs: number;
  /** User and system seconds (stat: ticks, scaled by the kernel to the exact total). */
  user: number;
  system: number;
  /** Minor and major page faults. */
  minflt: number;
  majflt: number;
  /** Voluntary context switches (sleeps: poll, futex) and involuntary ones (preemption). */
  sleeps: number;
  preempted: number;
}

/** `after` minus `before`, field by field. */
export function sampleDelta(after: ThreadSample, before: ThreadSample): ThreadSample {
  return {
    runNs: after.runNs - before.runNs,
    user: after.user - before.user,
    system: after.system - before.system,
    minflt: after.minflt - before.minflt,
    majflt: after.majflt - before.majflt,
    sleeps: after.sleeps - before.sleeps,
    preempted: after.preempted - before.preempted,
  };
}

/** One thread's counters, or undefined when it has ended. */
export function threadSample(pid: number | "self", tid: string): ThreadSample | undefined {
  try {
    const dir = `/proc/${pid}/task/${tid}`;
    const stat = Deno.readTextFileSync(`${dir}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const status = Deno.readTextFileSync(`${dir}/status`);
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1]);
    return {
      runNs: Number(Deno.readTextFileSync(`${dir}/schedstat`).split(" ")[0]),
      user: Number(f[11]) / 100,
      system: Number(f[12]) / 100,
      minflt: Number(f[7]),
      majflt: Number(f[9]),
      sleeps: field("voluntary_ctxt_switches"),
      preempted: field("nonvoluntary_ctxt_switches"),
    };
  } catch {
    return undefined; // the thread ended meanwhile
  }
}

/** {@link threadSample} of every thread of `pid` whose name starts with `prefix`, by thread id. */
export function threadSamples(
  prefix: string,
  pid: number | "self" = "self",
): Map<string, ThreadSample> {
  const out = new Map<string, ThreadSample>();
  for (const entry of Deno.readDirSync(`/proc/${pid}/task`)) {
    let comm: string;
    try {
      comm = Deno.readTextFileSync(`/proc/${pid}/task/${entry.name}/comm`);
    } catch {
      continue;
    }
    if (!comm.startsWith(prefix)) continue;
    const sample = threadSample(pid, entry.name);
    if (sample !== undefined) out.set(entry.name, sample);
  }
  return out;
}

/**
 * user + system seconds of every thread of process `pid` (default this one) whose name starts
 * with `prefix` ("" for all), by thread id.
 */
export function threadsCpu(prefix: string, pid: number | "self" = "self"): Map<string, number> {
  const out = new Map<string, number>();
  for (const [tid, s] of threadSamples(prefix, pid)) out.set(tid, s.runNs / 1e9);
  return out;
}

/**
 * Replays `file` through one capture worker configured by `args` (cutcap capture options; --read
 * is added) and returns its timing. The output directory given by --out is left as written.
 */
export function runWorkerOnce(
  file: string,
  args: string[],
  opts: { expectPackets?: number } = {},
): Promise<WorkerRun> {
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
  let atGo: ThreadSample | undefined;
  let atEnd: ThreadSample | undefined;
  let atLastPacket: ThreadSample | undefined;
  let watch: ReturnType<typeof setInterval> | undefined;
  /** The counters of the worker thread this run started (the busiest one not there before). */
  const workerSample = (): ThreadSample | undefined => {
    let busiest: ThreadSample | undefined;
    for (const [tid, s] of threadSamples("worker")) {
      if (!before.has(tid) && (busiest === undefined || s.runNs > busiest.runNs)) busiest = s;
    }
    return busiest;
  };
  return new Promise<WorkerRun>((resolve, reject) => {
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      reject(new Error(`Worker crashed: ${event.message}`));
    };
    worker.onmessage = (event: MessageEvent<WorkerMessage>) => {
      const m = event.data;
      if (m.type === "ready") {
        atGo = workerSample();
        started = performance.now();
        const expect = opts.expectPackets;
        if (expect !== undefined) {
          // The worker publishes its counters after each batch: the first look that counts every
          // packet is within a batch and a millisecond of its last packet.
          watch = setInterval(() => {
            if (counters[Counter.PacketsSeen] < expect) return;
            atLastPacket = workerSample();
            clearInterval(watch);
          }, 1);
        }
        Atomics.store(control, Control.Go, 1);
        Atomics.notify(control, Control.Go);
      } else if (m.type === "finalized") {
        stored += m.file.packets;
        // The thread is still alive here: the last file is the last thing before "done".
        const now = workerSample();
        if (now !== undefined && (atEnd === undefined || now.runNs > atEnd.runNs)) atEnd = now;
      } else if (m.type === "fatal") {
        clearInterval(watch);
        worker.terminate();
        helper?.worker.terminate();
        reject(new Error(`Worker failed: ${m.message}`));
      } else if (m.type === "done") {
        clearInterval(watch);
        const seconds = (performance.now() - started) / 1000;
        worker.terminate();
        helper?.worker.terminate();
        const packets = counters[Counter.PacketsSeen];
        if (atGo === undefined || atEnd === undefined) {
          reject(new Error("Worker thread not found in /proc/self/task"));
          return;
        }
        const goThread = sampleDelta(atEnd, atGo);
        resolve({
          packets,
          stored,
          seconds,
          cpuSeconds: atEnd.runNs / 1e9,
          goCpuSeconds: goThread.runNs / 1e9,
          goThread,
          lastPacketThread: atLastPacket === undefined
            ? undefined
            : sampleDelta(atLastPacket, atGo),
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
