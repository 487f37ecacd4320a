/**
 * A crash on a quiet link loses at most the last --flush-interval: a live capture of a few packets a
 * second is SIGKILLed at a random moment; after the restart's recovery, every packet tcpdump saw on
 * the same interface more than --flush-interval + 0.5 s before the kill is in the archive, byte for
 * byte, and the recovered file reads with zcat/zstdcat | tcpdump. For each compression. Needs root.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { rootTest, TEST_NETS } from "./support/netns.ts";
import { archiveFiles, cutcap, type OraclePacket, tcpdumpPackets } from "./support/oracle.ts";
import { matchByBytes, startTcpdump } from "./support/live_oracle.ts";
import { sleep, startCutcap } from "./support/process.ts";

const FLUSH_INTERVAL = 1;

for (const compress of ["none", "gzip", "zstd"] as const) {
  rootTest(
    `flush (${compress}): after SIGKILL on a quiet link, everything older than the flush interval + 0.5 s is kept`,
    async ({ dir, veth }) => {
      // 60 packets at 5 a second: 12 s of a quiet link.
      const quiet = generateTrafficBytes({ seed: 41, packets: 60, vlanShare: 0, nonIpShare: 0 });
      await Deno.writeFile(`${dir}/quiet.pcap`, quiet.pcap);
      const old = generateTrafficBytes({ seed: 42, packets: 5, startTs: 1600000000 });
      await Deno.writeFile(`${dir}/old.pcap`, old.pcap);
      const out = `${dir}/out`;
      const oracle = await startTcpdump(veth!.outside, `${dir}/oracle.pcap`, TEST_NETS);
      const sensor = startCutcap([
        ...["--interface", veth!.outside, "--out", out, "--compress", compress],
        ...["--byte-cutoff", "0", "--packet-cutoff", "0", "--filter", TEST_NETS],
        ...["--listen", "off", "--flush-interval", `${FLUSH_INTERVAL}s`],
      ]);
      let killedAt = 0;
      try {
        await sensor.waitFor(/Capturing on/);
        const sending = veth!.replay(`${dir}/quiet.pcap`, { pps: 5 });
        await sleep(3000 + Math.random() * 6000);
        killedAt = Date.now() / 1000;
        sensor.kill("SIGKILL");
        assert.equal((await sensor.exited).signal, "SIGKILL");
        assert.equal(await sending, 60);
      } finally {
        sensor.kill("SIGKILL");
        await sensor.exited;
        await oracle.stop();
      }

      // Restart: any capture run recovers first; a --read of old packets keeps it short.
      const restart = await cutcap([
        ...["--read", `${dir}/old.pcap`, "--out", out, "--compress", compress],
        ...["--listen", "off"],
      ]);
      assert.equal(restart.code, 0, restart.stderr);
      assert.match(restart.stderr, /Recovered 1 file\(s\) after a crash/);
      assert.doesNotMatch(restart.stderr, /no complete record/);

      const stored: OraclePacket[] = [];
      for (const file of archiveFiles(out)) {
        // Through zcat/zstdcat: the recovered file must read as one stream, to its end.
        for (const p of await tcpdumpPackets(file)) if (Number(p.ts) > 1.7e9) stored.push(p);
      }
      const seen = await tcpdumpPackets(`${dir}/oracle.pcap`);
      const due = seen.filter((p) => Number(p.ts) < killedAt - FLUSH_INTERVAL - 0.5);
      assert.ok(due.length >= 5, `at least a second of packets before the kill: ${due.length}`);
      const unmatched = matchByBytes(due, stored);
      assert.deepEqual(unmatched, [], `packets before ${killedAt - FLUSH_INTERVAL - 0.5} kept`);
      // Nothing but what was sent (tcpdump reading the file tcpreplay sent), each frame once.
      const sent = (await tcpdumpPackets(`${dir}/quiet.pcap`)).map((p) => p.hex);
      for (const p of stored) {
        const i = sent.indexOf(p.hex);
        assert.ok(i >= 0, `stored packet at ${p.ts} was sent (once)`);
        sent.splice(i, 1);
      }
    },
    { veth: "k" },
  );
}
