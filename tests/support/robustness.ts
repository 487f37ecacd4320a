/**
 * Helpers for the robustness and security tests: Prometheus text parsing, process memory, health
 * probes under load and TLS certificates.
 */
import { sh } from "./process.ts";

/** Sum of every series of a metric in Prometheus text (optionally only those with a label value). */
export function metricSum(text: string, name: string, label?: [string, string]): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (label && !(m[2] ?? "").includes(`${label[0]}="${label[1]}"`)) continue;
    sum += Number(m[3]);
  }
  return sum;
}

/** Resident set size of process `pid` in MB (10^6 bytes), from /proc. */
export function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
  return kb * 1024 / 1e6;
}

/** Polls `${url}/healthz` every `everyMs` until stopped; reports the slowest answer and failures. */
export function watchHealth(
  url: string,
  everyMs = 100,
  init: RequestInit = {},
): { stop(): Promise<{ probes: number; slowestMs: number; failures: string[] }> } {
  let running = true;
  let probes = 0;
  let slowestMs = 0;
  const failures: string[] = [];
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        const response = await fetch(`${url}/healthz`, {
          ...init,
          signal: AbortSignal.timeout(5_000),
        });
        await response.body?.cancel();
        if (response.status !== 200) failures.push(`status ${response.status}`);
      } catch (error) {
        failures.push(error instanceof Error ? error.message : String(error));
      }
      probes++;
      slowestMs = Math.max(slowestMs, performance.now() - started);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { probes, slowestMs, failures };
    },
  };
}

async function openssl(args: string[]): Promise<void> {
  await sh("openssl", args);
}

/** A CA and a server certificate for 127.0.0.1 / localhost signed by it (P-256 keys). */
export async function makeCertificates(
  dir: string,
): Promise<{ ca: string; cert: string; key: string }> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    ...["req", "-x509", ...ec, "-keyout", `${dir}/ca.key`, "-out", `${dir}/ca.pem`],
    ...["-days", "2", "-subj", "/CN=cutcap test CA"],
    ...["-addext", "basicConstraints=critical,CA:TRUE"],
    ...["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
  ]);
  await openssl([
    ...["req", ...ec, "-keyout", `${dir}/server.key`, "-out", `${dir}/server.csr`],
    ...["-subj", "/CN=127.0.0.1"],
  ]);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n" +
      "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
  await openssl([
    ...["x509", "-req", "-in", `${dir}/server.csr`, "-CA", `${dir}/ca.pem`],
    ...["-CAkey", `${dir}/ca.key`, "-CAcreateserial", "-out", `${dir}/server.pem`],
    ...["-days", "2", "-extfile", `${dir}/server.ext`],
  ]);
  return { ca: `${dir}/ca.pem`, cert: `${dir}/server.pem`, key: `${dir}/server.key` };
}
