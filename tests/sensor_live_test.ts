/**
 * The running sensor end to end (issue acceptance): cutcap captures live on a veth end while tcpreplay
 * sends a generated capture from inside a namespace, then SIGTERM. The oracle is the generator's ground
 * truth (which flow every packet belongs to, expectedCutoff) and tcpdump reading the input and every
 * output file; nothing of cutcap's own pcap code is used to check it. Needs root.
 */
import assert from "node:assert/strict";
import { expectedCutoff, generateTrafficBytes, type TrafficTruth } from "../bench/gen/mod.ts";
import { rootTest, TEST_NETS, type Veth } from "./support/netns.ts";
import { type OraclePacket, tcpdumpPackets } from "./support/oracle.ts";
import type { CaptureMethod } from "../src/capture/mod.ts";
import { sleep, startCutcap } from "./support/process.ts";

const K = 4;
const PACKETS = 16000;
/** 4 s of traffic: two rotations at --rotate-interval 2s. */
const PPS = 4000;
const STATS_FIELDS = [
  "if",
  "W",
  "flows",
  "removed",
  "bytes",
  "pkts",
  "output",
  "outpct",
  "recvd",
  "dropped",
  "ifdropped",
];

/** One `if=... W=..` stats line, its fields in order. */
type StatsLine = [string, string][];

/** What one live run produced. */
interface LiveRun {
  truth: TrafficTruth;
  input: OraclePacket[];
  sent: number;
  /** Output files by worker number, sorted by name (time). */
  files: Map<number, string[]>;
  stats: StatsLine[];
  log: string;
}

async function captureLive(
  veth: Veth,
  dir: string,
  workers: number,
  method: CaptureMethod,
): Promise<LiveRun> {
  const { pcap, truth } = generateTrafficBytes({
    seed: 11 + workers,
    packets: PACKETS,
    flows: 600,
    vlanShare: 0,
    nonIpShare: 0,
    ipv6Share: 0.3,
  });
  const inputPath = `${dir}/input.pcap`;
  await Deno.writeFile(inputPath, pcap);
  const input = await tcpdumpPackets(inputPath);
  assert.equal(input.length, PACKETS);
  const out = `${dir}/out`;
  const sensor = startCutcap([
    ...["--interface", veth.outside, "--out", out, "--rotate-interval", "2s"],
    ...["--packet-cutoff", String(K), "--byte-cutoff", "0", "--listen", "off"],
    ...["--stats-interval", "1s", "--workers", String(workers), "--filter", TEST_NETS],
    ...["--capture-method", method],
  ]);
  try {
    await sensor.waitFor(new RegExp(`Capturing on \\S+ with \\d+ workers? \\(${method}\\)`));
    const sent = await veth.replay(inputPath, { pps: PPS });
    // Two stats lines after the last packet: the counters of every worker are published by then.
    const linesBefore = statsLines(sensor.log()).length;
    while (statsLines(sensor.log()).length < linesBefore + 2 * workers) await sleep(200);
    sensor.kill("SIGTERM");
    const exit = await sensor.exited;
    assert.equal(exit.code, 0, exit.stderr);
    assert.match(exit.stderr, /Signal received: finishing files/);
    assert.match(exit.stderr, /Capture finished/);
    const tree = walk(out);
    assert.deepEqual(tree.filter((p) => p.endsWith(".tmp")), [], "no temporary file left");
    const files = new Map<number, string[]>();
    for (const path of tree.filter((p) => /\.pcap$/.test(p))) {
      assert.ok(tree.includes(`${path}.idx`), `${path} has its index`);
      const m = /_w(\d\d)\.pcap$/.exec(path);
      assert.ok(m, `output name ${path} says its worker`);
      const list = files.get(Number(m[1])) ?? [];
      list.push(path);
      files.set(Number(m[1]), list.sort());
    }
    return { truth, input, sent, files, stats: statsLines(exit.stderr), log: exit.stderr };
  } finally {
    sensor.kill("SIGKILL");
    await sensor.exited;
  }
}

function walk(dir: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...walk(path));
    else found.push(path);
  }
  return found;
}

function statsLines(log: string): StatsLine[] {
  return log.split("\n").filter((l) => / if=\S+ W=\d\d /.test(l)).map((line) =>
    line.slice(line.indexOf(" if=") + 1).split(" ").map((kv) => {
      const eq = kv.indexOf("=");
      return [kv.slice(0, eq), kv.slice(eq + 1)] as [string, string];
    })
  );
}

function field(line: StatsLine, name: string): number {
  return Number(line.find(([key]) => key === name)![1]);
}

/** Reads every file of a worker with tcpdump (which must read it cleanly) and checks its time span. */
async function workerPackets(files: string[]): Promise<OraclePacket[]> {
  const all: OraclePacket[] = [];
  for (const file of files) {
    const packets = await tcpdumpPackets(file);
    assert.ok(packets.length > 0, `${file} holds packets`);
    const span = Number(packets.at(-1)!.ts) - Number(packets[0].ts);
    assert.ok(span < 2, `${file} spans ${span} s: expected less than --rotate-interval 2s`);
    all.push(...packets);
  }
  return all;
}

for (const method of ["afpacket", "libpcap"] as const) {
  rootTest(
    `live sensor, ${method}, 1 worker: rotated files hold exactly the first K packets of every flow; stats lines count them`,
    async ({ dir, veth }) => {
      const run = await captureLive(veth!, dir, 1, method);
      assert.equal(run.sent, PACKETS, "tcpreplay sent every packet");
      assert.deepEqual([...run.files.keys()], [0]);
      const files = run.files.get(0)!;
      assert.ok(files.length >= 2, `several finalized files: ${files.join(" ")}`);
      const got = await workerPackets(files);
      const keep = expectedCutoff(run.truth, { packetCutoff: K });
      const expected = run.input.filter((_, i) => keep[i] === 1).map((p) => p.hex);
      assert.equal(got.length, expected.length, "stored packet count");
      assert.deepEqual(
        got.map((p) => p.hex),
        expected,
        "the first K packets of every flow, in order",
      );
      assert.equal(
        run.log.match(/ moved \S+ packets=(\d+)/g)!.map((l) => Number(l.split("=")[1]))
          .reduce((a, b) => a + b, 0),
        expected.length,
        "the moved lines count the stored packets",
      );

      // gotm's stats line: its fields in its order; pkts/output are per interval, recvd a total.
      assert.ok(run.stats.length >= 3, `stats lines every second:\n${run.log}`);
      for (const line of run.stats) assert.deepEqual(line.map(([k]) => k), STATS_FIELDS);
      const last = run.stats.at(-1)!;
      assert.equal(field(last, "recvd"), run.sent, "recvd = packets sent");
      assert.equal(field(last, "dropped"), 0);
      assert.equal(field(last, "ifdropped"), 0);
      const sum = (name: string) => run.stats.reduce((n, line) => n + field(line, name), 0);
      // TCP flows closed by FIN or RST leave the table (removed); the rest are still active.
      assert.ok(sum("removed") > 0, "closed TCP flows are removed");
      assert.equal(
        field(last, "flows") + sum("removed"),
        run.truth.flows.count,
        "active + removed = every generated flow",
      );
      assert.equal(sum("pkts"), run.sent, "pkts per interval add up to the packets sent");
      assert.equal(
        sum("output"),
        expected.length,
        "output per interval adds up to the stored ones",
      );
      assert.equal(
        sum("bytes"),
        run.truth.totalBytes,
        "bytes per interval add up to the bytes sent",
      );
    },
    { veth: `l${method[0]}` },
  );

  rootTest(
    `live sensor, ${method}, 2 workers: every flow is stored by one worker only, both get flows, each keeps the first K`,
    async ({ dir, veth }) => {
      const run = await captureLive(veth!, dir, 2, method);
      assert.equal(run.sent, PACKETS, "tcpreplay sent every packet");
      assert.deepEqual([...run.files.keys()].sort(), [0, 1], "both workers wrote files");
      const keep = expectedCutoff(run.truth, { packetCutoff: K });
      // A stored packet's flow, from its bytes (ignoring the rare byte-identical packets).
      const flowOfHex = new Map<string, number>();
      const duplicate = new Set<string>();
      run.input.forEach((p, i) => {
        if (flowOfHex.has(p.hex)) duplicate.add(p.hex);
        flowOfHex.set(p.hex, run.truth.flowOfPacket[i]);
      });
      const owner = new Map<number, number>();
      const perWorker = new Map<number, OraclePacket[]>();
      for (const [worker, files] of run.files) {
        const packets = await workerPackets(files);
        perWorker.set(worker, packets);
        for (const p of packets) {
          const flow = flowOfHex.get(p.hex);
          assert.ok(flow !== undefined, `worker ${worker} stored a packet that was not sent`);
          if (duplicate.has(p.hex)) continue;
          const before = owner.get(flow) ?? worker;
          assert.equal(before, worker, `flow ${flow} stored by workers ${before} and ${worker}`);
          owner.set(flow, worker);
        }
      }
      const flowsOf = [0, 1].map((w) => [...owner.values()].filter((o) => o === w).length);
      assert.ok(flowsOf[0] > 0 && flowsOf[1] > 0, `both workers got flows: ${flowsOf}`);
      assert.equal(owner.size, run.truth.flows.count, "every flow stored somewhere");
      for (const [worker, packets] of perWorker) {
        // The worker's files, in name order, hold exactly the first K packets of the flows it owns.
        const expected = run.input.filter((_, i) =>
          keep[i] === 1 && owner.get(run.truth.flowOfPacket[i]) === worker
        ).map((p) => p.hex);
        assert.deepEqual(packets.map((p) => p.hex), expected, `worker ${worker}: first K in order`);
      }
      const lastOf = (w: string) => run.stats.findLast((l) => l[1][1] === w)!;
      assert.equal(
        field(lastOf("00"), "recvd") + field(lastOf("01"), "recvd"),
        run.sent,
        "recvd of both workers = packets sent",
      );
      const removed = run.stats.reduce((n, line) => n + field(line, "removed"), 0);
      assert.equal(
        field(lastOf("00"), "flows") + field(lastOf("01"), "flows") + removed,
        run.truth.flows.count,
        "active + removed = every generated flow",
      );
    },
    { veth: `m${method[0]}` },
  );
}
