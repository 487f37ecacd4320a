import assert from "node:assert/strict";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { Catalog, type CatalogEntry } from "../src/archive/mod.ts";
import { indexPcapFile, readFileIndex } from "../src/index/mod.ts";
import { CORPUS_DIR } from "./support/corpus.ts";

/** A plain pcap of UDP packets (198.18.0.1 → 198.18.0.2) at the given times, in seconds. */
function pcapAt(times: number[]): Uint8Array {
  const frameLen = 14 + 20 + 8 + 10;
  const out = new Uint8Array(24 + times.length * (16 + frameLen));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0xa1b2c3d4, true);
  dv.setUint16(4, 2, true);
  dv.setUint16(6, 4, true);
  dv.setUint32(16, 65535, true);
  dv.setUint32(20, 1, true);
  let o = 24;
  for (const t of times) {
    dv.setUint32(o, Math.floor(t), true);
    dv.setUint32(o + 4, Math.round((t % 1) * 1e6), true);
    dv.setUint32(o + 8, frameLen, true);
    dv.setUint32(o + 12, frameLen, true);
    const f = o + 16;
    dv.setUint16(f + 12, 0x0800);
    out[f + 14] = 0x45;
    dv.setUint16(f + 16, 38);
    out[f + 23] = 17;
    dv.setUint32(f + 26, 0xc6120001);
    dv.setUint32(f + 30, 0xc6120002);
    dv.setUint16(f + 34, 5000 + Math.floor(t) % 7);
    dv.setUint16(f + 36, 53);
    o += 16 + frameLen;
  }
  return out;
}

function range(from: number, to: number, step = 1): number[] {
  const out: number[] = [];
  for (let t = from; t <= to; t += step) out.push(t);
  return out;
}

/** Writes a pcap (optionally compressed) into the archive and, unless told not to, its index. */
function put(out: string, rel: string, times: number[], opts: { index?: boolean } = {}): void {
  const path = `${out}/${rel}`;
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  const plain = pcapAt(times);
  const data = rel.endsWith(".gz")
    ? gzipSync(plain)
    : rel.endsWith(".zst")
    ? zstdCompressSync(plain)
    : plain;
  Deno.writeFileSync(path, data);
  if (opts.index !== false) indexPcapFile(path, { iface: "eth1", worker: 1 });
}

function paths(entries: readonly CatalogEntry[]): string[] {
  return entries.map((e) => e.path);
}

function diskBytes(out: string, rel: string): number {
  return Deno.statSync(`${out}/${rel}`).size + Deno.statSync(`${out}/${rel}.idx`).size;
}

function archive(): string {
  const out = Deno.makeTempDirSync({ prefix: "cc-cat-" });
  put(out, "2024/05/01/a.pcap", range(1000, 1010));
  put(out, "2024/05/01/b.pcap.gz", range(1005, 1020));
  put(out, "2024/05/02/c.pcap.zst", range(1030, 1040));
  put(out, "2024/04/30/d.pcap", range(900, 950, 5), { index: false });
  // Not finalized pcap files of the archive: hidden/temporary names, other folders, other files.
  put(out, "2024/05/02/.e.pcap.tmp", range(2000, 2001), { index: false });
  put(out, "2024/05/02/.f.pcap", range(2000, 2001), { index: false });
  put(out, "junk/g.pcap", range(2000, 2001), { index: false });
  put(out, "2024/5/1/h.pcap", range(2000, 2001), { index: false });
  Deno.writeTextFileSync(`${out}/2024/05/02/notes.txt`, "x");
  return out;
}

Deno.test("catalog: rebuilt from the tree when catalog.json is missing, then loaded", () => {
  const out = archive();
  try {
    const logs: string[] = [];
    const cat = Catalog.open(out, { log: (l) => logs.push(l) });
    assert.equal(cat.source, "rebuilt");
    assert.deepEqual(paths(cat.entries()), [
      "2024/04/30/d.pcap",
      "2024/05/01/a.pcap",
      "2024/05/01/b.pcap.gz",
      "2024/05/02/c.pcap.zst",
    ]);
    assert.deepEqual(logs, ["catalog: indexing 2024/04/30/d.pcap (no index)"]);
    // The pcap without an index got one.
    assert.equal(readFileIndex(`${out}/2024/04/30/d.pcap.idx`).header.packetCount, 11);
    const b = cat.get("2024/05/01/b.pcap.gz");
    assert.ok(b);
    assert.equal(b.compress, "gzip");
    assert.equal(b.iface, "eth1");
    assert.equal(b.worker, 1);
    assert.equal(b.firstTs, 1005);
    assert.equal(b.lastTs, 1020);
    assert.equal(b.packets, 16);
    assert.equal(b.linkType, 1);
    assert.equal(b.pcapBytes, Deno.statSync(`${out}/2024/05/01/b.pcap.gz`).size);
    assert.equal(b.bytesOnDisk, diskBytes(out, "2024/05/01/b.pcap.gz"));
    assert.equal(cat.get("2024/04/30/d.pcap")?.worker, -1);
    // A cutcap-named file without an index gets its interface and worker from its name.
    put(out, "2024/05/03/2024-05-03T10-00-00.000000Z_eth7_w04.pcap", range(1100, 1101), {
      index: false,
    });
    const named = Catalog.open(out).get("2024/05/03/2024-05-03T10-00-00.000000Z_eth7_w04.pcap");
    assert.equal(named?.iface, "eth7");
    assert.equal(named?.worker, 4);
    Deno.removeSync(`${out}/2024/05/03`, { recursive: true });
    const total = paths(cat.entries()).reduce((s, p) => s + diskBytes(out, p), 0);
    assert.equal(cat.totalBytes(), total);
    assert.equal(cat.oldest()?.path, "2024/04/30/d.pcap");

    const again = Catalog.open(out);
    assert.equal(again.source, "reconciled");
    assert.deepEqual(again.entries(), cat.entries());
    assert.equal(again.totalBytes(), total);
    assert.equal(Catalog.open(out).source, "loaded");
  } finally {
    Deno.removeSync(out, { recursive: true });
  }
});

Deno.test("catalog: files added or deleted behind its back are reconciled", () => {
  const out = archive();
  try {
    Catalog.open(out);
    put(out, "2024/05/03/new.pcap", range(1100, 1110));
    Deno.removeSync(`${out}/2024/05/01/a.pcap`);
    const cat = Catalog.open(out);
    assert.equal(cat.source, "reconciled");
    assert.deepEqual(paths(cat.entries()), [
      "2024/04/30/d.pcap",
      "2024/05/01/b.pcap.gz",
      "2024/05/02/c.pcap.zst",
      "2024/05/03/new.pcap",
    ]);
    assert.equal(Catalog.open(out).source, "loaded");
    // A new file only (no deletion) is noticed too.
    put(out, "2024/05/03/new2.pcap", range(1200, 1201));
    assert.equal(Catalog.open(out).source, "reconciled");
    assert.equal(Catalog.open(out).size, 5);
  } finally {
    Deno.removeSync(out, { recursive: true });
  }
});

Deno.test("catalog: a corrupt catalog.json, damaged and stale indexes, unindexable files", () => {
  const out = archive();
  try {
    const first = Catalog.open(out);
    for (const junk of ["{not json", '{"version":1,"entries":[{"path":3}],"skipped":[]}', "[]"]) {
      Deno.writeTextFileSync(`${out}/catalog.json`, junk);
      const cat = Catalog.open(out);
      assert.equal(cat.source, "rebuilt");
      assert.deepEqual(cat.entries(), first.entries());
    }

    // Damaged indexes are rebuilt (keeping iface/worker when the header survived).
    const idxA = `${out}/2024/05/01/a.pcap.idx`;
    const bytes = Deno.readFileSync(idxA);
    Deno.writeFileSync(idxA, bytes.subarray(0, bytes.length - 9));
    const idxB = `${out}/2024/05/01/b.pcap.gz.idx`;
    const bb = Deno.readFileSync(idxB);
    bb[bb.length - 40] ^= 0xff;
    Deno.writeFileSync(idxB, bb);
    // A stale index: the pcap changed after it was indexed.
    put(out, "2024/05/02/c.pcap.zst", range(1030, 1050), { index: false });
    Deno.removeSync(`${out}/catalog.json`);
    const logs: string[] = [];
    const cat = Catalog.open(out, { log: (l) => logs.push(l), verify: true });
    assert.equal(cat.source, "rebuilt");
    assert.equal(logs.length, 3, logs.join("\n"));
    assert.match(
      logs[0],
      /indexing 2024\/05\/01\/a.pcap \(Index .* is damaged: expected \d+ bytes/,
    );
    assert.match(
      logs[1],
      /indexing 2024\/05\/01\/b.pcap.gz \(Index .* is damaged: checksum mismatch/,
    );
    assert.match(logs[2], /indexing 2024\/05\/02\/c.pcap.zst \(index is stale/);
    assert.equal(readFileIndex(idxA).header.iface, "eth1");
    assert.equal(cat.get("2024/05/02/c.pcap.zst")?.lastTs, 1050);
    assert.equal(cat.get("2024/05/02/c.pcap.zst")?.packets, 21);

    // A pcapng named .pcap cannot be indexed: skipped, remembered, not retried.
    Deno.copyFileSync(
      `${CORPUS_DIR}nhrp.pcapng`,
      `${out}/2024/05/02/ng.pcap`,
    );
    const skipLog: string[] = [];
    const c2 = Catalog.open(out, { log: (l) => skipLog.push(l) });
    assert.equal(c2.source, "reconciled");
    assert.match(skipLog.join(), /skipping 2024\/05\/02\/ng.pcap: Cannot index .* found pcapng/);
    assert.equal(c2.get("2024/05/02/ng.pcap"), undefined);
    assert.equal(Catalog.open(out).source, "loaded");
  } finally {
    Deno.removeSync(out, { recursive: true });
  }
});

Deno.test("catalog: files() time filtering, add/remove/addFile, totals", () => {
  const out = archive();
  try {
    const cat = Catalog.open(out);
    assert.deepEqual(paths(cat.files()), paths(cat.entries()));
    assert.deepEqual(paths(cat.files({ from: 1008, to: 1009 })), [
      "2024/05/01/a.pcap",
      "2024/05/01/b.pcap.gz",
    ]);
    assert.deepEqual(paths(cat.files({ from: 1011 })), [
      "2024/05/01/b.pcap.gz",
      "2024/05/02/c.pcap.zst",
    ]);
    assert.deepEqual(paths(cat.files({ to: 1000 })), ["2024/04/30/d.pcap", "2024/05/01/a.pcap"]);
    assert.deepEqual(paths(cat.files({ from: 1020, to: 1030 })), [
      "2024/05/01/b.pcap.gz",
      "2024/05/02/c.pcap.zst",
    ]);
    assert.deepEqual(paths(cat.files({ from: 1021, to: 1029 })), []);
    assert.deepEqual(paths(cat.files({ from: 5000 })), []);

    // A rotation: the worker finalized a file; the main thread adds it and saves.
    put(out, "2024/05/02/r.pcap", range(1025, 1026));
    const before = cat.totalBytes();
    const e = cat.addFile(`${out}/2024/05/02/r.pcap`);
    assert.equal(e.path, "2024/05/02/r.pcap");
    assert.equal(cat.totalBytes(), before + diskBytes(out, "2024/05/02/r.pcap"));
    assert.deepEqual(paths(cat.files({ from: 1021, to: 1029 })), ["2024/05/02/r.pcap"]);
    cat.save();
    assert.equal(Catalog.open(out).source, "loaded");

    // Retention: drop the oldest.
    const oldest = cat.oldest();
    assert.equal(oldest?.path, "2024/04/30/d.pcap");
    assert.equal(cat.remove(oldest.path), true);
    assert.equal(cat.remove(oldest.path), false);
    assert.equal(cat.oldest()?.path, "2024/05/01/a.pcap");
    assert.equal(cat.size, 4);
    // Replacing an entry keeps one copy and the totals right.
    const a = cat.get("2024/05/01/a.pcap") as CatalogEntry;
    cat.add({ ...a, firstTs: 1035, lastTs: 1036 });
    assert.equal(cat.size, 4);
    assert.equal(cat.entries()[cat.size - 1].path, "2024/05/01/a.pcap");
    assert.equal(
      cat.totalBytes(),
      before + diskBytes(out, "2024/05/02/r.pcap") - oldest.bytesOnDisk,
    );

    // Many adds stay sorted.
    for (let i = 0; i < 200; i++) {
      cat.add({ ...a, path: `x/${i}`, firstTs: (i * 37) % 101, lastTs: 2000 });
    }
    const ts = cat.entries().map((x) => x.firstTs);
    assert.deepEqual(ts, [...ts].sort((x, y) => x - y));
  } finally {
    Deno.removeSync(out, { recursive: true });
  }
});
