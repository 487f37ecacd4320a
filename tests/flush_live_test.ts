/**
 * --flush-interval, live in a namespace, with tcpdump as the oracle: packets are on disk and
 * queryable within about a second of their capture, on a quiet link too; through the sensor's own
 * server and through `cutcap serve` on the same --out; /status and cutcap_packets_unflushed show the
 * open files. Needs root.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { rootTest, TEST_NETS } from "./support/netns.ts";
import {
  archiveFiles,
  type OraclePacket,
  parseTcpdumpHex,
  run,
  tcpdumpPackets,
} from "./support/oracle.ts";
import { freePort, sleep, startCutcap, startServe } from "./support/process.ts";

const FILTER_QUERY = "net 198.18.0.0/15 or net 2001:db8::/32";

/** The frames of a pcap file as tcpdump prints them, without their times. */
async function frames(path: string): Promise<string[]> {
  return (await tcpdumpPackets(path)).map((p) => p.hex);
}

/** POSTs `query` to `url` and returns tcpdump's reading of the answer. */
async function queryPackets(url: string, query: string): Promise<OraclePacket[]> {
  const response = await fetch(`${url}/query`, { method: "POST", body: query });
  const body = new Uint8Array(await response.arrayBuffer());
  assert.equal(response.status, 200, new TextDecoder().decode(body));
  return parseTcpdumpHex(await run("tcpdump", ["-r", "-", "-tt", "-nn", "-xx", "-K"], body));
}

for (const compress of ["none", "gzip", "zstd"] as const) {
  rootTest(
    `flush (${compress}): packets sent are answered by /query within 2 s, also through cutcap serve`,
    async ({ dir, veth }) => {
      const sent = generateTrafficBytes({ seed: 31, packets: 40, vlanShare: 0, nonIpShare: 0 });
      await Deno.writeFile(`${dir}/sent.pcap`, sent.pcap);
      const expected = await frames(`${dir}/sent.pcap`);
      const out = `${dir}/out`;
      const port = freePort();
      const url = `http://127.0.0.1:${port}`;
      const sensor = startCutcap([
        ...["--interface", veth!.outside, "--out", out, "--compress", compress],
        ...["--byte-cutoff", "0", "--packet-cutoff", "0", "--filter", TEST_NETS],
        ...["--listen", `127.0.0.1:${port}`, "--flush-interval", "1s"],
      ]);
      let serve: Awaited<ReturnType<typeof startServe>> | undefined;
      try {
        await sensor.waitFor(/Capturing on/);
        serve = await startServe(out);
        assert.equal(await veth!.replay(`${dir}/sent.pcap`, { pps: 200 }), expected.length);
        const sentAt = Date.now();
        await sleep(1500);
        for (const [who, base] of [["sensor", url], ["serve", serve.url]]) {
          const answer = await queryPackets(base, FILTER_QUERY);
          assert.ok(Date.now() - sentAt < 2500, `${who} answered late`);
          assert.deepEqual(
            answer.map((p) => p.hex),
            expected,
            `${who}: every packet sent, in order, 1.5 s after the last one`,
          );
        }
        const flows = await (await fetch(`${url}/flows?q=${encodeURIComponent(FILTER_QUERY)}`))
          .json() as { packets: number }[];
        assert.equal(flows.reduce((n, f) => n + f.packets, 0), expected.length, "/flows counts");
        // The file is still open: nothing was finalized, the answer came from its flushed prefix.
        assert.doesNotMatch(sensor.log(), / moved /);
        const status = await (await fetch(`${url}/status`)).json();
        const open = status.workers[0].currentFile;
        assert.equal(open.packets, expected.length, JSON.stringify(status.workers[0]));
        assert.ok(open.bytes > 0);
        assert.equal(status.workers[0].packetsUnflushed, 0);
        const page = await (await fetch(`${url}/?view=status`)).text();
        assert.match(page, new RegExp(`${expected.length} packets, 0 packets not yet written`));
        const metrics = await (await fetch(`${url}/metrics`)).text();
        assert.match(metrics, /^cutcap_packets_unflushed\{[^}]*worker="0"[^}]*\} 0$/m);
      } finally {
        await serve?.stop();
        sensor.kill("SIGTERM");
        await sensor.exited;
      }
    },
    { veth: "f" },
  );
}

rootTest(
  "SIGHUP finalizes a file per worker and capture goes on without losing a packet",
  async ({ dir, veth }) => {
    const first = generateTrafficBytes({ seed: 51, packets: 300, vlanShare: 0, nonIpShare: 0 });
    const second = generateTrafficBytes({ seed: 52, packets: 200, vlanShare: 0, nonIpShare: 0 });
    await Deno.writeFile(`${dir}/first.pcap`, first.pcap);
    await Deno.writeFile(`${dir}/second.pcap`, second.pcap);
    const out = `${dir}/out`;
    const port = freePort();
    const sensor = startCutcap([
      ...["--interface", veth!.outside, "--out", out, "--workers", "2", "--compress", "gzip"],
      ...["--byte-cutoff", "0", "--packet-cutoff", "0", "--filter", TEST_NETS],
      ...["--listen", `127.0.0.1:${port}`],
    ]);
    try {
      await sensor.waitFor(/Capturing on/);
      await veth!.replay(`${dir}/first.pcap`, { pps: 300 });
      await sleep(1500);
      sensor.kill("SIGHUP");
      await sensor.waitFor(/SIGHUP: finalizing the open files of 2 workers/);
      const deadline = Date.now() + 10_000;
      while (
        !(/_w00\.pcap\.gz/.test(movedLines(sensor.log())) &&
          /_w01\.pcap\.gz/.test(movedLines(sensor.log())))
      ) {
        assert.ok(Date.now() < deadline, `a finalized file per worker:\n${sensor.log()}`);
        await sleep(100);
      }
      await veth!.replay(`${dir}/second.pcap`, { pps: 300 });
      // Alive, and the packets after the SIGHUP are queryable from the new open files (a loaded
      // machine may take longer than the flush interval: freshness is tested above).
      let answered = 0;
      for (const until = Date.now() + 10_000; answered < 500 && Date.now() < until;) {
        await sleep(500);
        answered = (await queryPackets(`http://127.0.0.1:${port}`, FILTER_QUERY)).length;
      }
      assert.equal(answered, 500, "both batches answered after the SIGHUP");
    } finally {
      sensor.kill("SIGTERM");
    }
    const exit = await sensor.exited;
    assert.equal(exit.code, 0, exit.stderr);
    assert.ok(exit.signal === null, "alive until SIGTERM");
    const stored: OraclePacket[] = [];
    for (const file of archiveFiles(out)) stored.push(...await tcpdumpPackets(file));
    // The frames sent, as tcpdump reads them from the files tcpreplay sent.
    const sentFrames = [
      ...await frames(`${dir}/first.pcap`),
      ...await frames(`${dir}/second.pcap`),
    ];
    assert.deepEqual(
      stored.map((p) => p.hex).sort(),
      sentFrames.sort(),
      "every frame sent is stored once",
    );
    assert.ok(archiveFiles(out).length >= 4, "two files per worker: before and after the SIGHUP");
  },
  { veth: "h" },
);

function movedLines(log: string): string {
  return log.split("\n").filter((l) => / moved /.test(l)).join("\n");
}
