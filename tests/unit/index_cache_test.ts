import assert from "node:assert/strict";
import { IndexBuilder } from "../../src/index/mod.ts";
import { IndexCache } from "../../src/query/index_cache.ts";

function writeIndex(path: string, packets: number): void {
  // Flow id i has the key 198.18.0.i.
  const builder = new IndexBuilder({
    copyKey: (id, out, at = 0) => {
      out.fill(0, at, at + 10);
      out[at] = 0xc6120000 + id;
    },
  });
  for (let i = 0; i < packets; i++) {
    builder.record(i % 7, 1700000000 + i / 1000, 24 + i * 100, 100);
  }
  builder.write(path, {
    pcapName: "x.pcap",
    linkType: 1,
    snaplen: 262144,
    nanosecond: false,
    compress: "none",
    iface: "eth0",
    worker: 0,
  });
}

Deno.test("index cache: unchanged files come from the cache, rewritten ones are read again", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const cache = new IndexCache();
    writeIndex(`${dir}/a.idx`, 100);
    const first = cache.get(`${dir}/a.idx`);
    assert.equal(first.header.packetCount, 100);
    assert.equal(cache.get(`${dir}/a.idx`), first, "same decoded object");
    writeIndex(`${dir}/a.idx`, 250);
    const second = cache.get(`${dir}/a.idx`);
    assert.equal(second.header.packetCount, 250, "a rebuilt index is read again");
    Deno.removeSync(`${dir}/a.idx`);
    assert.throws(() => cache.get(`${dir}/a.idx`), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("index cache: the byte budget evicts the least recently used", () => {
  const dir = Deno.makeTempDirSync();
  try {
    for (const name of ["a", "b", "c"]) writeIndex(`${dir}/${name}.idx`, 1000);
    const size = Deno.statSync(`${dir}/a.idx`).size;
    const cache = new IndexCache(size * 2);
    const a = cache.get(`${dir}/a.idx`);
    cache.get(`${dir}/b.idx`);
    assert.equal(cache.get(`${dir}/a.idx`), a, "a still cached and now most recent");
    cache.get(`${dir}/c.idx`);
    assert.equal(cache.get(`${dir}/a.idx`), a, "b was evicted, not a");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
