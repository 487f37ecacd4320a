/**
 * The traffic generator is the oracle of other tests, so it is checked against oracles of its
 * own: tcpdump and tshark read its files, and a small parser written here re-derives every flow
 * key from the bytes and compares it with the generator's truth.
 */

import assert from "node:assert/strict";
import {
  expectedCutoff,
  flowKeyText,
  generateTraffic,
  generateTrafficBytes,
  readTruthJson,
  type TrafficTruth,
  writeTrafficPcap,
  writeTruthJson,
} from "../bench/gen/mod.ts";
import { Prng } from "../bench/gen/prng.ts";
import { countPcapPackets, tcpdumpReadRate, timeCommand } from "../bench/tcpdump_ref.ts";

const START_TS = 1_700_000_000.25;

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  assert.ok(
    out.success,
    `${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`,
  );
  return new TextDecoder().decode(out.stdout);
}

interface Frame {
  tsUs: number;
  caplen: number;
  len: number;
  data: Uint8Array;
}

function readPcap(pcap: Uint8Array): { frames: Frame[]; nanosecond: boolean; snaplen: number } {
  const dv = new DataView(pcap.buffer, pcap.byteOffset, pcap.byteLength);
  const magic = dv.getUint32(0, true);
  assert.ok(magic === 0xa1b2c3d4 || magic === 0xa1b23c4d, `magic ${magic.toString(16)}`);
  assert.equal(dv.getUint16(4, true), 2);
  assert.equal(dv.getUint16(6, true), 4);
  assert.equal(dv.getUint32(20, true), 1, "link type Ethernet");
  const nanosecond = magic === 0xa1b23c4d;
  const frames: Frame[] = [];
  let pos = 24;
  while (pos < pcap.length) {
    const sec = dv.getUint32(pos, true);
    const frac = dv.getUint32(pos + 4, true);
    const caplen = dv.getUint32(pos + 8, true);
    const len = dv.getUint32(pos + 12, true);
    frames.push({
      tsUs: sec * 1e6 + (nanosecond ? frac / 1000 : frac),
      caplen,
      len,
      data: pcap.subarray(pos + 16, pos + 16 + caplen),
    });
    pos += 16 + caplen;
  }
  assert.equal(pos, pcap.length, "records end exactly at the end of the file");
  return { frames, nanosecond, snaplen: dv.getUint32(16, true) };
}

interface Parsed {
  /** Canonical bidirectional key: both ends sorted, so either direction gives the same text. */
  key: string;
  v4ChecksumOk: boolean | null;
  proto: number;
  tcpFlags: number;
  fromAddr: string;
}

function hex(b: Uint8Array, from: number, to: number): string {
  return Array.from(b.subarray(from, to), (x) => x.toString(16).padStart(2, "0")).join("");
}

function ipv4Text(b: Uint8Array, p: number): string {
  return `${b[p]}.${b[p + 1]}.${b[p + 2]}.${b[p + 3]}`;
}

/** An independent decoder for the frames the generator writes (whole frames only). */
function parseFrame(d: Uint8Array): Parsed {
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const dstMac = hex(d, 0, 6);
  const srcMac = hex(d, 6, 12);
  // Unicast frames come from locally administered MACs (bit 1 set, bit 0 clear).
  assert.equal(d[6] & 0x03, 0x02, `source MAC ${srcMac} is locally administered unicast`);
  let p = 12;
  let type = dv.getUint16(p);
  let vlan = 0;
  if (type === 0x88a8) {
    vlan = dv.getUint16(p + 2) & 0xfff;
    assert.equal(dv.getUint16(p + 4), 0x8100, "QinQ inner tag");
    p += 8;
    type = dv.getUint16(p);
  } else if (type === 0x8100) {
    vlan = dv.getUint16(p + 2) & 0xfff;
    p += 4;
    type = dv.getUint16(p);
  }
  p += 2;
  if (type === 0x0806) {
    const ends = [srcMac, dstMac].sort();
    return {
      key: `arp ${ends[0]} ${ends[1]} vlan ${vlan}`,
      v4ChecksumOk: null,
      proto: 0,
      tcpFlags: 0,
      fromAddr: srcMac,
    };
  }
  let proto: number;
  let src: string;
  let dst: string;
  let l4: number;
  let v4ChecksumOk: boolean | null = null;
  if (type === 0x0800) {
    assert.equal(d[p], 0x45, "IPv4 without options");
    let sum = 0;
    for (let k = 0; k < 20; k += 2) sum += dv.getUint16(p + k);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    v4ChecksumOk = sum === 0xffff;
    proto = d[p + 9];
    src = ipv4Text(d, p + 12);
    dst = ipv4Text(d, p + 16);
    for (const a of [src, dst]) assert.match(a, /^198\.(18|19)\./, `IPv4 ${a} in 198.18.0.0/15`);
    l4 = p + 20;
  } else {
    assert.equal(type, 0x86dd, `EtherType 0x${type.toString(16)}`);
    proto = d[p + 6];
    src = hex(d, p + 8, p + 24);
    dst = hex(d, p + 24, p + 40);
    for (const a of [src, dst]) assert.ok(a.startsWith("20010db8"), `IPv6 ${a} in 2001:db8::/32`);
    l4 = p + 40;
  }
  let tcpFlags = 0;
  let srcEnd = src;
  let dstEnd = dst;
  if (proto === 6 || proto === 17) {
    srcEnd = `${src}/${dv.getUint16(l4)}`;
    dstEnd = `${dst}/${dv.getUint16(l4 + 2)}`;
    if (proto === 6) tcpFlags = d[l4 + 13];
  }
  const ends = [srcEnd, dstEnd].sort();
  return {
    key: `ip${type === 0x0800 ? 4 : 6} ${proto} ${ends[0]} ${ends[1]} vlan ${vlan}`,
    v4ChecksumOk,
    proto,
    tcpFlags,
    fromAddr: src,
  };
}

function topShare(truth: TrafficTruth, fraction: number): number {
  const bytes = Array.from(truth.flows.bytes).sort((a, b) => b - a);
  const k = Math.ceil(bytes.length * fraction);
  let top = 0;
  for (let i = 0; i < k; i++) top += bytes[i];
  return top / truth.totalBytes;
}

Deno.test("prng is deterministic and roughly uniform", () => {
  const a = new Prng(42);
  const b = new Prng(42);
  const c = new Prng(43);
  let same = 0;
  let sum = 0;
  for (let i = 0; i < 10000; i++) {
    const x = a.u32();
    assert.equal(x, b.u32());
    if (x === c.u32()) same++;
    sum += c.float();
  }
  assert.ok(same < 3);
  assert.ok(Math.abs(sum / 10000 - 0.5) < 0.02, `mean ${sum / 10000}`);
  assert.throws(() => new Prng(NaN), /Invalid seed NaN/);
});

Deno.test("tcpdump reads every packet and tshark finds nothing malformed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cutcap-gen-" });
  try {
    const file = `${dir}/t.pcap`;
    const truth = await writeTrafficPcap(file, {
      seed: 7,
      packets: 60000,
      ipv6Share: 0.4,
      vlanShare: 0.4,
      qinqShare: 0.3,
      nonIpShare: 0.05,
    });
    assert.equal(truth.packets, 60000);
    const text = await run("tcpdump", ["-r", file, "-nn"]);
    assert.equal(text.split("\n").filter((l) => l !== "").length, 60000);

    const malformed = await run("tshark", ["-r", file, "-Y", "_ws.malformed"]);
    assert.equal(malformed.trim(), "", `malformed packets:\n${malformed.slice(0, 2000)}`);

    // With checksum validation on, every IP, TCP, UDP and ICMP checksum must be good (1).
    const statuses = await run("tshark", [
      "-r",
      file,
      "-o",
      "ip.check_checksum:TRUE",
      "-o",
      "tcp.check_checksum:TRUE",
      "-o",
      "udp.check_checksum:TRUE",
      "-T",
      "fields",
      "-e",
      "ip.checksum.status",
      "-e",
      "tcp.checksum.status",
      "-e",
      "udp.checksum.status",
      "-e",
      "icmp.checksum.status",
      "-e",
      "icmpv6.checksum.status",
    ]);
    const bad = statuses.split("\n").filter((l) => /[02]/.test(l));
    assert.deepEqual(bad.slice(0, 5), [], "checksum statuses other than Good");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("truth matches an independent parse of the bytes", () => {
  const { pcap, truth } = generateTrafficBytes({
    seed: 11,
    packets: 40000,
    startTs: START_TS,
    ipv6Share: 0.3,
    vlanShare: 0.3,
    qinqShare: 0.3,
    nonIpShare: 0.05,
  });
  const { frames } = readPcap(pcap);
  assert.equal(frames.length, truth.packets);
  assert.equal(truth.fileBytes, pcap.length);
  assert.equal(frames[0].tsUs, Math.round(START_TS * 1e6), "starts at startTs");

  const keyOfFlow = new Map<number, string>();
  const flowOfKey = new Map<string, number>();
  const bytes = new Float64Array(truth.flows.count);
  const packets = new Float64Array(truth.flows.count);
  const closedBy = new Map<number, Set<string>>();
  const seen = { v4: 0, v6: 0, arp: 0, vlan: 0, qinq: 0, tcp: 0, udp: 0, icmp: 0 };
  let lastTs = 0;
  let sumLen = 0;
  for (let i = 0; i < frames.length; i++) {
    const fr = frames[i];
    assert.ok(fr.tsUs >= lastTs, `timestamps non-decreasing at ${i}`);
    lastTs = fr.tsUs;
    assert.equal(fr.len, fr.caplen);
    assert.ok(fr.len >= 60 && fr.len <= 1522, `frame length ${fr.len}`);
    assert.equal(fr.len, truth.wireLen[i]);
    assert.equal(fr.tsUs, truth.tsUs[i]);
    sumLen += fr.len;
    const parsed = parseFrame(fr.data);
    if (parsed.v4ChecksumOk !== null) assert.ok(parsed.v4ChecksumOk, `IPv4 checksum of ${i}`);
    const f = truth.flowOfPacket[i];
    const known = keyOfFlow.get(f);
    if (known === undefined) {
      assert.equal(flowOfKey.get(parsed.key), undefined, `key ${parsed.key} is one flow`);
      keyOfFlow.set(f, parsed.key);
      flowOfKey.set(parsed.key, f);
      assert.equal(truth.flows.firstPacket[f], i);
    } else {
      assert.equal(parsed.key, known, `packet ${i} belongs to flow ${f}`);
    }
    bytes[f] += fr.len;
    packets[f] += 1;
    // Nothing follows an RST, nor the second FIN: closing policies cannot change the result.
    const closers = closedBy.get(f);
    if (closers !== undefined) {
      assert.ok(
        closers.has("rst") === false && closers.size < 2,
        `packet ${i} after close of ${flowKeyText(truth, f)}`,
      );
    }
    if (parsed.proto === 6 && (parsed.tcpFlags & 0x05) !== 0) {
      const set = closers ?? new Set<string>();
      set.add((parsed.tcpFlags & 0x04) !== 0 ? "rst" : parsed.fromAddr);
      closedBy.set(f, set);
    }
    if (parsed.key.startsWith("ip4")) seen.v4++;
    if (parsed.key.startsWith("ip6")) seen.v6++;
    if (parsed.key.startsWith("arp")) seen.arp++;
    if (!parsed.key.endsWith("vlan 0")) seen.vlan++;
    if (fr.data[12] === 0x88) seen.qinq++;
    if (parsed.proto === 6) seen.tcp++;
    if (parsed.proto === 17) seen.udp++;
    if (parsed.proto === 1 || parsed.proto === 58) seen.icmp++;
  }
  assert.equal(keyOfFlow.size, truth.flows.count);
  assert.deepEqual(Array.from(bytes), Array.from(truth.flows.bytes));
  assert.deepEqual(Array.from(packets), Array.from(truth.flows.packets));
  assert.equal(sumLen, truth.totalBytes);
  for (const [name, n] of Object.entries(seen)) assert.ok(n > 0, `some ${name} frames`);
  for (let f = 1; f < truth.flows.count; f++) {
    assert.ok(truth.flows.firstPacket[f] > truth.flows.firstPacket[f - 1]);
  }
  // Many flows are open at once: flows are interleaved, not sequential.
  const mid = truth.tsUs[truth.packets >> 1];
  let open = 0;
  for (let f = 0; f < truth.flows.count; f++) {
    const first = truth.tsUs[truth.flows.firstPacket[f]];
    if (first <= mid && truth.tsUs[truth.flows.lastPacket[f]] >= mid) open++;
  }
  assert.ok(open > 100, `${open} flows open at the median time`);
});

Deno.test("same seed gives the same bytes, another seed different bytes", async () => {
  const opts = { seed: 3, packets: 20000, nanosecond: true, snaplen: 200 };
  const a = await sha256(generateTrafficBytes(opts).pcap);
  const b = await sha256(generateTrafficBytes(opts).pcap);
  const c = await sha256(generateTrafficBytes({ ...opts, seed: 4 }).pcap);
  assert.equal(a, b);
  assert.notEqual(a, c);
});

Deno.test("flow sizes are heavy-tailed: top 1% of flows carry most bytes", () => {
  for (const seed of [1, 2, 3]) {
    const truth = generateTraffic({ seed, packets: 200000 }, () => {});
    const share = topShare(truth, 0.01);
    assert.ok(share > 0.5, `seed ${seed}: top 1% of flows carry ${share}`);
    const sizes = Array.from(truth.flows.packets).sort((a, b) => a - b);
    const median = sizes[sizes.length >> 1];
    assert.ok(median <= 10, `median flow has ${median} packets`);
    // Bimodal sizes: many small frames and many full-size ones.
    let small = 0;
    let full = 0;
    for (const len of truth.wireLen) {
      if (len <= 100) small++;
      if (len >= 1400) full++;
    }
    assert.ok(small > truth.packets * 0.2 && full > truth.packets * 0.2, `${small} ${full}`);
  }
});

Deno.test("no flow is idle longer than maxIdle except the idleGapEvery flows", () => {
  const maxIdle = 2;
  for (const idleGapEvery of [0, 7]) {
    const truth = generateTraffic(
      { seed: 5, packets: 50000, maxIdle, idleGapEvery, rate: 2000 },
      () => {},
    );
    const last = new Float64Array(truth.flows.count).fill(-1);
    const index = new Int32Array(truth.flows.count);
    let gaps = 0;
    for (let p = 0; p < truth.packets; p++) {
      const f = truth.flowOfPacket[p];
      if (last[f] >= 0 && truth.tsUs[p] - last[f] > maxIdle * 1e6) {
        gaps++;
        assert.equal(truth.flows.idleGapAfter[f], index[f] - 1, "the gap is where the truth says");
        assert.equal(truth.tsUs[p] - last[f], 3e6, "idleGap defaults to 1.5 * maxIdle");
      }
      last[f] = truth.tsUs[p];
      index[f]++;
    }
    const expected = truth.flows.idleGapAfter.filter((x) => x >= 0).length;
    assert.equal(gaps, expected);
    if (idleGapEvery === 0) assert.equal(gaps, 0);
    else assert.ok(gaps > 50, `${gaps} flows with a long pause`);
  }
});

Deno.test("snaplen truncates captured bytes, not wire lengths", async () => {
  const { pcap, truth } = generateTrafficBytes({ seed: 9, packets: 5000, snaplen: 96 });
  const { frames, snaplen } = readPcap(pcap);
  assert.equal(snaplen, 96);
  let truncated = 0;
  for (let i = 0; i < frames.length; i++) {
    assert.equal(frames[i].len, truth.wireLen[i]);
    assert.equal(frames[i].caplen, Math.min(96, truth.wireLen[i]));
    if (frames[i].caplen < frames[i].len) truncated++;
  }
  assert.ok(truncated > 1000);
  const dir = await Deno.makeTempDir({ prefix: "cutcap-gen-" });
  try {
    await Deno.writeFile(`${dir}/s.pcap`, pcap);
    const text = await run("tcpdump", ["-r", `${dir}/s.pcap`, "-nn"]);
    assert.equal(text.split("\n").filter((l) => l !== "").length, 5000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("expectedCutoff follows the counting rule", () => {
  const truth = generateTraffic({ seed: 12, packets: 30000 }, () => {});
  const all = expectedCutoff(truth, {});
  assert.equal(all.reduce((a, b) => a + b, 0), truth.packets, "0/absent = unlimited");

  // A packet cutoff keeps exactly the first k packets of every flow.
  const k = 5;
  const keep = expectedCutoff(truth, { packetCutoff: k });
  const kept = new Float64Array(truth.flows.count);
  const seen = new Float64Array(truth.flows.count);
  for (let p = 0; p < truth.packets; p++) {
    const f = truth.flowOfPacket[p];
    assert.equal(keep[p], seen[f] < k ? 1 : 0);
    seen[f]++;
    kept[f] += keep[p];
  }
  for (let f = 0; f < truth.flows.count; f++) {
    assert.equal(kept[f], Math.min(k, truth.flows.packets[f]));
  }

  // Byte cutoff on hand-made lengths: a packet is kept while the bytes before it are < cutoff.
  const lens = new Uint16Array(truth.packets).fill(100);
  const byBytes = expectedCutoff(truth, { byteCutoff: 250 }, lens);
  const both = expectedCutoff(truth, { byteCutoff: 250, packetCutoff: 2 }, lens);
  const count = new Float64Array(truth.flows.count);
  for (let p = 0; p < truth.packets; p++) {
    const f = truth.flowOfPacket[p];
    assert.equal(byBytes[p], count[f] < 3 ? 1 : 0, "before-bytes 0, 100, 200 < 250");
    assert.equal(both[p], count[f] < 2 ? 1 : 0);
    count[f]++;
  }
  assert.throws(() => expectedCutoff(truth, {}, [1, 2]), /Invalid frameLens/);
});

Deno.test("expectedCutoff idleTimeout restarts the counters after a long pause", () => {
  const truth = generateTraffic(
    { seed: 6, packets: 20000, maxIdle: 1, idleGapEvery: 3, idleGap: 5 },
    () => {},
  );
  const plain = expectedCutoff(truth, { packetCutoff: 1 });
  const timed = expectedCutoff(truth, { packetCutoff: 1, idleTimeout: 2 });
  const extra = new Float64Array(truth.flows.count);
  for (let p = 0; p < truth.packets; p++) extra[truth.flowOfPacket[p]] += timed[p] - plain[p];
  for (let f = 0; f < truth.flows.count; f++) {
    assert.equal(extra[f], truth.flows.idleGapAfter[f] >= 0 ? 1 : 0, flowKeyText(truth, f));
  }
});

Deno.test("CLI, writeTrafficPcap and the truth file agree", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cutcap-gen-" });
  try {
    const cli = `${dir}/cli.pcap`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../bench/gen/mod.ts", import.meta.url).pathname,
        "--seed",
        "21",
        "--packets",
        "3000",
        "--out",
        cli,
        "--truth",
        `${dir}/cli.json`,
        "--snaplen",
        "128",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const api = `${dir}/api.pcap`;
    const truth = await writeTrafficPcap(api, { seed: 21, packets: 3000, snaplen: 128 });
    assert.equal(await sha256(await Deno.readFile(cli)), await sha256(await Deno.readFile(api)));

    const back = await readTruthJson(`${dir}/cli.json`);
    assert.deepEqual(back.flowOfPacket, truth.flowOfPacket);
    assert.deepEqual(back.wireLen, truth.wireLen);
    assert.deepEqual(back.tsUs, truth.tsUs);
    assert.deepEqual(back.flows, truth.flows);
    assert.equal(back.totalBytes, truth.totalBytes);
    await writeTruthJson(`${dir}/again.json`, back);
    assert.equal(
      await Deno.readTextFile(`${dir}/again.json`),
      await Deno.readTextFile(`${dir}/cli.json`),
    );

    const bad = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../bench/gen/mod.ts", import.meta.url).pathname,
        "--packets",
        "x",
        "--out",
        api,
      ],
      stderr: "piped",
    }).output();
    assert.equal(bad.code, 2);
    assert.match(new TextDecoder().decode(bad.stderr), /Invalid --packets x: expected a number/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tcpdump_ref times commands and tcpdump's read rate", async () => {
  const t = await timeCommand("true", [], { runs: 3 });
  assert.equal(t.runs.length, 3);
  assert.ok(t.median >= 0 && t.median < 5);
  assert.ok(t.peakRssKb > 0);
  await assert.rejects(() => timeCommand("false", [], { runs: 1 }), /Command failed/);

  const dir = await Deno.makeTempDir({ prefix: "cutcap-gen-" });
  try {
    const file = `${dir}/r.pcap`;
    await writeTrafficPcap(file, { seed: 2, packets: 20000 });
    assert.equal(await countPcapPackets(file), 20000);
    const rate = await tcpdumpReadRate(file, { runs: 1 });
    assert.equal(rate.packets, 20000);
    assert.ok(rate.nullSeconds > 0 && rate.fileSeconds > 0);
    assert.ok(rate.packetsPerSecond > 0);
    assert.ok(rate.toFile.peakRssKb > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
