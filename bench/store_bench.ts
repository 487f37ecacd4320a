/**
 * Throughput of the pcap writer (src/store): MB/s of PcapFileWriter.writePacket for each block
 * compression, on two kinds of frames: bench/gen traffic (random, TLS-like payloads: barely
 * compressible) and a text-heavy mix (half the payload plain HTTP text). Also shows the cost of
 * the three ways a caller can hand over packet bytes.
 *
 * Run: deno run --allow-all bench/store_bench.ts [MB per run, default 200]
 */
import { generateTrafficBytes } from "./gen/mod.ts";
import type { Compression } from "../src/pcap/mod.ts";
import { PcapFileWriter } from "../src/store/mod.ts";
import { makePackets } from "../tests/store_test_util.ts";

interface Frames {
  name: string;
  bytes: Uint8Array;
  offsets: Int32Array;
  caplens: Int32Array;
  lens: Int32Array;
  views: Uint8Array[];
}

function fromPcap(name: string, pcap: Uint8Array): Frames {
  const v = new DataView(pcap.buffer, pcap.byteOffset, pcap.length);
  const offs: number[] = [];
  const caps: number[] = [];
  const lens: number[] = [];
  for (let p = 24; p + 16 <= pcap.length;) {
    const cap = v.getUint32(p + 8, true);
    offs.push(p + 16);
    caps.push(cap);
    lens.push(v.getUint32(p + 12, true));
    p += 16 + cap;
  }
  return {
    name,
    bytes: pcap,
    offsets: Int32Array.from(offs),
    caplens: Int32Array.from(caps),
    lens: Int32Array.from(lens),
    views: offs.map((o, i) => pcap.subarray(o, o + caps[i])),
  };
}

function textMix(count: number): Frames {
  const packets = makePackets(count, { seed: 3 });
  let total = 24;
  for (const p of packets) total += 16 + p.data.length;
  const pcap = new Uint8Array(total);
  const v = new DataView(pcap.buffer);
  let p = 24;
  for (const pk of packets) {
    v.setUint32(p + 8, pk.data.length, true);
    v.setUint32(p + 12, pk.wireLen, true);
    pcap.set(pk.data, p + 16);
    p += 16 + pk.data.length;
  }
  return fromPcap("text-mix", pcap);
}

type Mode = "exact" | "staged" | "offset";

function run(
  frames: Frames,
  compress: Compression,
  level: number | undefined,
  mb: number,
  mode: Mode,
) {
  const path = `/tmp/cutcap-store-bench.pcap`;
  const w = new PcapFileWriter({
    path,
    linkType: 1,
    snaplen: 262144,
    compress,
    level,
  });
  const stage = new Uint8Array(262144);
  const target = mb * 1e6;
  let written = 0;
  let packets = 0;
  const n = frames.offsets.length;
  const t0 = performance.now();
  for (let i = 0; written < target; i = i + 1 === n ? 0 : i + 1) {
    const cap = frames.caplens[i];
    if (mode === "exact") {
      w.writePacket(
        frames.views[i],
        0,
        cap,
        frames.lens[i],
        1700000000 + (packets >>> 16),
        packets & 0xffff,
      );
    } else if (mode === "staged") {
      // Like a capture loop copying each frame into one long-lived buffer first.
      stage.set(frames.views[i], 0);
      w.writePacket(stage, 0, cap, frames.lens[i], 1700000000 + (packets >>> 16), packets & 0xffff);
    } else {w.writePacket(
        frames.bytes,
        frames.offsets[i],
        cap,
        frames.lens[i],
        1700000000 + (packets >>> 16),
        packets & 0xffff,
      );}
    written += 16 + cap;
    packets++;
  }
  const file = w.finalize();
  const s = (performance.now() - t0) / 1000;
  Deno.removeSync(path);
  return {
    mbps: written / 1e6 / s,
    kpps: packets / 1e3 / s,
    ratio: (file?.bytesOnDisk ?? 0) / (file?.bytesUncompressed ?? 1),
  };
}

const mb = Number(Deno.args[0] ?? 200);
const datasets = [
  fromPcap("bench/gen", generateTrafficBytes({ seed: 1, packets: 60000 }).pcap),
  textMix(60000),
];
const configs: [Compression, number | undefined][] = [
  ["none", undefined],
  ["gzip", 1],
  ["gzip", 6],
  ["zstd", 1],
  ["zstd", 3],
];
console.log(`| frames | compression | MB/s | kpps | size on disk |`);
console.log(`|---|---|---|---|---|`);
for (const d of datasets) {
  const avg = d.caplens.reduce((a, b) => a + b, 0) / d.caplens.length;
  for (const [c, level] of configs) {
    run(d, c, level, 20, "staged"); // warm-up
    const r = run(d, c, level, mb, "staged");
    console.log(
      `| ${d.name} (avg ${avg.toFixed(0)} B) | ${c}${level ? ` ${level}` : ""} | ${
        r.mbps.toFixed(0)
      } | ${r.kpps.toFixed(0)} | ${(r.ratio * 100).toFixed(1)}% |`,
    );
  }
}
console.log(`\nHanding over bytes (none, bench/gen frames):`);
for (const mode of ["exact", "staged", "offset"] as Mode[]) {
  run(datasets[0], "none", undefined, 20, mode);
  const r = run(datasets[0], "none", undefined, mb, mode);
  console.log(`  ${mode}: ${r.mbps.toFixed(0)} MB/s, ${r.kpps.toFixed(0)} kpps`);
}
