// IndexBuilder's memory behaviour: reserved arrays cost nothing until written, and write() streams
// exactly the bytes encode() returns (also for an index larger than its 1 MiB encoding buffer),
// which the reader decodes back to what was recorded.
import assert from "node:assert/strict";
import { decodeFileIndex, IndexBuilder, type IndexMeta } from "../src/index/mod.ts";
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

// Measured in a process of its own: test files run in parallel may share this one, and their
// allocations would show in its RSS.
const PROBE = `
import { IndexBuilder } from "${new URL("../src/index/index_builder.ts", import.meta.url).href}";
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]);
new IndexBuilder(); // code loading and compilation are not what is measured
const before = rss();
const builders = Array.from({ length: 4 }, () => new IndexBuilder());
console.log(rss() - before, builders.length);
`;

Deno.test("IndexBuilder: a new builder's reserved arrays are not resident", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", PROBE],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const [grown, count] = text.split(" ").map(Number);
  assert.equal(count, 4);
  assert.ok(grown < 16 * 1024, `4 builders grew RSS by ${grown} KiB`);
});

Deno.test("IndexBuilder: write() streams the bytes encode() returns, past the encoding buffer", () => {
  const b = new IndexBuilder();
  const key = new Uint32Array(KEY_WORDS);
  const flows = 30_000;
  let offset = 24;
  // Flows start out of time order (the table is sorted by first time) and interleave.
  for (let p = 0; p < 120_000; p++) {
    const flow = (p * 7919) % flows;
    key[0] = 0xc6120000 + flow;
    key[8] = (1024 + (flow & 0xff)) << 16 | 443;
    key[9] = (4 << 28) | (6 << 16);
    const ts = 1_700_000_000 + ((flow * 37) % 1000) + p * 1e-5;
    b.record(flow, flow + 1, key, ts, offset, 100 + (p % 1400));
    offset += 16 + 100 + (p % 1400);
  }
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
