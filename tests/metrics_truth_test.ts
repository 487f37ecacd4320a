/**
 * Metrics that tell the truth under the permissions cutcap ships with: the process_* series equal
 * what the kernel says about the process (read here from /proc with -A), not 0; libpcap's recvd is
 * never behind the packets seen; readiness follows the capture interface's link.
 */
import assert from "node:assert/strict";
import { createVeth } from "./support/netns.ts";
import { writeTrafficPcap } from "../bench/gen/mod.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
import { parseExposition } from "./support/fake_sensor.ts";
import { rootOnly } from "./support/root.ts";
import { type CutcapProcess, freePort, sh, startCutcap } from "./support/process.ts";

const ROOT_DIR = new URL("..", import.meta.url).pathname;
const tasks = JSON.parse(await Deno.readTextFile(`${ROOT_DIR}deno.json`)).tasks as Record<
  string,
  string
>;

/** The permission flags of the `cutcap` task (what `deno task cutcap` and the binary run with). */
const TASK_FLAGS = tasks.cutcap.split(/\s+/).filter((w) => w.startsWith("--allow-"));

Deno.test({
  name: "process_* metrics are real under the shipped task's permissions; no nodejs_* series",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    assert.ok(!TASK_FLAGS.includes("--allow-all"));
    const out = await Deno.makeTempDir({ prefix: "cc-proc-" });
    const port = freePort();
    const serve = startCutcap(["serve", "--out", out, "--listen", `127.0.0.1:${port}`], {
      denoArgs: ["run", ...TASK_FLAGS],
    });
    try {
      await serve.waitFor(/Serving /);
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const values = parseExposition(text);
      const status = await Deno.readTextFile(`/proc/${serve.pid}/status`);
      const kib = (field: string) =>
        Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
      const near = (name: string, truth: number, within: number) => {
        const value = values.get(name);
        assert.ok(value !== undefined && value > 0, `${name} = ${value}`);
        assert.ok(Math.abs(value - truth) <= within, `${name} ${value} vs /proc ${truth}`);
      };
      near("process_resident_memory_bytes", kib("VmRSS"), 32 * 2 ** 20);
      near("process_virtual_memory_bytes", kib("VmSize"), 256 * 2 ** 20);
      near("process_heap_bytes", kib("VmData"), 256 * 2 ** 20);
      const fds = [...Deno.readDirSync(`/proc/${serve.pid}/fd`)].length;
      near("process_open_fds", fds, 4);
      const limits = await Deno.readTextFile(`/proc/${serve.pid}/limits`);
      const maxFds = Number(/^Max open files\s+(\d+)/m.exec(limits)![1]);
      assert.equal(values.get("process_max_fds"), maxFds);
      assert.ok((values.get("process_cpu_seconds_total") ?? 0) > 0);
      const started = values.get("process_start_time_seconds")!;
      assert.ok(Math.abs(started - Date.now() / 1000) < 120, `start time ${started}`);
      assert.doesNotMatch(text, /^nodejs_/m, "no nodejs_* series");
      assert.doesNotMatch(serve.lines.join("\n"), /NotCapable|Requires .* access/);
    } finally {
      await serve.stop();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test(rootOnly("a live capture on a veth", {
  name: "libpcap's recvd is never behind pkts; /readyz and /status follow the capture link",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-truth-live-" });
    const veth = await createVeth("tl");
    const port = freePort();
    let sensor: CutcapProcess | undefined;
    try {
      const input = `${dir}/in.pcap`;
      const truth = await writeTrafficPcap(input, { seed: 31, packets: 20_000, snaplen: 1500 });
      sensor = startCutcap([
        ...["--interface", veth.outside, "--out", `${dir}/out`, "--listen", `127.0.0.1:${port}`],
        ...["--stats-interval", "200ms", "--byte-cutoff", "0", "--rotate-interval", "3s"],
      ]);
      await sensor.waitFor(/Capturing on/);
      const url = `http://127.0.0.1:${port}`;
      // Scrapes while packets arrive: pkts (seen) never above libpcap's recvd.
      const replaying = veth.replay(input, { pps: 10_000 });
      let scrapes = 0;
      for (let done = false; !done;) {
        done = await Promise.race([replaying.then(() => true), sleep(50).then(() => false)]);
        const v = parseExposition(await (await fetch(`${url}/metrics`)).text());
        const labels = `{interface="${veth.outside}",worker="0"}`;
        const seen = v.get(`cutcap_packets_seen_total${labels}`) ?? 0;
        const recvd = v.get(`cutcap_pcap_received_total${labels}`) ?? 0;
        assert.ok(seen <= recvd, `scrape ${scrapes}: seen ${seen} > recvd ${recvd}`);
        scrapes++;
      }
      await sensor.waitFor(new RegExp(` pkts=\\d+ .*recvd=${truth.packets} `));
      // Stats lines: pkts count per line, recvd is a total: the running sum never passes it. The
      // kernel counts a packet when it enters the ring, so the lines' pkts may reach the total a
      // line or two after recvd does.
      const lines = sensor.lines;
      const statsLines = () => lines.filter((l) => / W=00 /.test(l));
      for (let i = 0; i < 50 && pktsSum(statsLines()) < truth.packets; i++) await sleep(100);
      let sum = 0;
      for (const line of statsLines()) {
        sum += Number(/ pkts=(\d+) /.exec(line)![1]);
        const recvd = Number(/ recvd=(\d+) /.exec(line)![1]);
        assert.ok(sum <= recvd, `${line}: ${sum} seen so far`);
      }
      assert.equal(sum, truth.packets);
      // The file rotates by the wall clock 3 s after its first packet, about 1 s after its last:
      // the index lag is that second, not the rotate interval.
      await sensor.waitFor(/ moved \S+ packets=/, 10_000);
      const lag = parseExposition(await (await fetch(`${url}/metrics`)).text())
        .get(`cutcap_index_lag_seconds{interface="${veth.outside}",worker="0"}`)!;
      assert.ok(lag >= 0 && lag < 2.5, `index lag ${lag} s with --rotate-interval 3s`);

      const ready = await fetch(`${url}/readyz`);
      assert.equal(ready.status, 200, await ready.text());
      const up = await (await fetch(`${url}/status`)).json();
      assert.equal(up.interfaces[0].link, "up");
      // The peer goes down: the capture handle stays open, but nothing can arrive.
      await sh("ip", ["netns", "exec", veth.ns, "ip", "link", "set", veth.inside, "down"]);
      const down = await fetch(`${url}/readyz`);
      assert.equal(down.status, 503);
      // (The kernel passes through lowerlayerdown to down.)
      assert.match(
        await down.text(),
        new RegExp(
          `^Interface ${veth.outside} link is (down|lowerlayerdown): nothing arrives$`,
          "m",
        ),
      );
      const status = await (await fetch(`${url}/status`)).json();
      assert.match(status.interfaces[0].link, /^(down|lowerlayerdown)$/);
      assert.equal(status.ready, false);
      const metrics = parseExposition(await (await fetch(`${url}/metrics`)).text());
      assert.equal(metrics.get(`cutcap_link_up{interface="${veth.outside}"}`), 0);
      await sh("ip", ["netns", "exec", veth.ns, "ip", "link", "set", veth.inside, "up"]);
      let back = 0;
      for (let i = 0; i < 50 && back !== 200; i++) {
        await sleep(100);
        const r = await fetch(`${url}/readyz`);
        back = r.status;
        await r.body?.cancel();
      }
      assert.equal(back, 200, "ready again once the link is back");
      console.log(
        `recvd >= seen in ${scrapes} scrapes during a 10 kpps replay; readyz follows the link`,
      );
    } finally {
      if (sensor) await sensor.stop();
      await veth.remove();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

/** The sum of the pkts field over stats lines. */
function pktsSum(lines: string[]): number {
  return lines.reduce((sum, line) => sum + Number(/ pkts=(\d+) /.exec(line)?.[1] ?? 0), 0);
}
