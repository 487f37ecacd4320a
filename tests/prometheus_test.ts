/**
 * Issue 4 acceptance: a real Prometheus scrapes a running cutcap that captures a replayed capture live
 * (veth + namespace + tcpreplay), and its HTTP API answers the right packet counts: seen = packets
 * tcpreplay sent, written = what the generator's truth says the cutoff keeps = what tcpdump counts in
 * the output files; libpcap's received/dropped are there for live capture. Needs root.
 */
import assert from "node:assert/strict";
import { expectedCutoff, generateTrafficBytes } from "../bench/gen/mod.ts";
import { rootTest, TEST_NETS } from "./support/netns.ts";
import { archiveFiles, tcpdumpPackets, tsharkLengths } from "./support/oracle.ts";
import { queryPrometheus, startPrometheus } from "./support/prometheus.ts";
import { freePort, sleep, startCutcap } from "./support/process.ts";

const K = 3;

async function packetsIn(out: string): Promise<number> {
  let n = 0;
  for (const file of archiveFiles(out)) n += (await tcpdumpPackets(file)).length;
  return n;
}

/** Sum of an instant query's series, and how many there were. */
async function total(url: string, expr: string): Promise<{ value: number; series: number }> {
  const samples = await queryPrometheus(url, expr);
  return { value: samples.reduce((n, s) => n + s.value, 0), series: samples.length };
}

/** The samples of one metric in an exposition text: labels text → value. */
function samplesOf(text: string, name: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) found.set(m[2] ?? "", Number(m[3]));
  }
  return found;
}

function sum(samples: Map<string, number>): number {
  return [...samples.values()].reduce((a, b) => a + b, 0);
}

rootTest(
  "Prometheus scraping a live sensor reads packets seen = sent and written = the cutoff's keep = tcpdump's count",
  async ({ dir, veth }) => {
    const { pcap, truth } = generateTrafficBytes({
      seed: 31,
      packets: 8000,
      vlanShare: 0,
      nonIpShare: 0,
    });
    await Deno.writeFile(`${dir}/in.pcap`, pcap);
    const keep = expectedCutoff(truth, { packetCutoff: K }).reduce((n, k) => n + k, 0);
    const port = freePort();
    const out = `${dir}/out`;
    const sensor = startCutcap([
      ...["--interface", veth!.outside, "--out", out, "--filter", TEST_NETS, "--workers", "2"],
      ...["--packet-cutoff", String(K), "--byte-cutoff", "0", "--rotate-interval", "2s"],
      ...["--listen", `127.0.0.1:${port}`],
    ]);
    const prometheus = await startPrometheus(`127.0.0.1:${port}`);
    try {
      await sensor.waitFor(/Capturing on/);
      const sent = await veth!.replay(`${dir}/in.pcap`);
      assert.equal(sent, truth.packets);
      const url = prometheus.url;
      const read = async () => ({
        seen: await total(url, "cutcap_packets_seen_total"),
        written: await total(url, "cutcap_packets_written_total"),
        received: await total(url, "cutcap_pcap_received_total"),
        dropped: await total(url, "cutcap_pcap_dropped_total"),
        ifdropped: await total(url, "cutcap_pcap_ifdropped_total"),
      });
      let got = await read();
      const deadline = Date.now() + 20_000;
      while (
        (got.seen.value !== sent || got.written.value !== keep || got.received.value !== sent) &&
        Date.now() < deadline
      ) {
        await sleep(250);
        got = await read();
      }
      assert.deepEqual(got, {
        seen: { value: sent, series: 2 },
        written: { value: keep, series: 2 },
        received: { value: sent, series: 2 },
        dropped: { value: 0, series: 2 },
        ifdropped: { value: 0, series: 2 },
      });
      const perWorker = await queryPrometheus(url, "cutcap_packets_seen_total");
      assert.deepEqual(
        perWorker.map((s) => `${s.metric.interface}/${s.metric.worker}`).sort(),
        [`${veth!.outside}/0`, `${veth!.outside}/1`],
      );
      assert.ok(perWorker.every((s) => s.value > 0), "both workers saw packets");
      sensor.kill("SIGTERM");
      const exit = await sensor.exited;
      assert.equal(exit.code, 0, exit.stderr);
      assert.equal(await packetsIn(out), keep, "tcpdump counts what Prometheus read as written");
    } finally {
      sensor.kill("SIGKILL");
      await sensor.exited;
      await prometheus.stop();
    }
  },
  { veth: "p" },
);

rootTest(
  "/metrics scraped before exit: written packets and bytes equal what tcpdump and tshark read in the files",
  async ({ dir, veth }) => {
    const { pcap, truth } = generateTrafficBytes({
      seed: 32,
      packets: 6000,
      vlanShare: 0,
      nonIpShare: 0,
    });
    await Deno.writeFile(`${dir}/in.pcap`, pcap);
    const port = freePort();
    const out = `${dir}/out`;
    const sensor = startCutcap([
      ...["--interface", veth!.outside, "--out", out, "--filter", TEST_NETS, "--compress", "zstd"],
      ...["--byte-cutoff", "2KiB", "--rotate-interval", "1s", "--listen", `127.0.0.1:${port}`],
    ]);
    try {
      await sensor.waitFor(/Capturing on/);
      const sent = await veth!.replay(`${dir}/in.pcap`, { pps: 5000 });
      const scrape = async () => await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      let text = await scrape();
      const deadline = Date.now() + 10_000;
      while (sum(samplesOf(text, "cutcap_pcap_received_total")) !== sent && Date.now() < deadline) {
        await sleep(200);
        text = await scrape();
      }
      assert.equal(sum(samplesOf(text, "cutcap_packets_seen_total")), sent);
      assert.equal(sum(samplesOf(text, "cutcap_bytes_seen_total")), truth.totalBytes);
      assert.equal(sum(samplesOf(text, "cutcap_pcap_received_total")), sent);
      assert.deepEqual([...samplesOf(text, "cutcap_pcap_dropped_total").values()], [0]);
      assert.deepEqual([...samplesOf(text, "cutcap_pcap_ifdropped_total").values()], [0]);
      const written = sum(samplesOf(text, "cutcap_packets_written_total"));
      const writtenBytes = sum(samplesOf(text, "cutcap_bytes_written_total"));
      assert.ok(written > 0 && written < sent, `the byte cutoff keeps some: ${written}/${sent}`);
      sensor.kill("SIGTERM");
      const exit = await sensor.exited;
      assert.equal(exit.code, 0, exit.stderr);
      const files = archiveFiles(out);
      assert.ok(files.length >= 2, `rotated files: ${files}`);
      let packets = 0;
      let bytes = 0;
      for (const file of files) {
        packets += (await tcpdumpPackets(file)).length;
        // bytes_written counts original lengths: tshark's frame.len.
        bytes += (await tsharkLengths(file)).reduce((n, l) => n + l, 0);
      }
      assert.equal(packets, written, "packets written per /metrics = packets tcpdump reads");
      assert.equal(bytes, writtenBytes, "bytes written per /metrics = wire bytes tshark reads");
    } finally {
      sensor.kill("SIGKILL");
      await sensor.exited;
    }
  },
  { veth: "q" },
);
