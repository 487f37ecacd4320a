// ffi/libpcap.ts's direct offline reader (OfflineOptions.direct) against libpcap itself: for every
// corpus file and for crafted edge cases (records past the snaplen, cut-off records, negative
// seconds, records spanning read chunks, old versions, swapped byte order), reading with and
// without `direct` must give the same packets, the same return codes and the same errors.
import assert from "node:assert/strict";
import { PcapHandle } from "../ffi/libpcap.ts";
import { CORPUS_DIR } from "./support/corpus.ts";

const CORPUS = CORPUS_DIR.slice(0, -1);

interface Step {
  rc: number;
  sec?: number;
  frac?: number;
  caplen?: number;
  len?: number;
  sum?: number;
  error?: string;
}

/** Every next() result up to the end or an error, with a checksum of each packet's bytes. */
function steps(h: PcapHandle, limit = 1_000_000): Step[] {
  const out: Step[] = [];
  for (let n = 0; n < limit; n++) {
    const rc = h.next();
    if (rc !== 1) {
      out.push(rc === -1 ? { rc, error: h.lastError() } : { rc });
      break;
    }
    let sum = 0;
    for (let i = h.offset; i < h.offset + h.caplen; i++) sum = (sum * 31 + h.data[i]) >>> 0;
    out.push({ rc, sec: h.tsSec, frac: h.tsFrac, caplen: h.caplen, len: h.wireLen, sum });
  }
  return out;
}

/** Opens `path` both ways and reads everything; returns [libpcap, direct] (or the open errors). */
function both(path: string, nanosecond = false): [Step[] | string, Step[] | string] {
  const read = (direct: boolean): Step[] | string => {
    let h: PcapHandle;
    try {
      h = PcapHandle.openOffline(path, { nanosecond, direct });
    } catch (err) {
      return (err as Error).message;
    }
    try {
      return steps(h);
    } finally {
      h.close();
    }
  };
  return [read(false), read(true)];
}

Deno.test("direct reader: every corpus file reads as libpcap reads it (µs and ns)", () => {
  const names = [...Deno.readDirSync(CORPUS)].filter((e) => e.isFile).map((e) => e.name).sort();
  let packets = 0;
  for (const name of names) {
    for (const nano of [false, true]) {
      const [want, got] = both(`${CORPUS}/${name}`, nano);
      assert.deepEqual(got, want, `${name} (${nano ? "ns" : "µs"})`);
      if (typeof want !== "string") packets += want.length;
    }
  }
  assert.ok(packets > 1000, `only ${packets} packets compared`);
});

/** A pcap file from raw records; options bend the header and records to make edge cases. */
interface Rec {
  sec: number;
  frac: number;
  data: Uint8Array;
  /** Written instead of data.length. */
  caplen?: number;
  len?: number;
}

function craft(
  path: string,
  records: Rec[],
  opts: { snaplen?: number; magic?: number; minor?: number; bigEndian?: boolean; cut?: number } =
    {},
): void {
  const size = 24 + records.reduce((n, r) => n + 16 + r.data.length, 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  const le = !opts.bigEndian;
  dv.setUint32(0, opts.magic ?? 0xa1b2c3d4, le);
  dv.setUint16(4, 2, le);
  dv.setUint16(6, opts.minor ?? 4, le);
  dv.setUint32(16, opts.snaplen ?? 262144, le);
  dv.setUint32(20, 1, le);
  let at = 24;
  for (const r of records) {
    dv.setUint32(at, r.sec >>> 0, le);
    dv.setUint32(at + 4, r.frac >>> 0, le);
    dv.setUint32(at + 8, r.caplen ?? r.data.length, le);
    dv.setUint32(at + 12, r.len ?? r.data.length + 4, le);
    out.set(r.data, at + 16);
    at += 16 + r.data.length;
  }
  Deno.writeFileSync(path, opts.cut === undefined ? out : out.subarray(0, size - opts.cut));
}

function frame(size: number, seed: number): Uint8Array {
  const f = new Uint8Array(size);
  for (let i = 0; i < size; i++) f[i] = (i * 7 + seed * 13) & 0xff;
  return f;
}

function withDir(body: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "cc-direct-" });
  try {
    body(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("direct reader: crafted edge cases read as libpcap reads them", () => {
  withDir((dir) => {
    const plain = (n: number, size: (i: number) => number): Rec[] =>
      Array.from({ length: n }, (_, i) => ({
        sec: 1_700_000_000 + i,
        frac: 999_000 + i,
        data: frame(size(i), i),
      }));
    const cases: [string, () => void][] = [
      ["records spanning read chunks, up to 262144 bytes", () => {
        const sizes = [60, 262144, 1514, 70000, 61, 262144, 200000, 62, 9000];
        craft(`${dir}/a.pcap`, plain(40, (i) => sizes[i % sizes.length]));
      }],
      ["many small records over many read-ahead chunks (about 9 MB)", () => {
        craft(`${dir}/a.pcap`, plain(60_000, (i) => 60 + (i * 7919) % 240));
      }],
      ["many chunks, then a record cut off by the end of the file", () => {
        craft(`${dir}/a.pcap`, plain(9000, (i) => 60 + (i * 104729) % 1454), { cut: 700 });
      }],
      ["a file ending exactly at a chunk boundary", () => {
        // 4 x (16 + 262128) = 1 MiB after the header: the reader's first chunk exactly.
        craft(`${dir}/a.pcap`, plain(4, () => 262128));
        assert.equal(Deno.statSync(`${dir}/a.pcap`).size, 24 + (1 << 20));
      }],
      ["a record past the file's snaplen mid-file (libpcap clips it)", () => {
        const rs = plain(20, () => 100);
        rs[7] = { ...rs[7], data: frame(300, 7) };
        craft(`${dir}/a.pcap`, rs, { snaplen: 200 });
      }],
      ["a caplen past 262144 mid-file (libpcap's error)", () => {
        const rs = plain(10, () => 80);
        rs[4] = { ...rs[4], caplen: 300000 };
        craft(`${dir}/a.pcap`, rs);
      }],
      [
        "the last record's data cut off",
        () => craft(`${dir}/a.pcap`, plain(10, () => 500), { cut: 100 }),
      ],
      [
        "the last record's header cut off",
        () => craft(`${dir}/a.pcap`, plain(10, () => 500), { cut: 510 }),
      ],
      ["seconds past 2^31 and fractions past a second", () => {
        const rs = plain(5, () => 64);
        rs[1] = { ...rs[1], sec: 0x90000000, frac: 0xfffffff0 };
        rs[3] = { ...rs[3], sec: 0xffffffff, frac: 2_000_000 };
        craft(`${dir}/a.pcap`, rs);
      }],
      ["caplen above the wire length", () => {
        const rs = plain(5, () => 64);
        rs[2] = { ...rs[2], len: 10 };
        craft(`${dir}/a.pcap`, rs);
      }],
      ["version 2.3 (libpcap may swap lengths)", () => {
        const rs = plain(5, () => 64);
        rs[2] = { ...rs[2], len: 10 };
        craft(`${dir}/a.pcap`, rs, { minor: 3 });
      }],
      [
        "big-endian file",
        () => craft(`${dir}/a.pcap`, plain(8, (i) => 60 + i), { bigEndian: true }),
      ],
      [
        "nanosecond magic",
        () => craft(`${dir}/a.pcap`, plain(8, (i) => 60 + i), { magic: 0xa1b23c4d }),
      ],
      ["empty file after the header", () => craft(`${dir}/a.pcap`, [])],
      ["zero-length records", () => craft(`${dir}/a.pcap`, plain(6, (i) => (i % 2) * 70))],
    ];
    for (const [name, make] of cases) {
      make();
      for (const nano of [false, true]) {
        const [want, got] = both(`${dir}/a.pcap`, nano);
        assert.deepEqual(got, want, `${name} (${nano ? "ns" : "µs"})`);
      }
    }
  });
});

Deno.test("direct reader: breakLoop, a filter set midway, and reading past the end", () => {
  withDir((dir) => {
    const rs = Array.from({ length: 30 }, (_, i) => ({
      sec: 1_700_000_000,
      frac: i,
      data: frame(60 + i, i),
    }));
    craft(`${dir}/a.pcap`, rs);
    const h = PcapHandle.openOffline(`${dir}/a.pcap`, { direct: true });
    const ref = PcapHandle.openOffline(`${dir}/a.pcap`);
    try {
      assert.equal(h.next(), 1);
      h.breakLoop();
      assert.equal(h.next(), -2);
      assert.equal(h.next(), 1); // the request is used up, as libpcap's is
      assert.equal(h.tsFrac, 1);
      for (let i = 0; i < 2; i++) ref.next();
      // From here on libpcap filters: both keep only the odd-length frames that follow.
      h.setFilter("len > 0 and (len & 1) = 1");
      ref.setFilter("len > 0 and (len & 1) = 1");
      assert.deepEqual(steps(h), steps(ref));
      assert.equal(h.next(), -2);
    } finally {
      h.close();
      ref.close();
    }
    const d = PcapHandle.openOffline(`${dir}/a.pcap`, { direct: true });
    try {
      assert.equal(steps(d).length, 31);
      assert.equal(d.next(), -2);
      assert.equal(d.next(), -2);
    } finally {
      d.close();
    }
  });
});
