/**
 * The query's record reader (src/pcap/record_reader.ts): records read by offset from plain files in
 * both byte orders and precisions, across its read window, from gzip blocks (members written here
 * with node:zlib, their table from `indexPcapFile`), and the errors that name a damaged file.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { readFileIndex } from "../../src/index/index_reader.ts";
import { indexPathFor } from "../../src/archive/naming.ts";
import { indexPcapFile } from "../../src/index/index_pcap.ts";
import { READ_WINDOW, RecordReader } from "../../src/pcap/record_reader.ts";
import { bytes, ethernet, ipv4, udp } from "../support/pcap_craft.ts";

/** One record as a test writes it. */
interface Rec {
  sec: number;
  frac: number;
  data: Uint8Array;
  wireLen: number;
}

/** A pcap file by hand: `littleEndian`, nanosecond magic when `nano`; offsets of its records. */
function pcap(records: Rec[], opts: { littleEndian: boolean; nano: boolean }): {
  file: Uint8Array;
  offsets: number[];
} {
  const le = opts.littleEndian;
  const head = new DataView(new ArrayBuffer(24));
  head.setUint32(0, opts.nano ? 0xa1b23c4d : 0xa1b2c3d4, le);
  head.setUint16(4, 2, le);
  head.setUint16(6, 4, le);
  head.setUint32(16, 65535, le);
  head.setUint32(20, 1, le);
  const parts: Uint8Array[] = [new Uint8Array(head.buffer)];
  const offsets: number[] = [];
  let at = 24;
  for (const r of records) {
    const h = new DataView(new ArrayBuffer(16));
    h.setUint32(0, r.sec, le);
    h.setUint32(4, r.frac, le);
    h.setUint32(8, r.data.length, le);
    h.setUint32(12, r.wireLen, le);
    parts.push(new Uint8Array(h.buffer), r.data);
    offsets.push(at);
    at += 16 + r.data.length;
  }
  return { file: bytes(...parts), offsets };
}

/** `n` records of `size`-byte UDP frames, one every 1.25 ms from 1700000000 s. */
function records(n: number, size: number, nano = false): Rec[] {
  return Array.from({ length: n }, (_, i) => {
    const data = ethernet(
      0x0800,
      ipv4(
        "198.18.0.1",
        "198.18.0.2",
        17,
        udp(1000 + i, 53, new Uint8Array(size - 42).fill(i & 255)),
      ),
    );
    const us = i * 1250;
    return {
      sec: 1_700_000_000 + Math.floor(us / 1e6),
      frac: nano ? (us % 1e6) * 1000 + 7 : us % 1e6,
      data,
      wireLen: data.length + (i % 3),
    };
  });
}

/** Reads every record at `offsets` and compares it with what was written. */
function assertReads(reader: RecordReader, offsets: number[], written: Rec[]): void {
  for (const [i, offset] of offsets.entries()) {
    const r = reader.read(offset);
    const w = written[i];
    assert.deepEqual(
      [r.tsSec, r.tsFrac, r.caplen, r.wireLen],
      [w.sec, w.frac, w.data.length, w.wireLen],
      `record ${i} at ${offset}`,
    );
    // Copied: a gzip block comes back as node's Buffer, which deepEqual tells from a Uint8Array.
    const data = Uint8Array.from(r.bytes.subarray(r.at + 16, r.at + 16 + r.caplen));
    assert.deepEqual(data, w.data, `record ${i} bytes`);
  }
}

function withDir(body: (dir: string) => void): () => void {
  return () => {
    const dir = Deno.makeTempDirSync({ prefix: "cc-unit-reader-" });
    try {
      body(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

const PLAIN = { compress: "none" as const, blocks: new Float64Array(0) };

Deno.test(
  "record reader: plain files in both byte orders and precisions",
  withDir((dir) => {
    for (const littleEndian of [true, false]) {
      for (const nano of [false, true]) {
        const written = records(50, 120, nano);
        const { file, offsets } = pcap(written, { littleEndian, nano });
        const path = `${dir}/${littleEndian ? "le" : "be"}-${nano ? "ns" : "us"}.pcap`;
        Deno.writeFileSync(path, file);
        const reader = new RecordReader(path, PLAIN);
        try {
          assert.equal(reader.nanosecond, nano);
          assertReads(reader, offsets, written);
        } finally {
          reader.close();
        }
      }
    }
  }),
);

Deno.test(
  "record reader: a plain file many windows long, read densely and sparsely",
  withDir((dir) => {
    const written = records(1000, 1400);
    const { file, offsets } = pcap(written, { littleEndian: true, nano: false });
    assert.ok(file.length > 5 * READ_WINDOW);
    Deno.writeFileSync(`${dir}/big.pcap`, file);
    const dense = new RecordReader(`${dir}/big.pcap`, PLAIN);
    assertReads(dense, offsets, written);
    dense.close();
    // Every 97th record, each read told where the next one ends (as the query's cursor does).
    const picked = offsets.map((_, i) => i).filter((i) => i % 97 === 5);
    const sparse = new RecordReader(`${dir}/big.pcap`, PLAIN);
    for (const [k, i] of picked.entries()) {
      const next = picked[k + 1];
      const spanEnd = next === undefined ? offsets[i] + 16 + 1400 : offsets[next] + 16 + 1400;
      const r = sparse.read(offsets[i], spanEnd);
      assert.equal(r.tsFrac, written[i].frac, `record ${i}`);
      assert.deepEqual(r.bytes.subarray(r.at + 16, r.at + 16 + r.caplen), written[i].data);
    }
    sparse.close();
  }),
);

Deno.test(
  "record reader: gzip members found through the index's block table",
  withDir((dir) => {
    const written = records(300, 600);
    const { file, offsets } = pcap(written, { littleEndian: true, nano: false });
    // Three members cut at record boundaries: the file header and records 0-99, 100-199, 200-299.
    const cuts = [0, offsets[100], offsets[200], file.length];
    const members = [0, 1, 2].map((m) => gzipSync(file.subarray(cuts[m], cuts[m + 1])));
    const path = `${dir}/three.pcap.gz`;
    Deno.writeFileSync(path, bytes(...members));
    indexPcapFile(path);
    const index = readFileIndex(indexPathFor(path));
    assert.equal(index.header.compress, "gzip");
    // The block table: [file offset, compressed length, stream offset, stream length] per member.
    const table = [...index.blocks];
    assert.deepEqual(table, [
      0,
      members[0].length,
      0,
      cuts[1],
      members[0].length,
      members[1].length,
      cuts[1],
      cuts[2] - cuts[1],
      members[0].length + members[1].length,
      members[2].length,
      cuts[2],
      cuts[3] - cuts[2],
    ]);
    const reader = new RecordReader(path, { compress: "gzip", blocks: index.blocks });
    try {
      assertReads(reader, offsets, written);
      assert.throws(() => reader.read(file.length + 100), {
        message: `${path}: no block holds offset ${file.length + 100}`,
      });
    } finally {
      reader.close();
    }
  }),
);

Deno.test(
  "record reader: a damaged file is named with what is wrong",
  withDir((dir) => {
    const written = records(10, 100);
    const { file, offsets } = pcap(written, { littleEndian: true, nano: false });
    const notPcap = `${dir}/not.pcap`;
    Deno.writeFileSync(notPcap, new TextEncoder().encode("this is not a capture file at all"));
    assert.throws(() => new RecordReader(notPcap, PLAIN), {
      message: `${notPcap}: not a pcap file (magic 0x73696874)`,
    });
    const cut = `${dir}/cut.pcap`;
    Deno.writeFileSync(cut, file.subarray(0, offsets[9] + 40));
    const reader = new RecordReader(cut, PLAIN);
    assertReads(reader, offsets.slice(0, 9), written);
    assert.throws(() => reader.read(offsets[9]), {
      message: `${cut}: record at offset ${offsets[9]} is cut short (file damaged or truncated)`,
    });
    reader.close();
    // A record header claiming more than any capture holds.
    const huge = file.slice();
    new DataView(huge.buffer).setUint32(offsets[3] + 8, 262145, true);
    const liar = `${dir}/liar.pcap`;
    Deno.writeFileSync(liar, huge);
    const r2 = new RecordReader(liar, PLAIN);
    assert.throws(() => r2.read(offsets[3]), {
      message: `${liar}: record at offset ${offsets[3]} claims 262145 bytes`,
    });
    r2.close();
  }),
);
