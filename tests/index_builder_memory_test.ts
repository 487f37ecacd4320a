// IndexBuilder's memory behaviour: reserved arrays cost nothing until written, and write() streams
// exactly the bytes encode() returns (also for an index larger than its 256 KiB encoding buffer),
// which the reader decodes back to what was recorded.
import assert from "node:assert/strict";
import {
  decodeFileIndex,
  type FlowKeySource,
  IndexBuilder,
  type IndexMeta,
} from "../src/index/mod.ts";
import { LOG_CHUNK, removeStaleSpillFiles } from "../src/index/packet_log.ts";
import { KEY_WORDS } from "../src/packet/packet_info.ts";

const META: IndexMeta = {
  pcapName: "big.pcap",
  linkType: 1,
  snaplen: 65535,
  nanosecond: false,
  compress: "none",
  iface: "eth0",
  worker: 0,
};

// Probes measure in a process of their own: test files run in parallel may share this one, and
// their allocations would show in its RSS.
const PROBE_HEAD = `
import { IndexBuilder } from "${new URL("../src/index/index_builder.ts", import.meta.url).href}";
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]);
`;

/** Runs `body` after PROBE_HEAD in a new Deno process; what it prints. */
async function probe(body: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", PROBE_HEAD + body],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
}

const NEW_BUILDERS = `
const keys = { copyKey() {} };
new IndexBuilder(keys); // code loading and compilation are not what is measured
const before = rss();
const builders = Array.from({ length: 4 }, () => new IndexBuilder(keys));
console.log(rss() - before, builders.length);
`;

Deno.test("IndexBuilder: a new builder's reserved arrays are not resident", async () => {
  const [grown, count] = (await probe(NEW_BUILDERS)).split(" ").map(Number);
  assert.equal(count, 4);
  assert.ok(grown < 16 * 1024, `4 builders grew RSS by ${grown} KiB`);
});

// A record source whose flows were never cut off: the table removing them (forget) has nothing to
// keep, and must not touch the per-id arrays reserved for cut flows.
const FORGET_UNCUT = `
const src = {
  copyKey() {}, packetsOf: () => 2, bytesOf: () => 120, cutPacketOf: () => 0,
  firstReversedOf: () => false, endOf: () => 0, lastTsOf: () => 0, idLimit: 1000000,
};
const warm = new IndexBuilder(src);
for (let id = 0; id < 1000; id++) warm.forget(id); // code loading and compilation
const b = new IndexBuilder(src);
const before = rss();
for (let id = 0; id < 1000000; id++) b.forget(id);
console.log(rss() - before);
`;

Deno.test("IndexBuilder: forgetting a million uncut flows leaves its reserved arrays unbacked", async () => {
  const grown = Number(await probe(FORGET_UNCUT));
  // Writing each id's 8-byte slot backs 8 MB (7812 KiB; measured 11.3 MB in all); without, the
  // loop and the reads of unwritten pages add ~3.5 MB.
  assert.ok(grown < 6 * 1024, `forgetting 1000000 flows grew RSS by ${grown} KiB`);
});

/** Flow `id`'s key: 198.18.x.y:(1024 + id % 256) -> :443 TCP. */
const KEYS: FlowKeySource = {
  copyKey(id: number, out: Uint32Array, at = 0): void {
    out.fill(0, at, at + KEY_WORDS);
    out[at] = 0xc6120000 + id;
    out[at + 8] = (1024 + (id & 0xff)) << 16 | 443;
    out[at + 9] = (4 << 28) | (6 << 16);
  },
};

/** Records `packets` packets over `flows` interleaved flows; `step` seconds between packets. */
function fill(b: IndexBuilder, opts: { flows: number; packets: number; back?: boolean }): void {
  let offset = 24;
  for (let p = 0; p < opts.packets; p++) {
    const flow = (p * 7919) % opts.flows;
    // back: flows start out of time order and times step back (the flows are sorted by first
    // time); otherwise time-ordered, spanning more than 4294 s so times are stored as f64.
    const ts = opts.back
      ? 1_700_000_000 + ((flow * 37) % 1000) + p * 1e-5
      : 1_700_000_000 + p * 0.05;
    b.record(flow, ts, offset, 100 + (p % 1400));
    offset += 16 + 100 + (p % 1400);
  }
}

Deno.test("IndexBuilder: write() streams the bytes encode() returns, past the encoding buffer", () => {
  const b = new IndexBuilder(KEYS);
  const flows = 30_000;
  fill(b, { flows, packets: 120_000, back: true });
  const bytes = b.encode(META);
  assert.ok(bytes.length > 2 << 20, `index of ${bytes.length} bytes spans several buffers`);
  const dir = Deno.makeTempDirSync({ prefix: "cc-idxmem-" });
  try {
    const path = `${dir}/big.pcap.idx`;
    const written = b.write(path, META);
    const onDisk = Deno.readFileSync(path);
    assert.equal(written, onDisk.length);
    assert.deepEqual(onDisk, bytes);
    const idx = decodeFileIndex(path, onDisk);
    assert.equal(idx.header.flowCount, flows);
    assert.equal(idx.header.packetCount, 120_000);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("IndexBuilder: a spilled packet log and many small passes give the same index", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-idxspill-" });
  try {
    for (const back of [false, true]) {
      const inMemory = new IndexBuilder(KEYS);
      // 4 KiB of scratch: 512 f64 or 1024 u32 values per pass over the log.
      const spilled = new IndexBuilder(KEYS, { spillDir: dir, scratchBytes: 4096 });
      for (const b of [inMemory, spilled]) fill(b, { flows: 3000, packets: 150_000, back });
      assert.equal(inMemory.spilledChunks, 0);
      const full = Math.floor((150_000 - 1) / LOG_CHUNK);
      assert.equal(spilled.spilledChunks, full, `${full} full chunks went to disk`);
      assert.deepEqual([...Deno.readDirSync(dir)], [], "the spill file is unlinked at once");
      const want = inMemory.encode(META);
      assert.deepEqual(spilled.encode(META), want);
      const idx = decodeFileIndex("mem", want);
      assert.equal(idx.header.packetCount, 150_000);
      assert.equal(idx.header.flowCount, 3000);
      // Flow 0 holds packets 0, 3000, 6000, ...: their offsets in file order.
      const f0 = Array.from(idx.keys.subarray(0, KEY_WORDS));
      assert.equal(f0[0], 0xc6120000);
      const s0 = idx.pktStart[0];
      const offsets = Array.from(idx.offsets.subarray(s0, s0 + idx.pktCount[0]));
      assert.equal(offsets.length, 50);
      assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]));
      // Writing borrows the id map's memory and restores it: flow 0 is still flow 0.
      spilled.record(0, 1_800_000_000, 1e9, 60);
      assert.equal(spilled.flowCount, 3000);
      assert.equal(spilled.packetCount, 150_001);
      // The log starts empty again after reset and the file's disk space is released.
      spilled.reset();
      assert.equal(spilled.packetCount, 0);
      spilled.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PacketLog: a spill file a crash left behind is removed at start, nothing else", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-idxstale-" });
  try {
    Deno.writeFileSync(`${dir}/.cutcap-index-log-4242-left`, new Uint8Array(0));
    Deno.writeFileSync(`${dir}/.x.pcap.tmp`, new Uint8Array(10));
    Deno.writeFileSync(`${dir}/catalog.json`, new Uint8Array(2));
    assert.equal(removeStaleSpillFiles(dir), 1);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      ".x.pcap.tmp",
      "catalog.json",
    ]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
