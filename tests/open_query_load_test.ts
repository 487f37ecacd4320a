/**
 * Queries over open files under load, live in a namespace: tcpreplay keeps the link busy, files
 * rotate every second (and on SIGHUP in the middle of a streaming answer), and queries hammer the
 * sensor meanwhile. Every answer must be a pcap tcpdump reads, strictly time-ordered, without a
 * packet twice, and hold every packet the final archive has from before the query started minus
 * the flush interval and a margin. Needs root.
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
import { freePort, sleep, startCutcap } from "./support/process.ts";

/** How long a packet may wait to be queryable: --flush-interval 1s, plus a margin. */
const LAG = 1.5;

interface Answer {
  startedAt: number;
  packets: OraclePacket[];
}

/** RFC 3339 of Unix seconds, for the query language. */
function rfc3339(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

/** Runs `query` and reads the answer; `midway` runs after its first chunk has arrived. */
async function ask(url: string, query: string, midway?: () => Promise<void>): Promise<Answer> {
  const startedAt = Date.now() / 1000;
  const response = await fetch(`${url}/query`, { method: "POST", body: query });
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  const chunks: Uint8Array[] = [];
  for (let first = true;; first = false) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
    if (first && midway) await midway();
  }
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  // tcpdump fails on a torn record or a bad header: `run` throws then.
  const text = await run("tcpdump", ["-r", "-", "-tt", "-nn", "-xx", "-K"], bytes);
  return { startedAt, packets: parseTcpdumpHex(text) };
}

function checkAnswer(answer: Answer, archive: OraclePacket[], from: number, label: string): void {
  const keys = answer.packets.map((p) => `${p.ts} ${p.hex}`);
  assert.equal(new Set(keys).size, keys.length, `${label}: no packet twice`);
  for (let i = 1; i < answer.packets.length; i++) {
    assert.ok(
      Number(answer.packets[i].ts) > Number(answer.packets[i - 1].ts),
      `${label}: strictly time-ordered at packet ${i}`,
    );
  }
  const stored = new Set(archive.map((p) => `${p.ts} ${p.hex}`));
  for (const key of keys) assert.ok(stored.has(key), `${label}: ${key.slice(0, 40)} is archived`);
  const got = new Set(keys);
  const due = archive.filter((p) => Number(p.ts) >= from && Number(p.ts) < answer.startedAt - LAG);
  const missing = due.filter((p) => !got.has(`${p.ts} ${p.hex}`));
  assert.equal(
    missing.length,
    0,
    `${label}: ${missing.length} of ${due.length} packets flushed before the query are missing, ` +
      `first at ${missing[0]?.ts} (query at ${answer.startedAt})`,
  );
}

for (const compress of ["none", "zstd"] as const) {
  rootTest(
    `open files (${compress}): queries during rotation and under load answer whole, ordered, complete pcaps`,
    async ({ dir, veth }) => {
      const { pcap } = generateTrafficBytes({ seed: 61, packets: 4000, vlanShare: 0 });
      await Deno.writeFile(`${dir}/loop.pcap`, pcap);
      const out = `${dir}/out`;
      const port = freePort();
      const url = `http://127.0.0.1:${port}`;
      const sensor = startCutcap([
        ...["--interface", veth!.outside, "--out", out, "--compress", compress],
        ...["--byte-cutoff", "0", "--packet-cutoff", "0", "--filter", TEST_NETS],
        ...["--listen", `127.0.0.1:${port}`, "--rotate-interval", "3s"],
      ]);
      const answers: Answer[] = [];
      let from = 0;
      const traffic = veth!.replayForever(`${dir}/loop.pcap`, { pps: 2000 });
      try {
        await sensor.waitFor(/Capturing on/);
        await sleep(1000);
        from = Date.now() / 1000;
        const query = `after ${rfc3339(from)}`;
        await sleep(3000);
        // A rotation while an answer streams: SIGHUP once its first chunk is out.
        answers.push(
          await ask(url, query, async () => {
            sensor.kill("SIGHUP");
            await sensor.waitFor(/SIGHUP: finalizing/);
            await sleep(300);
          }),
        );
        // Then two clients asking back to back for 6 s while files rotate every 3 s.
        const until = Date.now() + 6000;
        const client = async () => {
          while (Date.now() < until) answers.push(await ask(url, query));
        };
        await Promise.all([client(), client()]);
      } finally {
        await traffic.stop();
        await sleep(1500);
        sensor.kill("SIGTERM");
      }
      const exit = await sensor.exited;
      assert.equal(exit.code, 0, exit.stderr);
      assert.ok(answers.length >= 4, `${answers.length} answers`);
      const archive: OraclePacket[] = [];
      for (const file of archiveFiles(out)) archive.push(...await tcpdumpPackets(file));
      assert.ok((exit.stderr.match(/ moved /g) ?? []).length >= 3, "files rotated meanwhile");
      answers.forEach((a, i) => checkAnswer(a, archive, from, `answer ${i}`));
      assert.ok(answers.at(-1)!.packets.length > 10_000, "the answers grew with the traffic");
    },
    { veth: "q" },
  );
}
