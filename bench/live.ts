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
 * CPU per packet: every trial reads the capturer's user + system CPU time (/proc) just before the
 * replay and once it has handled everything; at the fixed rate (150 kpps) that time per packet is
 * compared with tcpdump's and with cutcap's offline cost per packet: the capture worker's CPU
 * time per packet when it reads the same packets from the file (bench/worker_run.ts).
 *
 * Needs root (namespaces). Run alone: deno run -A bench/live.ts FILE [--packets N] [--rates a,b,..]
 * [--workers 1,2] [--methods afpacket,libpcap] [--cpu-rate N] (a rate of 0 is tcpreplay --topspeed).
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { CaptureMethod } from "../src/capture/source.ts";
import { runWorkerOnce, threadsCpu } from "./worker_run.ts";

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
  /** The same for cutcap's capture worker threads only; NaN for tcpdump. */
  workerCpuSeconds: number;
}

/** Trials of one capturer, in rising rate order. */
export interface CapturerResult {
  name: string;
  trials: LiveTrial[];
  /** The best lossless trial (highest achieved rate), undefined when none was. */
  best: LiveTrial | undefined;
}

/** Options of {@link runLiveBench}. */
export interface LiveBenchOptions {
  /** Packets sent per trial (a prefix of the file), default 200000. */
  packets?: number;
  /** Rates to try in packets/s, rising; 0 = topspeed. Default 50k, 100k, 150k, 200k, topspeed. */
  rates?: number[];
  /** cutcap worker counts to try, default 1 and 2. */
  workers?: number[];
  /** cutcap capture methods to try, default afpacket and libpcap. */
  methods?: CaptureMethod[];
  /** The rate at which CPU per packet is compared, packets/s (one of `rates`), default 150000. */
  cpuRate?: number;
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
  /** cutcap's capture worker CPU seconds per packet reading the same packets from the file. */
  offlineCpuPerPacket: number;
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
  const [program, programArgs] = onCpu(1, cmd, args);
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
  const sum = (name: string): number => {
    let total = 0;
    for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) {
      total += Number(m[1]);
    }
    return total;
  };
  return {
    seen: sum("cutcap_packets_seen_total"),
    dropped: sum("cutcap_pcap_dropped_total") + sum("cutcap_pcap_ifdropped_total"),
  };
}

/** user + system CPU seconds of process `pid` so far, and of its threads named worker*. */
function cpuNow(pid: number): { process: number; workers: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  let workers = 0;
  for (const seconds of threadsCpu("worker", pid).values()) workers += seconds;
  return { process: (Number(f[11]) + Number(f[12])) / 100, workers };
}

async function cutcapTrial(
  veth: Veth,
  file: string,
  pps: number,
  workers: number,
  opts: { root: string; bufferMiB: number; outDir: string; method: CaptureMethod },
): Promise<LiveTrial> {
  await Deno.remove(opts.outDir, { recursive: true }).catch(() => {});
  const { child, lines, done } = startCapturer("deno", [
    ...["run", "-A", `${opts.root}/main.ts`, "--interface", veth.outside],
    ...["--capture-method", opts.method],
    ...["--workers", String(workers), "--out", opts.outDir, "--byte-cutoff", "65536"],
    ...["--buffer-size", `${opts.bufferMiB}MiB`, "--listen", "off", "--stats-interval", "0.5s"],
    ...["--metrics-file", `${opts.outDir}.prom`],
  ]);
  try {
    await waitFor(lines, /Capturing on/, 20_000, "cutcap start");
    const cpuBefore = cpuNow(child.pid);
    const sent = await replay(veth, file, pps);
    // Wait until the counters stop moving: two stats lines in a row with the same totals. The CPU
    // time is read as soon as they count every packet sent (idle time after it is not the packets').
    let last = -1;
    let cpuAfter: { process: number; workers: number } | undefined;
    for (let i = 0; i < 40; i++) {
      await sleep(600);
      const now = cutcapTotals(lines).seen;
      if (now >= sent.sent) cpuAfter ??= cpuNow(child.pid);
      if (now === last && now > 0) break;
      last = now;
    }
    cpuAfter ??= cpuNow(child.pid);
    child.kill("SIGINT");
    await child.status;
    await done;
    // The final counters (every packet handled before the stop) are in the metrics file;
    // the stats lines only show them up to the last interval.
    const totals = metricTotals(`${opts.outDir}.prom`) ?? cutcapTotals(lines);
    return {
      askedPps: pps,
      achievedPps: sent.pps,
      achievedMbps: sent.mbps,
      sent: sent.sent,
      seen: totals.seen,
      dropped: totals.dropped,
      lossless: totals.dropped === 0 && totals.seen >= sent.sent,
      cpuSeconds: cpuAfter.process - cpuBefore.process,
      workerCpuSeconds: cpuAfter.workers - cpuBefore.workers,
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
    const cpuBefore = cpuNow(child.pid).process;
    const sent = await replay(veth, file, pps);
    // Its ring blocks are handed over after 1 s at the latest.
    await sleep(1500);
    const cpu = cpuNow(child.pid).process - cpuBefore;
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
      workerCpuSeconds: NaN,
    };
  } finally {
    await Deno.remove(opts.outFile).catch(() => {});
  }
}

/**
 * cutcap's offline cost per packet: the capture worker's CPU seconds per packet reading `file`
 * (the packets the live trials send) from its go to its last file, median of 3 runs, byte cutoff
 * as in the live trials.
 */
async function offlineCost(file: string, outDir: string): Promise<number> {
  const costs: number[] = [];
  for (let i = 0; i < 3; i++) {
    await Deno.remove(outDir, { recursive: true }).catch(() => {});
    const run = await runWorkerOnce(file, ["--out", outDir, "--byte-cutoff", "65536"]);
    costs.push(run.goCpuSeconds / run.packets);
  }
  await Deno.remove(outDir, { recursive: true }).catch(() => {});
  return costs.sort((a, b) => a - b)[1];
}

/** Runs every capturer at every rate; see the module comment. */
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
  const bufferMiB = opts.bufferMiB ?? 64;
  const root = opts.root ?? ROOT;
  const progress = opts.progress ?? ((line: string) => console.error(line));
  const work = await Deno.makeTempDir({ prefix: "cutcap-bench-live-" });
  const veth = await createVeth();
  try {
    const prefix = `${work}/prefix.pcap`;
    const bytes = pcapPrefix(file, prefix, packets);
    const offlineCpuPerPacket = await offlineCost(prefix, `${work}/out`);
    progress(`live: offline worker cost ${(offlineCpuPerPacket * 1e6).toFixed(3)} µs/packet`);
    const capturers: { name: string; trial: (pps: number) => Promise<LiveTrial> }[] = [
      {
        name: "tcpdump -w FILE",
        trial: (pps) => tcpdumpTrial(veth, prefix, pps, { bufferMiB, outFile: `${work}/t.pcap` }),
      },
      ...methods.flatMap((method) =>
        workerCounts.map((w) => ({
          name: `cutcap ${method} ${w} worker${w > 1 ? "s" : ""}`,
          trial: (pps: number) =>
            cutcapTrial(veth, prefix, pps, w, { root, bufferMiB, outDir: `${work}/out`, method }),
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
        progress(
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
    return { packets, bytes, capturers: results, cpuRate, offlineCpuPerPacket };
  } finally {
    await veth.remove();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
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
  lines.push("", ...lossComparison(r), "", ...cpuMarkdown(r));
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

/** CPU per packet at the fixed rate, against tcpdump and cutcap's offline cost; the target. */
function cpuMarkdown(r: LiveBenchResult): string[] {
  const at = (c: CapturerResult) => c.trials.find((t) => t.askedPps === r.cpuRate);
  const us = (seconds: number, t: LiveTrial) => seconds / t.seen * 1e6;
  const tcpdump = r.capturers.find((c) => c.name.startsWith("tcpdump"));
  const tcpdumpTrial = tcpdump === undefined ? undefined : at(tcpdump);
  const offlineUs = r.offlineCpuPerPacket * 1e6;
  const lines = [
    `CPU per packet at ${r.cpuRate / 1e3} kpps (user + system time of the capturer from the ` +
    `replay's start to its last packet, / packets seen); cutcap's offline cost on the same ` +
    `packets: ${offlineUs.toFixed(3)} µs/packet (capture worker thread, bench/worker_run.ts).`,
    "",
    "| capturer | process µs/packet | capture workers µs/packet | process ÷ tcpdump | workers ÷ offline |",
    "|---|---|---|---|---|",
  ];
  for (const c of r.capturers) {
    const t = at(c);
    if (t === undefined || t.seen === 0) continue;
    const process = us(t.cpuSeconds, t);
    const workers = us(t.workerCpuSeconds, t);
    const vsTcpdump = tcpdumpTrial === undefined
      ? NaN
      : process / us(tcpdumpTrial.cpuSeconds, tcpdumpTrial);
    lines.push(
      `| ${c.name} | ${process.toFixed(3)} | ${
        Number.isNaN(workers) ? "" : workers.toFixed(3)
      } | ` +
        `${vsTcpdump.toFixed(2)} | ${
          Number.isNaN(workers) ? "" : (workers / offlineUs).toFixed(2)
        } |`,
    );
  }
  const afpacket = r.capturers.find((c) => c.name === "cutcap afpacket 1 worker");
  const t = afpacket === undefined ? undefined : at(afpacket);
  if (t !== undefined && t.seen > 0) {
    const ratio = us(t.workerCpuSeconds, t) / offlineUs;
    lines.push(
      "",
      `Target: afpacket (1 worker) CPU per packet within ${CPU_TARGET}× of the offline cost: ` +
        `${ratio.toFixed(2)}× (${ratio <= CPU_TARGET ? "met" : "not met"}).`,
    );
  }
  return lines;
}

/** afpacket's CPU per packet may be this many times the offline cost (issue 17). */
const CPU_TARGET = 1.2;

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      packets: { type: "string", default: "200000" },
      rates: { type: "string" },
      workers: { type: "string", default: "1,2" },
      methods: { type: "string", default: "afpacket,libpcap" },
      "cpu-rate": { type: "string", default: "150000" },
    },
  });
  const file = positionals[0];
  if (file === undefined) throw new Error("Missing FILE: expected a pcap file to replay");
  const result = await runLiveBench(file, {
    packets: Number(values.packets),
    rates: values.rates?.split(",").map(Number),
    workers: values.workers.split(",").map(Number),
    methods: values.methods.split(",").map((m) => {
      if (m !== "afpacket" && m !== "libpcap") {
        throw new Error(`Invalid --methods entry "${m}": expected afpacket or libpcap`);
      }
      return m;
    }),
    cpuRate: Number(values["cpu-rate"]),
  });
  console.log(liveMarkdown(result));
}
