/**
 * Queries over an archive of 200,000 flows in several files (issue 18, points 2 and 7), with
 * /healthz answering within a second throughout (scans yield to the event loop):
 * - `/flows`: a default limit, the whole answer streamed in JSON and NDJSON with exact counts,
 *   clients that never read holding query slots (the next one gets 503) without growing memory;
 * - pathological queries: 586 non-matching port terms, a sparse port over every file.
 */
import assert from "node:assert/strict";
import { writeManyFlowsPcap } from "../bench/memory.ts";
import { cutcap } from "./support/oracle.ts";
import { rssMb, watchHealth } from "./support/robustness.ts";
import { startServe } from "./support/process.ts";

const FLOWS = 200_000;
/** Every flow sends two packets, 60 bytes each on the wire. */
const PACKETS = FLOWS * 2;
const RSS_BOUND_MB = 400;

interface Record {
  packets: number;
  bytes: number;
  src: string;
  file: string;
}

Deno.test({
  name: "queries stream bounded answers and never stall the server",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "cc-flows-stream-" });
    writeManyFlowsPcap(`${dir}/flows.pcap`, FLOWS);
    const out = `${dir}/archive`;
    const replay = await cutcap([
      ...["--read", `${dir}/flows.pcap`, "--out", out, "--listen", "off"],
      ...["--stats-interval", "0", "--rotate-size", "4MiB", "--byte-cutoff", "0"],
    ]);
    assert.equal(replay.code, 0, replay.stderr);
    const server = await startServe(out, ["--max-concurrent-queries", "4"]);
    const q = encodeURIComponent("udp");
    try {
      await t.step("without limit: the default 10,000 records", async () => {
        const r = await fetch(`${server.url}/flows?q=${q}`);
        assert.equal(r.status, 200);
        assert.equal(r.headers.get("x-cutcap-flow-limit"), "10000");
        const records = await r.json() as Record[];
        assert.equal(records.length, 10_000);
      });

      await t.step(
        "the whole archive as NDJSON and JSON: exact packets, /healthz fast",
        async () => {
          const health = watchHealth(server.url, 50);
          const nd = await fetch(`${server.url}/flows?q=${q}&limit=100000000&format=ndjson`);
          const ndText = await nd.text();
          const all = await fetch(`${server.url}/flows?q=${q}&limit=100000000`);
          const jsonText = await all.text();
          const seen = await health.stop(); // before parsing, which blocks this process's loop
          const lines = ndText.trimEnd().split("\n").map((l) => JSON.parse(l) as Record);
          const json = JSON.parse(jsonText) as Record[];
          assert.equal(lines.reduce((n, r) => n + r.packets, 0), PACKETS, "every stored packet");
          assert.equal(lines.reduce((n, r) => n + r.bytes, 0), PACKETS * 60, "every wire byte");
          assert.equal(new Set(lines.map((r) => r.file)).size > 1, true, "several files");
          assert.deepEqual(json, lines, "JSON and NDJSON carry the same records");
          assert.deepEqual(seen.failures, []);
          assert.ok(seen.probes > 5, `${seen.probes} probes`);
          assert.ok(seen.slowestMs < 1000, `slowest /healthz ${seen.slowestMs.toFixed(0)} ms`);
          console.log(
            `${lines.length} records; /healthz: ${seen.probes} probes, slowest ${
              seen.slowestMs.toFixed(0)
            } ms`,
          );
        },
      );

      await t.step(
        "readers that never read: slots held, 503 past the cap, memory flat",
        async () => {
          const health = watchHealth(server.url, 50);
          const stalled: Deno.TcpConn[] = [];
          for (let i = 0; i < 4; i++) {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
            await conn.write(new TextEncoder().encode(
              `GET /flows?q=${q}&limit=100000000 HTTP/1.1\r\nHost: x\r\n\r\n`,
            ));
            stalled.push(conn); // never read: the server's socket buffer fills, then it must wait
          }
          await new Promise((r) => setTimeout(r, 3000));
          const fifth = await fetch(`${server.url}/flows?q=${q}&limit=1`);
          assert.equal(fifth.status, 503, await fifth.text());
          const rss = rssMb(server.pid);
          for (const conn of stalled) conn.close();
          await new Promise((r) => setTimeout(r, 500));
          const again = await fetch(`${server.url}/flows?q=${q}&limit=1`);
          assert.equal(again.status, 200, "slots come back when the readers leave");
          assert.equal((await again.json() as Record[]).length, 1);
          const seen = await health.stop();
          assert.deepEqual(seen.failures, []);
          assert.ok(seen.slowestMs < 1000, `slowest /healthz ${seen.slowestMs.toFixed(0)} ms`);
          assert.ok(rss < RSS_BOUND_MB, `server RSS ${rss.toFixed(0)} MB with 4 stalled readers`);
          console.log(`4 stalled readers: RSS ${rss.toFixed(0)} MB`);
        },
      );

      await t.step("586 non-matching port terms and a sparse port over every file", async () => {
        const health = watchHealth(server.url, 50);
        // No flow has a port below 1024.
        const ports = Array.from({ length: 586 }, (_, i) => `port=${10 + i}`).join("|");
        const none = await fetch(`${server.url}/query`, { method: "POST", body: ports });
        assert.equal((await none.arrayBuffer()).byteLength, 24, "a pcap header and no packet");
        const noFlows = await fetch(`${server.url}/flows?q=${encodeURIComponent(ports)}`);
        assert.deepEqual(await noFlows.json(), []);
        // Source ports are 1024 + flow % 16: port 1039 is one flow in 16, in every file.
        const sparse = await fetch(`${server.url}/query?q=${encodeURIComponent("port 1039")}`);
        const bytes = (await sparse.arrayBuffer()).byteLength;
        assert.equal((bytes - 24) / (16 + 60), PACKETS / 16, "every packet of port 1039");
        const seen = await health.stop();
        assert.deepEqual(seen.failures, []);
        assert.ok(seen.slowestMs < 1000, `slowest /healthz ${seen.slowestMs.toFixed(0)} ms`);
        console.log(`pathological queries: /healthz slowest ${seen.slowestMs.toFixed(0)} ms`);
      });
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
