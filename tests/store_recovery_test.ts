import assert from "node:assert/strict";
import { pcapFile } from "./support/pcap_craft.ts";
import { type Compression, compressionSuffix, PcapReader } from "../src/pcap/mod.ts";
import { type FinalizedFile, PcapFileWriter } from "../src/store/mod.ts";
import { recoverTempFiles } from "../src/archive/mod.ts";
import {
  blockRows,
  expectedRecords,
  listFiles,
  makePackets,
  prng,
  tcpdumpRecords,
  tempDir,
  type TestPacket,
} from "./store_test_util.ts";

const NAME = "2023-11-14T22-13-20.000000Z_eth0_w00.pcap";

interface Written {
  bytes: Uint8Array;
  packets: TestPacket[];
  /** End of each record in the decompressed stream. */
  ends: number[];
  /** Blocks: [fileEnd, streamEnd] per block. */
  blocks: [number, number][];
}

/** Writes packets the way a worker does, and grabs the temporary file as a crash would leave it. */
function writeTemp(compress: Compression): Written {
  const dir = tempDir("crashsrc");
  try {
    const packets = makePackets(3000, { seed: 13 });
    // zstd decodes a cut frame only up to its last complete 128 KiB zstd block, so partial
    // recovery shows only with the default 1 MiB blocks there.
    const blockSize = compress === "zstd" ? 1 << 20 : 32768;
    const w = new PcapFileWriter({
      path: `${dir}/${NAME}${compressionSuffix(compress)}`,
      linkType: 1,
      snaplen: 65535,
      compress,
      blockSize,
    });
    const ends = packets.map((p) =>
      w.writePacket(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac) + 16 + p.data.length
    );
    w.flush();
    const bytes = Deno.readFileSync(w.tmpPath);
    const file = w.finalize();
    assert.ok(file !== null);
    // Plain files have no block table: every 500th record end stands in for a flush point.
    const blocks: [number, number][] = compress === "none"
      ? ends.filter((_, i) => i % 500 === 499).map((e) => [e, e])
      : blockRows(file.blocks).map((r) => [r.fileOffset + r.compressedLength, r.start + r.length]);
    return { bytes, packets, ends, blocks };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Puts `bytes` where a crashed worker leaves its temporary file, recovers, and reads the result. */
async function crashAndRecover(compress: Compression, bytes: Uint8Array) {
  const dir = tempDir("crash");
  try {
    const day = `${dir}/2023/11/14`;
    Deno.mkdirSync(day, { recursive: true });
    const tmp = `${day}/.${NAME}${compressionSuffix(compress)}.tmp`;
    Deno.writeFileSync(tmp, bytes);
    const logs: string[] = [];
    const seen: FinalizedFile[] = [];
    const finals: FinalizedFile[] = [];
    const reports = recoverTempFiles(dir, {
      log: (l) => logs.push(l),
      beforeRename: (info) => {
        assert.ok(Deno.statSync(info.tmpPath).isFile);
        seen.push(info);
      },
      onFinalized: (f) => finals.push(f),
    });
    assert.equal(reports.length, 1);
    assert.equal(logs.length, 1, "one log line");
    const report = reports[0];
    assert.equal(report.tmpPath, tmp);
    if (report.path === null) {
      return { report, logs, kept: 0, records: [], files: listFiles(dir), file: null };
    }
    assert.deepEqual(listFiles(dir), [`${day}/${NAME}${compressionSuffix(compress)}`]);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].recovered, true);
    assert.deepEqual(finals, seen);
    const oracle = await tcpdumpRecords(report.path);
    assert.equal(oracle.stderr, "", `tcpdump reads ${report.path} cleanly`);
    assert.equal(seen[0].packets, oracle.records.length);
    assert.equal(seen[0].bytesOnDisk, Deno.statSync(report.path).size);
    // The block table handed to the index finds every record.
    const r = new PcapReader(report.path, { blocks: seen[0].blocks });
    let n = 0;
    while (r.next()) n++;
    assert.equal(n, oracle.records.length);
    r.close();
    return {
      report,
      logs,
      kept: oracle.records.length,
      records: oracle.records,
      files: [],
      file: seen[0],
    };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

for (const compress of ["none", "gzip", "zstd"] as Compression[]) {
  Deno.test(`recoverTempFiles (${compress}): a temporary file cut anywhere keeps exactly its complete records`, async () => {
    const src = writeTemp(compress);
    const rnd = prng(compress.length);
    const cuts = [0, 10, 24, 25, src.bytes.length];
    for (const [fileEnd] of src.blocks.slice(0, 3)) cuts.push(fileEnd, fileEnd + 1);
    for (let k = 0; k < 20; k++) cuts.push(Math.floor(rnd() * src.bytes.length));
    let partialBlockRecovered = false;
    for (const cut of cuts) {
      const { report, logs, kept, records } = await crashAndRecover(
        compress,
        src.bytes.slice(0, cut),
      );
      // Complete blocks before the cut (for plain files every record is its own "block").
      let completeEnd = 24;
      let nextEnd = Infinity;
      if (compress === "none") completeEnd = nextEnd = cut;
      else {
        for (const [fileEnd, streamEnd] of src.blocks) {
          if (fileEnd <= cut) completeEnd = streamEnd;
          else {
            nextEnd = streamEnd;
            break;
          }
        }
      }
      const lower = src.ends.filter((e) => e <= completeEnd).length;
      const upper = src.ends.filter((e) => e <= nextEnd).length;
      assert.ok(
        kept >= lower && kept <= upper,
        `cut ${cut}: kept ${kept}, expected ${lower}..${upper}`,
      );
      if (kept > lower) partialBlockRecovered = true;
      assert.deepEqual(records, expectedRecords(src.packets.slice(0, kept)), `cut ${cut}`);
      assert.equal(report.recordsKept, kept);
      if (kept === 0) {
        assert.equal(report.path, null);
        if (cut > 0) assert.match(logs[0], /Recovery removed .*: no complete record/);
      } else {
        assert.equal(report.error, null);
        assert.match(
          logs[0],
          new RegExp(
            `^Recovered .*${NAME}.*: kept ${kept} records, dropped ${report.bytesDropped} bytes`,
          ),
        );
      }
      if (kept === 0) assert.equal(report.bytesDropped, cut);
      else if (compress === "none") assert.equal(report.bytesDropped, cut - src.ends[kept - 1]);
    }
    if (compress !== "none") {
      assert.ok(partialBlockRecovered, "records of a truncated block were recovered");
    }
  });

  Deno.test(`recoverTempFiles (${compress}): a zero-filled tail (lost delayed writes) is dropped`, async () => {
    const src = writeTemp(compress);
    const [fileEnd, streamEnd] = src.blocks[1];
    const bytes = new Uint8Array(fileEnd + 8192);
    bytes.set(src.bytes.subarray(0, fileEnd));
    const { kept, report } = await crashAndRecover(compress, bytes);
    assert.equal(kept, src.ends.filter((e) => e <= streamEnd).length);
    assert.equal(report.bytesDropped, 8192);
  });
}

Deno.test("recoverTempFiles: leaves foreign data alone, ignores other files, handles a missing directory", () => {
  const dir = tempDir("foreign");
  try {
    Deno.writeFileSync(
      `${dir}/.${NAME}.tmp`,
      new TextEncoder().encode("definitely not a pcap file, just text"),
    );
    Deno.writeFileSync(`${dir}/.other.idx.tmp`, new Uint8Array(10));
    Deno.writeFileSync(`${dir}/${NAME}`, new Uint8Array(10));
    const logs: string[] = [];
    const reports = recoverTempFiles(dir, { log: (l) => logs.push(l) });
    assert.equal(reports.length, 1);
    assert.equal(reports[0].path, null);
    assert.match(reports[0].error ?? "", /No pcap header/);
    assert.match(logs[0], /left .* alone/);
    assert.equal(listFiles(dir).length, 3, "nothing deleted or renamed");
    assert.deepEqual(recoverTempFiles(`${dir}/missing`), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("recovery keeps a zero-length record cutcap wrote and every record after it; cuts a zero tail", () => {
  const dir = tempDir("zero-record");
  try {
    // µs pcap: a 60-byte record, an empty record cutcap kept as it read it (time 0, length 0),
    // another 60-byte record, then 64 zero bytes a crash left (allocated, never written).
    const record = (sec: number, len: number) => ({
      us: sec * 1e6,
      frame: new Uint8Array(len).fill(0xab),
    });
    const name = "2026-01-01T00-00-00.000000Z_eth0_w00.pcap";
    const records = [record(1_767_225_600, 60), record(0, 0), record(1_767_225_601, 60)];
    const body = [...pcapFile(1, 262144, records), ...new Array(64).fill(0)];
    Deno.writeFileSync(`${dir}/.${name}.tmp`, new Uint8Array(body));
    const reports = recoverTempFiles(dir, {});
    assert.equal(reports.length, 1);
    assert.ok(reports[0].path, reports[0].error ?? "");
    const reader = new PcapReader(reports[0].path!);
    const lengths: number[] = [];
    while (reader.next()) lengths.push(reader.caplen);
    reader.close();
    assert.deepEqual(lengths, [60, 0, 60], "all three records, the zero tail cut");
    assert.equal(Deno.statSync(reports[0].path!).size, 24 + 76 + 16 + 76);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
