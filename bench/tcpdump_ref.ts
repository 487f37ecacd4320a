/**
 * Reference measurements for the benchmark: wall time and peak memory of a command, and how fast
 * tcpdump alone reads (and rewrites) a capture file — the floor cutcap's offline path is compared
 * against.
 */

/** Timing of repeated runs of one command. */
export interface TimedRun {
  /** Median wall time in seconds. */
  median: number;
  /** Wall time of every timed run in seconds, in run order. */
  runs: number[];
  /** Largest peak resident set size over the runs, in KiB (0 when it could not be measured). */
  peakRssKb: number;
}

/** Options of timeCommand. */
export interface TimeCommandOptions {
  /** Timed runs, default 3. */
  runs?: number;
  /** Untimed runs first (to warm the page cache), default 0. */
  warmup?: number;
  cwd?: string;
  env?: Record<string, string>;
  /** What to do with the command's stdout, default "null" (discarded). */
  stdout?: "null" | "inherit";
}

const TIME_BIN = "/usr/bin/time";

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function hasTimeBin(): boolean {
  try {
    return Deno.statSync(TIME_BIN).isFile;
  } catch {
    return false;
  }
}

function decode(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** One run under /usr/bin/time -f %M, which reports the peak RSS of the command in KiB. */
async function runWithTime(
  cmd: string,
  args: string[],
  options: TimeCommandOptions,
): Promise<[number, number]> {
  const rssFile = await Deno.makeTempFile({ prefix: "cutcap-time-" });
  try {
    const t0 = performance.now();
    const out = await new Deno.Command(TIME_BIN, {
      args: ["-f", "%M", "-o", rssFile, cmd, ...args],
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: options.stdout ?? "null",
      stderr: "piped",
    }).output();
    const seconds = (performance.now() - t0) / 1000;
    if (!out.success) {
      throw new Error(
        `Command failed: expected exit 0 from ${cmd} ${args.join(" ")}, found ${out.code}: ` +
          decode(out.stderr).slice(-500),
      );
    }
    // With -o, time writes only its report there; the last number is %M.
    const report = (await Deno.readTextFile(rssFile)).trim().split(/\s+/);
    const rss = Number(report[report.length - 1]);
    return [seconds, Number.isFinite(rss) ? rss : 0];
  } finally {
    await Deno.remove(rssFile).catch(() => {});
  }
}

/** One run with the peak RSS sampled from /proc/PID/status (VmHWM) every 5 ms. */
async function runWithProc(
  cmd: string,
  args: string[],
  options: TimeCommandOptions,
): Promise<[number, number]> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: options.stdout ?? "null",
    stderr: "piped",
  }).spawn();
  let peak = 0;
  let done = false;
  const poll = (async () => {
    while (!done) {
      try {
        const m = /VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${child.pid}/status`));
        if (m !== null) peak = Math.max(peak, Number(m[1]));
      } catch {
        // The process is gone or not yet visible.
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const out = await child.output();
  const seconds = (performance.now() - t0) / 1000;
  done = true;
  await poll;
  if (!out.success) {
    throw new Error(
      `Command failed: expected exit 0 from ${cmd} ${args.join(" ")}, found ${out.code}: ` +
        decode(out.stderr).slice(-500),
    );
  }
  return [seconds, peak];
}

/**
 * Runs `cmd args` `options.runs` times (after `options.warmup` untimed runs) and returns the
 * median wall time and the peak RSS; throws when a run exits non-zero.
 */
export async function timeCommand(
  cmd: string,
  args: string[],
  options: TimeCommandOptions = {},
): Promise<TimedRun> {
  const runs = options.runs ?? 3;
  const warmup = options.warmup ?? 0;
  if (!Number.isInteger(runs) || runs < 1) {
    throw new Error(`Invalid runs ${runs}: expected an integer >= 1`);
  }
  const run = hasTimeBin() ? runWithTime : runWithProc;
  for (let k = 0; k < warmup; k++) await run(cmd, args, options);
  const times: number[] = [];
  let peakRssKb = 0;
  for (let k = 0; k < runs; k++) {
    const [seconds, rss] = await run(cmd, args, options);
    times.push(seconds);
    peakRssKb = Math.max(peakRssKb, rss);
  }
  return { median: median(times), runs: times, peakRssKb };
}

/** Options of tcpdumpReadRate. */
export interface TcpdumpRateOptions {
  /** Timed runs of each variant, default 5 (one untimed warm-up run comes first). */
  runs?: number;
  /** Directory for the rewritten copy, default a new temporary directory (removed afterwards). */
  outDir?: string;
  /** Packets in the file, if known; otherwise counted from the file. */
  packets?: number;
  /** tcpdump binary, default "tcpdump". */
  tcpdump?: string;
}

/** How fast tcpdump reads a capture, alone and while writing it out again. */
export interface TcpdumpRate {
  file: string;
  fileBytes: number;
  packets: number;
  /** `tcpdump -r FILE -w /dev/null`. */
  toNull: TimedRun;
  /** `tcpdump -r FILE -w OUT`: the read-plus-write floor. */
  toFile: TimedRun;
  /** Median seconds of the two variants. */
  nullSeconds: number;
  fileSeconds: number;
  /** Packets per second of the read-plus-write variant. */
  packetsPerSecond: number;
  /** File megabytes (10^6) per second of the read-plus-write variant. */
  megabytesPerSecond: number;
}

/** Counts the records of a pcap file (either byte order, µs or ns) by walking record headers. */
export async function countPcapPackets(path: string): Promise<number> {
  const file = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(8 << 20);
    const dv = new DataView(buf.buffer);
    let have = 0;
    let eof = false;
    const fill = async (): Promise<void> => {
      while (!eof && have < buf.length) {
        const n = await file.read(buf.subarray(have));
        if (n === null) eof = true;
        else have += n;
      }
    };
    await fill();
    if (have < 24) {
      throw new Error(`Invalid pcap ${path}: expected a 24-byte header, found ${have} bytes`);
    }
    const magic = dv.getUint32(0, true);
    let le: boolean;
    if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) le = true;
    else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) le = false;
    else {throw new Error(
        `Invalid pcap ${path}: expected a pcap magic, found 0x${magic.toString(16)}`,
      );}
    let pos = 24;
    let count = 0;
    for (;;) {
      if (have - pos < 16) {
        buf.copyWithin(0, pos, have);
        have -= pos;
        pos = 0;
        await fill();
        if (have === 0) return count;
        if (have < 16) throw new Error(`Invalid pcap ${path}: truncated record header`);
      }
      const caplen = dv.getUint32(pos + 8, le);
      let skip = 16 + caplen;
      count++;
      // Skip the record, refilling the buffer as often as its length needs.
      while (skip > 0) {
        const avail = have - pos;
        if (skip <= avail) {
          pos += skip;
          skip = 0;
        } else {
          skip -= avail;
          pos = 0;
          have = 0;
          await fill();
          if (have === 0) throw new Error(`Invalid pcap ${path}: truncated record`);
        }
      }
    }
  } finally {
    file.close();
  }
}

/**
 * Times `tcpdump -r FILE -w /dev/null` and `tcpdump -r FILE -w OUT` (warm page cache, one
 * untimed warm-up each) and returns their medians and rates.
 */
export async function tcpdumpReadRate(
  file: string,
  options: TcpdumpRateOptions = {},
): Promise<TcpdumpRate> {
  const runs = options.runs ?? 5;
  const tcpdump = options.tcpdump ?? "tcpdump";
  const fileBytes = (await Deno.stat(file)).size;
  const packets = options.packets ?? await countPcapPackets(file);
  const ownDir = options.outDir === undefined;
  const dir = options.outDir ?? await Deno.makeTempDir({ prefix: "cutcap-tcpdump-" });
  const out = `${dir}/tcpdump_ref_out.pcap`;
  try {
    const toNull = await timeCommand(tcpdump, ["-r", file, "-w", "/dev/null"], {
      runs,
      warmup: 1,
    });
    const toFile = await timeCommand(tcpdump, ["-r", file, "-w", out], { runs, warmup: 1 });
    return {
      file,
      fileBytes,
      packets,
      toNull,
      toFile,
      nullSeconds: toNull.median,
      fileSeconds: toFile.median,
      packetsPerSecond: packets / toFile.median,
      megabytesPerSecond: fileBytes / 1e6 / toFile.median,
    };
  } finally {
    if (ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    else await Deno.remove(out).catch(() => {});
  }
}
