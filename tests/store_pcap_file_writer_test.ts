import assert from "node:assert/strict";
import { type Compression, compressionSuffix } from "../src/pcap/mod.ts";
import { type FinalizedFile, PcapFileWriter } from "../src/store/mod.ts";
import {
  blockRows,
  expectedRecords,
  makePackets,
  tcpdumpRecords,
  tempDir,
} from "./store_test_util.ts";
import { q, shell } from "./support/process.ts";

for (const compress of ["none", "gzip", "zstd"] as Compression[]) {
  for (const nanosecond of [false, true]) {
    Deno.test(`PcapFileWriter ${compress} ${nanosecond ? "ns" : "µs"}: tcpdump reads exactly the packets written`, async () => {
      const dir = tempDir("writer");
      try {
        const packets = makePackets(3000, {
          seed: 7,
          nanosecond,
          stepMicros: nanosecond ? 123457 : 1237,
        });
        const path = `${dir}/out.pcap${compressionSuffix(compress)}`;
        const w = new PcapFileWriter({
          path,
          linkType: 1,
          snaplen: 262144,
          nanosecond,
          compress,
          blockSize: 65536,
        });
        assert.ok(Deno.statSync(w.tmpPath).isFile, "writes under the temporary name");
        assert.equal(w.tmpPath, `${dir}/.out.pcap${compressionSuffix(compress)}.tmp`);
        const offsets: number[] = [];
        for (const p of packets) {
          offsets.push(w.writePacket(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac));
        }
        let seen: FinalizedFile | null = null;
        const file = w.finalize((info) => {
          seen = info;
          assert.ok(
            Deno.statSync(info.tmpPath).isFile,
            "temporary file exists during beforeRename",
          );
          assert.throws(() => Deno.statSync(path), "final name does not exist yet");
        });
        assert.ok(file !== null && seen !== null);
        assert.throws(() => Deno.statSync(w.tmpPath), "temporary file is gone");
        const oracle = await tcpdumpRecords(path, { nanosecond });
        assert.equal(oracle.stderr, "");
        assert.equal(oracle.linkType, 1);
        assert.deepEqual(oracle.records, expectedRecords(packets));

        const unit = nanosecond ? 1e9 : 1e6;
        assert.equal(file.packets, packets.length);
        assert.equal(file.path, path);
        assert.equal(file.compress, compress);
        assert.equal(file.nanosecond, nanosecond);
        assert.equal(file.firstTs, packets[0].tsSec + packets[0].tsFrac / unit);
        const last = packets[packets.length - 1];
        assert.equal(file.lastTs, last.tsSec + last.tsFrac / unit);
        assert.equal(file.bytesOnDisk, Deno.statSync(path).size);
        const rows = blockRows(file.blocks);
        if (compress === "none") assert.equal(rows.length, 0, "plain files need no block table");
        else assert.ok(rows.length > 10, `many blocks, found ${rows.length}`);

        // The decompressed stream, as zcat/zstdcat see it: size and record offsets.
        const cat = compress === "gzip" ? "zcat" : compress === "zstd" ? "zstdcat" : "cat";
        const stream = (await shell(`${cat} ${q(path)}`)).stdout;
        assert.equal(file.bytesUncompressed, stream.length);
        const v = new DataView(stream.buffer, stream.byteOffset);
        for (let i = 0; i < packets.length; i += 97) {
          const at = offsets[i];
          assert.equal(v.getUint32(at, true), packets[i].tsSec);
          assert.equal(v.getUint32(at + 4, true), packets[i].tsFrac);
          assert.equal(v.getUint32(at + 8, true), packets[i].data.length);
        }
        // Block table: contiguous, covering the stream and the file.
        if (compress !== "none") {
          let fileOff = 0;
          let streamOff = 0;
          for (const row of rows) {
            assert.equal(row.fileOffset, fileOff);
            assert.equal(row.start, streamOff);
            fileOff += row.compressedLength;
            streamOff += row.length;
          }
          assert.equal(fileOff, file.bytesOnDisk);
          assert.equal(streamOff, file.bytesUncompressed);
        }
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }
}

Deno.test("PcapFileWriter: records longer than the snaplen are cut, wire length kept", async () => {
  const dir = tempDir("snap");
  try {
    const packets = makePackets(200, { seed: 3 });
    const w = new PcapFileWriter({ path: `${dir}/s.pcap`, linkType: 1, snaplen: 96 });
    for (const p of packets) w.writePacket(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac);
    w.finalize();
    const oracle = await tcpdumpRecords(`${dir}/s.pcap`);
    assert.equal(oracle.stderr, "");
    assert.deepEqual(oracle.records, expectedRecords(packets, 96));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PcapFileWriter: packets from an offset inside a long-lived buffer, and oversized records", async () => {
  const dir = tempDir("offset");
  try {
    const packets = makePackets(500, { seed: 11 });
    // A 9000-byte jumbo frame does not fit a 4 KiB block: it gets a block of its own.
    const jumbo = new Uint8Array(9000).map((_, i) => i * 31);
    packets.splice(100, 0, {
      data: jumbo,
      wireLen: 9000,
      tsSec: packets[100].tsSec,
      tsFrac: packets[100].tsFrac,
    });
    const big = new Uint8Array(20000);
    for (const compress of ["none", "zstd"] as Compression[]) {
      const path = `${dir}/o.pcap${compressionSuffix(compress)}`;
      const w = new PcapFileWriter({
        path,
        linkType: 1,
        snaplen: 65535,
        compress,
        blockSize: 4096,
      });
      for (const p of packets) {
        big.set(p.data, 7); // the caller's buffer, packet at offset 7
        w.writePacket(big, 7, p.data.length, p.wireLen, p.tsSec, p.tsFrac);
      }
      const file = w.finalize();
      assert.ok(file !== null);
      if (compress !== "none") {
        const jumboBlock = blockRows(file.blocks).findIndex((row) => row.length === 9016);
        assert.ok(jumboBlock > 0, "the jumbo record has a block of its own");
      }
      const oracle = await tcpdumpRecords(path);
      assert.equal(oracle.stderr, "");
      assert.deepEqual(oracle.records, expectedRecords(packets));
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PcapFileWriter: snaplen 0 means 262144; a bad level fails before a file is made", async () => {
  const dir = tempDir("snap0");
  try {
    const packets = makePackets(20, { seed: 8 });
    const w = new PcapFileWriter({ path: `${dir}/z.pcap`, linkType: 1, snaplen: 0 });
    for (const p of packets) w.writePacket(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac);
    assert.equal(w.finalize()?.snaplen, 262144);
    assert.deepEqual((await tcpdumpRecords(`${dir}/z.pcap`)).records, expectedRecords(packets));
    assert.throws(
      () =>
        new PcapFileWriter({
          path: `${dir}/l.pcap.gz`,
          linkType: 1,
          snaplen: 0,
          compress: "gzip",
          level: 12,
        }),
      /^Error: Invalid gzip level 12: expected 1-9 \(0 = default\)$/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["z.pcap"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("PcapFileWriter: a file without packets is removed, not finalized", () => {
  const dir = tempDir("empty");
  try {
    const w = new PcapFileWriter({
      path: `${dir}/e.pcap.gz`,
      linkType: 1,
      snaplen: 65535,
      compress: "gzip",
    });
    let called = false;
    assert.equal(w.finalize(() => called = true), null);
    assert.equal(called, false);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    assert.equal(
      w.writePacket(new Uint8Array(60), 0, 60, 60, 1, 0),
      -1,
      "a closed writer takes nothing",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
