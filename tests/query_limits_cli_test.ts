/**
 * How stenographer's users limit and read answers (issue 13, points 7, 10, 11): the
 * Steno-Limit-Packets/Steno-Limit-Bytes headers stenoread sends, `cutcap read QUERY [tcpdump
 * options…]`, a pipe reader that stops early (exit 0, nothing on stderr), and answers cut by the
 * client's or the server's limits said on stderr. tcpdump reads every answer (the oracle).
 */
import assert from "node:assert/strict";
import { cutcap, parseTcpdumpHex, run, tcpdumpPackets } from "./support/oracle.ts";
import {
  assertSamePackets,
  bpfFor,
  oraclePackets,
  plainCopies,
  replayIntoArchive,
} from "./support/query_server.ts";
import { type ServerProcess, startServe } from "./support/process.ts";

const T0 = 1_800_000_000;
const QUERY = "tcp or udp";

let work = "";
let out = "";
let files: string[] = [];

async function buildArchive(): Promise<void> {
  work = await Deno.makeTempDir({ prefix: "cutcap-qlimits-" });
  out = `${work}/archive`;
  const traffic = { packets: 3000, vlanShare: 0.2, ipv6Share: 0.3 };
  await replayIntoArchive(out, [
    { traffic: { ...traffic, seed: 31, startTs: T0 }, compress: "none", rotateSize: "256KiB" },
    {
      traffic: { ...traffic, seed: 32, startTs: T0 + 0.3 },
      compress: "zstd",
      rotateSize: "256KiB",
    },
  ], { workDir: work });
  files = await plainCopies(out, work);
}

async function post(server: ServerProcess, headers: Record<string, string>): Promise<Response> {
  return await fetch(`${server.url}/query`, { method: "POST", body: QUERY, headers });
}

async function answerPackets(response: Response, name: string) {
  const path = `${work}/${name}.pcap`;
  const bytes = new Uint8Array(await response.arrayBuffer());
  await Deno.writeFile(path, bytes);
  return { packets: await tcpdumpPackets(path), size: bytes.length };
}

/** Runs a shell pipeline with pipefail; returns its exit code and output. */
async function shell(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const result = await new Deno.Command("bash", {
    args: [
      "-o",
      "pipefail",
      "-c",
      script.replaceAll("CUTCAP", `${Deno.execPath()} run -A ${main}`),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: result.code, stdout: text(result.stdout), stderr: text(result.stderr) };
}

Deno.test("stenoread's limits, cutcap read, early readers and cut answers", async (t) => {
  await buildArchive();
  const server = await startServe(out);
  const capped = await startServe(out, ["--max-query-packets", "40"]);
  try {
    const all = await oraclePackets(files, bpfFor(QUERY));
    assert.ok(all.length > 2000, `${all.length} packets match`);

    await t.step("Steno-Limit-Packets and Steno-Limit-Bytes", async () => {
      const twoResponse = await post(server, { "Steno-Limit-Packets": "2" });
      const two = await answerPackets(twoResponse, "two");
      assertSamePackets(two.packets, all.slice(0, 2), "Steno-Limit-Packets: 2");
      // An answer over within its first chunk says whether it is whole, and what cut it.
      assert.equal(
        twoResponse.headers.get("x-cutcap-answer"),
        `truncated by the packet limit 2: packets=2 bytes=${two.size}; more packets match`,
      );
      const bytes = 5000;
      const cut = await answerPackets(
        await post(server, { "Steno-Limit-Bytes": String(bytes) }),
        "bytes",
      );
      assert.ok(cut.size <= bytes && cut.size > bytes - 1600, `${cut.size} bytes`);
      const cutHeader = await post(server, { "Steno-Limit-Bytes": String(bytes) });
      assert.match(
        cutHeader.headers.get("x-cutcap-answer") ?? "",
        new RegExp(
          `^truncated by the byte limit ${bytes}: packets=${cut.packets.length} bytes=${cut.size};`,
        ),
      );
      await cutHeader.body?.cancel();
      const small = await fetch(`${server.url}/query`, { method: "POST", body: "port 53" });
      const smallBytes = new Uint8Array(await small.arrayBuffer());
      assert.equal(
        small.headers.get("x-cutcap-answer"),
        `complete packets=${
          (await oraclePackets(files, bpfFor("port 53"))).length
        } bytes=${smallBytes.length}`,
      );
      assertSamePackets(cut.packets, all.slice(0, cut.packets.length), "Steno-Limit-Bytes");
      // Both: the smaller wins; 0 means no limit, as in stenographer.
      const both = await answerPackets(
        await post(server, { "Steno-Limit-Packets": "3", "Steno-Limit-Bytes": "1000000" }),
        "both",
      );
      assert.equal(both.packets.length, 3);
      const none = await answerPackets(await post(server, { "Steno-Limit-Packets": "0" }), "none");
      assert.equal(none.packets.length, all.length);
      const bad = await post(server, { "Steno-Limit-Packets": "two" });
      assert.equal(bad.status, 400);
      assert.match(
        await bad.text(),
        /^Invalid Steno-Limit-Packets header "two": expected a whole number/,
      );
    });

    await t.step("cutcap query --limit / --max-bytes say on stderr when they cut", async () => {
      const limited = await cutcap([
        "query",
        "--server",
        server.url,
        "--limit",
        "10",
        "-w",
        `${work}/cli10.pcap`,
        QUERY,
      ]);
      assert.equal(limited.code, 0, limited.stderr);
      assertSamePackets(await tcpdumpPackets(`${work}/cli10.pcap`), all.slice(0, 10), "--limit 10");
      assert.match(
        limited.stderr,
        /^cutcap: answer cut at --limit 10 \(10 packets, \d+ bytes\); more packets match\n$/,
      );
      const whole = await cutcap([
        "query",
        "--server",
        server.url,
        "--limit",
        String(all.length),
        "-w",
        `${work}/cliall.pcap`,
        QUERY,
      ]);
      assert.equal(whole.code, 0, whole.stderr);
      assert.equal(whole.stderr, "", "an answer of exactly the limit is whole: nothing said");
      assert.equal((await tcpdumpPackets(`${work}/cliall.pcap`)).length, all.length);
      const bytes = await cutcap([
        "query",
        "--server",
        server.url,
        "--max-bytes",
        "3000",
        "-w",
        `${work}/clibytes.pcap`,
        QUERY,
      ]);
      assert.equal(bytes.code, 0, bytes.stderr);
      assert.match(
        bytes.stderr,
        /^cutcap: answer cut at --max-bytes 3000 \(\d+ packets, \d+ bytes\)/,
      );
      assert.ok((await Deno.stat(`${work}/clibytes.pcap`)).size <= 3000);
    });

    await t.step("the server's --max-query-packets is said too", async () => {
      const result = await cutcap([
        "query",
        "--server",
        capped.url,
        "-w",
        `${work}/cap.pcap`,
        QUERY,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal((await tcpdumpPackets(`${work}/cap.pcap`)).length, 40);
      assert.match(
        result.stderr,
        /cut at the server's limit of 40 packets \(--max-query-packets\)/,
      );
      const response = await post(capped, {});
      assert.equal(response.headers.get("x-cutcap-limit-packets"), "40");
      await response.body?.cancel();
    });

    await t.step("a reader that stops early: exit 0, nothing on stderr", async () => {
      const piped = await shell(
        `CUTCAP query --server ${server.url} '${QUERY}' | tcpdump -r - -c 10 -nn`,
      );
      assert.equal(piped.code, 0, piped.stderr);
      assert.doesNotMatch(piped.stderr, /cutcap|Broken pipe/i);
      assert.equal(piped.stdout.trim().split("\n").length, 10);
      const head = await shell(
        `CUTCAP query --server ${server.url} '${QUERY}' | head -c 100 >/dev/null`,
      );
      assert.equal(head.code, 0, head.stderr);
      assert.equal(head.stderr, "");
    });

    await t.step("cutcap read QUERY [tcpdump options]", async () => {
      const read = await cutcap([
        "read",
        "--server",
        server.url,
        "--limit-packets",
        "5",
        QUERY,
        "-tt",
        "-nn",
        "-xx",
        "-K",
      ]);
      assert.equal(read.code, 0, read.stderr);
      assertSamePackets(
        parseTcpdumpHex(read.stdout),
        all.slice(0, 5),
        "cutcap read --limit-packets 5",
      );
      assert.match(read.stderr, /cut at --limit 5/);
      // tcpdump's own filter and -c after the query; tcpdump stops early: still exit 0.
      const filtered = await cutcap([
        "read",
        "--server",
        server.url,
        QUERY,
        "-nn",
        "-c",
        "3",
        "udp",
      ]);
      assert.equal(filtered.code, 0, filtered.stderr);
      assert.equal(filtered.stdout.trim().split("\n").length, 3);
      assert.ok(filtered.stdout.split("\n").slice(0, 3).every((l) => / UDP|\.53[: ]/.test(l)));
      const bytes = await cutcap([
        "read",
        "--server",
        server.url,
        "--limit-bytes=2000",
        QUERY,
        "-nn",
      ]);
      assert.equal(bytes.code, 0, bytes.stderr);
      assert.match(bytes.stderr, /cut at --max-bytes 2000/);
      const expected = await run("tcpdump", ["-r", files[0], "-nn", "-c", "1", bpfFor(QUERY)]);
      assert.equal(bytes.stdout.split("\n")[0], expected.split("\n")[0]);
      const missing = await cutcap(["read", "--server", server.url]);
      assert.equal(missing.code, 2, "a usage mistake");
      assert.match(missing.stderr, /Missing query: e\.g\. cutcap read/);
      const bad = await cutcap(["read", "--frobnicate", "1", QUERY]);
      assert.match(bad.stderr, /Unknown option "--frobnicate" before the query/);
    });
  } finally {
    assert.equal(await server.stop(), 0, server.log());
    assert.equal(await capped.stop(), 0, capped.log());
    await Deno.remove(work, { recursive: true });
  }
});
