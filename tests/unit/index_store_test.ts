/**
 * The index as the capture worker builds it, against the store's writer and reader: the index
 * written in PcapFileWriter's before-rename hook lets PcapReader find every packet, and indexing the
 * finished file again from scratch (indexPcapFile) gives the same flows, offsets and blocks.
 */
import assert from "node:assert/strict";
import { decodePacket, PacketInfo } from "../../src/packet/mod.ts";
import { PcapFileWriter } from "../../src/store/mod.ts";
import { PcapReader } from "../../src/pcap/mod.ts";
import {
  canonicalizeKey,
  type Compression,
  IndexBuilder,
  indexPcapFile,
  readFileIndex,
} from "../../src/index/mod.ts";

/** Ethernet + IPv4 + UDP frame, 198.18.0.0/15 addresses, `payload` bytes of `fill`. */
function udpFrame(src: number, dst: number, sport: number, dport: number, payload: number) {
  const f = new Uint8Array(42 + payload);
  f.fill(payload & 0xff, 42);
  const dv = new DataView(f.buffer);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
  dv.setUint16(12, 0x0800);
  f[14] = 0x45;
  dv.setUint16(16, 28 + payload);
  f[22] = 64;
  f[23] = 17;
  dv.setUint32(26, 0xc6120000 | src);
  dv.setUint32(30, 0xc6120000 | dst);
  dv.setUint16(34, sport);
  dv.setUint16(36, dport);
  dv.setUint16(38, 8 + payload);
  return f;
}

for (const compress of ["none", "gzip", "zstd"] as Compression[]) {
  Deno.test(`index built while writing a ${compress} file finds every packet via PcapReader`, () => {
    const dir = Deno.makeTempDirSync({ prefix: "cc-idx-store-" });
    try {
      const path = `${dir}/w.pcap${
        compress === "gzip" ? ".gz" : compress === "zstd" ? ".zst" : ""
      }`;
      const w = new PcapFileWriter({
        path,
        linkType: 1,
        snaplen: 65535,
        compress,
        blockSize: 65536,
      });
      // A stand-in flow table: id per canonical key, the slot of flow 7 reused by a new lifetime.
      const keys = new Map<number, Uint32Array>();
      const b = new IndexBuilder({ copyKey: (id, out, at = 0) => out.set(keys.get(id)!, at) });
      const info = new PacketInfo();
      const ids = new Map<string, number>();
      const written: { offset: number; sec: number; usec: number; frame: Uint8Array }[] = [];
      let reused = false;
      for (let i = 0; i < 3000; i++) {
        const fl = (i * 31) % 40;
        const fwd = i % 3 !== 0;
        const frame = fwd
          ? udpFrame(fl + 1, 200, 1000 + fl, 53, 20 + (i % 300))
          : udpFrame(200, fl + 1, 53, 1000 + fl, 20 + (i % 300));
        const sec = 1700000000 + Math.floor(i / 100);
        const usec = (i % 100) * 10000;
        const offset = w.writePacket(frame, 0, frame.length, frame.length, sec, usec);
        assert.ok(offset >= 0);
        decodePacket(1, frame, 0, frame.length, info);
        canonicalizeKey(info.key);
        const k = Array.from(info.key).join(",");
        let id = ids.get(k);
        if (id === undefined) ids.set(k, id = ids.size);
        if (id === 7 && i > 1500 && keys.get(id) !== undefined && !reused) {
          b.forget(id); // the flow ended: the table tells the builder, a new lifetime takes the id
          reused = true;
        }
        keys.set(id, info.key.slice());
        b.record(id, sec + usec * 1e-6, offset, frame.length);
        written.push({ offset, sec, usec, frame });
      }
      const fin = w.finalize((f) => {
        b.write(`${f.path}.idx`, {
          pcapName: f.path.slice(f.path.lastIndexOf("/") + 1),
          linkType: f.linkType,
          snaplen: f.snaplen,
          nanosecond: f.nanosecond,
          compress: f.compress,
          blocks: f.compress === "none" ? undefined : f.blocks,
          pcapSize: f.bytesOnDisk,
          dataSize: f.bytesUncompressed,
          iface: "veth0",
          worker: 0,
        });
      });
      assert.ok(fin);
      const idx = readFileIndex(`${path}.idx`);
      assert.equal(idx.header.flowCount, 41, "40 flows + the new lifetime of id 7");
      assert.equal(idx.header.packetCount, 3000);
      assert.equal(idx.header.pcapSize, Deno.statSync(path).size);
      if (compress !== "none") assert.ok(idx.header.blockCount > 3);

      const byOffset = new Map(written.map((x) => [x.offset, x]));
      const reader = new PcapReader(path, { blocks: idx.blocks });
      try {
        for (let i = 0; i < idx.offsets.length; i++) {
          const want = byOffset.get(idx.offsets[i]);
          assert.ok(want, `offset ${idx.offsets[i]} was written`);
          assert.ok(reader.readRecordAt(idx.offsets[i]));
          assert.equal(reader.tsSec, want.sec);
          assert.equal(reader.tsFrac, want.usec);
          assert.deepEqual(reader.packet(), want.frame);
        }
      } finally {
        reader.close();
      }

      // Re-indexing the finished file from scratch agrees (except the split lifetime of id 7).
      const again = readFileIndex(indexPcapFile(path, { indexPath: `${dir}/again.idx` }).indexPath);
      assert.equal(again.header.flowCount, 40);
      assert.deepEqual(again.blocks, idx.blocks);
      assert.deepEqual(
        Array.from(again.offsets).sort((x, y) => x - y),
        written.map((x) => x.offset),
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}
