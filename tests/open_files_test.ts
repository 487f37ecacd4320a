/**
 * The open-file hand-over at its own level, with tcpdump as the oracle: RotatingOutput.flush()
 * writes every record taken so far as complete blocks and publishes the file's state;
 * OpenFiles indexes the flushed prefix (incrementally), a query over it returns exactly the
 * flushed packets, and after the rotation the file is found under its final name, once.
 */
import assert from "node:assert/strict";
import { RotatingOutput } from "../src/store/rotation.ts";
import { readOpenStates } from "../src/store/open_file.ts";
import { indexPcapFile } from "../src/index/index_pcap.ts";
import { Catalog } from "../src/archive/catalog.ts";
import { OpenFiles, wantedInputs } from "../src/query/open_files.ts";
import { queryPcapStream } from "../src/query/execute.ts";
import { parseQuery } from "../src/query/parse.ts";
import {
  expectedRecords,
  makePackets,
  type OracleRecord,
  tcpdumpRecords,
  type TestPacket,
} from "./store_test_util.ts";

const ALL = parseQuery("after 2000-01-01");

/** What tcpdump reads from the open (temporary) file now, via zcat/zstdcat when compressed. */
async function openFileRecords(
  tmpPath: string,
  suffix: string,
  dir: string,
): Promise<OracleRecord[]> {
  const copy = `${dir}/copy.pcap${suffix}`;
  Deno.copyFileSync(tmpPath, copy);
  const { records, stderr } = await tcpdumpRecords(copy);
  assert.equal(stderr, "", "the flushed file reads to its end");
  return records;
}

/** A query's answer over `catalog` plus the open files, as tcpdump reads it. */
async function answer(catalog: Catalog, open: OpenFiles, dir: string): Promise<OracleRecord[]> {
  const extra = await open.inputs();
  const stream = queryPcapStream(catalog, ALL, { limit: 1e9, maxBytes: 1e12, extra });
  const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  Deno.writeFileSync(`${dir}/answer.pcap`, bytes);
  return (await tcpdumpRecords(`${dir}/answer.pcap`)).records;
}

for (const compress of ["none", "gzip", "zstd"] as const) {
  Deno.test(`open files (${compress}): flushed prefix on disk, queried, then found once after rotation`, async () => {
    const dir = Deno.makeTempDirSync({ prefix: "cutcap-open-files-" });
    const out = `${dir}/out`;
    const suffix = compress === "gzip" ? ".gz" : compress === "zstd" ? ".zst" : "";
    try {
      const packets = makePackets(3000, { seed: 7 });
      const output = new RotatingOutput({
        outDir: out,
        iface: "eth0",
        worker: 0,
        linkType: 1,
        snaplen: 262144,
        compress,
        publishOpenState: true,
        beforeRename: (f) => void indexPcapFile(f.tmpPath, { indexPath: `${f.path}.idx` }),
      });
      const write = (list: TestPacket[]) => {
        for (const p of list) {
          output.write(p.data, 0, p.data.length, p.wireLen, p.tsSec, p.tsFrac);
        }
      };
      const open = new OpenFiles(out);
      const catalog = Catalog.open(out);

      write(packets.slice(0, 1000));
      assert.equal(output.unflushedPackets, 1000, "a partial block waits in memory");
      assert.deepEqual(await open.inputs(), [], "nothing published before the first flush");
      output.flush();
      assert.equal(output.unflushedPackets, 0);
      const tmp = output.current!.tmpPath;
      assert.deepEqual(
        await openFileRecords(tmp, suffix, dir),
        expectedRecords(packets.slice(0, 1000)),
        "the partial block is on disk as a complete block",
      );
      const [state] = readOpenStates(out);
      assert.equal(state.packets, 1000);
      assert.equal(state.bytesOnDisk, Deno.statSync(tmp).size);
      assert.deepEqual(await answer(catalog, open, dir), expectedRecords(packets.slice(0, 1000)));

      // More records: the next query indexes only the new ones and sees all.
      write(packets.slice(1000, 2500));
      assert.deepEqual(
        await answer(catalog, open, dir),
        expectedRecords(packets.slice(0, 1000)),
        "unflushed records are not answered",
      );
      output.flush();
      assert.deepEqual(await answer(catalog, open, dir), expectedRecords(packets.slice(0, 2500)));

      // Rotation: the temporary name is gone; the state leads to the final file, counted once
      // whether or not the catalog lists it yet.
      const finalized = output.rotate()!;
      write(packets.slice(2500));
      output.flush();
      assert.deepEqual(await answer(catalog, open, dir), expectedRecords(packets));
      catalog.addFile(finalized.path);
      const inputs = await open.inputs();
      assert.equal(wantedInputs(inputs, catalog, {}).length, 1, "only the new open file is extra");
      inputs.forEach((x) => x.file?.close());
      assert.deepEqual(await answer(catalog, open, dir), expectedRecords(packets));

      output.close();
      assert.deepEqual(readOpenStates(out), [], "a closed output leaves no state");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}
