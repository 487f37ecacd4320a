/**
 * The two capture methods side by side (issue 17): one cutcap with `--capture-method afpacket`, one
 * with `--capture-method libpcap` and a tcpdump capture the same replayed traffic at once on a veth
 * end. Every packet must come out the same from all three — bytes (VLAN tags put back), lengths,
 * microsecond timestamps — and be the packet sent; with `--filter` the three select the same
 * packets, the ones tcpdump's filter picks from the sent file. With both sensors stopped (SIGSTOP)
 * while traffic arrives, each counts as dropped exactly the packets it did not store. The oracles
 * are tcpreplay's count, tcpdump and tshark reading the files; nothing of cutcap reads them. Those
 * need root; how `--capture-method` is chosen does not.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import type { CaptureMethod } from "../src/capture/mod.ts";
import { parseCaptureArgs } from "../src/config.ts";
import { planWorkers } from "../src/sensor/supervisor.ts";
import { ip, ipv4Frame, udp, writePcap } from "./support/live_frames.ts";
import { rootTest, type Veth } from "./support/netns.ts";
import {
  archiveFiles,
  type OraclePacket,
  tcpdumpPackets,
  tsharkLengths,
} from "./support/oracle.ts";
import { type CutcapProcess, sleep, startCutcap } from "./support/process.ts";

const METHODS: CaptureMethod[] = ["afpacket", "libpcap"];
const SNAPLEN = 160;

/** Runs `body` with environment variables set as given (undefined: unset), then restores them. */
function withEnv(env: Record<string, string | undefined>, body: () => void): void {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, Deno.env.get(k)]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  };
  try {
    apply(env);
    body();
  } finally {
    apply(saved);
  }
}

Deno.test("--capture-method: afpacket by default on Linux, libpcap with --libpcap or SNF", () => {
  const method = (args: string[]) => parseCaptureArgs(["-i", "eth0", ...args]).captureMethod;
  withEnv({ SNF_NUM_RINGS: undefined, CUTCAP_LIBPCAP: undefined }, () => {
    assert.equal(method([]), "afpacket");
    assert.equal(method(["--capture-method", "libpcap"]), "libpcap");
    assert.equal(method(["--libpcap", "/opt/snf/lib/libpcap.so"]), "libpcap");
    assert.equal(
      method(["--libpcap", "/opt/x/libpcap.so", "--capture-method", "afpacket"]),
      "afpacket",
    );
    assert.throws(
      () => method(["--capture-method", "pfring"]),
      (err: Error) =>
        err.message === 'Invalid --capture-method "pfring": expected afpacket or libpcap',
    );
  });
  withEnv({ SNF_NUM_RINGS: undefined, CUTCAP_LIBPCAP: "/opt/x/libpcap.so" }, () => {
    assert.equal(method([]), "libpcap");
  });
  withEnv({ SNF_NUM_RINGS: "2", CUTCAP_LIBPCAP: undefined }, () => {
    assert.equal(method([]), "libpcap");
    // SNF's rings split flows for libpcap handles; the afpacket workers need the kernel's fanout.
    const fanout = (args: string[]) =>
      planWorkers(parseCaptureArgs(["-i", "eth0", ...args])).map((w) =>
        w.source.kind === "live" && w.source.fanout
      );
    assert.deepEqual(fanout([]), [false, false]);
    assert.deepEqual(fanout(["--capture-method", "afpacket"]), [true, true]);
  });
});

/** Writes generated traffic (VLAN and QinQ tags, IPv6, ARP) to `path`; the packets as tcpdump reads them. */
async function writeTraffic(path: string, packets: number, seed: number): Promise<OraclePacket[]> {
  const { pcap } = generateTrafficBytes({
    seed,
    packets,
    flows: 300,
    vlanShare: 0.4,
    qinqShare: 0.3,
    nonIpShare: 0.05,
    ipv6Share: 0.3,
  });
  await Deno.writeFile(path, pcap);
  return await tcpdumpPackets(path);
}

/** One cutcap per method, capturing on `veth.outside` into `<dir>/<method>`. */
async function startSensors(veth: Veth, dir: string, args: string[]): Promise<CutcapProcess[]> {
  const sensors = METHODS.map((method) =>
    startCutcap([
      ...["--interface", veth.outside, "--out", `${dir}/${method}`, "--capture-method", method],
      ...["--byte-cutoff", "0", "--listen", "off", "--stats-interval", "1s"],
      ...["--snaplen", String(SNAPLEN), ...args],
    ])
  );
  for (const [i, sensor] of sensors.entries()) {
    await sensor.waitFor(new RegExp(`Capturing on \\S+ with 1 worker \\(${METHODS[i]}\\)`));
  }
  return sensors;
}

/**
 * tcpdump writing what it captures on `iface`, ready once it says it listens; packet by packet (its
 * default ring blocks wait a second to be handed over, and it stops without reading a partial one),
 * so its file can be read while it runs.
 */
async function startTcpdump(iface: string, path: string, filter: string) {
  const child = new Deno.Command("tcpdump", {
    args: [
      ...["-i", iface, "-w", path, "-s", String(SNAPLEN), "-n", "-U", "--immediate-mode"],
      ...(filter ? [filter] : []),
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let said = "";
  while (!said.includes("listening on")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`tcpdump ended before listening: ${said}`);
    said += value;
  }
  return {
    async stop(): Promise<void> {
      child.kill("SIGINT");
      await child.status;
      reader.releaseLock();
      await child.stderr.cancel().catch(() => {});
    },
  };
}

/** Numbers of the `name=` fields of a sensor's stats lines. */
function statsField(log: string, name: string): number[] {
  return [...log.matchAll(new RegExp(` if=\\S+ W=\\d\\d .*\\b${name}=(\\d+)`, "g"))]
    .map((m) => Number(m[1]));
}

/** Packets seen by a sensor so far: the sum of its stats lines' `pkts`. */
function seen(log: string): number {
  return statsField(log, "pkts").reduce((a, b) => a + b, 0);
}

/** Waits until a sensor's log satisfies `done` (its stats lines come every second), then stops it; its log. */
async function finish(sensor: CutcapProcess, done: (log: string) => boolean): Promise<string> {
  const deadline = Date.now() + 30_000;
  while (!done(sensor.log())) {
    if (Date.now() > deadline) {
      throw new Error(`Sensor's counters never got there:\n${sensor.log()}`);
    }
    await sleep(200);
  }
  sensor.kill("SIGTERM");
  const exit = await sensor.exited;
  assert.equal(exit.code, 0, exit.stderr);
  return exit.stderr;
}

/** Every packet a sensor stored, in file order, as tcpdump reads them; and tshark's wire lengths. */
async function stored(out: string): Promise<{ packets: OraclePacket[]; lengths: number[] }> {
  const packets: OraclePacket[] = [];
  const lengths: number[] = [];
  for (const file of archiveFiles(out)) {
    packets.push(...await tcpdumpPackets(file));
    lengths.push(...await tsharkLengths(file));
  }
  return { packets, lengths };
}

/** Source MAC of the filler frames (see {@link flushStalledBlocks}), as tcpdump -xx prints it. */
const FILLER_MAC = "02cccccccc01";

/**
 * Frames sent after the traffic only when a capture has not seen all of it in time: with this
 * kernel (6.18, TPACKET_V3's block timer is an hrtimer since) a partly filled ring block now and
 * then is not handed over after the block timeout, for libpcap and afpacket alike, and waits for
 * more packets to fill it. 1.5 MB of untagged TCP (which every filter of these tests lets through)
 * fills any block; the tests compare what came before them.
 */
function writeFiller(path: string): void {
  const frames = Array.from({ length: 1000 }, (_, i) => {
    const f = ipv4Frame(ip(0xff00), ip(0xff01), udp(40000 + i, 9, 1400), { proto: 6 });
    f.set([0x02, 0xcc, 0xcc, 0xcc, 0xcc, 0x01], 6);
    return f;
  });
  writePcap(path, frames);
}

/**
 * Waits up to 8 s for `done` on every sensor; when one is still short, sends the filler (up to
 * three times) and waits again.
 */
async function flushStalledBlocks(
  veth: Veth,
  filler: string,
  ready: () => Promise<boolean>,
): Promise<void> {
  for (let round = 0; round < 4; round++) {
    const until = Date.now() + 8_000;
    while (Date.now() < until) {
      if (await ready()) return;
      await sleep(250);
    }
    if (round < 3) {
      console.log("capture methods: a ring block was not handed over in time; sending filler");
      await veth.replay(filler, { pps: 20000 });
    }
  }
}

/** The first `count` packets, and a check that every packet after them is filler. */
function traffic(packets: OraclePacket[], count: number, who: string): OraclePacket[] {
  const extra = packets.slice(count).filter((p) => p.hex.slice(12, 24) !== FILLER_MAC);
  assert.deepEqual(extra, [], `${who}: only filler after the traffic`);
  return packets.slice(0, count);
}

/** Runs both sensors and tcpdump over `input` replayed once; what each stored of it. */
async function captureAll(veth: Veth, dir: string, input: string, filter: string) {
  writeFiller(`${dir}/filler.pcap`);
  const sensors = await startSensors(veth, dir, filter ? ["--filter", filter] : []);
  try {
    await Deno.mkdir(`${dir}/tcpdump`);
    const tcpdump = await startTcpdump(veth.outside, `${dir}/tcpdump/capture.pcap`, filter);
    const sent = await veth.replay(input, { pps: 5000 });
    const expected = filter ? (await tcpdumpPackets(input, { filter })).length : sent;
    await flushStalledBlocks(veth, `${dir}/filler.pcap`, async () => {
      if (!sensors.every((sensor) => seen(sensor.log()) >= expected)) return false;
      return (await tcpdumpPackets(`${dir}/tcpdump/capture.pcap`)).length >= expected;
    });
    for (const sensor of sensors) await finish(sensor, (log) => seen(log) >= expected);
    await tcpdump.stop();
    const results = await Promise.all(METHODS.map((m) => stored(`${dir}/${m}`)));
    const capture = await stored(`${dir}/tcpdump`);
    return {
      sent,
      byMethod: results.map((r, i) => ({
        packets: traffic(r.packets, expected, METHODS[i]),
        lengths: r.lengths.slice(0, expected),
      })),
      tcpdump: {
        packets: traffic(capture.packets, expected, "tcpdump"),
        lengths: capture.lengths.slice(0, expected),
      },
    };
  } finally {
    for (const sensor of sensors) sensor.kill("SIGKILL");
    await Promise.all(sensors.map((s) => s.exited));
  }
}

rootTest(
  "capture methods: afpacket, libpcap and tcpdump store the same packets, as sent",
  async ({ dir, veth }) => {
    const input = await writeTraffic(`${dir}/input.pcap`, 5000, 71);
    const inputLengths = await tsharkLengths(`${dir}/input.pcap`);
    const run = await captureAll(veth!, dir, `${dir}/input.pcap`, "");
    assert.equal(run.sent, input.length, "tcpreplay sent every packet");
    const tagged = input.filter((p) => /^.{24}(8100|88a8)/.test(p.hex)).length;
    assert.ok(tagged > 500, `${tagged} VLAN-tagged packets in the traffic`);
    assert.equal(run.tcpdump.packets.length, input.length, "tcpdump captured every packet");
    assert.deepEqual(
      run.tcpdump.packets.map((p) => p.hex),
      input.map((p) => p.hex.slice(0, 2 * SNAPLEN)),
      "tcpdump: the bytes sent, cut at the snaplen",
    );
    assert.deepEqual(run.tcpdump.lengths, inputLengths, "tcpdump: the wire lengths sent");
    for (const [i, method] of METHODS.entries()) {
      const got = run.byMethod[i];
      assert.equal(got.packets.length, input.length, `${method}: every packet stored`);
      assert.deepEqual(got.packets, run.tcpdump.packets, `${method}: tcpdump's bytes and times`);
      assert.deepEqual(got.lengths, run.tcpdump.lengths, `${method}: tcpdump's wire lengths`);
    }
  },
  { veth: "ms" },
);

rootTest(
  "capture methods: with --filter, afpacket, libpcap and tcpdump select the same packets",
  async ({ dir, veth }) => {
    // Filters on VLAN tags run on tag-less frames in the kernel (it strips the outer tag):
    // libpcap compiles them for a live capture with the kernel's VLAN extensions.
    const filter = "(vlan and udp) or (tcp and not vlan)";
    const input = await writeTraffic(`${dir}/input.pcap`, 4000, 72);
    const selected = await tcpdumpPackets(`${dir}/input.pcap`, { filter });
    assert.ok(
      selected.length > 200 && selected.length < input.length - 200,
      `the filter selects ${selected.length} of ${input.length}`,
    );
    const run = await captureAll(veth!, dir, `${dir}/input.pcap`, filter);
    assert.equal(run.sent, input.length, "tcpreplay sent every packet");
    assert.deepEqual(
      run.tcpdump.packets.map((p) => p.hex),
      selected.map((p) => p.hex.slice(0, 2 * SNAPLEN)),
      "tcpdump live selects what its filter selects from the sent file",
    );
    for (const [i, method] of METHODS.entries()) {
      assert.deepEqual(
        run.byMethod[i].packets,
        run.tcpdump.packets,
        `${method}: tcpdump's packets`,
      );
    }
  },
  { veth: "mf" },
);

rootTest(
  "capture methods: packets arriving while the sensor is stopped are dropped, and counted exactly",
  async ({ dir, veth }) => {
    const input = await writeTraffic(`${dir}/input.pcap`, 3000, 73);
    // The smallest rings (afpacket: two 4 KiB blocks at this snaplen; libpcap: one 256 KiB block).
    const sensors = await startSensors(veth!, dir, ["--buffer-size", "1"]);
    try {
      for (const sensor of sensors) sensor.kill("SIGSTOP");
      const sent = await veth!.replay(`${dir}/input.pcap`, { pps: 10000 });
      assert.equal(sent, input.length);
      for (const sensor of sensors) sensor.kill("SIGCONT");
      for (const [i, method] of METHODS.entries()) {
        const sensor = sensors[i];
        // Seen = stored here (no cutoff): once every packet is accounted for in the stats lines
        // (recvd = sent = seen + dropped), the files must hold exactly the packets not dropped.
        const last = (log: string, name: string) => statsField(log, name).at(-1) ?? 0;
        const log = await finish(
          sensor,
          (log) => last(log, "recvd") === sent && seen(log) + last(log, "dropped") === sent,
        );
        const dropped = last(log, "dropped");
        const { packets } = await stored(`${dir}/${method}`);
        assert.ok(dropped > 0 && packets.length > 0, `${method}: ${dropped} dropped`);
        assert.equal(dropped, sent - packets.length, `${method}: dropped = sent - stored`);
        // What was kept is the start of the traffic: the ring filled, then the kernel dropped.
        assert.deepEqual(
          packets.map((p) => p.hex),
          input.slice(0, packets.length).map((p) => p.hex.slice(0, 2 * SNAPLEN)),
          `${method}: the packets before the ring was full`,
        );
      }
    } finally {
      for (const sensor of sensors) {
        sensor.kill("SIGCONT");
        sensor.kill("SIGKILL");
      }
      await Promise.all(sensors.map((s) => s.exited));
    }
  },
  { veth: "mx" },
);

rootTest(
  "capture methods: a sensor stopped for 4 s while a trickle arrives loses nothing with the default ring",
  async ({ dir, veth }) => {
    // 100 packets/s: every --pcap-timeout (100 ms) hands a part-filled block over, so what the ring
    // rides out is its number of blocks × 100 ms (64 blocks by default: 6.4 s), not its size.
    const input = await writeTraffic(`${dir}/input.pcap`, 400, 79);
    const sensors = await startSensors(veth!, dir, []);
    try {
      for (const sensor of sensors) sensor.kill("SIGSTOP");
      const sent = await veth!.replay(`${dir}/input.pcap`, { pps: 100 });
      assert.equal(sent, input.length);
      for (const sensor of sensors) sensor.kill("SIGCONT");
      for (const [i, method] of METHODS.entries()) {
        const last = (log: string, name: string) => statsField(log, name).at(-1) ?? 0;
        const log = await finish(sensors[i], (log) => seen(log) + last(log, "dropped") === sent);
        assert.equal(last(log, "dropped"), 0, `${method}: dropped`);
        const { packets } = await stored(`${dir}/${method}`);
        assert.deepEqual(
          packets.map((p) => p.hex),
          input.map((p) => p.hex.slice(0, 2 * SNAPLEN)),
          `${method}: every packet sent`,
        );
      }
    } finally {
      for (const sensor of sensors) {
        sensor.kill("SIGCONT");
        sensor.kill("SIGKILL");
      }
      await Promise.all(sensors.map((s) => s.exited));
    }
  },
  { veth: "ms" },
);
