/**
 * The query API over HTTP, against a `cutcap serve` child process: malformed queries get 400 with a
 * message naming the problem (and the server stays up), `limit` and `max_bytes` cut the answer,
 * answers stream (first bytes long before the last, and a client that goes away stops the work,
 * counted in /metrics), the concurrency cap answers 503, and /flows gives JSON and NDJSON whose
 * packet counts agree with tcpdump.
 */
import assert from "node:assert/strict";
import { tcpdumpPackets } from "./support/oracle.ts";
import {
  assertSamePackets,
  bpfFor,
  metricValue,
  oraclePackets,
  plainCopies,
  postQuery,
  replayIntoArchive,
} from "./support/query_server.ts";
import { type ServerProcess, startServe } from "./support/process.ts";

const T0 = 1_800_000_000;

let work = "";
let out = "";
let files: string[] = [];

/** About 60 MB of pcap in 12+ files: large enough that an answer cannot sit in socket buffers. */
async function buildArchive(): Promise<void> {
  if (work !== "") return;
  work = await Deno.makeTempDir({ prefix: "cutcap-qhttp-" });
  out = `${work}/archive`;
  const traffic = { packets: 30_000, vlanShare: 0.2, ipv6Share: 0.3 };
  await replayIntoArchive(out, [
    { traffic: { ...traffic, seed: 21, startTs: T0 }, compress: "none", rotateSize: "5MB" },
    { traffic: { ...traffic, seed: 22, startTs: T0 + 0.5 }, compress: "zstd", rotateSize: "5MB" },
    { traffic: { ...traffic, seed: 23, startTs: T0 + 0.9 }, compress: "gzip", rotateSize: "5MB" },
  ], { workDir: work });
  files = await plainCopies(out, work);
}

async function withServer(
  extra: string[],
  body: (s: ServerProcess) => Promise<void>,
): Promise<void> {
  await buildArchive();
  const server = await startServe(out, extra);
  try {
    await body(server);
    assert.ok(server.alive(), "the server is still up");
  } finally {
    assert.equal(await server.stop(), 0, `serve exits cleanly: ${server.log()}`);
  }
}

/** Malformed query text and a fragment its 400 message must contain. */
const MALFORMED: [string, RegExp][] = [
  ["", /Empty query/],
  ["   ", /Empty query/],
  ["host", /Missing an IPv4 or IPv6 address after "host"/],
  ["host 300.1.1.1", /Invalid address "300\.1\.1\.1"/],
  ["host 1.2.3", /Invalid address "1\.2\.3"/],
  ["host 2001:db8::1::2", /Invalid address "2001:db8::1::2"/],
  ["net 1.2.3.4/44", /Invalid prefix length "44"/],
  ["net 10.0.0.0/33", /Invalid prefix length "33"/],
  ["net 2001:db8::/129", /Invalid prefix length "129"/],
  ["net 10.0.0.0 mask 255.0.255.0", /Invalid netmask 255\.0\.255\.0/],
  ["net 10.0.0.0 mask ffff::", /Invalid netmask ffff::/],
  ["port 65536", /Invalid port 65536.*0-65535/],
  ["port http", /Invalid port "http"/],
  ["portrange 90-80", /Invalid port range 90-80/],
  ["ip proto 256", /Invalid protocol 256/],
  ["proto=bogus", /Invalid protocol "bogus"/],
  ["vlan 4096", /Invalid VLAN id 4096/],
  ["after yesterday", /Invalid time "yesterday"/],
  ["before 2026-02-30T00:00:00Z", /Invalid time "2026-02-30T00:00:00Z"/],
  ["after 4h", /Missing "ago" after duration 4h/],
  ["last=4x", /Invalid duration "4x"/],
  ["last=99999999999d", /Invalid duration "99999999999d".*at most/],
  ["ip=10.0.0.9-10.0.0.1", /Invalid range 10\.0\.0\.9-10\.0\.0\.1.*start <= end/],
  ["ip=10.0.0.1-2001:db8::1", /Invalid range .*same family/],
  ["color=red", /Unknown key "color"/],
  ["frobnicate 1", /Unknown word "frobnicate"/],
  ["src host 1.1.1.1", /Unsupported word "src"/],
  ["(tcp", /Unbalanced parenthesis/],
  ["tcp)", /Unbalanced parenthesis/],
  ["()", /Empty parentheses/],
  ["tcp and", /Dangling operator "and"/],
  ["tcp or or udp", /Unexpected operator "or"/],
  ["port=80|", /Dangling operator "\|"/],
  ["tcp & udp", /Unexpected "&".*expected "&&"/],
  ["not", /Unexpected end of query|Dangling operator "not"/],
  ["=80", /Unexpected "="/],
  ["(".repeat(70) + "tcp" + ")".repeat(70), /Nesting too deep/],
  ["protocol -1", /Invalid protocol "-1"/],
  ["last 4", /Unknown word "last"/],
];

Deno.test("malformed queries get 400 naming the problem; the server stays up", async () => {
  assert.ok(MALFORMED.length >= 25);
  await withServer([], async (server) => {
    for (const [query, message] of MALFORMED) {
      const label = JSON.stringify(query.slice(0, 40));
      const post = await fetch(`${server.url}/query`, { method: "POST", body: query });
      const postText = await post.text();
      assert.equal(post.status, 400, `POST ${label}: ${postText}`);
      assert.match(postText, message, `POST ${label}`);
      assert.match(postText, /^[A-Z]/, `POST ${label}: message starts with a capital`);
      const get = await fetch(`${server.url}/query?q=${encodeURIComponent(query)}`);
      const getText = await get.text();
      assert.equal(get.status, 400, `GET ${label}`);
      assert.equal(getText, postText, `GET ${label}: same message as POST`);
      const flows = await fetch(`${server.url}/flows?q=${encodeURIComponent(query)}`);
      assert.equal(flows.status, 400, `/flows ${label}`);
      assert.match(await flows.text(), message);
    }
    for (const params of ["limit=0", "limit=ten", "max_bytes=-5", "max_bytes=1.5"]) {
      const r = await fetch(`${server.url}/query?${params}`, { method: "POST", body: "tcp" });
      const text = await r.text();
      assert.equal(r.status, 400, `${params}: ${text}`);
      assert.match(text, /^Invalid (limit|max_bytes) ".*": expected a whole number above 0/);
    }
    const missing = await fetch(`${server.url}/query`);
    assert.equal(missing.status, 400);
    assert.match(await missing.text(), /Missing query/);
    const huge = await fetch(`${server.url}/query`, {
      method: "POST",
      body: "tcp ".repeat(20_000),
    });
    assert.equal(huge.status, 413);
    await huge.body?.cancel();
    // Still answering real queries after all that.
    const ok = await postQuery(server.url, "port 53", `${work}/after-errors.pcap`);
    assert.equal(ok.status, 200, ok.text);
    assertSamePackets(
      await tcpdumpPackets(`${work}/after-errors.pcap`),
      await oraclePackets(files, bpfFor("port 53")),
      "port 53 after the errors",
    );
    const viaGet = await fetch(`${server.url}/query?q=${encodeURIComponent("port 53")}`);
    assert.equal(viaGet.status, 200);
    assert.match(viaGet.headers.get("content-type") ?? "", /application\/vnd\.tcpdump\.pcap/);
    assert.deepEqual(
      new Uint8Array(await viaGet.arrayBuffer()),
      await Deno.readFile(`${work}/after-errors.pcap`),
      "GET /query?q= answers what POST /query does",
    );
  });
});

Deno.test("limit and max_bytes cut the answer at a packet boundary", async () => {
  await withServer([], async (server) => {
    const full = await oraclePackets(files, bpfFor("tcp"), undefined, { firstPerFile: 2000 });
    assert.ok(full.length > 2000);
    const limited = await postQuery(server.url, "tcp", `${work}/limit.pcap`, "?limit=777");
    assert.equal(limited.status, 200, limited.text);
    assertSamePackets(await tcpdumpPackets(`${work}/limit.pcap`), full.slice(0, 777), "limit=777");

    const maxBytes = 100_000;
    const capped = await postQuery(
      server.url,
      "tcp",
      `${work}/bytes.pcap`,
      `?max_bytes=${maxBytes}`,
    );
    assert.equal(capped.status, 200, capped.text);
    const size = (await Deno.stat(`${work}/bytes.pcap`)).size;
    assert.ok(size <= maxBytes, `answer of ${size} bytes fits in max_bytes`);
    const got = await tcpdumpPackets(`${work}/bytes.pcap`);
    assertSamePackets(got, full.slice(0, got.length), "max_bytes: a prefix of the full answer");
    // The next packet would not have fitted: 16 bytes of record header plus its captured bytes.
    const next = full[got.length];
    assert.ok(size + 16 + next.hex.length / 2 > maxBytes, "as many packets as fit");

    const both = await postQuery(
      server.url,
      "tcp",
      `${work}/both.pcap`,
      "?limit=5&max_bytes=1000000",
    );
    assert.equal(both.status, 200);
    assert.equal((await tcpdumpPackets(`${work}/both.pcap`)).length, 5);
  });
});

Deno.test("answers stream: first bytes early, a client that leaves stops the work", async () => {
  await withServer([], async (server) => {
    const totalBytes = (await Promise.all(files.map((f) => Deno.stat(f)))).reduce(
      (sum, s) => sum + s.size,
      0,
    );
    // A whole answer, timed: the first chunk arrives long before the last.
    const started = performance.now();
    const whole = await fetch(`${server.url}/query`, { method: "POST", body: "ip or ip6" });
    assert.equal(whole.status, 200);
    const reader = whole.body!.getReader();
    let received = 0;
    let firstByteMs = -1;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (firstByteMs < 0) firstByteMs = performance.now() - started;
      received += value.length;
    }
    const totalMs = performance.now() - started;
    assert.ok(received > totalBytes * 0.9, `the whole archive came back (${received} bytes)`);
    assert.ok(
      firstByteMs * 5 < totalMs,
      `first bytes after ${firstByteMs.toFixed(1)} ms, all after ${totalMs.toFixed(1)} ms`,
    );

    // Read one chunk and go away: the query ends as cancelled, having produced a fraction.
    const cancelledBefore = await metricValue(
      server.url,
      'cutcap_queries_total{outcome="cancelled"}',
    );
    const bytesBefore = await metricValue(server.url, "cutcap_query_bytes_total");
    const abort = new AbortController();
    const partial = await fetch(`${server.url}/query`, {
      method: "POST",
      body: "ip or ip6",
      signal: abort.signal,
    });
    const first = await partial.body!.getReader().read();
    assert.ok(first.value && first.value.length > 0);
    abort.abort();
    let cancelled = cancelledBefore;
    for (let i = 0; i < 50 && cancelled === cancelledBefore; i++) {
      await new Promise((r) => setTimeout(r, 100));
      cancelled = await metricValue(server.url, 'cutcap_queries_total{outcome="cancelled"}');
    }
    assert.equal(cancelled, cancelledBefore + 1, "the server saw the client leave");
    const produced = await metricValue(server.url, "cutcap_query_bytes_total") - bytesBefore;
    assert.ok(
      produced < totalBytes / 2,
      `the cancelled query produced ${produced} of ${totalBytes} bytes`,
    );
  });
});

Deno.test("queries past --max-concurrent-queries get 503 until one ends", async () => {
  await withServer(["--max-concurrent-queries", "1"], async (server) => {
    const abort = new AbortController();
    const running = await fetch(`${server.url}/query`, {
      method: "POST",
      body: "ip or ip6",
      signal: abort.signal,
    });
    assert.equal(running.status, 200);
    await running.body!.getReader().read(); // the query is under way, held by backpressure
    const refused = await fetch(`${server.url}/query`, { method: "POST", body: "tcp" });
    assert.equal(refused.status, 503);
    assert.match(await refused.text(), /Too many queries: 1 running, the limit is 1/);
    assert.equal(await metricValue(server.url, 'cutcap_queries_total{outcome="rejected"}'), 1);
    abort.abort();
    let status = 503;
    for (let i = 0; i < 50 && status === 503; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const again = await fetch(`${server.url}/query?limit=3`, { method: "POST", body: "tcp" });
      status = again.status;
      await again.body?.cancel();
    }
    assert.equal(status, 200, "the slot is free once the first client left");
  });
});

Deno.test("GET /flows gives JSON and NDJSON that agree with tcpdump's packet counts", async () => {
  await withServer([], async (server) => {
    const q = "host 198.19.0.1 and port 443";
    const json = await fetch(`${server.url}/flows?q=${encodeURIComponent(q)}`);
    assert.equal(json.status, 200);
    assert.match(json.headers.get("content-type") ?? "", /application\/json/);
    const records = await json.json() as Record<string, unknown>[];
    assert.ok(records.length > 3, `several flows (${records.length})`);
    for (const r of records) {
      assert.equal(r.proto, 6);
      assert.ok(r.src === "198.19.0.1" || r.dst === "198.19.0.1", JSON.stringify(r));
      assert.ok(r.srcPort === 443 || r.dstPort === 443, JSON.stringify(r));
      assert.ok(typeof r.file === "string" && /\.pcap(\.gz|\.zst)?$/.test(r.file as string));
      assert.ok((r.first as number) <= (r.last as number));
    }
    const oracle = await oraclePackets(files, bpfFor(q));
    const packets = records.reduce((sum, r) => sum + (r.packets as number), 0);
    assert.equal(packets, oracle.length, "flow packet counts add up to tcpdump's packets");

    const nd = await fetch(`${server.url}/flows?q=${encodeURIComponent(q)}&format=ndjson`);
    assert.equal(nd.status, 200);
    assert.match(nd.headers.get("content-type") ?? "", /application\/x-ndjson/);
    const lines = (await nd.text()).trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines, records, "NDJSON carries the same records, one per line");

    const viaAccept = await fetch(`${server.url}/flows?q=${encodeURIComponent(q)}&limit=2`, {
      headers: { accept: "application/x-ndjson" },
    });
    assert.equal((await viaAccept.text()).trimEnd().split("\n").length, 2, "limit applies");
  });
});

Deno.test({
  name: "query tests clean up",
  fn: async () => {
    if (work !== "") await Deno.remove(work, { recursive: true });
  },
});
