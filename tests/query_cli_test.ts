/**
 * `cutcap query` and `cutcap flows` against a `cutcap serve` child: the pcap on stdout feeds
 * `tcpdump -nr -`, `-w FILE` writes the same answer, `flows` prints a table (or JSON lines), and
 * mistakes (bad query, unreachable server) exit 1 with the server's or the connection's message.
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
import { freePort, type ServerProcess, startServe } from "./support/process.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const QUERY = "host 198.19.0.1 and (port 443 or port 80)";

let work = "";
let server: ServerProcess | undefined;
let files: string[] = [];

async function setUp(): Promise<ServerProcess> {
  if (server) return server;
  work = await Deno.makeTempDir({ prefix: "cutcap-qcli-" });
  const out = `${work}/archive`;
  const traffic = { packets: 5000, vlanShare: 0.2, ipv6Share: 0.3 };
  await replayIntoArchive(out, [
    {
      traffic: { ...traffic, seed: 31, startTs: 1_750_000_000 },
      compress: "zstd",
      rotateSize: "1MB",
    },
    {
      traffic: { ...traffic, seed: 32, startTs: 1_750_000_000.2 },
      compress: "none",
      rotateSize: "1MB",
    },
  ], { workDir: work });
  files = await plainCopies(out, work);
  server = await startServe(out);
  return server;
}

Deno.test("cutcap query --server URL QUERY | tcpdump -nr - reads the answer", async () => {
  const s = await setUp();
  const expected = await oraclePackets(files, bpfFor(QUERY));
  assert.ok(expected.length > 100, `the query selects packets (${expected.length})`);
  const quoted = QUERY.replaceAll("'", "'\\''");
  const text = await run("bash", [
    "-c",
    `set -o pipefail; "${Deno.execPath()}" run -A "${MAIN}" query --server ${s.url} '${quoted}' ` +
    "| tcpdump -nr - -tt -nn -xx -K",
  ]);
  assertSamePackets(parseTcpdumpHex(text), expected, "piped into tcpdump");
});

Deno.test("cutcap query -w FILE writes the same pcap; --limit is passed on", async () => {
  const s = await setUp();
  const expected = await oraclePackets(files, bpfFor(QUERY));
  const file = `${work}/answer.pcap`;
  const result = await cutcap(["query", "--server", s.url, "-w", file, QUERY]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "", "nothing on stdout with -w");
  assertSamePackets(await tcpdumpPackets(file), expected, "-w FILE");
  // The query may also come as several words, as stenoread takes it.
  const limited = await cutcap([
    "query",
    "--server",
    s.url,
    "--limit",
    "10",
    "-w",
    file,
    ...QUERY.split(" "),
  ]);
  assert.equal(limited.code, 0, limited.stderr);
  assertSamePackets(await tcpdumpPackets(file), expected.slice(0, 10), "--limit 10");
});

Deno.test("cutcap flows QUERY prints a table of the matching flows; --json prints records", async () => {
  const s = await setUp();
  const json = await cutcap(["flows", "--server", s.url, "--json", QUERY]);
  assert.equal(json.code, 0, json.stderr);
  const records = json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.ok(records.length >= 3, `several flows (${records.length})`);
  const expected = await oraclePackets(files, bpfFor(QUERY));
  assert.equal(
    records.reduce((sum, r) => sum + r.packets, 0),
    expected.length,
    "the flows hold tcpdump's packets",
  );

  const table = await cutcap(["flows", "--server", s.url, QUERY]);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split("\n");
  assert.match(
    lines[0],
    /^first\s+proto\s+src\s+dst\s+vlan\s+packets\s+bytes\s+duration\s+seen_packets\s+seen_bytes\s+cut_at\s+end\s+community_id$/,
  );
  assert.equal(lines.length, records.length + 1, "one row per flow under the header");
  for (const [i, line] of lines.slice(1).entries()) {
    const r = records[i];
    assert.ok(line.startsWith(new Date(r.first * 1000).toISOString()), line);
    assert.ok(line.includes("198.19.0.1"), line);
    assert.match(
      line,
      new RegExp(
        `\\s${r.packets}\\s+${r.bytes}\\s+[0-9.]+s\\s+${r.totalPackets}\\s+${r.totalBytes}\\s+${r.endReason}\\s+\\S+$`,
      ),
      line,
    );
    assert.ok(line.endsWith(r.communityId), line);
  }
});

Deno.test("cutcap query reports a bad query and an unreachable server, exit 1", async () => {
  const s = await setUp();
  const bad = await cutcap(["query", "--server", s.url, "-w", `${work}/bad.pcap`, "port 99999"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /answered 400: Invalid port 99999 at position 5: expected 0-65535/);
  const badFlows = await cutcap(["flows", "--server", s.url, "tcp and"]);
  assert.equal(badFlows.code, 1);
  assert.match(badFlows.stderr, /answered 400: Dangling operator "and"/);
  const nowhere = `http://127.0.0.1:${freePort()}`;
  const down = await cutcap(["query", "--server", nowhere, "tcp"]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, new RegExp(`Cannot reach ${nowhere}`));
  const empty = await cutcap(["query", "--server", s.url]);
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /Missing query/);
});

Deno.test("query CLI tests clean up", async () => {
  if (server) assert.equal(await server.stop(), 0);
  if (work !== "") await Deno.remove(work, { recursive: true });
});
