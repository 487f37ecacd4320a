// RotatingOutput as a capture worker sets it up (blocks compressed on a helper thread, or plain
// blocks written by AIO threads, written one flush later) against the in-line writer and against
// tcpdump reading the files: same records, same offsets, same file boundaries in the decompressed
// streams, the same open-file state at every flush; on a full disk, no throw and every offset
// below a file's decompressed size is exactly one of its records.
import assert from "node:assert/strict";
import { type Compression, PcapReader } from "../src/pcap/mod.ts";
import {
  BlockCompressor,
  type FinalizedFile,
  RotatingOutput,
  type RotatingOutputOptions,
} from "../src/store/mod.ts";
import { readOpenState } from "../src/store/open_file.ts";
import {
  blockRows,
  expectedRecords,
  listFiles,
  makePackets,
  tcpdumpRecords,
  tempDir,
} from "./store_test_util.ts";
import { rootOnly } from "./support/root.ts";
import { q, shell } from "./support/process.ts";

interface Run {
  files: FinalizedFile[];
  offsets: { seq: number; offset: number }[];
}

/**
 * A worker's output options: a compression helper for gzip/zstd, AIO for plain blocks; close the
 * compressor after the output.
 */
function parallelOptions(
  compress: Compression,
): Pick<RotatingOutputOptions, "compressor" | "aioPlainWrites"> {
  return {
    compressor: compress === "none" ? null : BlockCompressor.start(65536),
    aioPlainWrites: true,
  };
}

function writeAll(
  dir: string,
  compress: Compression,
  parallel: boolean,
  packets: ReturnType<typeof makePackets>,
): Run {
  const files: FinalizedFile[] = [];
  const offsets: { seq: number; offset: number }[] = [];
  const helpers = parallel ? parallelOptions(compress) : {};
  const out = new RotatingOutput({
    outDir: dir,
    iface: "eth0",
    worker: 0,
    linkType: 1,
    snaplen: 65535,
    compress,
    blockSize: 65536,
    rotateSize: 1_500_000,
    ...helpers,
    onFinalized: (f) => files.push(f),
  });
  for (const p of packets) {
    const offset = out.write(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac);
    offsets.push({ seq: out.fileSeq, offset });
  }
  out.close();
  helpers.compressor?.close();
  return { files, offsets };
}

for (const compress of ["zstd", "gzip", "none"] as Compression[]) {
  Deno.test(`parallel ${compress}: same records, offsets and file boundaries as in-line`, async () => {
    const packets = makePackets(12_000, { seed: 5 });
    const a = tempDir("par-a");
    const b = tempDir("par-b");
    try {
      const inline = writeAll(a, compress, false, packets);
      const parallel = writeAll(b, compress, true, packets);
      assert.ok(inline.files.length >= 2, "several files");
      assert.deepEqual(parallel.offsets, inline.offsets);
      assert.equal(parallel.files.length, inline.files.length);
      let seen = 0;
      for (let i = 0; i < inline.files.length; i++) {
        const x = inline.files[i];
        const y = parallel.files[i];
        assert.equal(y.packets, x.packets);
        assert.equal(y.bytesUncompressed, x.bytesUncompressed);
        assert.equal(y.firstTs, x.firstTs);
        assert.equal(y.lastTs, x.lastTs);
        const rows = blockRows(y.blocks);
        assert.deepEqual(
          rows.map((r) => [r.start, r.length]),
          blockRows(x.blocks).map((r) => [r.start, r.length]),
        );
        assert.equal(
          y.bytesOnDisk,
          compress === "none"
            ? y.bytesUncompressed // a plain file has no block table
            : rows.reduce((n, r) => n + r.compressedLength, 0),
        );
        assert.equal(Deno.statSync(y.path).size, y.bytesOnDisk);
        const oracle = await tcpdumpRecords(y.path);
        assert.equal(oracle.stderr, "");
        assert.deepEqual(oracle.records, expectedRecords(packets.slice(seen, seen + y.packets)));
        // The reader finds every record at the offset the writer returned.
        const r = new PcapReader(y.path, { blocks: y.blocks });
        const mine = parallel.offsets.filter((o) => o.seq === y.seq);
        assert.equal(mine.length, y.packets);
        for (let k = 0; k < mine.length; k += 97) {
          assert.ok(r.readRecordAt(mine[k].offset));
          assert.deepEqual(r.packet(), packets[seen + k].data);
        }
        r.close();
        seen += y.packets;
      }
      assert.equal(seen, packets.length);
      assert.equal(listFiles(b).filter((f) => f.endsWith(".tmp")).length, 0);
    } finally {
      Deno.removeSync(a, { recursive: true });
      Deno.removeSync(b, { recursive: true });
    }
  });
}

for (const compress of ["zstd", "none"] as Compression[]) {
  Deno.test(`parallel ${compress}: each flush publishes the in-line writer's open-file state`, async () => {
    const packets = makePackets(6000, { seed: 11 });
    const dirs = [tempDir("par-open-a"), tempDir("par-open-b")];
    const helpers = parallelOptions(compress);
    // Blocks go in flight from the first one: the helper runs before anything is written.
    for (let waited = 0; helpers.compressor && !helpers.compressor.ready(); waited += 10) {
      assert.ok(waited < 10_000, "the compression helper starts");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const outs = dirs.map((outDir, i) =>
      new RotatingOutput({
        outDir,
        iface: "eth0",
        worker: 0,
        linkType: 1,
        snaplen: 65535,
        compress,
        blockSize: 65536,
        // By packet time, so both rotate at the same records (a size estimate counts a block in
        // flight before its compressed size is known).
        rotateInterval: 0.2,
        publishOpenState: true,
        ...(i === 1 ? helpers : {}),
      })
    );
    try {
      let inFile = 0;
      let flushes = 0;
      for (let i = 0; i < packets.length; i++) {
        const p = packets[i];
        const seq = outs[0].fileSeq;
        for (const out of outs) out.write(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac);
        inFile = outs[0].fileSeq === seq ? inFile + 1 : 1;
        // As --flush-interval does, at uneven points: partial blocks, some with a block in flight.
        if (i % 701 !== 700) continue;
        for (const out of outs) out.flush();
        const [a, b] = dirs.map((d) => readOpenState(d, "eth0", 0));
        assert.ok(a !== null && b !== null);
        assert.deepEqual({ ...b, flushedAt: 0 }, { ...a, flushedAt: 0 });
        assert.equal(b.packets, inFile, `flush ${flushes}: every record of the open file`);
        assert.equal(b.lastTs, p.tsSec + p.tsFrac / 1e6);
        assert.equal(outs[1].unflushedPackets, 0);
        flushes++;
      }
      assert.ok(outs[0].filesFinalized >= 2 && flushes === 8, "flushes across rotations");
    } finally {
      for (const out of outs) out.close();
      helpers.compressor?.close();
      for (const dir of dirs) Deno.removeSync(dir, { recursive: true });
    }
  });
}

for (const compress of ["zstd", "none"] as Compression[]) {
  Deno.test(`parallel ${compress}: a record larger than a block goes through in-line and back`, async () => {
    const dir = tempDir("par-big");
    try {
      const packets = makePackets(3000, { seed: 8 });
      // Records larger than the 65536-byte blocks, between ordinary ones.
      for (const at of [100, 1500, 2999]) {
        const data = new Uint8Array(200_000).map((_, i) => (i * 13 + at) & 0xff);
        packets[at] = { ...packets[at], data, wireLen: data.length };
      }
      const run = writeAll(dir, compress, true, packets);
      let seen = 0;
      for (const f of run.files) {
        const oracle = await tcpdumpRecords(f.path);
        assert.equal(oracle.stderr, "");
        const want = expectedRecords(packets.slice(seen, seen + f.packets), 65535);
        assert.equal(oracle.records.length, want.length);
        oracle.records.forEach((r, k) => {
          // Compared one by one: a failing deepEqual over 200 KB records formats for minutes.
          assert.ok(
            r.caplen === want[k].caplen && r.len === want[k].len &&
              r.data.every((b, j) => b === want[k].data[j]),
            `record ${seen + k}`,
          );
        });
        seen += f.packets;
      }
      assert.equal(seen, packets.length);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

for (const compress of ["zstd", "none"] as Compression[]) {
  Deno.test(rootOnly("a tmpfs mount", {
    name:
      `parallel ${compress} on a full disk: no throw, offsets below the size are the file's records`,
    fn: async () => {
      const dir = tempDir("par-full");
      assert.equal((await shell(`mount -t tmpfs -o size=1m tmpfs ${q(dir)}`)).code, 0);
      try {
        const packets = makePackets(4000, { seed: 17 });
        const files: FinalizedFile[] = [];
        const written: { seq: number; offset: number; index: number }[] = [];
        const helpers = parallelOptions(compress);
        const out = new RotatingOutput({
          outDir: dir,
          iface: "eth0",
          worker: 0,
          linkType: 1,
          snaplen: 65535,
          compress,
          blockSize: 65536,
          rotateSize: 200_000,
          ...helpers,
          onFinalized: (f) => files.push(f),
        });
        let i = 0;
        while (out.writeErrors === 0 && i < 200_000) {
          const p = packets[i % packets.length];
          const ts = p.tsSec + Math.floor(i / packets.length) * 10;
          const offset = out.write(p.data, 0, p.data.length, p.wireLen, ts, p.tsFrac);
          if (offset >= 0) written.push({ seq: out.fileSeq, offset, index: i });
          i++;
        }
        assert.ok(out.writeErrors > 0, "the disk filled up");
        out.close();
        helpers.compressor?.close();
        let kept = 0;
        for (const f of files) {
          const oracle = await tcpdumpRecords(f.path);
          assert.equal(oracle.stderr, "", `${f.path} reads cleanly`);
          assert.equal(oracle.records.length, f.packets);
          const inFile = written.filter((w) => w.seq === f.seq && w.offset < f.bytesUncompressed);
          assert.equal(inFile.length, f.packets, "offsets below bytesUncompressed are the records");
          const r = new PcapReader(f.path, { blocks: f.blocks });
          for (const w of inFile) {
            assert.ok(r.readRecordAt(w.offset));
            assert.deepEqual(r.packet(), packets[w.index % packets.length].data);
          }
          r.close();
          kept += f.packets;
        }
        assert.equal(
          kept + out.lostPackets,
          written.length,
          "every accepted record is kept or lost",
        );
      } finally {
        await shell(`umount ${q(dir)}`);
        Deno.removeSync(dir, { recursive: true });
      }
    },
  }));
}
