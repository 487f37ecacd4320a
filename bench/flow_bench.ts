/**
 * FlowTable.observe alone: the keys, times and lengths of a capture's packets are decoded first,
 * then fed to a fresh table several times; prints ns per packet (median and best of 7 passes).
 * The loop's own cost (copying each key into one array) is about 18 ns per packet here.
 *
 * Run: deno run -A bench/flow_bench.ts [FILE] (default bench/data/gen_2m.pcap)
 *
 * @module
 */
import { FlowTable } from "../src/flow/mod.ts";
import { decodePacket, KEY_WORDS, PacketInfo } from "../src/packet/mod.ts";

const file = Deno.args[0] ?? new URL("./data/gen_2m.pcap", import.meta.url).pathname;
const pcap = Deno.readFileSync(file);
const dv = new DataView(pcap.buffer);
let count = 0;
for (let p = 24; p + 16 <= pcap.length; p += 16 + dv.getUint32(p + 8, true)) count++;
const keys = new Uint32Array(count * KEY_WORDS);
const ts = new Float64Array(count);
const lens = new Uint32Array(count);
const flags = new Uint8Array(count);
const info = new PacketInfo();
for (let i = 0, p = 24; i < count; i++) {
  const caplen = dv.getUint32(p + 8, true);
  ts[i] = dv.getUint32(p, true) + dv.getUint32(p + 4, true) * 1e-6;
  lens[i] = dv.getUint32(p + 12, true);
  decodePacket(1, pcap, p + 16, caplen, info);
  keys.set(info.key, i * KEY_WORDS);
  flags[i] = info.tcpFlags;
  p += 16 + caplen;
}

const key = new Uint32Array(KEY_WORDS);
function pass(): number {
  const table = new FlowTable({ maxFlows: 1_000_000, flowTimeout: 300, seed: 1 });
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const b = i * KEY_WORDS;
    for (let k = 0; k < KEY_WORDS; k++) key[k] = keys[b + k];
    table.observe(key, ts[i], lens[i], flags[i]);
  }
  return (performance.now() - t0) * 1e6 / count;
}

const times: number[] = [];
for (let r = 0; r < 7; r++) times.push(pass());
times.sort((a, b) => a - b);
console.log(
  `FlowTable.observe: ${count} packets, median ${times[3].toFixed(1)} ns/packet, best ${
    times[0].toFixed(1)
  }`,
);
