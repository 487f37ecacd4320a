/**
 * A long run of the HTTP attacks of issue 18 against a live sensor: cutcap captures traffic sent by
 * tcpreplay into a veth pair (its own network namespace) and serves HTTPS on loopback, while, for
 * `--seconds`, attackers keep up
 *
 * - 300 TCP connections to the TLS port that never send a ClientHello (reopened as they close, at
 *   most 300 a second),
 * - 40 slowloris clients trickling a request head a byte a second over TLS,
 * - 20 clients trickling a POST body a byte a second,
 * - 4 `/flows` clients of the whole archive reading 1 KB/s (holding every query slot), and
 * - a pathological query (586 non-matching `port=` terms) every 500 ms (503 while the slots are
 *   held, answered in between), both from a third address (127.0.0.3),
 *
 * and a prober from another source address (127.0.0.2, curl) asks `/healthz` every 200 ms. Reported:
 * /healthz latency (median, max, failures), the sensor's RSS and descriptors (peak), the capture's
 * counters (packets sent vs seen, libpcap drops), the guard's refusals and whether the sensor lived.
 * Exits 1 when a bound is broken (process died, a drop, /healthz over 1 s or failing, RSS over
 * `--rss-mb`).
 *
 * Needs root (namespaces). Run: deno task attack [--seconds 60] [--pps 2000] [--rss-mb 400]
 * [--skip stall,slowloris,queries] (leave attacks out, to see which one costs what).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { writeTrafficPcap } from "./gen/mod.ts";
import { makeCertificates, metricSum, rssMb } from "../tests/support/robustness.ts";
import { createVeth } from "../tests/support/netns.ts";
import { startCutcap } from "../tests/support/process.ts";

const PROBE_SOURCE = "127.0.0.2";
const QUERY_SOURCE = "127.0.0.3";
const encoder = new TextEncoder();

/** Figures of one run. */
export interface AttackReport {
  seconds: number;
  healthProbes: number;
  healthMedianMs: number;
  healthMaxMs: number;
  healthFailures: number;
  /**
   * The same curl probe against a trivial HTTP server outside the sensor (python3 http.server),
   * taken in turn with each /healthz probe: what the machine's load alone costs a probe.
   */
  baselineMedianMs: number;
  baselineMaxMs: number;
  peakRssMb: number;
  peakFds: number;
  sent: number;
  seen: number;
  dropped: number;
  stalledHandshakesOpened: number;
  slowlorisOpened: number;
  /** Pathological queries answered (200) and refused for lack of a slot (503). */
  pathologicalQueries: number;
  queries503: number;
  alive: boolean;
  /** The machine's 1-minute load average at the start and at the end (other work shares it). */
  loadBefore: number;
  loadAfter: number;
}

function loadAverage(): number {
  return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the attacks; see the module comment. */
export async function runAttack(
  opts: { seconds: number; pps: number; rssBoundMb: number; skip: ReadonlySet<string> },
): Promise<AttackReport> {
  const dir = await Deno.makeTempDir({ prefix: "cc-attack-" });
  const veth = await createVeth("atk");
  const certs = await makeCertificates(dir);
  const pcap = `${dir}/traffic.pcap`;
  await writeTrafficPcap(pcap, { seed: 18, packets: 20_000 });
  const port = 20000 + (Deno.pid % 20000);
  const sensor = startCutcap([
    ...["-i", veth.outside, "--out", `${dir}/out`, "--stats-interval", "0"],
    ...["--listen", `127.0.0.1:${port}`, "--tls-cert", certs.cert, "--tls-key", certs.key],
    ...["--rotate-interval", "5s", "--byte-cutoff", "0"],
  ]);
  const client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(certs.ca)] });
  const baselinePort = port + 1;
  const baseline = new Deno.Command("python3", {
    args: ["-m", "http.server", "--bind", "127.0.0.1", String(baselinePort)],
    cwd: dir,
    stdout: "null",
    stderr: "null",
  }).spawn();
  const url = `https://127.0.0.1:${port}`;
  const report: AttackReport = {
    seconds: opts.seconds,
    healthProbes: 0,
    healthMedianMs: 0,
    healthMaxMs: 0,
    healthFailures: 0,
    baselineMedianMs: 0,
    baselineMaxMs: 0,
    peakRssMb: 0,
    peakFds: 0,
    sent: 0,
    seen: 0,
    dropped: 0,
    stalledHandshakesOpened: 0,
    slowlorisOpened: 0,
    pathologicalQueries: 0,
    queries503: 0,
    alive: false,
    loadBefore: loadAverage(),
    loadAfter: 0,
  };
  try {
    await sensor.waitFor(/Capturing on/);
    // A first replay so that the archive holds files to query.
    await veth.replay(pcap, { pps: opts.pps * 4 });
    report.sent += 20_000;
    await sleep(6000);

    let running = true;
    const until = performance.now() + opts.seconds * 1000;
    const tasks: Promise<void>[] = [];
    const latencies: number[] = [];
    const baselines: number[] = [];

    // Traffic all along.
    tasks.push((async () => {
      while (running) {
        await veth.replay(pcap, { pps: opts.pps });
        report.sent += 20_000;
      }
    })());

    // 300 silent TCP connections on the TLS port, reopened as the server closes them.
    if (!opts.skip.has("stall")) {
      tasks.push((async () => {
        const open = new Set<Deno.Conn>();
        while (running) {
          // At most 30 new ones per 100 ms: a bounded flood (300/s) as refused ones close at once.
          for (let n = 0; n < 30 && open.size < 300 && running; n++) {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => null);
            if (conn === null) break;
            report.stalledHandshakesOpened++;
            open.add(conn);
            // Closed by the server (or failed): close our end too, or its descriptor stays open
            // here and a long run reaches this process's limit (EMFILE after ~20000).
            const done = () => {
              open.delete(conn);
              try {
                conn.close();
              } catch { /* closed */ }
            };
            conn.read(new Uint8Array(64)).then(done, done);
          }
          await sleep(100);
        }
        for (const conn of open) conn.close();
      })());
    }

    // Slowloris heads and trickled bodies over TLS, a byte a second.
    const trickle = (count: number, head: string) =>
      (async () => {
        const conns = new Set<Deno.TlsConn>();
        while (running) {
          while (conns.size < count && running) {
            const conn = await Deno.connectTls({
              hostname: "127.0.0.1",
              port,
              caCerts: [Deno.readTextFileSync(certs.ca)],
            }).catch(() => null);
            if (conn === null) break;
            report.slowlorisOpened++;
            conns.add(conn);
            conn.write(encoder.encode(head)).catch(() => conns.delete(conn));
          }
          for (const conn of [...conns]) {
            conn.write(encoder.encode("x")).catch(() => {
              conns.delete(conn);
              try {
                conn.close();
              } catch { /* closed */ }
            });
          }
          await sleep(1000);
        }
        for (const conn of conns) {
          try {
            conn.close();
          } catch { /* closed */ }
        }
      })();
    if (!opts.skip.has("slowloris")) {
      tasks.push(trickle(40, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "));
      tasks.push(trickle(20, "POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"));
    }

    // From a third address (the connection floods above fill 127.0.0.1's per-source cap): 4
    // readers of the whole archive at 1 KB/s, holding every query slot, plus one more query
    // (a burst past the cap) and a pathological query every 500 ms.
    const curl = async (args: string[]): Promise<string> => {
      const out = await new Deno.Command("curl", {
        args: ["-s", "--interface", QUERY_SOURCE, "--cacert", certs.ca, ...args],
        stdout: "piped",
        stderr: "null",
      }).output();
      return new TextDecoder().decode(out.stdout);
    };
    for (let i = 0; i < (opts.skip.has("queries") ? 0 : 4); i++) {
      tasks.push((async () => {
        while (running) {
          await curl([
            ...["-o", "/dev/null", "--limit-rate", "1k", "--max-time", "10"],
            `${url}/flows?q=ip&limit=100000000`,
          ]);
        }
      })());
    }
    const ports = Array.from({ length: 586 }, (_, i) => `port=${10 + i}`).join("|");
    if (!opts.skip.has("queries")) {
      tasks.push((async () => {
        while (running) {
          const code = await curl([
            ...["-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"],
            ...["--data-binary", ports, `${url}/query`],
          ]);
          if (code === "503") report.queries503++;
          else if (code === "200") report.pathologicalQueries++;
          await sleep(500);
        }
      })());
    }

    // The prober, from another source address, and the sensor's footprint.
    tasks.push((async () => {
      while (running) {
        // curl's own clock (connect, TLS, request, answer): this process's event loop, busy
        // with the attackers, does not count.
        const probe = async (target: string, extra: string[]) => {
          const out = await new Deno.Command("curl", {
            args: [
              ...["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--max-time", "5"],
              ...["--interface", PROBE_SOURCE, ...extra, target],
            ],
            stdout: "piped",
            stderr: "null",
          }).output();
          const [code, seconds] = new TextDecoder().decode(out.stdout).split(" ");
          return { code, ms: Number(seconds) * 1000 };
        };
        const health = await probe(`${url}/healthz`, ["--cacert", certs.ca]);
        if (health.code !== "200") report.healthFailures++;
        latencies.push(health.ms);
        baselines.push((await probe(`http://127.0.0.1:${baselinePort}/`, [])).ms);
        try {
          report.peakRssMb = Math.max(report.peakRssMb, rssMb(sensor.pid));
          report.peakFds = Math.max(
            report.peakFds,
            [...Deno.readDirSync(`/proc/${sensor.pid}/fd`)].length,
          );
        } catch { /* gone: reported below */ }
        await sleep(200);
      }
    })());

    while (performance.now() < until) await sleep(500);
    running = false;
    await Promise.all(tasks);
    await sleep(2000);
    report.alive = await Promise.race([sensor.exited.then(() => false), sleep(0).then(() => true)]);
    const metrics = await (await fetch(`${url}/metrics`, { client })).text();
    report.seen = metricSum(metrics, "cutcap_packets_seen_total");
    report.dropped = metricSum(metrics, "cutcap_pcap_dropped_total") +
      metricSum(metrics, "cutcap_pcap_ifdropped_total");
    report.loadAfter = loadAverage();
    latencies.sort((a, b) => a - b);
    report.healthProbes = latencies.length;
    report.healthMedianMs = latencies[latencies.length >> 1] ?? 0;
    report.healthMaxMs = latencies[latencies.length - 1] ?? 0;
    baselines.sort((a, b) => a - b);
    report.baselineMedianMs = baselines[baselines.length >> 1] ?? 0;
    report.baselineMaxMs = baselines[baselines.length - 1] ?? 0;
    return report;
  } finally {
    client.close();
    baseline.kill();
    await baseline.status;
    await sensor.stop();
    await veth.remove();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The bounds a run must keep; the broken ones, as sentences. */
export function brokenBounds(r: AttackReport, rssBoundMb: number): string[] {
  const broken: string[] = [];
  if (!r.alive) broken.push("the sensor died");
  if (r.dropped > 0) broken.push(`libpcap dropped ${r.dropped} packets`);
  if (r.seen !== r.sent) broken.push(`the sensor saw ${r.seen} of ${r.sent} packets sent`);
  if (r.healthFailures > 0) broken.push(`${r.healthFailures} /healthz probes failed`);
  if (r.healthMaxMs > 1000) broken.push(`/healthz took ${r.healthMaxMs.toFixed(0)} ms`);
  if (r.peakRssMb > rssBoundMb) broken.push(`RSS reached ${r.peakRssMb.toFixed(0)} MB`);
  return broken;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "60" },
      pps: { type: "string", default: "2000" },
      "rss-mb": { type: "string", default: "400" },
      skip: { type: "string", default: "" },
    },
  });
  const rssBoundMb = Number(values["rss-mb"]);
  const report = await runAttack({
    seconds: Number(values.seconds),
    pps: Number(values.pps),
    rssBoundMb,
    skip: new Set(values.skip.split(",").filter((s) => s !== "")),
  });
  console.log(JSON.stringify(report, null, 2));
  const broken = brokenBounds(report, rssBoundMb);
  for (const line of broken) console.error(`Bound broken: ${line}`);
  Deno.exit(broken.length > 0 ? 1 : 0);
}
