/**
 * `deno task bench`: the whole benchmark. Generates the seeded capture if it is missing, then
 * measures offline throughput against tcpdump (bench/offline.ts), the capture worker in-process
 * (bench/worker_run.ts), live capture at rising rates (bench/live.ts, root only), memory with 1M
 * concurrent flows (bench/memory.ts), query speed (bench/query_bench.ts when it exists) and the
 * ClickHouse export and fleet coordinator (bench/fleet_bench.ts); prints a
 * markdown report and writes it into bench/RESULTS.md between the results markers.
 *
 *   deno task bench [--quick] [--no-write] [--skip offline,worker,live,memory,query,fleet]
 *
 * --quick: fewer rounds, a shorter live run, 250k flows for memory; its report is not written to
 * RESULTS.md unless --write is given.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { writeTrafficPcap } from "./gen/mod.ts";
import { type OfflineBenchResult, offlineMarkdown, runOfflineBench } from "./offline.ts";
import { runWorkerOnce, type WorkerRun } from "./worker_run.ts";
import { liveMarkdown, runLiveBench } from "./live.ts";
import { memoryMarkdown, runMemoryBench } from "./memory.ts";

const HERE = new URL(".", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const DATA = `${HERE}data`;
const CAPTURE = `${DATA}/gen_2m.pcap`;
const CAPTURE_PACKETS = 2_000_000;
const RESULTS = `${HERE}RESULTS.md`;
const START = "<!-- results:start -->";
const END = "<!-- results:end -->";

/** Targets from the benchmark's brief, checked in the report. */
const TARGET_UNCOMPRESSED = 0.5;
const TARGET_COMPRESSED = 0.35;
const TARGET_MEMORY_MB = 200;

function progress(line: string): void {
  console.error(`[bench] ${line}`);
}

async function output(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return new TextDecoder().decode(out.success ? out.stdout : out.stderr).trim();
  } catch {
    return "";
  }
}

/** Machine, software and commit, as markdown lines. */
async function machine(): Promise<string[]> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1] ?? "unknown";
  const mem = Deno.systemMemoryInfo();
  const commit = await output("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"]);
  const dirty = (await output("git", ["-C", ROOT, "status", "--porcelain", "--", "src", "ffi"]))
    .length > 0;
  const tcpdump = (await output("tcpdump", ["--version"])).split("\n")[0];
  const load = (await Deno.readTextFile("/proc/loadavg").catch(() => "")).split(" ")
    .slice(0, 3).join(" ");
  return [
    `- Date: ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`,
    `- Commit: ${commit}${dirty ? " (with uncommitted changes in src/ or ffi/)" : ""}`,
    `- Machine: ${navigator.hardwareConcurrency} CPUs (nproc), ${model}, ` +
    `${(mem.total / 2 ** 30).toFixed(0)} GiB RAM; load average at the start ${load}`,
    `- Deno ${Deno.version.deno} (V8 ${Deno.version.v8}), ${tcpdump}`,
  ];
}

async function ensureCapture(): Promise<void> {
  try {
    await Deno.stat(CAPTURE);
    return;
  } catch {
    // Generate it below.
  }
  await Deno.mkdir(DATA, { recursive: true });
  progress(`generating ${CAPTURE} (seed 1, ${CAPTURE_PACKETS} packets)`);
  await writeTrafficPcap(CAPTURE, { seed: 1, packets: CAPTURE_PACKETS });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function workerRuns(runs: number): Promise<WorkerRun[]> {
  const out = await Deno.makeTempDir({ prefix: "cutcap-bench-worker-" });
  const results: WorkerRun[] = [];
  try {
    for (const compress of ["none", "zstd"]) {
      const mine: WorkerRun[] = [];
      for (let r = 0; r < runs; r++) {
        await Deno.remove(out, { recursive: true }).catch(() => {});
        mine.push(
          await runWorkerOnce(CAPTURE, [
            ...["--out", out, "--byte-cutoff", "65536", "--compress", compress],
          ]),
        );
      }
      const best = mine.sort((a, b) => a.seconds - b.seconds)[mine.length >> 1];
      results.push({ ...best, seconds: median(mine.map((m) => m.seconds)) });
      progress(`worker in-process (${compress}): ${best.packetsPerSecond.toFixed(0)} pps`);
    }
  } finally {
    await Deno.remove(out, { recursive: true }).catch(() => {});
  }
  return results;
}

function workerMarkdown(runs: WorkerRun[]): string {
  const names = ["none", "zstd"];
  return [
    "| compression | worker wall s (go → done, median) | packets/s | worker CPU s | packets per CPU second |",
    "|---|---|---|---|---|",
    ...runs.map((r, i) =>
      `| ${names[i]} | ${r.seconds.toFixed(2)} | ${(r.packets / r.seconds / 1e6).toFixed(2)} M | ${
        r.cpuSeconds.toFixed(2)
      } | ${(r.packets / r.cpuSeconds / 1e6).toFixed(2)} M |`
    ),
  ].join("\n");
}

function targets(offline: OfflineBenchResult | undefined, memoryMb: number | undefined): string {
  const lines: string[] = [];
  if (offline !== undefined) {
    const none = offline.variants.find((v) => v.name === "cutcap none");
    const compressed = offline.variants.filter((v) =>
      v.name === "cutcap gzip" || v.name === "cutcap zstd"
    );
    if (none !== undefined) {
      lines.push(
        `- Uncompressed, 1 worker, vs tcpdump read-only: ${none.ratioToTcpdump.toFixed(2)} ` +
          `(target ≥ ${TARGET_UNCOMPRESSED}: ${
            none.ratioToTcpdump >= TARGET_UNCOMPRESSED ? "met" : "not met"
          })`,
      );
    }
    if (compressed.length > 0) {
      const best = compressed.sort((a, b) => b.ratioToTcpdump - a.ratioToTcpdump)[0];
      lines.push(
        `- Best compressed (${best.name.slice(7)}) vs tcpdump read-only: ` +
          `${best.ratioToTcpdump.toFixed(2)} (target ≥ ${TARGET_COMPRESSED}: ${
            best.ratioToTcpdump >= TARGET_COMPRESSED ? "met" : "not met"
          })`,
      );
    }
  }
  if (memoryMb !== undefined) {
    lines.push(
      `- 1M concurrent flows, whole cutcap process peak RSS (listening): ${
        memoryMb.toFixed(0)
      } MB ` +
        `(target < ${TARGET_MEMORY_MB}: ${memoryMb < TARGET_MEMORY_MB ? "met" : "not met"})`,
    );
  }
  return lines.join("\n");
}

/** Calls bench/query_bench.ts's runQueryBench when that file exists; its report or null. */
async function queryBench(quick: boolean): Promise<string | null> {
  const url = new URL("./query_bench.ts", import.meta.url);
  try {
    await Deno.stat(url);
  } catch {
    return null;
  }
  const mod: Record<string, unknown> = await import(url.href);
  const run = mod.runQueryBench;
  if (typeof run !== "function") return "bench/query_bench.ts exports no runQueryBench";
  const result: unknown = await run({ runs: quick ? 2 : 5, root: ROOT, progress });
  if (typeof result === "string") return result;
  if (result !== null && typeof result === "object") {
    const md = (result as Record<string, unknown>).markdown;
    if (typeof md === "string") return md;
    const fn = mod.formatQueryBench ?? mod.queryMarkdown;
    if (typeof fn === "function") return String(fn(result));
    return "```json\n" + JSON.stringify(result, null, 2) + "\n```";
  }
  return "(no result)";
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      write: { type: "boolean", default: false },
      "no-write": { type: "boolean", default: false },
      skip: { type: "string", default: "" },
    },
  });
  const quick = values.quick;
  const skip = new Set(values.skip.split(",").filter((s) => s !== ""));
  await ensureCapture();
  const sections: string[] = [`Machine and software:\n\n${(await machine()).join("\n")}`];
  if (quick) sections.push("**Quick run** (--quick): fewer rounds, shorter live and memory runs.");

  let offline: OfflineBenchResult | undefined;
  if (!skip.has("offline")) {
    progress("offline throughput");
    offline = await runOfflineBench(CAPTURE, { runs: quick ? 2 : 5, progress });
    sections.push(`### Offline: cutcap --read against tcpdump\n\n${offlineMarkdown(offline)}`);
  }
  if (!skip.has("worker")) {
    progress("capture worker in-process");
    const runs = await workerRuns(quick ? 1 : 3);
    sections.push(
      "### The capture worker in-process (bench/worker_run.ts)\n\n" +
        "The real worker on the same file inside one Deno process: no process or main-thread " +
        "start-up; wall time from go to done (the last file fsynced, indexed and renamed).\n\n" +
        workerMarkdown(runs),
    );
  }
  if (!skip.has("live")) {
    if (Deno.uid() !== 0) {
      sections.push("### Live capture\n\nSkipped: needs root for network namespaces.");
    } else {
      progress("live capture");
      const live = await runLiveBench(CAPTURE, {
        packets: quick ? 100_000 : 500_000,
        rates: quick ? [100_000, 0] : [50_000, 100_000, 150_000, 200_000, 0],
        cpuRate: quick ? 100_000 : 150_000,
        rounds: quick ? 2 : 5,
        progress,
      });
      sections.push(`### Live capture (veth, tcpreplay)\n\n${liveMarkdown(live)}`);
    }
  }
  let memoryMb: number | undefined;
  if (!skip.has("memory")) {
    progress("memory");
    const flows = quick ? 250_000 : 1_000_000;
    const mem = await runMemoryBench({ flows, progress });
    // MB of 10^6 bytes, the stricter reading of the target.
    if (flows === 1_000_000) memoryMb = mem.cutcapPeakRssKb * 1024 / 1e6;
    sections.push(`### Memory with ${flows} concurrent flows\n\n${memoryMarkdown(mem)}`);
  }
  if (!skip.has("query")) {
    try {
      const q = await queryBench(quick);
      if (q !== null) sections.push(`### Queries (bench/query_bench.ts)\n\n${q}`);
    } catch (error) {
      sections.push(
        `### Queries\n\nbench/query_bench.ts failed: ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
    }
  }
  if (!skip.has("fleet")) {
    progress("export and fleet");
    const { runFleetBench } = await import("./fleet_bench.ts");
    sections.push(
      "### Export and fleet (bench/fleet_bench.ts)\n\n" + await runFleetBench({ quick, progress }),
    );
  }
  const checks = targets(offline, memoryMb);
  if (checks !== "") sections.splice(1, 0, `Targets:\n\n${checks}`);
  const report = sections.join("\n\n");
  console.log(report);

  const write = values.write || (!quick && !values["no-write"]);
  if (write) {
    const text = await Deno.readTextFile(RESULTS);
    const a = text.indexOf(START);
    const b = text.indexOf(END);
    if (a < 0 || b < a) {
      throw new Error(`Cannot update ${RESULTS}: expected ${START} ... ${END} markers`);
    }
    await Deno.writeTextFile(
      RESULTS,
      `${text.slice(0, a + START.length)}\n${report}\n${text.slice(b)}`,
    );
    // Keep the tree `deno fmt --check` clean: the report's long lines are wrapped the way fmt wants.
    await new Deno.Command(Deno.execPath(), {
      args: ["fmt", RESULTS],
      stdout: "null",
      stderr: "null",
    })
      .output();
    progress(`wrote ${RESULTS}`);
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
