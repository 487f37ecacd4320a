/**
 * What a replay leaves in the archive: files named after their source, so several replays into one
 * archive stay apart.
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { archiveFiles, cutcap, tcpdumpPackets } from "./support/oracle.ts";

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
