/**
 * Hostile clients against `cutcap serve` over a ~300k-packet archive, and against a capturing sensor
 * in a network namespace: oversized bodies (413), deep nesting (400), a query matching everything
 * (the server's limits apply), slowloris and idle connections (closed by the header and idle
 * timeouts), readers that stop reading (their query slot comes back), bursts past the concurrency
 * cap (503), too many connections — while /healthz keeps answering and, for the live sensor, nothing
 * is dropped.
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { cutcap, run } from "./support/oracle.ts";
import { metricSum } from "./support/robustness.ts";
import { createVeth } from "./support/netns.ts";
import { rootOnly } from "./support/root.ts";
import { freePort, startCutcap, startServe } from "./support/process.ts";

const PACKETS = 300_000;
const MATCH_ALL = "after 2000-01-01";
const encoder = new TextEncoder();

/** Packets tcpdump counts in a pcap held in memory. */
async function tcpdumpCount(pcap: Uint8Array): Promise<number> {
  const text = await run("tcpdump", ["-r", "-", "-nn", "-q", "-#"], pcap);
  return text.split("\n").filter((l) => /^ *\d+ {2}/.test(l)).length;
}

/** Opens a raw TCP connection to the server. */
function connect(port: number): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: "127.0.0.1", port });
}

/** Resolves with the seconds until the server closes `conn` (reading and discarding), or -1 at `ms`. */
async function secondsUntilClosed(conn: Deno.Conn, ms: number): Promise<number> {
  const started = performance.now();
  const buffer = new Uint8Array(65536);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return (performance.now() - started) / 1000;
    }
  } catch {
    // Closed by our own timer (BadResource) or reset by the server.
    const seconds = (performance.now() - started) / 1000;
    return seconds * 1000 >= ms - 50 ? -1 : seconds;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** Times a GET /healthz; throws unless it answers 200. */
async function healthSeconds(url: string): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10_000) });
  await response.body?.cancel();
  assert.equal(response.status, 200);
  return (performance.now() - started) / 1000;
}

async function buildArchive(dir: string): Promise<string> {
  const input = `${dir}/traffic.pcap`;
  await writeTrafficPcap(input, { seed: 42, packets: PACKETS });
  const out = `${dir}/archive`;
  const result = await cutcap([
    ...["--read", input, "--out", out, "--listen", "off", "--stats-interval", "0"],
    ...["--rotate-size", "16MiB", "--byte-cutoff", "0"],
  ]);
  assert.equal(result.code, 0, result.stderr);
  return out;
}

Deno.test({
  name: "hostile clients: cutcap serve keeps its limits and stays responsive",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "cc-hostile-client-" });
    const archive = await buildArchive(dir);
    const server = await startServe(archive, [
      ...["--max-concurrent-queries", "2", "--max-query-packets", "50000"],
      ...["--header-timeout", "2s", "--idle-timeout", "3s", "--max-connections", "48"],
    ]);
    const { url, port } = server;
    const tried: string[] = [];
    try {
      await t.step("oversized query bodies get 413", async () => {
        const big = "host 198.18.0.1 or ".repeat(60_000);
        let r = await fetch(`${url}/query`, { method: "POST", body: big });
        await r.body?.cancel();
        assert.equal(r.status, 413);
        // Without Content-Length (chunked): counted while read.
        const chunk = encoder.encode("x".repeat(65536));
        let sent = 0;
        const stream = new ReadableStream<Uint8Array>({
          pull(c) {
            if (sent++ < 32) c.enqueue(chunk);
            else c.close();
          },
        });
        r = await fetch(`${url}/query`, { method: "POST", body: stream });
        await r.body?.cancel();
        assert.equal(r.status, 413);
        tried.push("2 oversized bodies → 413");
      });

      await t.step("deep nesting and garbage get 400", async () => {
        const bodies = [
          "(".repeat(5000) + "host 198.18.0.1" + ")".repeat(5000),
          "not ".repeat(10_000) + "tcp",
          "! ".repeat(1000) + "udp",
          "\u0000\uffff\u202e]]]",
          "host 999.1.1.1",
        ];
        for (const body of bodies) {
          const r = await fetch(`${url}/query`, { method: "POST", body });
          const text = await r.text();
          assert.equal(r.status, 400, `${body.slice(0, 20)}: ${text}`);
          // One line, even when it lists every primitive of the language.
          assert.ok(text.length < 400 && !text.trimEnd().includes("\n"), "one short line");
        }
        const flows = await fetch(`${url}/flows?q=${encodeURIComponent("(".repeat(3000))}`);
        await flows.body?.cancel();
        assert.equal(flows.status, 400);
        // A request line far beyond any query: refused (4xx) or closed, never a 5xx or a crash.
        const long = await fetch(`${url}/query?q=${"a".repeat(200_000)}`).catch(() => null);
        if (long) {
          await long.body?.cancel();
          assert.ok(long.status >= 400 && long.status < 500, `long URL: ${long.status}`);
        }
        await healthSeconds(url);
        tried.push(`${bodies.length + 2} malformed queries → 400`);
      });

      await t.step("a query matching everything stops at the server's limits", async () => {
        let r = await fetch(`${url}/query`, { method: "POST", body: MATCH_ALL });
        assert.equal(r.status, 200);
        let pcap = new Uint8Array(await r.arrayBuffer());
        assert.equal(await tcpdumpCount(pcap), 50_000, "--max-query-packets caps the answer");
        r = await fetch(`${url}/query?limit=900000000`, { method: "POST", body: MATCH_ALL });
        pcap = new Uint8Array(await r.arrayBuffer());
        assert.equal(await tcpdumpCount(pcap), 50_000, "a client cannot raise the cap");
        r = await fetch(`${url}/query?max_bytes=200000`, { method: "POST", body: MATCH_ALL });
        pcap = new Uint8Array(await r.arrayBuffer());
        assert.ok(pcap.length <= 200_000 && pcap.length > 100_000, `max_bytes: ${pcap.length}`);
        r = await fetch(`${url}/flows?q=${encodeURIComponent(MATCH_ALL)}&limit=10`);
        assert.equal(r.status, 200);
        assert.ok((await r.json() as unknown[]).length <= 10);
        tried.push("3 match-everything queries capped");
      });

      await t.step("slowloris and idle connections are closed by the header timeout", async () => {
        const conns = await Promise.all(Array.from({ length: 10 }, () => connect(port)));
        // Five dribble a request head a byte every 300 ms and never finish it; five say nothing.
        const head = encoder.encode("POST /query HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        let dribbling = true;
        const dribble = (async () => {
          for (let i = 0; dribbling && i < head.length; i++) {
            await Promise.all(
              conns.slice(0, 5).map((c) => c.write(head.subarray(i, i + 1)).catch(() => 0)),
            );
            await new Promise((r) => setTimeout(r, 300));
          }
        })();
        const health = await healthSeconds(url);
        const closed = await Promise.all(conns.map((c) => secondsUntilClosed(c, 10_000)));
        dribbling = false;
        await dribble;
        for (const s of closed) {
          assert.ok(s > 0 && s < 5, `closed after ${s} s (header timeout 2 s)`);
        }
        assert.ok(health < 1, `/healthz took ${health} s during the attack`);
        tried.push("10 slowloris/idle connections closed in < 5 s");
      });

      await t.step("a kept-alive connection left idle is closed", async () => {
        const conn = await connect(port);
        await conn.write(encoder.encode("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
        const closedAfter = await secondsUntilClosed(conn, 10_000);
        assert.ok(closedAfter > 1.5 && closedAfter < 6, `closed after ${closedAfter} s`);
        tried.push("idle keep-alive closed");
      });

      await t.step("readers that stop reading give their query slot back", async () => {
        const stalled = [];
        for (let i = 0; i < 2; i++) {
          const conn = await connect(port);
          const body = encoder.encode(MATCH_ALL);
          await conn.write(encoder.encode(
            `POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`,
          ));
          await conn.write(body);
          // Read a little of the answer, then stop reading: the server's writes back up.
          const buffer = new Uint8Array(4096);
          await conn.read(buffer);
          stalled.push(conn);
        }
        await new Promise((r) => setTimeout(r, 300));
        let r = await fetch(`${url}/query`, { method: "POST", body: MATCH_ALL });
        await r.body?.cancel();
        assert.equal(r.status, 503, "both slots are held by the stalled readers");
        const health = await healthSeconds(url);
        assert.ok(health < 1, `/healthz took ${health} s with both slots held`);
        // Idle timeout 3 s: the stalled connections are closed and their queries cancelled.
        await new Promise((r) => setTimeout(r, 5000));
        r = await fetch(`${url}/query?limit=10`, { method: "POST", body: MATCH_ALL });
        await r.body?.cancel();
        assert.equal(r.status, 200, "slots came back");
        const metrics = await (await fetch(`${url}/metrics`)).text();
        assert.ok(metricSum(metrics, "cutcap_queries_total", ["outcome", "cancelled"]) >= 2);
        for (const conn of stalled) {
          try {
            conn.close();
          } catch {
            // Closed by the server.
          }
        }
        tried.push("2 stalled readers → slots freed after the idle timeout");
      });

      await t.step(
        "a burst past the concurrency cap gets 503 and /healthz still answers",
        async () => {
          const burst = Array.from(
            { length: 24 },
            () =>
              fetch(`${url}/query`, { method: "POST", body: MATCH_ALL }).then(async (r) => {
                await r.arrayBuffer();
                return r.status;
              }),
          );
          const healthDuring: number[] = [];
          for (let i = 0; i < 5; i++) {
            healthDuring.push(await healthSeconds(url));
          }
          const statuses = await Promise.all(burst);
          const ok = statuses.filter((s) => s === 200).length;
          const busy = statuses.filter((s) => s === 503).length;
          assert.equal(ok + busy, statuses.length, `statuses: ${statuses}`);
          assert.ok(ok >= 2 && busy >= 1, `200×${ok} 503×${busy}`);
          assert.ok(Math.max(...healthDuring) < 2, `/healthz during the burst: ${healthDuring}`);
          tried.push(
            `burst of 24: 200×${ok} 503×${busy}, /healthz max ${
              Math.max(...healthDuring).toFixed(2)
            } s`,
          );
        },
      );

      await t.step("connections past --max-connections are refused, the rest served", async () => {
        const conns = await Promise.all(Array.from({ length: 60 }, () => connect(port)));
        await new Promise((r) => setTimeout(r, 200));
        // The extra 12 are closed at once; the server answers again once the others go.
        const closed = await Promise.all(conns.map((c) => secondsUntilClosed(c, 1000)));
        const refused = closed.filter((s) => s >= 0).length;
        assert.ok(refused >= 12, `refused ${refused} of 60 (cap 48)`);
        await healthSeconds(url);
        tried.push(`60 connections: ${refused} refused at the cap of 48`);
      });
    } finally {
      const code = await server.stop();
      await Deno.remove(dir, { recursive: true });
      assert.equal(code, 0, server.lines.join("\n"));
    }
    console.log(`hostile clients: ${tried.join("; ")}; server stayed up, exit 0`);
  },
});

Deno.test(rootOnly("a live capture on a veth", {
  name: "hostile clients: a capturing sensor under abuse drops nothing",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-hostile-live-" });
    const veth = await createVeth("hc");
    const port = freePort();
    const url = `http://127.0.0.1:${port}`;
    let sensor;
    try {
      const traffic = `${dir}/traffic.pcap`;
      const truth = await writeTrafficPcap(traffic, { seed: 7, packets: 60_000, snaplen: 1500 });
      sensor = startCutcap([
        ...["--interface", veth.outside, "--out", `${dir}/out`, "--listen", `127.0.0.1:${port}`],
        ...["--rotate-interval", "2s", "--byte-cutoff", "0", "--stats-interval", "0"],
        ...["--max-concurrent-queries", "2"],
      ]);
      await sensor.waitFor(/Capturing on/);
      // A first batch of traffic, so the abusive queries have files to read.
      const prefill = `${dir}/prefill.pcap`;
      const first = await writeTrafficPcap(prefill, { seed: 8, packets: 20_000, snaplen: 1500 });
      await veth.replay(prefill, { pps: 20_000 });
      await sensor.waitFor(/moved .*packets=/);
      const expected = first.packets + truth.packets;
      // Abuse runs while tcpreplay sends at 20k packets/s.
      let abusing = true;
      const abuse = (async () => {
        let rounds = 0;
        while (abusing) {
          const requests = [
            ...Array.from(
              { length: 6 },
              () => fetch(`${url}/query`, { method: "POST", body: MATCH_ALL }),
            ),
            fetch(`${url}/query`, { method: "POST", body: "(".repeat(4000) }),
            fetch(`${url}/query`, { method: "POST", body: "x".repeat(200_000) }),
          ];
          const slow = await connect(port);
          await slow.write(encoder.encode("GET /metrics HTTP/1.1\r\n"));
          for (const r of await Promise.allSettled(requests)) {
            if (r.status === "fulfilled") {
              assert.ok([200, 400, 413, 503].includes(r.value.status), `${r.value.status}`);
              await r.value.arrayBuffer();
            }
          }
          slow.close();
          rounds++;
        }
        return rounds;
      })();
      const replayed = performance.now();
      await veth.replay(traffic, { pps: 20_000 });
      const replaySeconds = (performance.now() - replayed) / 1000;
      abusing = false;
      const rounds = await abuse;
      const health = await healthSeconds(url);
      // Counters are published between batches: give the last ones a moment.
      let metrics = "";
      for (let i = 0; i < 50; i++) {
        metrics = await (await fetch(`${url}/metrics`)).text();
        if (metricSum(metrics, "cutcap_packets_seen_total") >= expected) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const seen = metricSum(metrics, "cutcap_packets_seen_total");
      const dropped = metricSum(metrics, "cutcap_pcap_dropped_total");
      const ifdropped = metricSum(metrics, "cutcap_pcap_ifdropped_total");
      assert.equal(dropped, 0, "libpcap dropped packets during the abuse");
      assert.equal(ifdropped, 0);
      assert.equal(seen, expected, "every replayed packet seen");
      assert.ok(rounds >= 1, "the abuse ran");
      const code = await sensor.stop();
      assert.equal(code, 0);
      console.log(
        `hostile clients, live: ${expected} packets at 20k/s in ${
          replaySeconds.toFixed(1)
        } s under ${rounds} abuse rounds (6 match-all queries, deep nesting, 200 kB body, a ` +
          `slow head each): seen ${seen}, dropped ${dropped}, /healthz ${health.toFixed(2)} s`,
      );
    } finally {
      if (sensor) await sensor.stop();
      await veth.remove();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
