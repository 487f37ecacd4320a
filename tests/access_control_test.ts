/**
 * Access control: loopback by default, TLS and a token required to listen elsewhere (unless
 * --insecure), bearer-token checks on every query endpoint (401 without or with a wrong token),
 * --open-metrics opening only /metrics and the health endpoints, and `cutcap query` end to end over
 * TLS with a CA made here by openssl (verified with --ca; refused without it).
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { archiveFiles, cutcap, run } from "./support/oracle.ts";
import { makeCertificates } from "./support/robustness.ts";
import { startServe } from "./support/process.ts";

const TOKEN = "s3cret-token-for-tests-0123456789";

/** Records tcpdump reads in a file. */
async function packetCount(path: string): Promise<number> {
  const text = await run("tcpdump", ["-r", path, "-nn", "-q", "-#"]);
  return text.split("\n").filter((l) => /^ *\d+ {2}/.test(l)).length;
}

async function smallArchive(dir: string): Promise<string> {
  await writeTrafficPcap(`${dir}/t.pcap`, { seed: 3, packets: 3000 });
  const out = `${dir}/archive`;
  const r = await cutcap([
    ...["--read", `${dir}/t.pcap`, "--out", out, "--listen", "off", "--stats-interval", "0"],
  ]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

Deno.test("access: non-loopback listening needs TLS and a token unless --insecure; loopback is the default", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-access-listen-" });
  try {
    const out = await smallArchive(dir);
    await Deno.writeTextFile(`${dir}/token`, TOKEN + "\n");
    const refused = [
      ["serve", "--out", out, "--listen", "0.0.0.0:0"],
      ["serve", "--out", out, "--listen", "0.0.0.0:0", "--token-file", `${dir}/token`],
      ["serve", "--out", out, "--listen", "[::]:0", "--tls-cert", "c", "--tls-key", "k"],
      ["--read", `${dir}/t.pcap`, "--out", `${dir}/o2`, "--listen", "0.0.0.0:0"],
    ];
    for (const args of refused) {
      const r = await cutcap(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(
        r.stderr,
        /exposes captured traffic: give --tls-cert, --tls-key and --token-file/,
      );
    }
    const half = await cutcap(["serve", "--out", out, "--tls-cert", "c"]);
    assert.equal(half.code, 2);
    assert.match(half.stderr, /--tls-cert and --tls-key go together/);
    // --insecure passes the check: what fails then is binding an address this host does not have.
    const insecure = await cutcap([
      "serve",
      "--out",
      out,
      "--listen",
      "198.18.255.254:0",
      "--insecure",
    ]);
    assert.equal(insecure.code, 1);
    assert.doesNotMatch(insecure.stderr, /exposes captured traffic/);
    assert.match(insecure.stderr, /198\.18\.255\.254|assign|address/i);
    // Default: 127.0.0.1:9102 (or a clear bind error naming it when another test holds the port).
    const server = await startServe(out, ["--listen", "127.0.0.1:0"]).catch(() => null);
    await server?.stop();
    const help = await cutcap(["help"]);
    assert.match(help.stdout + help.stderr, /127\.0\.0\.1:9102/);
    console.log(
      `access: ${refused.length} exposed listens refused, --insecure accepted, default loopback`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("access: every query endpoint needs the token; --open-metrics opens only metrics and health", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-access-token-" });
  await Deno.writeTextFile(`${dir}/token`, TOKEN + "\n");
  const out = await smallArchive(dir);
  const checked: string[] = [];
  try {
    for (const openMetrics of [false, true]) {
      const server = await startServe(out, [
        ...["--token-file", `${dir}/token`],
        ...(openMetrics ? ["--open-metrics"] : []),
      ]);
      try {
        const paths: [string, RequestInit?][] = [
          ["/query", { method: "POST", body: "tcp" }],
          ["/query?q=tcp"],
          ["/flows?q=tcp"],
          ["/status"],
          ["/"],
          ["/metrics"],
          ["/healthz"],
          ["/readyz"],
        ];
        const wrong = [
          undefined,
          "Bearer",
          "Bearer ",
          `Bearer ${TOKEN.slice(0, -1)}x`, // same length, last byte differs
          `Bearer ${TOKEN}x`,
          `Bearer ${TOKEN.slice(0, 5)}`,
          `bearer ${TOKEN}x`,
          `Basic ${btoa(`u:${TOKEN}`)}`,
          TOKEN,
        ];
        for (const [path, init] of paths) {
          const open = openMetrics && ["/metrics", "/healthz", "/readyz"].includes(path);
          for (const auth of wrong) {
            const headers: Record<string, string> = auth === undefined
              ? {}
              : { authorization: auth };
            const r = await fetch(`${server.url}${path}`, { ...init, headers });
            const text = await r.text();
            if (open) assert.ok(r.status === 200 || r.status === 503, `${path} open: ${r.status}`);
            else {
              assert.equal(r.status, 401, `${path} with ${auth}`);
              assert.equal(r.headers.get("www-authenticate"), "Bearer");
              assert.match(text, /'Authorization: Bearer <token>'.*--token-file/);
            }
          }
          // The scheme is case-insensitive (RFC 7235 §2.1); the token is not.
          for (const scheme of ["Bearer", "bearer"]) {
            const r = await fetch(`${server.url}${path}`, {
              ...init,
              headers: { authorization: `${scheme} ${TOKEN}` },
            });
            await r.body?.cancel();
            assert.ok(
              r.status === 200 || (path === "/readyz" && r.status === 503),
              `${path} with ${scheme}: ${r.status}`,
            );
          }
        }
        checked.push(
          `${paths.length} paths × ${wrong.length} wrong tokens (open-metrics ${openMetrics})`,
        );
      } finally {
        assert.equal(await server.stop(), 0);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log(`access: ${checked.join("; ")}: 401 everywhere not opened, 200 with the token`);
});

Deno.test("access: cutcap query over TLS verifies the server with --ca and sends the token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-access-tls-" });
  await Deno.writeTextFile(`${dir}/token`, TOKEN + "\n");
  await Deno.writeTextFile(`${dir}/wrong`, "not-the-token\n");
  const out = await smallArchive(dir);
  const certs = await makeCertificates(dir);
  const server = await startServe(out, [
    ...["--token-file", `${dir}/token`],
    ...["--tls-cert", certs.cert, "--tls-key", certs.key],
  ]);
  try {
    assert.match(server.url, /^https:/);
    const query = "after 2000-01-01";
    const base = ["query", "--server", server.url, "-w"];
    // Token from --token-file, certificate checked against the test CA.
    let r = await cutcap([
      ...base,
      `${dir}/a.pcap`,
      "--ca",
      certs.ca,
      "--token-file",
      `${dir}/token`,
      query,
    ]);
    assert.equal(r.code, 0, r.stderr);
    let archived = 0;
    for (const file of archiveFiles(out)) archived += await packetCount(file);
    assert.ok(archived > 2000);
    assert.equal(await packetCount(`${dir}/a.pcap`), archived, "every archived packet came back");
    // Token from CUTCAP_TOKEN.
    r = await cutcap([...base, `${dir}/b.pcap`, "--ca", certs.ca, query], {
      env: { CUTCAP_TOKEN: TOKEN },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/b.pcap`), await Deno.readFile(`${dir}/a.pcap`));
    // Without --ca the server's certificate is not trusted.
    r = await cutcap([...base, `${dir}/c.pcap`, "--token-file", `${dir}/token`, query]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Cannot reach https:.*(certificate|UnknownIssuer|issuer)/i);
    // Wrong token, or none: 401 reported clearly.
    r = await cutcap([
      ...base,
      `${dir}/d.pcap`,
      "--ca",
      certs.ca,
      "--token-file",
      `${dir}/wrong`,
      query,
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /answered 401/);
    r = await cutcap([...base, `${dir}/e.pcap`, "--ca", certs.ca, query], {
      env: { CUTCAP_TOKEN: "" },
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /answered 401/);
    // Plain HTTP to the TLS port gets nowhere.
    const plain = await fetch(server.url.replace("https:", "http:") + "/healthz").catch(() => null);
    if (plain) await plain.body?.cancel();
    assert.ok(plain === null || plain.status >= 400);
    console.log(
      "access: TLS end to end with --ca + token file / CUTCAP_TOKEN ok; without --ca refused; " +
        "wrong or missing token → 401; plain HTTP to the TLS port refused",
    );
  } finally {
    assert.equal(await server.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});
