import assert from "node:assert/strict";
import { type Compression, PcapReader } from "../src/pcap/mod.ts";
import { type FinalizedFile, RotatingOutput } from "../src/store/mod.ts";
import { listFiles, makePackets, tcpdumpRecords, tempDir } from "./store_test_util.ts";
import { rootOnly } from "./support/root.ts";
import { q, shell } from "./support/process.ts";

interface Written {
  seq: number;
  offset: number;
  index: number;
}

/** Checks every finalized file: tcpdump reads it cleanly, and offsets below its size are its packets. */
async function checkFiles(
  finalized: FinalizedFile[],
  written: Written[],
  packets: ReturnType<typeof makePackets>,
) {
  let kept = 0;
  for (const f of finalized) {
    const oracle = await tcpdumpRecords(f.path);
    assert.equal(oracle.stderr, "", `${f.path} reads cleanly`);
    assert.equal(oracle.records.length, f.packets);
    const r = new PcapReader(f.path, { blocks: f.blocks });
    const mine = written.filter((w) => w.seq === f.seq);
    const inFile = mine.filter((w) => w.offset < f.bytesUncompressed);
    assert.equal(
      inFile.length,
      f.packets,
      "offsets below bytesUncompressed are exactly the file's packets",
    );
    for (const w of inFile) {
      assert.ok(r.readRecordAt(w.offset));
      assert.deepEqual(r.packet(), packets[w.index % packets.length].data);
    }
    r.close();
    kept += f.packets;
  }
  return kept;
}

for (const compress of ["none", "zstd"] as Compression[]) {
  Deno.test(rootOnly("a tmpfs mount", {
    name:
      `RotatingOutput (${compress}) on a full disk: errors counted, no throw, earlier files intact, resumes when space is freed`,
    fn: async () => {
      const dir = tempDir("enospc");
      assert.equal((await shell(`mount -t tmpfs -o size=1m tmpfs ${q(dir)}`)).code, 0);
      try {
        const packets = makePackets(4000, { seed: 17 });
        const finalized: FinalizedFile[] = [];
        const written: Written[] = [];
        const out = new RotatingOutput({
          outDir: dir,
          iface: "eth0",
          worker: 0,
          linkType: 1,
          snaplen: 65535,
          compress,
          blockSize: 65536,
          rotateSize: 200_000,
          onFinalized: (f) => finalized.push(f),
        });
        let i = 0;
        const write = () => {
          const p = packets[i % packets.length];
          // Time goes on across the loop over the test packets.
          const offset = out.write(
            p.data,
            0,
            p.data.length,
            p.wireLen,
            p.tsSec + Math.floor(i / packets.length) * 10,
            p.tsFrac,
          );
          if (offset >= 0) written.push({ seq: out.fileSeq, offset, index: i });
          i++;
        };
        // Fill the disk (zstd needs more input for the same bytes on disk).
        while (out.writeErrors === 0 && i < 200_000) write();
        assert.equal(
          out.writeErrors,
          1,
          "the disk filled up: the first failed write is counted once",
        );
        assert.match(out.lastError, /No space left on device|os error 28/);
        const before = finalized.length;
        assert.ok(before >= 1, "files finalized before the disk filled");
        for (let k = 0; k < 3000; k++) write(); // keeps going without throwing
        const errorsWhileFull = out.writeErrors;
        assert.ok(errorsWhileFull >= 1);
        const keptBefore = await checkFiles(finalized, written, packets);
        assert.ok(keptBefore > 0);

        // Free space (as retention would) and go on: new files finalize, no new errors.
        for (const f of finalized) Deno.removeSync(f.path);
        const after = finalized.length;
        for (let k = 0; k < 800; k++) write(); // about 700 KB: fits the freed 1 MiB
        out.close();
        assert.equal(out.writeErrors, errorsWhileFull, "no errors once space is back");
        const resumed = finalized.slice(after);
        assert.ok(resumed.length >= 2, `files written after freeing space: ${resumed.length}`);
        assert.ok(resumed.every((f) => f.packets > 0));
        await checkFiles(resumed, written, packets);
        assert.ok(
          resumed.reduce((n, f) => n + f.packets, 0) >= 800,
          "the packets after freeing space are on disk",
        );
        assert.deepEqual(
          listFiles(dir),
          resumed.map((f) => f.path),
          "no temporary files left behind",
        );
      } finally {
        await shell(`umount ${q(dir)}`);
        Deno.removeSync(dir, { recursive: true });
      }
    },
  }));
}

Deno.test(rootOnly("a tmpfs mount", {
  name: "RotatingOutput: a read-only file system and a deleted output directory do not throw",
  fn: async () => {
    const dir = tempDir("rofs");
    assert.equal((await shell(`mount -t tmpfs -o size=4m tmpfs ${q(dir)}`)).code, 0);
    try {
      const packets = makePackets(3000, { seed: 2 });
      const finalized: FinalizedFile[] = [];
      const out = new RotatingOutput({
        outDir: `${dir}/out`,
        iface: "eth0",
        worker: 1,
        linkType: 1,
        snaplen: 65535,
        blockSize: 16384,
        onFinalized: (f) => finalized.push(f),
      });
      const w = (p: (typeof packets)[number]) =>
        out.write(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac);

      // Output directory deleted under a running writer: the rename fails, counted.
      for (const p of packets.slice(0, 500)) assert.ok(w(p) >= 0);
      Deno.removeSync(`${dir}/out`, { recursive: true });
      for (const p of packets.slice(500, 1000)) w(p);
      assert.equal(out.rotate(), null);
      assert.equal(out.writeErrors, 1, "the rename into the deleted directory");
      assert.match(out.lastError, /Cannot finalize/);
      // ... and the next file recreates the directories.
      for (const p of packets.slice(1000, 1500)) assert.ok(w(p) >= 0);
      const f1 = out.rotate();
      assert.ok(f1 !== null && f1.packets === 500);
      assert.equal((await tcpdumpRecords(f1.path)).records.length, 500);

      // Read-only: opening fails, packets are dropped and counted, retried after a second.
      assert.equal((await shell(`mount -o remount,ro ${q(dir)}`)).code, 0);
      const errors = out.writeErrors;
      for (const p of packets.slice(1500, 2000)) assert.equal(w(p), -1);
      assert.equal(out.droppedPackets, 500);
      assert.equal(out.writeErrors, errors + 1, "one failed open, then retries wait");
      assert.match(out.lastError, /Cannot open an output file .*(Read-only|os error 30)/);
      assert.equal((await shell(`mount -o remount,rw ${q(dir)}`)).code, 0);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      for (const p of packets.slice(2000, 3000)) assert.ok(w(p) >= 0);
      const f2 = out.close();
      assert.ok(f2 !== null && f2.packets === 1000);
      const oracle = await tcpdumpRecords(f2.path);
      assert.equal(oracle.stderr, "");
      assert.equal(oracle.records.length, 1000);
    } finally {
      await shell(`umount ${q(dir)}`);
      Deno.removeSync(dir, { recursive: true });
    }
  },
}));
