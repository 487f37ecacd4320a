/**
 * Flow records (src/query/flows.ts) over crafted, indexed files: which flows match, their counts,
 * times and Community IDs (against the spec's reference implementation), the merge across files by
 * first packet, the record and byte limits, files whose index is gone, and the printed table.
 */
import assert from "node:assert/strict";
import { Catalog } from "../../src/archive/catalog.ts";
import { indexPathFor } from "../../src/archive/naming.ts";
import { parseQuery } from "../../src/query/parse.ts";
import {
  type FlowRecord,
  flowRecordStream,
  type FlowScanReport,
  formatFlowTable,
  matchingFlows,
} from "../../src/query/flows.ts";
import { placeFile } from "../support/archive_craft.ts";
import { referenceId } from "../support/community_id_ref.ts";
import { ethernet, ipv4, tcp, udp } from "../support/pcap_craft.ts";

const T0 = 1_700_000_000_000_000; // µs
const S0 = T0 / 1e6;

function udpFrame(src: string, dst: string, sport: number, dport: number, size = 0): Uint8Array {
  return ethernet(0x0800, ipv4(src, dst, 17, udp(sport, dport, new Uint8Array(size))));
}

/**
 * Worker 0: DNS 198.18.0.1:1000 ⇄ .2:53 at 0, 1, 4 s (42-byte queries, 142-byte answers) and TCP
 * 198.18.0.3:40000 → .4:80 at 2 s. Worker 1: DNS 198.18.0.5:2000 → .2:53 at 0.5 s and 3 s.
 */
function archive(dir: string): { w0: string; w1: string } {
  const w0 = placeFile(dir, {
    worker: 0,
    records: [
      { us: T0, frame: udpFrame("198.18.0.1", "198.18.0.2", 1000, 53) },
      { us: T0 + 1e6, frame: udpFrame("198.18.0.2", "198.18.0.1", 53, 1000, 100) },
      {
        us: T0 + 2e6,
        frame: ethernet(0x0800, ipv4("198.18.0.3", "198.18.0.4", 6, tcp(40000, 80))),
      },
      { us: T0 + 4e6, frame: udpFrame("198.18.0.1", "198.18.0.2", 1000, 53) },
    ],
  });
  const w1 = placeFile(dir, {
    worker: 1,
    records: [
      { us: T0 + 0.5e6, frame: udpFrame("198.18.0.5", "198.18.0.2", 2000, 53) },
      { us: T0 + 3e6, frame: udpFrame("198.18.0.5", "198.18.0.2", 2000, 53) },
    ],
  });
  return { w0: w0.path, w1: w1.path };
}

function withDir(body: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "cc-unit-flows-" });
    try {
      await body(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

async function collect(
  dir: string,
  query: string,
  options: { limit?: number; maxBytes?: number; seed?: number } = {},
): Promise<{ records: FlowRecord[]; report: FlowScanReport }> {
  const report: FlowScanReport = { records: 0, limited: false, skipped: [] };
  const records: FlowRecord[] = [];
  for await (
    const r of matchingFlows(
      Catalog.open(dir),
      parseQuery(query),
      options.limit ?? Infinity,
      report,
      options.maxBytes,
      options.seed,
    )
  ) records.push(r);
  return { records, report };
}

/** The fields a test states by hand. */
function row(r: FlowRecord): unknown[] {
  return [
    r.src,
    r.srcPort,
    r.dst,
    r.dstPort,
    r.proto,
    r.packets,
    r.bytes,
    r.first - S0,
    r.last - S0,
  ];
}

Deno.test(
  "flows: records merge across files by first packet, with exact counts and times",
  withDir(async (dir) => {
    const { w0, w1 } = archive(dir);
    const { records, report } = await collect(dir, "ip");
    assert.deepEqual(records.map(row), [
      ["198.18.0.1", 1000, "198.18.0.2", 53, 17, 3, 42 + 142 + 42, 0, 4],
      ["198.18.0.5", 2000, "198.18.0.2", 53, 17, 2, 84, 0.5, 3],
      ["198.18.0.3", 40000, "198.18.0.4", 80, 6, 1, 54, 2, 2],
    ]);
    assert.deepEqual(records.map((r) => r.file), [w0, w1, w0]);
    assert.deepEqual(report, { records: 3, limited: false, skipped: [] });
    for (const r of records) {
      assert.equal(r.communityId, referenceId(0, r.src, r.dst, r.proto, r.srcPort!, r.dstPort!));
      assert.equal(r.totalPackets, r.packets);
      assert.equal(r.totalBytes, r.bytes);
    }
    const seeded = await collect(dir, "port 80", { seed: 7 });
    assert.equal(
      seeded.records[0].communityId,
      referenceId(7, "198.18.0.3", "198.18.0.4", 6, 40000, 80),
    );
  }),
);

Deno.test(
  "flows: a time bound counts only the flow's packets inside it",
  withDir(async (dir) => {
    archive(dir);
    const iso = (s: number) => new Date((S0 + s) * 1000).toISOString();
    const { records } = await collect(dir, `udp and after ${iso(1)} and before ${iso(3.5)}`);
    // .1's answer at 1 s (1 of its 3 packets: bytes pro rata, 226 / 3 rounded), .5's packet at 3 s.
    assert.deepEqual(records.map(row), [
      ["198.18.0.1", 1000, "198.18.0.2", 53, 17, 1, Math.round(226 / 3), 1, 1],
      ["198.18.0.5", 2000, "198.18.0.2", 53, 17, 1, 42, 3, 3],
    ]);
  }),
);

Deno.test(
  "flows: the record limit and the byte budget stop the scan and say so",
  withDir(async (dir) => {
    archive(dir);
    const two = await collect(dir, "ip", { limit: 2 });
    assert.equal(two.records.length, 2);
    assert.deepEqual(two.report, { records: 2, limited: true, skipped: [] });
    // 226 + 84 bytes fit in 310; the TCP flow's 54 more would not.
    const budget = await collect(dir, "ip", { maxBytes: 310 });
    assert.deepEqual(budget.records.map((r) => r.src), ["198.18.0.1", "198.18.0.5"]);
    assert.equal(budget.report.limited, true);
    const exact = await collect(dir, "ip", { limit: 3 });
    assert.equal(exact.report.limited, false, "a limit the answer meets exactly");
  }),
);

Deno.test(
  "flows: a file whose index is gone is skipped, named, and the others still answer",
  withDir(async (dir) => {
    const { w0, w1 } = archive(dir);
    const catalog = Catalog.open(dir);
    Deno.removeSync(indexPathFor(`${dir}/${w1}`));
    const report: FlowScanReport = { records: 0, limited: false, skipped: [] };
    const records: FlowRecord[] = [];
    for await (const r of matchingFlows(catalog, parseQuery("udp"), 10, report)) records.push(r);
    assert.deepEqual(records.map((r) => [r.src, r.file]), [["198.18.0.1", w0]]);
    assert.equal(report.skipped.length, 1);
    assert.equal(report.skipped[0].file, w1);
    assert.match(report.skipped[0].reason, /^No such file or directory/);
  }),
);

Deno.test(
  "flows: the record stream is a JSON array or NDJSON of the same records; onFinish once",
  withDir(async (dir) => {
    archive(dir);
    const outcomes: string[] = [];
    const read = (format: "json" | "ndjson", limit: number) =>
      new Response(
        flowRecordStream(Catalog.open(dir), parseQuery("ip"), {
          limit,
          format,
          onFinish: (report, outcome) => outcomes.push(`${outcome} ${report.records}`),
        }),
      ).text();
    const { records } = await collect(dir, "ip");
    const json = await read("json", 10);
    assert.equal(json, JSON.stringify(records) + "\n");
    const ndjson = await read("ndjson", 2);
    assert.equal(ndjson, records.slice(0, 2).map((r) => JSON.stringify(r) + "\n").join(""));
    assert.deepEqual(outcomes, ["complete 3", "limited 2"]);
  }),
);

Deno.test(
  "flows: the table has one aligned row per record, times in UTC",
  withDir(async (dir) => {
    archive(dir);
    const { records } = await collect(dir, "udp");
    const lines = formatFlowTable(records).split("\n");
    assert.equal(lines.length, 3);
    const cells = lines.map((l) => l.split(/\s{2,}/));
    assert.deepEqual(cells[0], [
      "first",
      "proto",
      "src",
      "dst",
      "vlan",
      "packets",
      "bytes",
      "duration",
      "seen_packets",
      "seen_bytes",
      "cut_at",
      "end",
      "community_id",
    ]);
    // Rows leave vlan and cut_at empty (no tag, not cut): the cells around them close up.
    assert.deepEqual(cells[1].slice(0, 6), [
      "2023-11-14T22:13:20.000Z",
      "17",
      "198.18.0.1:1000",
      "198.18.0.2:53",
      "3",
      "226",
    ]);
    assert.equal(cells[1][6], "4.000s");
    assert.equal(cells[1].at(-1), records[0].communityId);
    assert.deepEqual(cells[2].slice(0, 7), [
      "2023-11-14T22:13:20.500Z",
      "17",
      "198.18.0.5:2000",
      "198.18.0.2:53",
      "2",
      "84",
      "2.500s",
    ]);
    // Columns line up: every row's src starts where the header's does.
    const at = lines[0].indexOf("src");
    assert.ok(lines.slice(1).every((l) => l.slice(at).startsWith("198.18.0.")));
  }),
);
