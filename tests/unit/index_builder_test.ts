import assert from "node:assert/strict";
import { KEY_WORDS } from "../../src/packet/packet_info.ts";
import { prng } from "../support/prng.ts";
import {
  decodeFileIndex,
  findBlock,
  IndexBuilder,
  type IndexMeta,
  readFileIndex,
  readIndexHeader,
} from "../../src/index/mod.ts";

interface OracleFlow {
  key: Uint32Array;
  offsets: number[];
  times: number[];
  bytes: number;
}

/** A stand-in flow table for the builder: the key of each id, replaced when a new flow takes it. */
class SlotKeys {
  readonly keys = new Map<number, Uint32Array>();
  copyKey(id: number, out: Uint32Array, at = 0): void {
    out.set(this.keys.get(id) as Uint32Array, at);
  }
}

const META: IndexMeta = {
  pcapName: "x.pcap",
  linkType: 1,
  snaplen: 65535,
  nanosecond: false,
  compress: "none",
  iface: "eth0",
  worker: 3,
};

/**
 * Simulates one capture worker writing `files` files: `slots` FlowTable ids, flows ending and their ids
 * being reused with new serials, within and across files. Returns per file the expected flows.
 */
function simulate(
  b: IndexBuilder,
  table: SlotKeys,
  dir: string,
  opts: { files: number; slots: number; packets: number; seed: number; baseOffset?: number },
): Map<string, OracleFlow>[] {
  const rand = prng(opts.seed);
  const serial = new Float64Array(opts.slots);
  const keys: Uint32Array[] = [];
  let nextSerial = 1;
  const newKey = (): Uint32Array => {
    const k = new Uint32Array(KEY_WORDS);
    for (let i = 0; i < KEY_WORDS; i++) k[i] = (rand() * 4294967296) >>> 0;
    return k;
  };
  for (let s = 0; s < opts.slots; s++) {
    serial[s] = nextSerial++;
    keys.push(newKey());
    table.keys.set(s, keys[s]);
  }
  const out: Map<string, OracleFlow>[] = [];
  let ts = 1700000000 + rand();
  for (let f = 0; f < opts.files; f++) {
    const flows = new Map<string, OracleFlow>();
    let off = (opts.baseOffset ?? 0) + 24;
    for (let p = 0; p < opts.packets; p++) {
      const slot = Math.floor(rand() * opts.slots);
      if (rand() < 0.02) {
        // The flow in this slot ended (the table tells the builder); a new one takes the id.
        b.forget(slot);
        serial[slot] = nextSerial++;
        keys[slot] = newKey();
        table.keys.set(slot, keys[slot]);
      }
      ts += rand() * 0.001;
      const wire = 60 + Math.floor(rand() * 1454);
      const cap = Math.min(wire, 200);
      b.record(slot, ts, off, wire);
      const id = `${slot}/${serial[slot]}`;
      let o = flows.get(id);
      if (o === undefined) {
        o = { key: keys[slot].slice(), offsets: [], times: [], bytes: 0 };
        flows.set(id, o);
      }
      o.offsets.push(off);
      o.times.push(ts);
      o.bytes += wire;
      off += 16 + cap;
    }
    b.write(`${dir}/f${f}.pcap.idx`, { ...META, pcapName: `f${f}.pcap`, dataSize: off });
    b.reset();
    out.push(flows);
  }
  return out;
}

function keyHex(k: Uint32Array, at: number): string {
  return Array.from(k.subarray(at, at + KEY_WORDS), (w) => w.toString(16)).join(":");
}

Deno.test("builder/reader roundtrip: every packet under its flow, flow ids reused with new serials", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-idx-" });
  try {
    const table = new SlotKeys();
    const b = new IndexBuilder(table);
    const files = simulate(b, table, dir, { files: 3, slots: 700, packets: 20000, seed: 7 });
    for (let f = 0; f < files.length; f++) {
      const want = files[f];
      const idx = readFileIndex(`${dir}/f${f}.pcap.idx`);
      const h = idx.header;
      assert.equal(h.flowCount, want.size);
      assert.equal(h.packetCount, 20000);
      assert.equal(h.iface, "eth0");
      assert.equal(h.worker, 3);
      assert.equal(h.pcapName, `f${f}.pcap`);
      assert.equal(h.compress, "none");
      assert.equal(h.blockCount, 0);
      assert.equal(h.indexSize, Deno.statSync(`${dir}/f${f}.pcap.idx`).size);
      const byKey = new Map<string, OracleFlow>();
      for (const o of want.values()) byKey.set(keyHex(o.key, 0), o);
      assert.equal(byKey.size, want.size, "random keys are distinct");
      let prevFirst = -Infinity;
      let total = 0;
      let minTs = Infinity;
      let maxTs = -Infinity;
      for (let i = 0; i < h.flowCount; i++) {
        const o = byKey.get(keyHex(idx.keys, i * KEY_WORDS));
        assert.ok(o, `flow ${i} of file ${f} is expected`);
        assert.ok(idx.firstTs[i] >= prevFirst, "flows sorted by first time");
        prevFirst = idx.firstTs[i];
        assert.equal(idx.pktCount[i], o.offsets.length);
        assert.equal(idx.packets[i], o.offsets.length);
        assert.equal(idx.bytes[i], o.bytes);
        assert.equal(idx.firstTs[i], o.times[0]);
        assert.equal(idx.lastTs[i], o.times[o.times.length - 1]);
        const s = idx.pktStart[i];
        assert.deepEqual(Array.from(idx.offsets.subarray(s, s + idx.pktCount[i])), o.offsets);
        // Packet times are stored as µs after the file's first packet: within half a µs.
        const got = idx.times.subarray(s, s + idx.pktCount[i]);
        for (let j = 0; j < got.length; j++) {
          assert.ok(Math.abs(got[j] - o.times[j]) <= 6e-7, `time ${got[j]} vs ${o.times[j]}`);
        }
        total += idx.pktCount[i];
        minTs = Math.min(minTs, o.times[0]);
        maxTs = Math.max(maxTs, o.times[o.times.length - 1]);
      }
      assert.equal(total, 20000);
      assert.equal(h.firstTs, minTs);
      assert.equal(h.lastTs, maxTs);
    }
    // Across files, the same slot+serial continuing is a flow in both files.
    const first = new Set(files[0].keys());
    assert.ok([...files[1].keys()].some((k) => first.has(k)), "some flows span two files");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("builder: offsets beyond 4 GiB switch to f64 offsets; block table roundtrip", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-idx-" });
  try {
    const table = new SlotKeys();
    const b = new IndexBuilder(table);
    const files = simulate(b, table, dir, {
      files: 1,
      slots: 50,
      packets: 3000,
      seed: 3,
      baseOffset: 4294967296 - 100000,
    });
    const idx = readFileIndex(`${dir}/f0.pcap.idx`);
    const all: number[] = [];
    for (const o of files[0].values()) all.push(...o.offsets);
    all.sort((x, y) => x - y);
    assert.ok(all[all.length - 1] > 4294967296);
    assert.deepEqual(Array.from(idx.offsets).sort((x, y) => x - y), all);

    const blocks = new Float64Array([0, 1000, 0, 5000, 1000, 800, 5000, 4000, 1800, 50, 9000, 100]);
    b.reset();
    table.keys.set(5, new Uint32Array(KEY_WORDS).fill(9));
    b.record(5, 1.5, 24, 100);
    b.record(5, 2.5, 5100, 100);
    const bytes = b.encode({ ...META, compress: "zstd", nanosecond: true, blocks, worker: -1 });
    const z = decodeFileIndex("mem", bytes);
    assert.equal(z.header.compress, "zstd");
    assert.equal(z.header.nanosecond, true);
    assert.equal(z.header.worker, -1);
    assert.equal(z.header.blockCount, 3);
    assert.equal(z.header.pcapSize, 1850);
    assert.equal(z.header.dataSize, 9100);
    assert.deepEqual(Array.from(z.blocks), Array.from(blocks));
    assert.equal(findBlock(z.blocks, 24), 0);
    assert.equal(findBlock(z.blocks, 5100), 1);
    assert.equal(findBlock(z.blocks, 9099), 2);
    assert.equal(findBlock(z.blocks, 9100), -1);

    // A file spanning more than 4294 s keeps f64 packet times, exactly.
    b.reset();
    table.keys.set(1, new Uint32Array(KEY_WORDS));
    b.record(1, 1.7e9 + 0.1234567, 24, 60);
    b.record(1, 1.7e9 + 5000.7654321, 100, 60);
    const w = decodeFileIndex("mem", b.encode(META));
    assert.deepEqual(Array.from(w.times), [1.7e9 + 0.1234567, 1.7e9 + 5000.7654321]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("reader: a flipped byte, a truncated file, garbage and foreign files are reported", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cc-idx-" });
  try {
    const table = new SlotKeys();
    const b = new IndexBuilder(table);
    simulate(b, table, dir, { files: 1, slots: 100, packets: 2000, seed: 11 });
    const path = `${dir}/f0.pcap.idx`;
    const good = Deno.readFileSync(path);
    readFileIndex(path);

    // A flipped bit in every region: header, flow table, packets, trailer.
    for (const at of [10, 200, Math.floor(good.length / 2), good.length - 20, good.length - 6]) {
      const bad = good.slice();
      bad[at] ^= 0x10;
      Deno.writeFileSync(path, bad);
      assert.throws(() => readFileIndex(path), /is damaged: (checksum mismatch|header checksum)/);
    }
    // Bit rot past the header is invisible to the cheap header read, by design.
    const body = good.slice();
    body[Math.floor(good.length / 2)] ^= 1;
    Deno.writeFileSync(path, body);
    assert.equal(readIndexHeader(path).packetCount, 2000);

    Deno.writeFileSync(path, good.subarray(0, good.length - 100));
    assert.throws(
      () => readFileIndex(path),
      /is damaged: expected \d+ bytes, found \d+ \(truncated/,
    );
    assert.throws(() => readIndexHeader(path), /is damaged: expected \d+ bytes/);
    Deno.writeFileSync(path, good.subarray(0, 50));
    assert.throws(() => readIndexHeader(path), /is damaged: expected at least 96 bytes, found 50/);
    Deno.writeFileSync(path, new Uint8Array(0));
    assert.throws(() => readFileIndex(path), /is damaged/);
    Deno.writeFileSync(path, new TextEncoder().encode("x".repeat(300)));
    assert.throws(() => readIndexHeader(path), /is not a cutcap index: expected magic "CCIX"/);
    assert.throws(() => readFileIndex(`${dir}/missing.idx`), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("builder: record() throughput and index size on a realistic traffic mix", () => {
  // Traffic model: web-like TCP flows with Pareto-distributed response sizes (most small, a few
  // huge), client ACK every second data segment, plus DNS over UDP; MSS 1448 (1514-byte frames).
  const table = new SlotKeys();
  const b = new IndexBuilder(table);
  interface Mix {
    cutoff: number;
    pcapBytes: number;
    packets: number;
    flows: number;
    indexBytes: number;
  }
  const run = (cutoff: number): Mix => {
    b.reset();
    const r = prng(42);
    let off = 24;
    let ts = 1.7e9;
    let flows = 0;
    let id = 0;
    while (off < 200e6) {
      const fid = id++ & 0xffff;
      flows++;
      b.forget(fid);
      const key = new Uint32Array(KEY_WORDS);
      for (let i = 0; i < KEY_WORDS; i++) key[i] = (r() * 4294967296) >>> 0;
      table.keys.set(fid, key);
      const frames: number[] = [];
      if (r() < 0.3) {
        frames.push(80, 200);
      } else {
        frames.push(74, 74, 66, 200 + Math.floor(r() * 400));
        const resp = Math.floor(2000 / Math.pow(1 - r() * 0.9999, 1 / 1.2)); // Pareto α=1.2
        for (let sent = 0, n = 0; sent < resp; sent += 1448, n++) {
          frames.push(66 + Math.min(1448, resp - sent));
          if (n % 2 === 1) frames.push(66);
        }
        frames.push(66, 66, 66);
      }
      let stored = 0;
      for (const len of frames) {
        if (stored >= cutoff) break;
        stored += len;
        ts += 1e-5;
        b.record(fid, ts, off, len);
        off += 16 + len;
      }
    }
    const indexBytes = b.encode(META).length;
    return { cutoff, pcapBytes: off, packets: b.packetCount, flows: b.flowCount, indexBytes };
  };
  const lines: string[] = [];
  for (const cutoff of [Infinity, 65536]) {
    const m = run(cutoff);
    const idxBytes = m.indexBytes;
    const share = (100 * idxBytes) / m.pcapBytes;
    lines.push(
      `cutoff=${cutoff} pcap=${
        (m.pcapBytes / 1e6).toFixed(0)
      }MB packets=${m.packets} flows=${m.flows} ` +
        `mean stored frame=${((m.pcapBytes - 24) / m.packets - 16).toFixed(0)}B ` +
        `index=${(idxBytes / 1e6).toFixed(2)}MB share=${share.toFixed(2)}%`,
    );
    // Format 2's flow records (totals, cut point, end, Community ID prefix) add 32 bytes a flow.
    assert.ok(share < 3.5, `index share ${share.toFixed(2)}% should stay under 3.5%`);
  }

  // Throughput after a warm-up pass: 2M records over 1k then 100k interleaved flow ids, a new flow
  // lifetime for every id each 500k records.
  const N = 2_000_000;
  for (const active of [1000, 100000]) {
    for (let fid = 0; fid < active; fid++) {
      const key = new Uint32Array(KEY_WORDS);
      key[0] = fid;
      table.keys.set(fid, key);
    }
    let ns = 0;
    for (let rep = 0; rep < 3; rep++) {
      b.reset();
      const t0 = performance.now();
      for (let i = 0; i < N; i++) {
        if (i > 0 && i % 500000 === 0) {
          for (let fid = 0; fid < active; fid++) b.forget(fid);
        }
        const fid = (i * 7919) % active;
        b.record(fid, 1.7e9 + i * 1e-6, 24 + i * 600, 600);
      }
      ns = ((performance.now() - t0) * 1e6) / N;
    }
    const t1 = performance.now();
    const enc = b.encode(META);
    lines.push(
      `record(): ${ns.toFixed(1)} ns/record with ${active} active flow ids; encode of ${N} ` +
        `packets/${b.flowCount} flows: ${(performance.now() - t1).toFixed(0)} ms, ` +
        `${(enc.length / 1e6).toFixed(1)} MB`,
    );
  }
  console.log(lines.join("\n"));
});
