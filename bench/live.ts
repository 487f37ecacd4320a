/**
 * Live capture: a prefix of the bench capture is sent with tcpreplay at rising rates from inside a
 * network namespace onto a veth pair (MTU 9000, IPv6 off, no addresses, so nothing else crosses
 * it), and captured on the outside end by tcpdump and by cutcap with each capture method
 * (afpacket, libpcap) and 1 and 2 workers. A trial has no loss when the capturer saw every packet
 * tcpreplay sent and the kernel reports no drop; the result per capturer is the highest rate (as
 * tcpreplay achieved it) without loss. cutcap is also tried at the highest rate tcpdump sustained.
 * With two or more CPUs, tcpreplay runs on CPU 0 and the capturer on CPU 1 (taskset), so the
 * sender gets the same CPU next to every capturer.
 *
 * CPU per packet (the issue 17 target): interleaved rounds at one fixed rate (150 kpps), each
 * round running every variant once in a rotated order: cutcap's offline cost (the capture worker
 * reading the same packets from the file, bench/worker_run.ts, in a child process), the same
 * worker paced as live (reading them through a FIFO a pacer fills at the live rate, 1 MiB at a
 * time: see OfflineKind), tcpdump, and cutcap with each capture method (1 worker), all on CPU 1 at
 * `nice -n -5`. For each trial the kernel's counters of the capturing thread (cutcap's capture
 * worker, tcpdump's only thread) are read just before the replay, once every packet is handled
 * (offline: from go to its last packet) and at the end (cutcap is stopped then and followed until
 * its worker has written and indexed its last file, as the offline worker does): CPU time in ns
 * (schedstat), the user/system split, minor page faults and sleeps (voluntary context switches:
 * poll, futex). The report gives medians over the rounds per packet, and afpacket's median against
 * the offline medians on the same work, unpaced and paced.
 *
 * `--variant LABEL=KIND[@ROOT] [ARGS…]` (repeated) replaces the live variants (offline stays) with
 * these: KIND offline, offline-paced, offline-beside-sender, tcpdump, afpacket or libpcap; ROOT
 * another checkout of cutcap, to compare a change in the same run; ARGS more cutcap options (e.g.
 * --buffer-size 8MiB).
 *
 * Needs root (namespaces). Run alone: deno run -A bench/live.ts FILE [--packets N] [--rates a,b,..|none]
 * [--workers 1,2] [--methods afpacket,libpcap] [--cpu-rate N] [--rounds N] [--cpu-packets N]
 * [--variant SPEC]… (a rate of 0 is tcpreplay --topspeed).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { closeFd, openFifoWriter, writeSome } from "../ffi/libc.ts";
import type { CaptureMethod } from "../src/capture/source.ts";
import { metricSum } from "../tests/support/robustness.ts";
import {
  runWorkerOnce,
  sampleDelta,
  type ThreadSample,
  threadSample,
  threadSamples,
} from "./worker_run.ts";

/**
 * How the offline worker gets its packets: from the file at full speed; `offline-paced`: through a
 * FIFO that a pacer on CPU 0 fills at the live trials' rate, 1 MiB at a time (a ring block's worth),
 * so the same reader works in bursts and sleeps between them as a live worker does;
 * `offline-beside-sender`: from the file at full speed while the sender replays the packets onto
 * the veth at the live rate (nobody capturing them), so the neighbour CPU is as busy as live.
 */
export type OfflineKind = "offline" | "offline-paced" | "offline-beside-sender";
const OFFLINE_KINDS: readonly string[] = ["offline", "offline-paced", "offline-beside-sender"];

/** One send-and-capture trial. */
export interface LiveTrial {
  /** Asked rate in packets/s, 0 = --topspeed. */
  askedPps: number;
  /** Rate tcpreplay reports it achieved. */
  achievedPps: number;
  achievedMbps: number;
  sent: number;
  /** Packets the capturer saw (cutcap: its stats lines; tcpdump: "packets captured"). */
  seen: number;
  /** Kernel drops libpcap reports (cutcap: dropped + ifdropped over its workers). */
  dropped: number;
  /** No drop and nothing missing. */
  lossless: boolean;
  /** The capturer process's CPU seconds (user + system) from the replay's start to its last packet. */
  cpuSeconds: number;
  /** The same for the capturing threads (cutcap's capture workers, summed; tcpdump's thread). */
  thread: ThreadSample;
  /**
   * The capturing threads from the replay's start to their end (the capture stopped once every
   * packet was seen: cutcap's last file flushed, indexed and renamed, as offline); tcpdump: thread.
   */
  threadToEnd: ThreadSample;
}

/** Trials of one capturer, in rising rate order. */
export interface CapturerResult {
  name: string;
  trials: LiveTrial[];
  /** The best lossless trial (highest achieved rate), undefined when none was. */
  best: LiveTrial | undefined;
}

/** A way of capturing whose CPU per packet the rounds compare. */
export interface CpuVariant {
  label: string;
  /** cutcap offline (the worker reading the file), tcpdump, or cutcap live with this method. */
  kind: OfflineKind | "tcpdump" | "gotm" | CaptureMethod;
  /** The cutcap checkout to run (default this one). */
  root?: string;
  /** More cutcap options. */
  args?: string[];
}

/** One variant's trial in a CPU round. */
export interface CpuTrial {
  /** Packets the capturing thread handled (offline: read from the file). */
  packets: number;
  /** The rate tcpreplay achieved; NaN offline. */
  achievedPps: number;
  lossless: boolean;
  /** The capturing thread's counters over the packets (live: to the last packet seen). */
  thread: ThreadSample;
  /** Live: to the thread's end, its last file written and indexed (offline: as `thread`). */
  threadToEnd: ThreadSample;
}

/** A variant's trials over the rounds. */
export interface CpuVariantResult {
  variant: CpuVariant;
  trials: CpuTrial[];
}

/** Options of {@link runLiveBench}. */
export interface LiveBenchOptions {
  /** Packets sent per trial (a prefix of the file), default 200000. */
  packets?: number;
  /** Rates to try in packets/s, rising; 0 = topspeed; [] for none. Default 50k, 100k, 150k, 200k, topspeed. */
  rates?: number[];
  /** cutcap worker counts to try, default 1 and 2. */
  workers?: number[];
  /** cutcap capture methods to try, default afpacket and libpcap. */
  methods?: CaptureMethod[];
  /** The rate of the CPU rounds, packets/s, default 150000. */
  cpuRate?: number;
  /** CPU rounds (every variant once per round, interleaved), default 5; 0 for none. */
  rounds?: number;
  /** Packets per CPU trial, default `packets`. */
  cpuPackets?: number;
  /** Variants of the CPU rounds, default offline, tcpdump and each method with 1 worker. */
  variants?: CpuVariant[];
  /** Kernel buffer for every capturer, MiB (cutcap --buffer-size, tcpdump -B), default 64. */
  bufferMiB?: number;
  /** Repository root holding main.ts, default the parent of this file's folder. */
  root?: string;
  progress?: (line: string) => void;
}

/** Result of {@link runLiveBench}. */
export interface LiveBenchResult {
  packets: number;
  bytes: number;
  capturers: CapturerResult[];
  cpuRate: number;
  cpuPackets: number;
  cpu: CpuVariantResult[];
  /** Load average (1, 5, 15 min) before the CPU rounds and after them. */
  loadBefore: string;
  loadAfter: string;
}

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const decoder = new TextDecoder();

async function sh(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${decoder.decode(out.stderr).trim()}`);
  }
  return decoder.decode(out.stdout);
}

/** Copies the first `packets` records of a little-endian pcap into `out`; returns their bytes. */
export function pcapPrefix(file: string, out: string, packets: number): number {
  const src = Deno.openSync(file, { read: true });
  const dst = Deno.openSync(out, { write: true, create: true, truncate: true });
  try {
    const buf = new Uint8Array(8 << 20);
    const dv = new DataView(buf.buffer);
    let have = 0;
    let pos = 0;
    let count = 0;
    let bytes = 0;
    let headerDone = false;
    const writeAll = (b: Uint8Array): void => {
      let off = 0;
      while (off < b.length) off += dst.writeSync(b.subarray(off));
    };
    for (;;) {
      buf.copyWithin(0, pos, have);
      have -= pos;
      pos = 0;
      const n = src.readSync(buf.subarray(have));
      if (n === null || n === 0) break;
      have += n;
      let start = pos;
      if (!headerDone) {
        pos = 24;
        headerDone = true;
      }
      while (count < packets && have - pos >= 16) {
        const caplen = dv.getUint32(pos + 8, true);
        if (have - pos < 16 + caplen) break;
        bytes += 16 + caplen;
        pos += 16 + caplen;
        count++;
      }
      writeAll(buf.subarray(start, pos));
      start = pos;
      if (count === packets) break;
    }
    return bytes;
  } finally {
    src.close();
    dst.close();
  }
}

/** A namespace with a veth pair; tcpreplay sends on `inside`, capturers listen on `outside`. */
interface Veth {
  ns: string;
  inside: string;
  outside: string;
  remove(): Promise<void>;
}

async function createVeth(): Promise<Veth> {
  const ns = `cc-bench-${Deno.pid}`;
  const inside = `ccbna${Deno.pid}`.slice(0, 15);
  const outside = `ccbnb${Deno.pid}`.slice(0, 15);
  const remove = async (): Promise<void> => {
    await sh("ip", ["link", "del", outside]).catch(() => "");
    await sh("ip", ["netns", "del", ns]).catch(() => "");
  };
  try {
    await sh("ip", ["netns", "add", ns]);
    await sh("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    await sh("ip", [
      ...["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
    ]);
    await sh("ip", [
      ...["link", "add", outside, "mtu", "9000", "type", "veth"],
      ...["peer", "name", inside, "mtu", "9000", "netns", ns],
    ]);
    await sh("sysctl", ["-qw", `net.ipv6.conf.${outside}.disable_ipv6=1`]);
    await sh("ip", ["link", "set", outside, "up"]);
    await sh("ip", ["netns", "exec", ns, "ip", "link", "set", inside, "up"]);
  } catch (error) {
    await remove();
    throw error;
  }
  return { ns, inside, outside, remove };
}

/** Capturers run at this nice value: other work on the machine takes less of their CPU. */
const CAPTURER_NICE = -5;

/** CPU pinning: tcpreplay on CPU 0, capturers on CPU 1; off on a single CPU. */
const PIN = navigator.hardwareConcurrency >= 2;

/** `cmd args` run on `cpu` when pinning is on (taskset execs the command: same process). */
function onCpu(cpu: number, cmd: string, args: string[]): [string, string[]] {
  return PIN ? ["taskset", ["-c", String(cpu), cmd, ...args]] : [cmd, args];
}

/** Sends `file` from inside the namespace; returns tcpreplay's counts and achieved rate. */
async function replay(
  veth: Veth,
  file: string,
  pps: number,
): Promise<{ sent: number; pps: number; mbps: number }> {
  const rate = pps > 0 ? `--pps=${pps}` : "--topspeed";
  const out = await sh(
    ...onCpu(0, "ip", ["netns", "exec", veth.ns, "tcpreplay", rate, "-i", veth.inside, file]),
  );
  const sent = /Successful packets:\s+(\d+)/.exec(out);
  const rated = /Rated: [\d.]+ Bps, ([\d.]+) Mbps, ([\d.]+) pps/.exec(out);
  if (sent === null || rated === null) throw new Error(`Unexpected tcpreplay output: ${out}`);
  return { sent: Number(sent[1]), pps: Number(rated[2]), mbps: Number(rated[1]) };
}

/** Starts a capturer on CPU 1 (see onCpu), collecting its stderr lines as they come. */
function startCapturer(
  cmd: string,
  args: string[],
): { child: Deno.ChildProcess; lines: string[]; done: Promise<void> } {
  const [program, programArgs] = onCpu(1, "nice", ["-n", String(CAPTURER_NICE), cmd, ...args]);
  const child = new Deno.Command(program, {
    args: programArgs,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  return { child, ...collectLines(child.stderr) };
}

/** Collects a child's stderr lines as they come. */
function collectLines(
  stream: ReadableStream<Uint8Array>,
): { lines: string[]; done: Promise<void> } {
  const lines: string[] = [];
  const done = (async () => {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop() ?? "";
      lines.push(...parts);
    }
    if (rest !== "") lines.push(rest);
  })();
  return { lines, done };
}

async function waitFor(
  lines: string[],
  pattern: RegExp,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!lines.some((l) => pattern.test(l))) {
    if (Date.now() > until) {
      throw new Error(`${what}: expected a line matching ${pattern}, found: ${lines.join(" | ")}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Per worker totals from cutcap's stats lines: packets (sum of pkts), last dropped + ifdropped. */
function cutcapTotals(lines: string[]): { seen: number; dropped: number; statsLines: number } {
  const seen = new Map<string, number>();
  const dropped = new Map<string, number>();
  let statsLines = 0;
  for (const line of lines) {
    const m = / W=(\d+) .* pkts=(\d+) .* dropped=(\d+) ifdropped=(\d+)/.exec(line);
    if (m === null) continue;
    statsLines++;
    seen.set(m[1], (seen.get(m[1]) ?? 0) + Number(m[2]));
    dropped.set(m[1], Number(m[3]) + Number(m[4]));
  }
  let s = 0;
  let d = 0;
  for (const v of seen.values()) s += v;
  for (const v of dropped.values()) d += v;
  return { seen: s, dropped: d, statsLines };
}

/** Sums of the seen and dropped counters over all workers in a --metrics-file; null without it. */
function metricTotals(path: string): { seen: number; dropped: number } | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return null;
  }
  const sum = (name: string) => metricSum(text, name);
  return {
    seen: sum("cutcap_packets_seen_total"),
    dropped: sum("cutcap_pcap_dropped_total") + sum("cutcap_pcap_ifdropped_total"),
  };
}

/** The capturer's CPU seconds so far (user + system of every thread, ended ones included). */
function processCpu(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

const ZERO: ThreadSample = {
  runNs: 0,
  user: 0,
  system: 0,
  minflt: 0,
  majflt: 0,
  sleeps: 0,
  preempted: 0,
};

/** Sum of `after - before` over the threads in `after` (a thread new since `before` counts whole). */
function threadsDelta(
  after: Map<string, ThreadSample>,
  before: Map<string, ThreadSample>,
): ThreadSample {
  let sum = ZERO;
  for (const [tid, a] of after) {
    const d = sampleDelta(a, before.get(tid) ?? ZERO);
    sum = {
      runNs: sum.runNs + d.runNs,
      user: sum.user + d.user,
      system: sum.system + d.system,
      minflt: sum.minflt + d.minflt,
      majflt: sum.majflt + d.majflt,
      sleeps: sum.sleeps + d.sleeps,
      preempted: sum.preempted + d.preempted,
    };
  }
  return sum;
}

/**
 * The threads of `pid` in `threads` sampled every 2 ms until they have all ended (at most 60 s):
 * the last sample of each (up to 2 ms of CPU time short).
 */
async function lastSamples(
  pid: number,
  threads: Map<string, ThreadSample>,
): Promise<Map<string, ThreadSample>> {
  const last = new Map(threads);
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    let alive = 0;
    for (const tid of threads.keys()) {
      const sample = threadSample(pid, tid);
      if (sample === undefined) continue;
      last.set(tid, sample);
      alive++;
    }
    if (alive === 0) break;
    await sleep(2);
  }
  return last;
}

/** What cutcapTrial runs: a method, worker count, checkout and extra options. */
interface CutcapRun {
  method: CaptureMethod;
  workers: number;
  root: string;
  args: string[];
  bufferMiB: number;
  outDir: string;
}

async function cutcapTrial(
  veth: Veth,
  file: string,
  pps: number,
  run: CutcapRun,
): Promise<LiveTrial> {
  await Deno.remove(run.outDir, { recursive: true }).catch(() => {});
  const { child, lines, done } = startCapturer("deno", [
    ...["run", "-A", `${run.root}/main.ts`, "--interface", veth.outside],
    ...["--capture-method", run.method],
    ...["--workers", String(run.workers), "--out", run.outDir, "--byte-cutoff", "65536"],
    ...["--buffer-size", `${run.bufferMiB}MiB`, "--listen", "off", "--stats-interval", "0.2s"],
    ...["--metrics-file", `${run.outDir}.prom`],
    ...run.args,
  ]);
  try {
    await waitFor(lines, /Capturing on/, 20_000, "cutcap start");
    const before = threadSamples("worker", child.pid);
    const cpuBefore = processCpu(child.pid);
    const sent = await replay(veth, file, pps);
    // The counters are read as soon as the stats lines count every packet sent (idle time after
    // it is not the packets'), and the capture stopped then; when packets are missing, once the
    // totals stop moving (two stats lines in a row with the same totals).
    let after: Map<string, ThreadSample> | undefined;
    let cpuAfter = NaN;
    let last = -1;
    for (let i = 0; i < 100 && after === undefined; i++) {
      await sleep(100);
      const now = cutcapTotals(lines).seen;
      if (now >= sent.sent) {
        after = threadSamples("worker", child.pid);
        cpuAfter = processCpu(child.pid);
      }
      if (i % 4 === 3) {
        if (now === last && now > 0) break;
        last = now;
      }
    }
    after ??= threadSamples("worker", child.pid);
    if (Number.isNaN(cpuAfter)) cpuAfter = processCpu(child.pid);
    child.kill("SIGINT");
    // Until the worker threads end: their last file flushed, indexed and renamed, as the
    // offline worker's cost includes its last file.
    const atEnd = await lastSamples(child.pid, after);
    await child.status;
    await done;
    // The final counters (every packet handled before the stop) are in the metrics file;
    // the stats lines only show them up to the last interval.
    const totals = metricTotals(`${run.outDir}.prom`) ?? cutcapTotals(lines);
    return {
      askedPps: pps,
      achievedPps: sent.pps,
      achievedMbps: sent.mbps,
      sent: sent.sent,
      seen: totals.seen,
      dropped: totals.dropped,
      lossless: totals.dropped === 0 && totals.seen >= sent.sent,
      cpuSeconds: cpuAfter - cpuBefore,
      thread: threadsDelta(after, before),
      threadToEnd: threadsDelta(atEnd, before),
    };
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
    throw error;
  }
}

async function tcpdumpTrial(
  veth: Veth,
  file: string,
  pps: number,
  opts: { bufferMiB: number; outFile: string },
): Promise<LiveTrial> {
  const { child, lines, done } = startCapturer("tcpdump", [
    ...["-i", veth.outside, "-B", String(opts.bufferMiB * 1024), "-w", opts.outFile],
  ]);
  try {
    await waitFor(lines, /listening on/, 10_000, "tcpdump start");
    const tid = String(child.pid);
    const before = threadSample(child.pid, tid) ?? ZERO;
    const cpuBefore = processCpu(child.pid);
    const sent = await replay(veth, file, pps);
    // Its ring blocks are handed over after 1 s at the latest.
    await sleep(1500);
    const after = threadSample(child.pid, tid) ?? ZERO;
    const cpu = processCpu(child.pid) - cpuBefore;
    child.kill("SIGINT");
    await child.status;
    await done;
    const text = lines.join("\n");
    const captured = Number(/(\d+) packets? captured/.exec(text)?.[1] ?? -1);
    const dropped = Number(/(\d+) packets? dropped by kernel/.exec(text)?.[1] ?? -1);
    return {
      askedPps: pps,
      achievedPps: sent.pps,
      achievedMbps: sent.mbps,
      sent: sent.sent,
      seen: captured,
      dropped,
      lossless: dropped === 0 && captured >= sent.sent,
      cpuSeconds: cpu,
      thread: sampleDelta(after, before),
      threadToEnd: sampleDelta(after, before),
    };
  } finally {
    await Deno.remove(opts.outFile).catch(() => {});
  }
}

/**
 * The gotm executable the rate scan and the CPU rounds compare (where built: it is not packaged):
 * `$GOTM`, else `gotm` on the PATH; "" when there is none. Looked up once.
 */
function gotmBinary(): string {
  gotmPath ??= findGotm();
  return gotmPath;
}
let gotmPath: string | undefined;

function findGotm(): string {
  const candidates = [
    Deno.env.get("GOTM") ?? "",
    ...(Deno.env.get("PATH") ?? "").split(":").map((dir) => `${dir}/gotm`),
  ];
  for (const path of candidates) {
    try {
      if (path !== "" && Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  return "";
}

/** gotm's Prometheus endpoint in a trial: loopback only. */
const GOTM_METRICS = "127.0.0.1:19180";

/**
 * gotm (libpcap through gopacket, one capture goroutine locked to its thread, a writer goroutine)
 * capturing everything (`-filter ""`) with the byte cutoff cutcap uses. Its CPU is every thread of
 * the process (the Go runtime's included); it counts in `gotm_packet_count` every 5000 packets, so
 * the trial sends a multiple of 5000.
 */
async function gotmTrial(
  veth: Veth,
  file: string,
  pps: number,
  opts: { binary: string; outDir: string },
): Promise<LiveTrial> {
  await Deno.remove(opts.outDir, { recursive: true }).catch(() => {});
  await Deno.mkdir(opts.outDir, { recursive: true });
  const { child, lines, done } = startCapturer(opts.binary, [
    ...["-interface", veth.outside, "-filter", "", "-write", opts.outDir],
    ...["-bytecutoff", "65536", "-packetcutoff", "1000000000"],
    ...["-metrics-address", GOTM_METRICS],
  ]);
  try {
    await waitFor(lines, /Starting worker/, 10_000, "gotm start");
    await sleep(300); // its handle open and its filter set
    const before = threadSamples("", child.pid);
    const cpuBefore = processCpu(child.pid);
    const sent = await replay(veth, file, pps);
    let counts = await gotmCounts();
    for (let i = 0; i < 50 && counts.seen < sent.sent; i++) {
      await sleep(100);
      counts = await gotmCounts();
    }
    const after = threadSamples("", child.pid);
    const cpu = processCpu(child.pid) - cpuBefore;
    return {
      askedPps: pps,
      achievedPps: sent.pps,
      achievedMbps: sent.mbps,
      sent: sent.sent,
      seen: counts.seen,
      dropped: counts.dropped,
      lossless: counts.dropped === 0 && counts.seen >= sent.sent,
      cpuSeconds: cpu,
      thread: threadsDelta(after, before),
      threadToEnd: threadsDelta(after, before),
    };
  } finally {
    child.kill("SIGINT");
    await child.status;
    await done;
    await Deno.remove(opts.outDir, { recursive: true }).catch(() => {});
  }
}

/** gotm's packet and kernel drop counts from its metrics (0 before its first 5000 packets). */
async function gotmCounts(): Promise<{ seen: number; dropped: number }> {
  const text = await (await fetch(`http://${GOTM_METRICS}/metrics`)).text();
  const sum = (name: string) => metricSum(text, name);
  return {
    seen: sum("gotm_packet_count"),
    dropped: sum("gotm_packet_nic_dropped") + sum("gotm_packet_nic_if_dropped"),
  };
}

/**
 * cutcap's offline cost: the capture worker reading `file` (the packets the live trials send) in
 * a child process on the capturer's CPU, from its go to its last file, byte cutoff as live.
 */
async function offlineTrial(
  file: string,
  packets: number,
  ctx: { outDir: string; root: string; args: string[] },
): Promise<CpuTrial> {
  const { outDir, root, args } = ctx;
  await Deno.remove(outDir, { recursive: true }).catch(() => {});
  const [program, programArgs] = onCpu(1, "nice", [
    ...["-n", String(CAPTURER_NICE), "deno", "run", "-A", `${root}/bench/live.ts`],
    ...[OFFLINE_CHILD, file, outDir, String(packets), ...args],
  ]);
  const out = JSON.parse(await sh(program, programArgs)) as OfflineChildResult;
  await Deno.remove(outDir, { recursive: true }).catch(() => {});
  return {
    packets: out.packets,
    achievedPps: NaN,
    lossless: true,
    thread: out.lastPacketThread ?? out.goThread,
    threadToEnd: out.goThread,
  };
}

/** What the offline child prints (JSON). */
interface OfflineChildResult {
  packets: number;
  goThread: ThreadSample;
  /** From go to the last packet handled (before its last file is written and indexed). */
  lastPacketThread?: ThreadSample;
}

/**
 * The offline child: one worker run over `file` (`packets` records), its packets and thread
 * counters as JSON on stdout.
 */
async function offlineChild(
  file: string,
  packets: number,
  ctx: { outDir: string; args: string[] },
): Promise<void> {
  const { outDir, args } = ctx;
  const run = await runWorkerOnce(file, ["--out", outDir, "--byte-cutoff", "65536", ...args], {
    expectPackets: packets,
  });
  const result: OfflineChildResult = {
    packets: run.packets,
    goThread: run.goThread,
    lastPacketThread: run.lastPacketThread,
  };
  console.log(JSON.stringify(result));
}

const OFFLINE_CHILD = "--offline-child";
const PACER_CHILD = "--pacer-child";
/** The sender runs this long before the offline worker starts beside it (steady state). */
const SENDER_SETTLE_MS = 300;
/** The pacer's piece and pipe size: the offline reader wakes once per 1 MiB, as per ring block. */
const PACER_PIECE = 1 << 20;

/**
 * The offline worker reading `file` through a FIFO that a pacer child on CPU 0 fills at `pps`
 * (the file's bytes spread evenly over packets / pps seconds).
 */
async function pacedOfflineTrial(
  file: string,
  pps: number,
  ctx: { work: string; packets: number; root: string; args: string[] },
): Promise<CpuTrial> {
  const fifo = `${ctx.work}/paced.fifo`;
  await Deno.remove(fifo).catch(() => {});
  await sh("mkfifo", [fifo]);
  const bytesPerSecond = Deno.statSync(file).size * pps / ctx.packets;
  const [program, programArgs] = onCpu(0, "deno", [
    ...["run", "-A", `${ctx.root}/bench/live.ts`, PACER_CHILD, file, fifo],
    String(bytesPerSecond),
  ]);
  const pacer = new Deno.Command(program, { args: programArgs, stdout: "null" }).spawn();
  let read = false;
  try {
    const outDir = `${ctx.work}/out`;
    const trial = await offlineTrial(fifo, ctx.packets, { outDir, root: ctx.root, args: ctx.args });
    read = true;
    return trial;
  } finally {
    // A reader that failed may never have opened the FIFO, which the pacer waits for.
    if (!read) pacer.kill("SIGKILL");
    await pacer.status;
    await Deno.remove(fifo).catch(() => {});
  }
}

/** The pacer child: writes `file` into `fifo` in 1 MiB pieces at `bytesPerSecond`. */
async function pacerChild(file: string, fifo: string, bytesPerSecond: number): Promise<void> {
  const data = Deno.readFileSync(file);
  const fd = openFifoWriter(fifo, PACER_PIECE);
  try {
    const start = performance.now();
    for (let sent = 0; sent < data.length;) {
      sent += writeSome(fd, data.subarray(sent, Math.min(sent + PACER_PIECE, data.length)));
      const wait = start + sent / bytesPerSecond * 1000 - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  } finally {
    closeFd(fd);
  }
}

/** One trial of `v` at `pps` as a CpuTrial. */
async function cpuTrial(
  v: CpuVariant,
  veth: Veth,
  file: string,
  pps: number,
  ctx: { root: string; bufferMiB: number; work: string; packets: number },
): Promise<CpuTrial> {
  const root = v.root ?? ctx.root;
  const args = v.args ?? [];
  if (v.kind === "offline") {
    return offlineTrial(file, ctx.packets, { outDir: `${ctx.work}/out`, root, args });
  }
  if (v.kind === "offline-paced") return pacedOfflineTrial(file, pps, { ...ctx, root, args });
  if (v.kind === "offline-beside-sender") {
    const sending = replay(veth, file, pps);
    await new Promise((resolve) => setTimeout(resolve, SENDER_SETTLE_MS));
    const t = await offlineTrial(file, ctx.packets, { outDir: `${ctx.work}/out`, root, args });
    await sending;
    return t;
  }
  const t = v.kind === "tcpdump"
    ? await tcpdumpTrial(veth, file, pps, {
      bufferMiB: ctx.bufferMiB,
      outFile: `${ctx.work}/t.pcap`,
    })
    : v.kind === "gotm"
    ? await gotmTrial(veth, file, pps, { binary: v.root ?? gotmBinary(), outDir: `${ctx.work}/g` })
    : await cutcapTrial(veth, file, pps, {
      method: v.kind,
      workers: 1,
      root,
      args,
      bufferMiB: ctx.bufferMiB,
      outDir: `${ctx.work}/out`,
    });
  return {
    packets: t.seen,
    achievedPps: t.achievedPps,
    lossless: t.lossless,
    thread: t.thread,
    threadToEnd: t.threadToEnd,
  };
}

/** `rounds` rounds of every variant once, each round in another (rotated) order. */
async function cpuRounds(
  variants: CpuVariant[],
  rounds: number,
  run: (v: CpuVariant) => Promise<CpuTrial>,
  progress: (line: string) => void,
): Promise<CpuVariantResult[]> {
  const results = variants.map((variant) => ({ variant, trials: [] as CpuTrial[] }));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < results.length; k++) {
      const result = results[(k + r) % results.length];
      const t = await run(result.variant);
      result.trials.push(t);
      const per = perPacket(t);
      progress(
        `live cpu round ${r + 1}/${rounds}: ${result.variant.label}: ${t.packets} packets` +
          `${Number.isNaN(t.achievedPps) ? "" : ` at ${(t.achievedPps / 1e3).toFixed(0)} kpps`}` +
          `${t.lossless ? "" : " (LOSS)"}, ${per.cpuUs.toFixed(3)} µs/packet (user ` +
          `${per.userUs.toFixed(3)}, system ${per.systemUs.toFixed(3)}), ` +
          `${per.faultsPerK.toFixed(2)} minor faults and ${per.sleepsPerK.toFixed(2)} sleeps ` +
          `per 1000; to the end ${per.toEndUs.toFixed(3)} µs/packet`,
      );
    }
  }
  return results;
}

/** A trial's counters per packet. */
function perPacket(t: CpuTrial) {
  const n = t.packets > 0 ? t.packets : NaN;
  return {
    cpuUs: t.thread.runNs / 1e3 / n,
    userUs: t.thread.user * 1e6 / n,
    systemUs: t.thread.system * 1e6 / n,
    faultsPerK: t.thread.minflt * 1e3 / n,
    sleepsPerK: t.thread.sleeps * 1e3 / n,
    preemptedPerK: t.thread.preempted * 1e3 / n,
    toEndUs: t.threadToEnd.runNs / 1e3 / n,
  };
}

function median(values: number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function loadAverage(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

/** The default CPU variants: offline, tcpdump, and each method with 1 worker. */
function defaultVariants(methods: CaptureMethod[]): CpuVariant[] {
  return [
    { label: "cutcap offline", kind: "offline" },
    { label: "cutcap offline, paced", kind: "offline-paced" },
    { label: "tcpdump -w FILE", kind: "tcpdump" },
    ...(gotmBinary() === "" ? [] : [{ label: "gotm", kind: "gotm" } as const]),
    ...methods.map((m): CpuVariant => ({ label: `cutcap ${m}`, kind: m })),
  ];
}

/** Runs the rate scan and the CPU rounds; see the module comment. */
export async function runLiveBench(
  file: string,
  opts: LiveBenchOptions = {},
): Promise<LiveBenchResult> {
  if (Deno.uid() !== 0) throw new Error("The live benchmark needs root: expected uid 0");
  const packets = opts.packets ?? 200_000;
  const rates = opts.rates ?? [50_000, 100_000, 150_000, 200_000, 0];
  const workerCounts = opts.workers ?? [1, 2];
  const methods = opts.methods ?? ["afpacket", "libpcap"];
  const cpuRate = opts.cpuRate ?? 150_000;
  const rounds = opts.rounds ?? 5;
  const cpuPackets = opts.cpuPackets ?? packets;
  const variants = opts.variants ?? defaultVariants(methods);
  const bufferMiB = opts.bufferMiB ?? 64;
  const root = opts.root ?? ROOT;
  const progress = opts.progress ?? ((line: string) => console.error(line));
  const work = await Deno.makeTempDir({ prefix: "cutcap-bench-live-" });
  const veth = await createVeth();
  try {
    const prefix = `${work}/prefix.pcap`;
    const bytes = pcapPrefix(file, prefix, packets);
    const capturers = await rateScan(veth, prefix, rates, {
      workerCounts,
      methods,
      root,
      bufferMiB,
      work,
      progress,
    });
    const cpuFile = `${work}/cpu.pcap`;
    pcapPrefix(file, cpuFile, cpuPackets);
    const loadBefore = loadAverage();
    const ctx = { root, bufferMiB, work, packets: cpuPackets };
    const cpu = await cpuRounds(
      variants,
      rounds,
      (v) => cpuTrial(v, veth, cpuFile, cpuRate, ctx),
      progress,
    );
    const loadAfter = loadAverage();
    return { packets, bytes, capturers, cpuRate, cpuPackets, cpu, loadBefore, loadAfter };
  } finally {
    await veth.remove();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** Every capturer at every rate, for the highest lossless rate. */
async function rateScan(
  veth: Veth,
  prefix: string,
  rates: number[],
  opts: {
    workerCounts: number[];
    methods: CaptureMethod[];
    root: string;
    bufferMiB: number;
    work: string;
    progress: (line: string) => void;
  },
): Promise<CapturerResult[]> {
  if (rates.length === 0) return [];
  const { bufferMiB, work, root } = opts;
  const capturers: { name: string; trial: (pps: number) => Promise<LiveTrial> }[] = [
    {
      name: "tcpdump -w FILE",
      trial: (pps) => tcpdumpTrial(veth, prefix, pps, { bufferMiB, outFile: `${work}/t.pcap` }),
    },
    ...(gotmBinary() === "" ? [] : [{
      name: "gotm (defaults)",
      trial: (pps: number) =>
        gotmTrial(veth, prefix, pps, { binary: gotmBinary(), outDir: `${work}/g` }),
    }]),
    ...opts.methods.flatMap((method) =>
      opts.workerCounts.map((workers) => ({
        name: `cutcap ${method} ${workers} worker${workers > 1 ? "s" : ""}`,
        trial: (pps: number) =>
          cutcapTrial(veth, prefix, pps, {
            method,
            workers,
            root,
            args: [],
            bufferMiB,
            outDir: `${work}/out`,
          }),
      }))
    ),
  ];
  const results: CapturerResult[] = [];
  for (const c of capturers) {
    const trials: LiveTrial[] = [];
    let failures = 0;
    // cutcap also at the highest rate tcpdump sustained (before topspeed).
    const tcpdumpBest = results[0]?.best?.achievedPps;
    const mine = tcpdumpBest === undefined ? rates : [
      ...rates.filter((r) => r > 0 && r < tcpdumpBest),
      Math.round(tcpdumpBest),
      ...rates.filter((r) => r === 0 || r > tcpdumpBest),
    ];
    for (const pps of mine) {
      const t = await c.trial(pps);
      trials.push(t);
      opts.progress(
        `live: ${c.name} at ${pps > 0 ? pps : "topspeed"} pps: sent ${t.sent} at ` +
          `${t.achievedPps.toFixed(0)} pps, seen ${t.seen}, dropped ${t.dropped}, ` +
          `${(t.cpuSeconds / t.seen * 1e6).toFixed(3)} µs CPU/packet`,
      );
      failures = t.lossless ? 0 : failures + 1;
      if (failures === 2) break;
    }
    const lossless = trials.filter((t) => t.lossless);
    const best = lossless.sort((a, b) => b.achievedPps - a.achievedPps)[0];
    results.push({ name: c.name, trials, best });
  }
  return results;
}

/** The result as markdown. */
export function liveMarkdown(r: LiveBenchResult): string {
  const lines = [
    `${r.packets} packets (${(r.bytes / 1e6).toFixed(0)} MB) per trial over a veth pair; ` +
    `"rate" is what tcpreplay achieved` +
    (PIN ? "; tcpreplay on CPU 0, the capturer on CPU 1 (taskset)." : ".") +
    " cutcap is also tried at the highest rate tcpdump sustained.",
    "",
    "| capturer | highest rate without loss | per trial: rate → seen/sent, drops |",
    "|---|---|---|",
  ];
  for (const c of r.capturers) {
    const best = c.best === undefined
      ? "none"
      : `${(c.best.achievedPps / 1e3).toFixed(0)} kpps (${c.best.achievedMbps.toFixed(0)} Mbit/s)`;
    const trials = c.trials.map((t) =>
      `${(t.achievedPps / 1e3).toFixed(0)}k → ${t.seen}/${t.sent}, ${t.dropped}`
    ).join("; ");
    lines.push(`| ${c.name} | ${best} | ${trials} |`);
  }
  if (r.capturers.length === 0) lines.length = 0;
  else lines.push("", ...lossComparison(r), "");
  lines.push(...cpuMarkdown(r));
  return lines.join("\n");
}

/** Packets a trial lost: sent but not seen (dropped by the kernel or never handed over). */
function lost(t: LiveTrial): number {
  return Math.max(0, t.sent - t.seen);
}

/** For each worker count: the rates at which afpacket lost more than libpcap. */
function lossComparison(r: LiveBenchResult): string[] {
  const lines: string[] = [];
  for (const afpacket of r.capturers.filter((c) => c.name.startsWith("cutcap afpacket "))) {
    const libpcap = r.capturers.find((c) =>
      c.name === afpacket.name.replace("afpacket", "libpcap")
    );
    if (libpcap === undefined) continue;
    const worse: string[] = [];
    let compared = 0;
    for (const t of afpacket.trials) {
      const other = libpcap.trials.find((o) => o.askedPps === t.askedPps);
      if (other === undefined) continue;
      compared++;
      if (lost(t) > lost(other)) {
        worse.push(`${t.askedPps || "topspeed"}: ${lost(t)} against ${lost(other)}`);
      }
    }
    const workers = afpacket.name.slice("cutcap afpacket ".length);
    lines.push(
      `- ${workers}: afpacket lost no more than libpcap at ${compared - worse.length} of ` +
        `${compared} rates tried by both${
          worse.length > 0 ? ` (more at ${worse.join("; ")})` : ""
        }`,
    );
  }
  return lines;
}

/** The CPU rounds: medians per packet, the split, and the target. */
function cpuMarkdown(r: LiveBenchResult): string[] {
  if (r.cpu.length === 0) return [];
  const rounds = Math.max(...r.cpu.map((c) => c.trials.length));
  const lines = [
    `CPU per packet: ${rounds} interleaved rounds, ${r.cpuPackets} packets per trial at ` +
    `${r.cpuRate / 1e3} kpps asked; every capturer on CPU ${PIN ? "1" : "0"} at nice ` +
    `${CAPTURER_NICE}; counters of the capturing thread (cutcap's capture worker, tcpdump's one ` +
    "thread; offline: the worker reading the same packets from the file, from go to its last " +
    "file written and indexed). Live, from the replay's start to the last packet seen, and to " +
    "the end: the capture stopped then, until the worker has written and indexed its last file " +
    "as the offline one does. Medians per packet (range of the CPU time). Load average before " +
    `${r.loadBefore}, after ${r.loadAfter}.`,
    "",
    "| variant | to last packet: CPU µs (range) | user µs | system µs | minor faults /1k packets | sleeps /1k packets | preempted /1k packets | to the end: CPU µs (range) | kpps reached | lossless | ÷ offline, to last packet | ÷ offline, to the end | ÷ offline paced, to the end |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  // The offline medians by checkout: to the last packet, and to the end (its last file indexed).
  const offline = new Map<string, { last: number; end: number }>();
  for (const c of r.cpu) {
    if (c.variant.kind !== "offline" || offline.has(c.variant.root ?? "")) continue;
    const per = c.trials.map(perPacket);
    offline.set(c.variant.root ?? "", {
      last: median(per.map((p) => p.cpuUs)),
      end: median(per.map((p) => p.toEndUs)),
    });
  }
  const firstOffline = offline.values().next().value;
  const paced = r.cpu.find((c) => c.variant.kind === "offline-paced");
  const pacedEnd = paced === undefined
    ? undefined
    : median(paced.trials.map((t) => perPacket(t).toEndUs));
  const baseOf = (c: CpuVariantResult) => offline.get(c.variant.root ?? "") ?? firstOffline;
  const ratio = (us: number, base: number | undefined) =>
    base === undefined ? "" : (us / base).toFixed(2);
  const range = (v: number[]) =>
    `${median(v).toFixed(3)} (${Math.min(...v).toFixed(3)}-${Math.max(...v).toFixed(3)})`;
  for (const c of r.cpu) {
    const per = c.trials.map(perPacket);
    const cpu = per.map((p) => p.cpuUs);
    const toEnd = per.map((p) => p.toEndUs);
    const kpps = median(c.trials.map((t) => t.achievedPps)) / 1e3;
    const base = baseOf(c);
    lines.push(
      `| ${c.variant.label} | ${range(cpu)} | ${median(per.map((p) => p.userUs)).toFixed(3)} | ` +
        `${median(per.map((p) => p.systemUs)).toFixed(3)} | ` +
        `${median(per.map((p) => p.faultsPerK)).toFixed(2)} | ` +
        `${median(per.map((p) => p.sleepsPerK)).toFixed(2)} | ` +
        `${median(per.map((p) => p.preemptedPerK)).toFixed(2)} | ${range(toEnd)} | ` +
        `${Number.isNaN(kpps) ? "" : kpps.toFixed(0)} | ` +
        `${c.trials.filter((t) => t.lossless).length}/${c.trials.length} | ` +
        `${ratio(median(cpu), base?.last)} | ${ratio(median(toEnd), base?.end)} | ` +
        `${ratio(median(toEnd), pacedEnd)} |`,
    );
  }
  const afpacket = r.cpu.find((c) => c.variant.kind === "afpacket");
  const base = afpacket === undefined ? undefined : baseOf(afpacket);
  if (afpacket !== undefined && base !== undefined) {
    const per = afpacket.trials.map(perPacket);
    const toEnd = median(per.map((p) => p.toEndUs)) / base.end;
    const toLast = median(per.map((p) => p.cpuUs)) / base.last;
    lines.push(
      "",
      `Target: ${afpacket.variant.label}'s CPU per packet within ${CPU_TARGET}× of the offline ` +
        `cost (medians, both to the end: the same packets, the same last file written and ` +
        `indexed): ${toEnd.toFixed(2)}× (${toEnd <= CPU_TARGET ? "met" : "not met"}); both to ` +
        `the last packet: ${toLast.toFixed(2)}×` +
        (pacedEnd === undefined
          ? "."
          : `; against the offline worker paced as live (to the end): ` +
            `${(median(per.map((p) => p.toEndUs)) / pacedEnd).toFixed(2)}×, and the paced ` +
            `offline worker against the unpaced one: ${(pacedEnd / base.end).toFixed(2)}×.`),
    );
  }
  return lines;
}

/** afpacket's CPU per packet may be this many times the offline cost (issue 17). */
const CPU_TARGET = 1.2;

/** Parses `LABEL=KIND[@ROOT] [ARGS…]`. */
export function parseVariant(spec: string): CpuVariant {
  const eq = spec.indexOf("=");
  const [what, ...args] = spec.slice(eq + 1).trim().split(/\s+/);
  const [kind, root] = what.split("@");
  if (eq <= 0 || ![...OFFLINE_KINDS, "tcpdump", "gotm", "afpacket", "libpcap"].includes(kind)) {
    throw new Error(
      `Invalid --variant "${spec}": expected LABEL=KIND[@ROOT] [ARGS…] with KIND one of ` +
        [...OFFLINE_KINDS, "tcpdump", "gotm", "afpacket", "libpcap"].join(", "),
    );
  }
  return {
    label: spec.slice(0, eq),
    kind: kind as CpuVariant["kind"],
    root: root === undefined || root === "" ? undefined : root.replace(/\/$/, ""),
    args,
  };
}

if (import.meta.main && Deno.args[0] === PACER_CHILD) {
  const [file, fifo, bytesPerSecond] = Deno.args.slice(1);
  await pacerChild(file, fifo, Number(bytesPerSecond));
} else if (import.meta.main && Deno.args[0] === OFFLINE_CHILD) {
  const [file, outDir, packets, ...args] = Deno.args.slice(1);
  await offlineChild(file, Number(packets), { outDir, args });
} else if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      packets: { type: "string", default: "200000" },
      rates: { type: "string" },
      workers: { type: "string", default: "1,2" },
      methods: { type: "string", default: "afpacket,libpcap" },
      "cpu-rate": { type: "string", default: "150000" },
      rounds: { type: "string", default: "5" },
      "cpu-packets": { type: "string" },
      variant: { type: "string", multiple: true },
    },
  });
  const file = positionals[0];
  if (file === undefined) throw new Error("Missing FILE: expected a pcap file to replay");
  const methods = values.methods.split(",").map((m) => {
    if (m !== "afpacket" && m !== "libpcap") {
      throw new Error(`Invalid --methods entry "${m}": expected afpacket or libpcap`);
    }
    return m;
  });
  const result = await runLiveBench(file, {
    packets: Number(values.packets),
    rates: values.rates === "none" ? [] : values.rates?.split(",").map(Number),
    workers: values.workers.split(",").map(Number),
    methods,
    cpuRate: Number(values["cpu-rate"]),
    rounds: Number(values.rounds),
    cpuPackets: values["cpu-packets"] === undefined ? undefined : Number(values["cpu-packets"]),
    // Variants named on the command line replace the live defaults; offline stays first.
    variants: values.variant === undefined
      ? undefined
      : [defaultVariants(methods)[0], ...values.variant.map(parseVariant)],
  });
  console.log(liveMarkdown(result));
}
