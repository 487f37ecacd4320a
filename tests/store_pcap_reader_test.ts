import assert from "node:assert/strict";
import { type Compression, compressionSuffix, PcapReader } from "../src/pcap/mod.ts";
import { PcapFileWriter } from "../src/store/mod.ts";
import {
  blockRows,
  makePackets,
  type OracleRecord,
  prng,
  tcpdumpRecords,
  tempDir,
} from "./store_test_util.ts";
import { CORPUS_DIR } from "./support/corpus.ts";
import { q, shell } from "./support/process.ts";

const CORPUS = CORPUS_DIR.slice(0, -1);

function readAll(reader: PcapReader): OracleRecord[] {
  const out: OracleRecord[] = [];
  for (const r of reader) {
    out.push({
      tsSec: r.tsSec,
      tsFrac: r.tsFrac,
      caplen: r.caplen,
      len: r.len,
      data: r.packet().slice(),
    });
  }
  return out;
}

Deno.test("PcapReader: corpus files read like libpcap reads them (both byte orders, µs and ns)", async () => {
  const files = [
    "tcp-handshake-nano.pcap", // little-endian, ns
    "pptp.pcap", // big-endian
    "ipoib.pcap", // big-endian
    "unaligned-nfs-1.pcap",
    "802.1ad_QinQ.pcap",
    "3560_CDP.pcap",
  ];
  for (const name of files) {
    const path = `${CORPUS}/${name}`;
    const reader = new PcapReader(path);
    const oracle = await tcpdumpRecords(path, { nanosecond: reader.nanosecond });
    assert.equal(reader.linkType, oracle.linkType, name);
    assert.deepEqual(readAll(reader), oracle.records, name);
    assert.equal(reader.damage, null, name);
    reader.close();
  }
  const nano = new PcapReader(`${CORPUS}/tcp-handshake-nano.pcap`);
  assert.equal(nano.nanosecond, true);
  assert.equal(nano.littleEndian, true);
  nano.close();
  const be = new PcapReader(`${CORPUS}/pptp.pcap`);
  assert.equal(be.littleEndian, false);
  be.close();
});

Deno.test("PcapReader: a big-endian nanosecond file", async () => {
  const dir = tempDir("be");
  try {
    const packets = makePackets(50, { nanosecond: true, stepMicros: 999_999_937 });
    const parts: number[] = [];
    const u32 = (n: number) => parts.push(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
    const u16 = (n: number) => parts.push(n >>> 8, n & 255);
    u32(0xa1b23c4d);
    u16(2);
    u16(4);
    u32(0);
    u32(0);
    u32(65535);
    u32(1);
    for (const p of packets) {
      u32(p.tsSec);
      u32(p.tsFrac);
      u32(p.data.length);
      u32(p.wireLen);
      parts.push(...p.data);
    }
    Deno.writeFileSync(`${dir}/be.pcap`, new Uint8Array(parts));
    const reader = new PcapReader(`${dir}/be.pcap`);
    assert.equal(reader.littleEndian, false);
    assert.equal(reader.nanosecond, true);
    const oracle = await tcpdumpRecords(`${dir}/be.pcap`, { nanosecond: true });
    assert.deepEqual(readAll(reader), oracle.records);
    reader.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PcapReader: foreign gzip and zstd pcap files (one stream, not cutcap blocks)", async () => {
  const dir = tempDir("foreign");
  try {
    const src = `${CORPUS}/802.1ad_QinQ.pcap`;
    await shell(`gzip -c ${q(src)} > ${dir}/f.pcap.gz && zstd -q -c ${q(src)} > ${dir}/f.pcap.zst`);
    const oracle = await tcpdumpRecords(src);
    for (const [file, compress] of [["f.pcap.gz", "gzip"], ["f.pcap.zst", "zstd"]]) {
      const reader = new PcapReader(`${dir}/${file}`);
      assert.equal(reader.compress, compress);
      assert.deepEqual(readAll(reader), oracle.records);
      assert.equal(reader.damage, null);
      reader.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PcapReader: hostile headers fail with a clear error naming the file", () => {
  const dir = tempDir("hostile");
  try {
    const good = Deno.readFileSync(`${CORPUS}/unaligned-nfs-1.pcap`);
    Deno.writeFileSync(`${dir}/short.pcap`, good.slice(0, 10));
    assert.throws(
      () => new PcapReader(`${dir}/short.pcap`),
      /^Error: Truncated pcap header in .*short\.pcap: expected 24 bytes, found 10$/,
    );
    Deno.writeFileSync(`${dir}/empty.pcap`, new Uint8Array(0));
    assert.throws(() => new PcapReader(`${dir}/empty.pcap`), /expected 24 bytes, found 0/);
    Deno.writeFileSync(
      `${dir}/text.pcap`,
      new TextEncoder().encode("this is not a capture file at all"),
    );
    assert.throws(
      () => new PcapReader(`${dir}/text.pcap`),
      /Not a pcap file .*text\.pcap: expected magic a1b2c3d4 or a1b23c4d, found 74686973/,
    );
    const pcapng = [...Deno.readDirSync(CORPUS)].find((e) => e.name.endsWith(".pcapng"));
    assert.ok(pcapng);
    assert.throws(() => new PcapReader(`${CORPUS}/${pcapng.name}`), /pcapng is not supported/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PcapReader: damaged records: good records first, then a message with record number and offset", async () => {
  const dir = tempDir("damage");
  try {
    const src = `${CORPUS}/tcp-handshake-nano.pcap`;
    const good = Deno.readFileSync(src);
    const all = (await tcpdumpRecords(src, { nanosecond: true })).records;
    assert.ok(all.length >= 3);
    const third = 24 + (16 + all[0].caplen) + (16 + all[1].caplen);

    // Ends mid-record: libpcap reads the same two records and complains too.
    Deno.writeFileSync(`${dir}/cut.pcap`, good.slice(0, third + 20));
    let r = new PcapReader(`${dir}/cut.pcap`);
    assert.deepEqual(readAll(r), all.slice(0, 2));
    assert.equal(
      r.damage,
      `Damaged ${dir}/cut.pcap: record 3 at offset ${third}: truncated record: expected ${
        16 + all[2].caplen
      } bytes, found 20`,
    );
    assert.equal(r.next(), false, "stays at the end");
    r.close();
    const libpcap = await tcpdumpRecords(`${dir}/cut.pcap`, { nanosecond: true });
    assert.equal(libpcap.records.length, 2);
    assert.match(libpcap.stderr, /truncated/);

    // Ends inside a record header.
    Deno.writeFileSync(`${dir}/hdr.pcap`, good.slice(0, third + 5));
    r = new PcapReader(`${dir}/hdr.pcap`);
    assert.equal(readAll(r).length, 2);
    assert.match(
      r.damage ?? "",
      /record 3 at offset \d+: truncated record header: expected 16 bytes, found 5$/,
    );
    r.close();

    // Absurd captured length.
    const absurd = good.slice();
    new DataView(absurd.buffer).setUint32(third + 8, 0x7fffffff, true);
    Deno.writeFileSync(`${dir}/absurd.pcap`, absurd);
    r = new PcapReader(`${dir}/absurd.pcap`);
    assert.equal(readAll(r).length, 2);
    assert.match(
      r.damage ?? "",
      /record 3 at offset \d+: invalid captured length 2147483647: expected at most 262144$/,
    );
    r.close();

    // Header only: no records, no damage.
    Deno.writeFileSync(`${dir}/hdronly.pcap`, good.slice(0, 24));
    r = new PcapReader(`${dir}/hdronly.pcap`);
    assert.equal(r.next(), false);
    assert.equal(r.damage, null);
    r.close();

    // A record longer than the snaplen is read, and noted.
    const snap = good.slice();
    new DataView(snap.buffer).setUint32(16, 40, true);
    Deno.writeFileSync(`${dir}/snap.pcap`, snap);
    r = new PcapReader(`${dir}/snap.pcap`);
    assert.equal(readAll(r).length, all.length);
    assert.equal(r.damage, null);
    assert.equal(r.warningCount, all.length);
    assert.match(
      r.warnings[0],
      /^Record 1 at offset 24 in .*snap\.pcap: captured length \d+ exceeds the snaplen 40$/,
    );
    r.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PcapReader: truncated cutcap gzip/zstd files yield the decodable records, then damage", () => {
  const dir = tempDir("ctrunc");
  try {
    const packets = makePackets(2000, { seed: 5 });
    for (const compress of ["gzip", "zstd"] as Compression[]) {
      const path = `${dir}/t.pcap.${compress === "gzip" ? "gz" : "zst"}`;
      const w = new PcapFileWriter({
        path,
        linkType: 1,
        snaplen: 65535,
        compress,
        blockSize: 65536,
      });
      for (const p of packets) {
        w.writePacket(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac);
      }
      const file = w.finalize();
      assert.ok(file !== null);
      const bytes = Deno.readFileSync(path);
      // Cut in the middle of block 5.
      const block5 = blockRows(file.blocks)[5];
      const cut = block5.fileOffset + Math.floor(block5.compressedLength / 2);
      Deno.writeFileSync(`${path}.cut`, bytes.slice(0, cut));
      const r = new PcapReader(`${path}.cut`);
      const got = readAll(r);
      // Every record of blocks 0-4, at least.
      const reader = new PcapReader(path);
      let inFirst5 = 0;
      while (reader.next()) {
        if (reader.offset < block5.start) inFirst5++;
      }
      reader.close();
      assert.ok(got.length >= inFirst5, `${got.length} >= ${inFirst5}`);
      for (let i = 0; i < got.length; i++) {
        assert.deepEqual(got[i].data, packets[i].data);
      }
      assert.match(
        r.damage ?? "",
        /^Damaged .*\.cut: record \d+ at offset \d+: truncated record.*Truncated block in/,
      );
      r.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

for (const compress of ["none", "gzip", "zstd"] as Compression[]) {
  Deno.test(`PcapReader.readRecordAt (${compress}): the record at each offset, via the block table or a scan`, () => {
    const dir = tempDir("random");
    try {
      const packets = makePackets(4000, { seed: 9 });
      const path = `${dir}/r.pcap${compressionSuffix(compress)}`;
      const w = new PcapFileWriter({
        path,
        linkType: 1,
        snaplen: 65535,
        compress,
        blockSize: 32768,
      });
      const offsets = packets.map((p) =>
        w.writePacket(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac)
      );
      const file = w.finalize();
      assert.ok(file !== null);
      const saved = file.blocks.slice(); // as an index would store it
      const rnd = prng(42);
      for (const blocks of [saved, undefined]) {
        const r = new PcapReader(path, { blocks, cacheBlocks: 3 });
        for (let k = 0; k < 600; k++) {
          const i = Math.floor(rnd() * packets.length);
          assert.equal(r.readRecordAt(offsets[i]), true);
          assert.equal(r.offset, offsets[i]);
          assert.equal(r.tsSec, packets[i].tsSec);
          assert.equal(r.tsFrac, packets[i].tsFrac);
          assert.equal(r.caplen, packets[i].data.length);
          assert.equal(r.len, packets[i].wireLen);
          assert.deepEqual(r.packet(), packets[i].data);
        }
        if (compress !== "none") {
          assert.deepEqual(r.blockTable(), file.blocks);
        }
        assert.equal(r.readRecordAt(file.bytesUncompressed), false, "offset past the end");
        // 3 bytes into a 1514-byte record, the "captured length" reads 0x0005ea00.
        const full = packets.findIndex((p) => p.data.length === 1514);
        assert.throws(
          () => r.readRecordAt(offsets[full] + 3),
          /captured length 387584, expected at most 262144/,
        );
        r.close();
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}
