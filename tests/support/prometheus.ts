/**
 * A real Prometheus (/usr/bin/prometheus) scraping one target every second, for tests that check
 * what Prometheus itself reads from /metrics: an oracle independent of our exposition code.
 */
import { freePort } from "./process.ts";

/** A running Prometheus; `stop` ends it and removes its data. */
export interface RunningPrometheus {
  /** Base URL of its HTTP API, e.g. http://127.0.0.1:40123. */
  url: string;
  /** Where its log goes, for failure messages. */
  logPath: string;
  stop(): Promise<void>;
}

/** Options of `startPrometheus`. */
export interface PrometheusOptions {
  /** Scrape path, default /metrics. */
  metricsPath?: string;
  /** Bearer token to send, for a target started with --token-file. */
  bearerToken?: string;
  /** Milliseconds to wait for readiness, default 30000. */
  timeoutMs?: number;
}

/** One series of an instant query's answer. */
export interface PrometheusSample {
  metric: Record<string, string>;
  value: number;
}

/** Starts Prometheus scraping `target` ("127.0.0.1:9102") every second; resolves when it is ready. */
export async function startPrometheus(
  target: string,
  options: PrometheusOptions = {},
): Promise<RunningPrometheus> {
  const dir = Deno.makeTempDirSync({ prefix: "cutcap-prometheus-" });
  const auth = options.bearerToken === undefined
    ? ""
    : `    authorization:\n      type: Bearer\n      credentials: ${
      JSON.stringify(options.bearerToken)
    }\n`;
  Deno.writeTextFileSync(
    `${dir}/prometheus.yml`,
    `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: cutcap
    metrics_path: ${JSON.stringify(options.metricsPath ?? "/metrics")}
${auth}    static_configs:
      - targets: [${JSON.stringify(target)}]
`,
  );
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const logPath = `${dir}/prometheus.log`;
  const log = Deno.openSync(logPath, { write: true, create: true });
  const child = new Deno.Command("/usr/bin/prometheus", {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--web.enable-lifecycle",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logged = child.stderr.pipeTo(log.writable).catch(() => {});
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await child.status;
    await logged;
    Deno.removeSync(dir, { recursive: true });
  };

  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    try {
      const response = await fetch(`${url}/-/ready`);
      await response.body?.cancel();
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      const text = Deno.readTextFileSync(logPath);
      await stop();
      throw new Error(`Prometheus did not become ready on ${url}: ${text.slice(-2000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { url, logPath, stop };
}

/** Runs an instant query; returns its series (a scalar answer comes back as one series without labels). */
export async function queryPrometheus(url: string, expr: string): Promise<PrometheusSample[]> {
  const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = await response.json() as {
    status: string;
    error?: string;
    data?: { resultType: string; result: unknown };
  };
  if (body.status !== "success" || body.data === undefined) {
    throw new Error(`Query ${expr} failed: ${body.error ?? response.status}`);
  }
  const { resultType, result } = body.data;
  if (resultType === "scalar") {
    return [{ metric: {}, value: Number((result as [number, string])[1]) }];
  }
  if (resultType !== "vector") {
    throw new Error(`Query ${expr} returned a ${resultType}: expected an instant vector`);
  }
  return (result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({
    metric: r.metric,
    value: Number(r.value[1]),
  }));
}

/** Polls `expr` until it returns at least one series (Prometheus has scraped), or times out. */
export async function waitForSeries(
  url: string,
  expr: string,
  timeoutMs = 20_000,
): Promise<PrometheusSample[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const samples = await queryPrometheus(url, expr);
    if (samples.length > 0) return samples;
    if (Date.now() > deadline) throw new Error(`No series for ${expr} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
