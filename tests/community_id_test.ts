/**
 * Community ID v1: the spec's reference capture replayed through cutcap gives the spec's expected
 * IDs (seed 0 and seed 1) in the index and in /flows; a generated capture (IPv4/IPv6, VLAN, ICMP)
 * agrees with an independent implementation written here from the spec's pseudo code; both
 * directions give one ID; `community-id X` / `cid=X` select exactly the packets of the flow's
 * 5-tuple query.
 */
import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import { archiveFiles, cutcap } from "./support/oracle.ts";
import { replayIntoArchive } from "./support/query_server.ts";
import { readFileIndex } from "../src/index/index_reader.ts";
import { type FlowRecord, flowRecord } from "../src/query/flows.ts";
import { parseQuery } from "../src/query/parse.ts";
import { communityId, parseCommunityId } from "../src/flow/community_id.ts";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { referenceId } from "./support/community_id_ref.ts";
import { startServe } from "./support/process.ts";

const SPEC = new URL("../../shared/community-id/", import.meta.url).pathname;

interface BaselineEntry {
  proto: number;
  saddr: string;
  daddr: string;
  sport?: number | null;
  dport?: number | null;
  communityid: string;
}

/** Replays `pcap` with cutcap (extra options) and returns every flow record of the archive. */
async function replayRecords(pcap: string, out: string, extra: string[]): Promise<FlowRecord[]> {
  const r = await cutcap(["--read", pcap, "--out", out, "--listen", "off", ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const seed = extra.includes("--community-id-seed")
    ? Number(extra[extra.indexOf("--community-id-seed") + 1])
    : 0;
  const records: FlowRecord[] = [];
  for (const file of archiveFiles(out)) {
    const index = readFileIndex(`${file}.idx`);
    assert.equal(index.header.version, 2);
    assert.equal(index.header.cidSeed, seed);
    for (let f = 0; f < index.header.flowCount; f++) {
      records.push(flowRecord(index, f, file, seed));
    }
  }
  return records;
}

/** The record of the flow a baseline tuple belongs to (either direction). */
function findRecord(records: FlowRecord[], e: BaselineEntry): FlowRecord | undefined {
  return records.find((r) =>
    r.proto === e.proto && (
      (r.src === e.saddr && r.dst === e.daddr && (e.sport == null ||
        (r.srcPort === e.sport && r.dstPort === e.dport))) ||
      (r.src === e.daddr && r.dst === e.saddr && (e.sport == null ||
        (r.srcPort === e.dport && r.dstPort === e.sport)))
    )
  );
}

/** The pcap answer of `query` (status 200 required). */
async function answer(url: string, query: string): Promise<Uint8Array> {
  const response = await fetch(`${url}/query`, { method: "POST", body: query });
  assert.equal(response.status, 200, query);
  return new Uint8Array(await response.arrayBuffer());
}

async function specCapture(work: string): Promise<string> {
  const pcap = `${work}/combined.pcap`;
  await Deno.writeFile(pcap, gunzipSync(await Deno.readFile(`${SPEC}/pcaps/combined.pcap.gz`)));
  return pcap;
}

for (const [seed, baseline] of [[0, "baseline_deflt.json"], [1, "baseline_seed1.json"]] as const) {
  Deno.test(`Community ID of the spec's combined.pcap equals ${baseline} (seed ${seed})`, async () => {
    const work = await Deno.makeTempDir({ prefix: "cutcap-cid-" });
    try {
      const pcap = await specCapture(work);
      const records = await replayRecords(pcap, `${work}/out`, [
        "--community-id-seed",
        String(seed),
      ]);
      const expected = JSON.parse(
        await Deno.readTextFile(`${SPEC}/baseline/${baseline}`),
      ) as BaselineEntry[];
      assert.ok(expected.length >= 20, `baseline has ${expected.length} tuples`);
      for (const e of expected) {
        const r = findRecord(records, e);
        assert.ok(r, `a flow for ${JSON.stringify(e)}`);
        assert.equal(r.communityId, e.communityid, JSON.stringify(e));
      }
      // Every IP flow of the capture is in the baseline; ARP has no Community ID.
      const ip = records.filter((r) => r.kind === "ipv4" || r.kind === "ipv6");
      for (const r of ip) {
        assert.ok(
          expected.some((e) => e.communityid === r.communityId),
          `flow ${r.src} ${r.dst} ${r.proto} ${r.communityId} is in the baseline`,
        );
      }
      const l2 = records.filter((r) => r.kind === "l2");
      assert.ok(l2.length > 0, "the ARP capture gives L2 flows");
      assert.ok(l2.every((r) => r.communityId === "" && r.etherTypeName === "arp"));
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  });
}

Deno.test("Community ID of a generated capture equals the spec's pseudo code, both directions one ID", async () => {
  const work = await Deno.makeTempDir({ prefix: "cutcap-cid-gen-" });
  try {
    const { pcap } = generateTrafficBytes({
      seed: 12,
      packets: 20000,
      ipv6Share: 0.4,
      vlanShare: 0.3,
      startTs: 1_760_000_000,
    });
    await Deno.writeFile(`${work}/gen.pcap`, pcap);
    for (const seed of [0, 7]) {
      const records = await replayRecords(`${work}/gen.pcap`, `${work}/out${seed}`, [
        "--community-id-seed",
        String(seed),
      ]);
      let checked = 0;
      const kinds = new Set<string>();
      for (const r of records) {
        if (r.kind !== "ipv4" && r.kind !== "ipv6") continue;
        // src is the first packet's sender; either direction of the tuple gives the same ID.
        const forward = referenceId(seed, r.src, r.dst, r.proto, r.srcPort, r.dstPort);
        assert.equal(r.communityId, forward, JSON.stringify(r));
        if (r.proto !== 1 && r.proto !== 58) {
          assert.equal(referenceId(seed, r.dst, r.src, r.proto, r.dstPort, r.srcPort), forward);
        } else {
          // The echo reply's tuple: type 0/129 from the other end.
          const reply = r.proto === 1 ? 0 : 129;
          assert.equal(referenceId(seed, r.dst, r.src, r.proto, reply, 0), forward);
        }
        kinds.add(`${r.kind}/${r.proto}/${r.vlan ? "vlan" : "untagged"}`);
        checked++;
      }
      assert.ok(checked > 1000, `${checked} IP flows checked`);
      for (const k of ["ipv4/6", "ipv6/6", "ipv4/17", "ipv4/1", "ipv6/58"]) {
        assert.ok([...kinds].some((x) => x.startsWith(k + "/")), `${k} flows among ${[...kinds]}`);
      }
      assert.ok([...kinds].some((x) => x.endsWith("/vlan")), "VLAN-tagged flows checked");
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("community-id X and cid=X select the packets of the flow's 5-tuple query", async () => {
  const work = await Deno.makeTempDir({ prefix: "cutcap-cid-q-" });
  try {
    await replayIntoArchive(`${work}/out`, [
      {
        traffic: { seed: 5, packets: 6000, ipv6Share: 0.3, vlanShare: 0.2, startTs: 1_760_000_000 },
        compress: "zstd",
        rotateSize: "400KB",
      },
    ], { workDir: work });
    const records: FlowRecord[] = [];
    for (const file of archiveFiles(`${work}/out`)) {
      const index = readFileIndex(`${file}.idx`);
      for (let f = 0; f < index.header.flowCount; f++) records.push(flowRecord(index, f, file, 0));
    }
    // A sample of TCP/UDP/ICMP flows, some spanning files.
    const picked = records.filter((r) => r.communityId !== "" && r.totalPackets > 3)
      .filter((_, i) => i % 17 === 0).slice(0, 12);
    assert.ok(picked.length >= 8, `${picked.length} flows picked`);
    const server = await startServe(`${work}/out`);
    try {
      for (const r of picked) {
        const tuple = r.proto === 1 || r.proto === 58
          ? `host ${r.src} and host ${r.dst} and ip${r.kind === "ipv6" ? "6" : ""} proto ${r.proto}`
          : `host ${r.src} and host ${r.dst} and port ${r.srcPort} and port ${r.dstPort} and proto ${r.proto}`;
        const vlan = r.vlan ? ` and vlan ${r.vlan}` : " and vlan 0";
        const expected = await answer(server.url, tuple + vlan);
        assert.ok(expected.length > 24, `the tuple query finds packets: ${tuple}`);
        assert.deepEqual(
          await answer(server.url, `community-id ${r.communityId}${vlan}`),
          expected,
        );
        assert.deepEqual(await answer(server.url, `cid=${r.communityId}${vlan}`), expected);
      }
      // /flows shows the ID, with the request's seed.
      const r0 = picked[0];
      const flows = await (await fetch(
        `${server.url}/flows?q=${encodeURIComponent(`cid=${r0.communityId}`)}`,
      )).json() as FlowRecord[];
      // One record per file holding the flow, as the indexes list it.
      const r0Records = records.filter((r) => r.communityId === r0.communityId);
      assert.equal(flows.length, r0Records.length);
      assert.ok(flows.every((f) => f.communityId === r0.communityId));
      const seeded = await (await fetch(
        `${server.url}/flows?seed=1&q=${encodeURIComponent(`host ${r0.src} and host ${r0.dst}`)}`,
      )).json() as FlowRecord[];
      const between = (r: FlowRecord) =>
        (r.src === r0.src && r.dst === r0.dst) || (r.src === r0.dst && r.dst === r0.src);
      assert.equal(seeded.length, records.filter(between).length);
      assert.ok(seeded.every((f) => f.communityId !== r0.communityId));
      const bad = await fetch(`${server.url}/flows?q=${encodeURIComponent("cid=1:abc")}`);
      assert.equal(bad.status, 400);
      assert.match(await bad.text(), /Invalid Community ID "1:abc" at position 4/);
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("Community ID: parse, format, and a lookup in an index written with another seed", () => {
  assert.equal(parseCommunityId("1:abc"), null);
  assert.equal(parseCommunityId("2:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="), null);
  assert.equal(parseCommunityId("1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=")?.length, 20);
  const key = new Uint32Array([0xc6120001, 0, 0, 0, 0xc6130001, 0, 0, 0, (1234 << 16) | 80, 0]);
  key[9] = (4 << 28) | (6 << 16);
  assert.equal(
    communityId(key, 0, false, 0),
    referenceId(0, "198.18.0.1", "198.19.0.1", 6, 1234, 80),
  );
  const q = parseQuery(`cid=${communityId(key, 0, false, 3)}`, { communityIdSeed: 3 });
  assert.equal(q.type, "cid");
});
