/**
 * After an offline replay the metrics agree with the files: --metrics-file holds the final counters, and
 * packets written per the metrics equal the packets tcpdump counts in the output (promtool accepts it).
 */
import assert from "node:assert/strict";
import { expectedCutoff, generateTrafficBytes } from "../bench/gen/mod.ts";
import { archiveFiles, cutcap, run, tcpdumpPackets } from "./support/oracle.ts";

function sumSeries(text: string, name: string): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      total += Number(line.split(" ").at(-1));
    }
  }
  return total;
}

Deno.test("offline replay: --metrics-file counters equal what tcpdump reads from the files", async () => {
  const { pcap, truth } = generateTrafficBytes({ seed: 21, packets: 20000 });
  const dir = await Deno.makeTempDir({ prefix: "cutcap-metrics-file-" });
  try {
    await Deno.writeFile(`${dir}/in.pcap`, pcap);
    const result = await cutcap([
      ...["--read", `${dir}/in.pcap`, "--out", `${dir}/out`, "--listen", "off"],
      ...["--byte-cutoff", "4KiB", "--compress", "zstd", "--rotate-size", "1MB"],
      ...["--metrics-file", `${dir}/cutcap.prom`],
    ]);
    assert.equal(result.code, 0, result.stderr);
    const text = await Deno.readTextFile(`${dir}/cutcap.prom`);
    await run("promtool", ["check", "metrics"], new TextEncoder().encode(text));

    let stored = 0;
    for (const file of archiveFiles(`${dir}/out`)) stored += (await tcpdumpPackets(file)).length;
    const expected = expectedCutoff(truth, { byteCutoff: 4096 }).reduce((a, b) => a + b, 0);
    assert.equal(stored, expected, "the files hold what the cutoff keeps");
    assert.equal(sumSeries(text, "cutcap_packets_written_total"), stored);
    assert.equal(sumSeries(text, "cutcap_packets_lost_total"), 0);
    assert.equal(sumSeries(text, "cutcap_packets_seen_total"), truth.packets);
    assert.equal(sumSeries(text, "cutcap_bytes_seen_total"), truth.totalBytes);
    assert.equal(sumSeries(text, "cutcap_output_files_total"), archiveFiles(`${dir}/out`).length);
    assert.equal(
      sumSeries(text, "cutcap_flow_size_bytes_count"),
      truth.flows.count,
      "every flow's size observed once, at its expiry or at the end of the replay",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
