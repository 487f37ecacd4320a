import assert from "node:assert/strict";
import { type Compression, PcapReader } from "../src/pcap/mod.ts";
import { type FinalizedFile, RotatingOutput } from "../src/store/mod.ts";
import { outputFileName, parseOutputFileName, sanitizeIface } from "../src/archive/naming.ts";
import {
  expectedRecords,
  listFiles,
  makePackets,
  type OracleRecord,
  tcpdumpRecords,
  tempDir,
} from "./store_test_util.ts";

Deno.test("outputFileName: UTC day folders, sortable names, sanitized interface", () => {
  const sec = Date.UTC(2024, 1, 29, 23, 59, 58) / 1000;
  assert.equal(
    outputFileName(sec, 7, { iface: "eth0", worker: 3, compress: "zstd" }),
    "2024/02/29/2024-02-29T23-59-58.000007Z_eth0_w03.pcap.zst",
  );
  assert.equal(
    outputFileName(sec, 999999, { iface: "/tmp/in put.pcap", worker: 12, compress: "none" }),
    "2024/02/29/2024-02-29T23-59-58.999999Z_tmp-in-put.pcap_w12.pcap",
  );
  assert.equal(sanitizeIface(""), "unknown");
  assert.equal(sanitizeIface("../x"), "x");
  assert.equal(sanitizeIface("br_lan.10"), "br_lan.10");
  assert.deepEqual(parseOutputFileName("2024-02-29T23-59-58.000007Z_br_lan_w03_2.pcap.gz"), {
    startSec: sec,
    startMicros: 7,
    iface: "br_lan",
    worker: 3,
    compress: "gzip",
  });
  assert.equal(parseOutputFileName(".2024-02-29T23-59-58.000007Z_eth0_w03.pcap.tmp"), null);
  const names = [
    outputFileName(sec + 1, 0, { iface: "eth0", worker: 0, compress: "none" }),
    outputFileName(sec, 10, { iface: "eth0", worker: 0, compress: "none" }),
    outputFileName(sec, 9, { iface: "eth0", worker: 0, compress: "none" }),
  ];
  assert.deepEqual([...names].sort(), [names[2], names[1], names[0]], "names sort by time");
});

async function readFiles(paths: string[]): Promise<OracleRecord[]> {
  const all: OracleRecord[] = [];
  for (const p of paths) {
    const oracle = await tcpdumpRecords(p);
    assert.equal(oracle.stderr, "", p);
    assert.ok(oracle.records.length > 0, p);
    all.push(...oracle.records);
  }
  return all;
}

for (const compress of ["none", "gzip", "zstd"] as Compression[]) {
  Deno.test(`RotatingOutput (${compress}): rotation by size gives files that together hold every packet in order`, async () => {
    const dir = tempDir("rotsize");
    try {
      const packets = makePackets(6000, { seed: 21 });
      const finalized: FinalizedFile[] = [];
      const rotateSize = 300_000;
      const out = new RotatingOutput({
        outDir: dir,
        iface: "eth0",
        worker: 1,
        linkType: 1,
        snaplen: 65535,
        compress,
        blockSize: 32768,
        rotateSize,
        onFinalized: (f) => finalized.push(f),
      });
      const where: [number, number][] = [];
      for (const p of packets) {
        const at = out.write(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac);
        assert.ok(at >= 24);
        where.push([out.fileSeq, at]);
      }
      out.close();
      const files = listFiles(dir);
      assert.ok(files.length >= 3, `several files, found ${files.length}`);
      assert.deepEqual(files, finalized.map((f) => f.path), "onFinalized saw every file, in order");
      assert.deepEqual(finalized.map((f) => f.seq), finalized.map((_, i) => i + 1));
      for (const [i, f] of finalized.entries()) {
        const size = Deno.statSync(f.path).size;
        assert.equal(size, f.bytesOnDisk);
        if (compress === "none") assert.ok(size <= rotateSize, `${size} <= ${rotateSize}`);
        else assert.ok(size <= rotateSize * 1.15, `${size} about ${rotateSize}`);
        if (i < finalized.length - 1) {
          assert.ok(size > rotateSize * 0.7, `${size} near ${rotateSize}`);
        }
        assert.match(
          f.path,
          new RegExp(`^${dir}/2023/11/14/2023-11-14T22-\\d\\d-\\d\\d\\.\\d{6}Z_eth0_w01\\.pcap`),
        );
      }
      assert.deepEqual(await readFiles(files), expectedRecords(packets));
      assert.equal(out.packets, packets.length);
      assert.equal(out.writeErrors, 0);

      // (fileSeq, offset) pairs find the packets again.
      const readers = finalized.map((f) => new PcapReader(f.path, { blocks: f.blocks }));
      for (let i = 0; i < packets.length; i += 37) {
        const r = readers[where[i][0] - 1];
        assert.ok(r.readRecordAt(where[i][1]));
        assert.deepEqual(r.packet(), packets[i].data);
      }
      for (const r of readers) r.close();
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

Deno.test("RotatingOutput: rotation by packet time, nanosecond timestamps", async () => {
  const dir = tempDir("rottime");
  try {
    // 3500 packets 10 ms apart: 35 s of traffic, 10 s files -> 4 files.
    const packets = makePackets(3500, { seed: 4, nanosecond: true, stepMicros: 10_000_000 });
    const finalized: FinalizedFile[] = [];
    const out = new RotatingOutput({
      outDir: dir,
      iface: "any",
      worker: 0,
      linkType: 1,
      snaplen: 65535,
      nanosecond: true,
      rotateInterval: 10,
      onFinalized: (f) => finalized.push(f),
    });
    for (const p of packets) out.write(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac);
    out.close();
    assert.equal(finalized.length, 4);
    let all: OracleRecord[] = [];
    for (const f of finalized) {
      assert.ok(f.lastTs - f.firstTs < 10, `${f.lastTs - f.firstTs} < 10`);
      const name = f.path.slice(f.path.lastIndexOf("/") + 1);
      const fields = parseOutputFileName(name);
      assert.ok(fields !== null);
      assert.equal(fields.startSec + fields.startMicros / 1e6, Math.floor(f.firstTs * 1e6) / 1e6);
      const oracle = await tcpdumpRecords(f.path, { nanosecond: true });
      assert.equal(oracle.stderr, "");
      all = all.concat(oracle.records);
    }
    assert.deepEqual(all, expectedRecords(packets));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("RotatingOutput: rotateIfDue on a quiet link, rotate(), a new link type, same start time", () => {
  const dir = tempDir("rotmisc");
  try {
    const packets = makePackets(10, { seed: 1, stepMicros: 1 });
    const finalized: FinalizedFile[] = [];
    const out = new RotatingOutput({
      outDir: dir,
      iface: "eth1",
      worker: 2,
      linkType: 1,
      snaplen: 65535,
      rotateInterval: 60,
      onFinalized: (f) => finalized.push(f),
    });
    const w = (i: number) =>
      out.write(
        packets[i].data,
        0,
        packets[i].data.length,
        packets[i].wireLen,
        packets[i].tsSec,
        packets[i].tsFrac,
      );
    assert.equal(out.rotateIfDue(packets[0].tsSec + 100), false, "nothing open");
    w(0);
    assert.equal(out.fileSeq, 1);
    assert.equal(out.rotateIfDue(packets[0].tsSec + 59), false);
    assert.equal(out.rotateIfDue(packets[0].tsSec + 60), true);
    assert.equal(finalized.length, 1);
    w(1);
    assert.equal(out.fileSeq, 2);
    out.setFormat({ linkType: 1, snaplen: 65535 });
    assert.equal(finalized.length, 1, "same format: no rotation");
    out.setFormat({ linkType: 113 });
    assert.equal(finalized.length, 2);
    w(2);
    assert.equal(out.current?.linkType, 113);
    assert.equal(out.rotate()?.linkType, 113);
    // Two files starting at the same microsecond get distinct names.
    w(3);
    out.rotate();
    out.write(packets[3].data, 0, 60, 60, packets[3].tsSec, packets[3].tsFrac);
    out.close();
    assert.equal(finalized.length, 5);
    assert.notEqual(finalized[3].path, finalized[4].path);
    assert.match(finalized[4].path, /_w02_1\.pcap$/);
    assert.equal(out.write(packets[5].data, 0, 60, 60, packets[5].tsSec, 0), -1, "closed");
    assert.equal(out.droppedPackets, 1);
    assert.throws(
      () =>
        new RotatingOutput({
          outDir: dir,
          iface: "x",
          worker: 0,
          linkType: 1,
          snaplen: 0,
          compress: "zstd",
          level: 23,
        }),
      /^Error: Invalid zstd level 23: expected 1-22 \(0 = default\)$/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
