/**
 * What a replay leaves in the archive: files named after their source, so several replays into one
 * archive stay apart.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes, writeTrafficPcap } from "../bench/gen/mod.ts";
import { archiveFiles, cutcap, tcpdumpPackets } from "./support/oracle.ts";
import { readFileIndex } from "../src/index/index_reader.ts";

Deno.test("--read output files are named after the input file, or --name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-readname-" });
  try {
    const day1 = `${dir}/day1.pcap`;
    const truth = await writeTrafficPcap(day1, { seed: 5, packets: 300 });
    const out = `${dir}/out`;
    const base = ["--out", out, "--listen", "off", "--stats-interval", "0", "--byte-cutoff", "0"];
    const first = await cutcap(["--read", day1, ...base]);
    assert.equal(first.code, 0, first.stderr);
    const second = await cutcap(["--read", day1, "--name", "sensor b/2", ...base]);
    assert.equal(second.code, 0, second.stderr);
    const names = archiveFiles(out).map((f) => f.replace(/^.*Z_/, ""));
    assert.deepEqual(names.sort(), ["day1_w00.pcap", "sensor-b-2_w00.pcap"]);
    for (const file of archiveFiles(out)) {
      assert.equal((await tcpdumpPackets(file)).length, truth.packets, file);
    }
    const live = await cutcap(["--name", "x", "--listen", "off"]);
    assert.deepEqual(
      { code: live.code, stderr: live.stderr },
      {
        code: 2,
        stderr: "cutcap: Option --name names a --read source: live files are named by interface\n",
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Record headers (ts, caplen, len) and data of a little-endian µs pcap file. */
function records(bytes: Uint8Array): { header: number[]; data: string }[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  for (let at = 24; at + 16 <= bytes.length;) {
    const header = [0, 4, 8, 12].map((o) => view.getUint32(at + o, true));
    out.push({ header, data: bytes.subarray(at + 16, at + 16 + header[2]).join(",") });
    at += 16 + header[2];
  }
  return out;
}

Deno.test("records whose caplen exceeds len are stored as read, and counted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-caplen-" });
  try {
    const { pcap } = generateTrafficBytes({ seed: 9, packets: 40 });
    // Lower the wire length of every 7th record below its captured length (4 of 40).
    const view = new DataView(pcap.buffer, pcap.byteOffset, pcap.byteLength);
    let lowered = 0;
    for (let at = 24, i = 0; at < pcap.length; i++) {
      const caplen = view.getUint32(at + 8, true);
      if (i % 7 === 3) {
        view.setUint32(at + 12, caplen - 10, true);
        lowered++;
      }
      at += 16 + caplen;
    }
    const input = `${dir}/lying.pcap`;
    await Deno.writeFile(input, pcap);
    const out = `${dir}/out`;
    const result = await cutcap([
      ...["--read", input, "--out", out, "--listen", "off", "--stats-interval", "0"],
      ...["--byte-cutoff", "0", "--metrics-file", `${dir}/metrics.prom`],
    ]);
    assert.equal(result.code, 0, result.stderr);
    const [file] = archiveFiles(out);
    const written = records(await Deno.readFile(file));
    const read = records(pcap);
    // Flows are stored whole (no cutoff) and written in arrival order: the same records exactly.
    assert.equal(written.length, 40);
    assert.deepEqual(written, read);
    assert.equal(written.filter((r) => r.header[2] > r.header[3]).length, lowered);
    // tcpdump, the oracle, reads the archive's file exactly as it reads the input.
    const tcpdump = async (path: string) =>
      new TextDecoder().decode(
        (await new Deno.Command("tcpdump", { args: ["-nn", "-tt", "-r", path], stderr: "null" })
          .output()).stdout,
      );
    assert.equal(await tcpdump(file), await tcpdump(input));
    const metrics = await Deno.readTextFile(`${dir}/metrics.prom`);
    assert.match(
      metrics,
      new RegExp(
        `^cutcap_caplen_over_len_total\\{interface="lying",worker="0"\\} ${lowered}$`,
        "m",
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--rotate-size with compression: every file but the last lands within a block of the size", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-rotsize-" });
  try {
    const input = `${dir}/in.pcap`;
    const truth = await writeTrafficPcap(input, { seed: 13, packets: 30_000 });
    const summary: string[] = [];
    for (const compress of ["gzip", "zstd", "none"]) {
      const out = `${dir}/out-${compress}`;
      const target = 2_000_000;
      const result = await cutcap([
        ...["--read", input, "--out", out, "--listen", "off", "--stats-interval", "0"],
        ...["--byte-cutoff", "0", "--rotate-size", "2MB", "--compress", compress],
      ]);
      assert.equal(result.code, 0, result.stderr);
      const files = archiveFiles(out);
      const sizes = files.map((f) => Deno.statSync(f).size);
      let packets = 0;
      for (const [i, file] of files.entries()) {
        const index = readFileIndex(`${file}.idx`);
        packets += index.header.packetCount;
        if (i === files.length - 1) continue;
        // One block on disk: its compressed length (plain files: the largest record).
        let block = 65_536 + 16;
        for (let b = 1; b < index.blocks.length; b += 4) block = Math.max(block, index.blocks[b]);
        assert.ok(
          Math.abs(sizes[i] - target) <= block,
          `${compress} file ${i}: ${sizes[i]} bytes, target ${target} ± ${block}`,
        );
      }
      assert.equal(packets, truth.packets, `${compress}: every packet in some file`);
      summary.push(`${compress}: ${files.length} files, ${sizes.slice(0, -1).join("/")} bytes`);
    }
    console.log(`--rotate-size 2MB: ${summary.join("; ")}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
