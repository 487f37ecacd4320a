/**
 * `/flows` across workers: records in time order of their first packet (as `/query` merges packets),
 * `max_bytes` and `cutcap flows --max-bytes` honoured, and refused requests counted as queries.
 */
import assert from "node:assert/strict";
import { cutcap } from "./support/oracle.ts";
import { metricValue, replayFiles } from "./support/query_server.ts";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { readFileIndex } from "../src/index/index_reader.ts";
import { archiveFiles } from "./support/oracle.ts";
import type { FlowRecord } from "../src/query/flows.ts";
import { startServe } from "./support/process.ts";

Deno.test("/flows merges workers' files in time order; max_bytes and --max-bytes cut it", async () => {
  const work = await Deno.makeTempDir({ prefix: "cc-flows-order-" });
  const out = `${work}/out`;
  try {
    // Two "workers" over the same minutes: two captures with the same start, filed side by side.
    for (const [seed, name] of [[21, "w-a"], [22, "w-b"]] as const) {
      const input = `${work}/${name}.pcap`;
      await writeTrafficPcap(input, { seed, packets: 3000, startTs: 1_760_000_000 });
      await replayFiles([input], out, ["--name", name, "--stats-interval", "0"]);
    }
    const files = archiveFiles(out);
    assert.equal(files.length, 2);
    let flowCount = 0;
    for (const file of files) flowCount += readFileIndex(`${file}.idx`).header.flowCount;

    const server = await startServe(out);
    try {
      const flows = async (params: string) => {
        const response = await fetch(
          `${server.url}/flows?q=${encodeURIComponent("after 2000-01-01")}&limit=1000000${params}`,
        );
        assert.equal(response.status, 200);
        return await response.json() as FlowRecord[];
      };
      const all = await flows("");
      assert.equal(all.length, flowCount, "every flow of both files");
      assert.equal(new Set(all.map((r) => r.file)).size, 2);
      for (let i = 1; i < all.length; i++) {
        assert.ok(all[i].first >= all[i - 1].first, `record ${i} goes back in time`);
      }
      const budget = all[0].bytes + all[1].bytes + all[2].bytes;
      assert.deepEqual(await flows(`&max_bytes=${budget}`), all.slice(0, 3));
      assert.deepEqual(await flows(`&max_bytes=${budget - 1}`), all.slice(0, 2));
      const cli = await cutcap([
        ...["flows", "--server", server.url, "--json", "--limit", "1000000"],
        ...["--max-bytes", String(budget), "after 2000-01-01"],
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.deepEqual(cli.stdout.trim().split("\n").map((l) => JSON.parse(l)), all.slice(0, 3));

      // Requests that are not valid queries are counted, as "invalid".
      const invalid = 'cutcap_queries_total{outcome="invalid"}';
      const before = await metricValue(server.url, invalid);
      const statuses = [
        await fetch(`${server.url}/query?q=${encodeURIComponent("port 99999")}`),
        await fetch(`${server.url}/flows?q=${encodeURIComponent("host")}`),
        await fetch(`${server.url}/flows?q=tcp&max_bytes=lots`),
        await fetch(`${server.url}/query`, { method: "POST", body: "x".repeat(70_000) }),
      ];
      for (const r of statuses) await r.body?.cancel();
      assert.deepEqual(statuses.map((r) => r.status), [400, 400, 400, 413]);
      assert.equal(await metricValue(server.url, invalid), before + 4);
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
