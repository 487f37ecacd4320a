/**
 * Flow records in the index (format 2) and /flows: totals seen by the end of each file, cut point
 * and end reason, against the generator's truth; `cut`, `bytes >`, `packets >` query terms; an
 * index of format 1 still reads.
 */
import assert from "node:assert/strict";
import { archiveFiles, cutcap } from "./support/oracle.ts";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import type { TrafficTruth } from "../bench/gen/mod.ts";
import { type FileIndex, readFileIndex } from "../src/index/index_reader.ts";
import { canonicalizeKey } from "../src/index/canonical_key.ts";
import { IndexBuilder } from "../src/index/index_builder.ts";
import { FlowEnd, FlowTable } from "../src/flow/flow_table.ts";
import { parseQuery } from "../src/query/parse.ts";
import { selectPackets } from "../src/query/select.ts";
import { flowRecord } from "../src/query/flows.ts";

const KEY_WORDS = 10;

/** Canonical key text of truth flow `f` (L2 types fill both halves of word 8, as the decoder's). */
function truthKey(truth: TrafficTruth, f: number): string {
  const key = truth.flows.key.slice(f * KEY_WORDS, (f + 1) * KEY_WORDS);
  if (truth.flows.kind[f] === 1) key[8] = ((key[8] << 16) | (key[8] & 0xffff)) >>> 0;
  canonicalizeKey(key);
  return key.join(",");
}

interface Expected {
  /** Per packet of the input: stored under the cutoff? */
  stored: Uint8Array;
  /** Per packet: 1-based number within its flow. */
  nth: Uint32Array;
  /** Per flow: the number of its first refused packet, 0 when none. */
  cutAt: Float64Array;
}

/** Replays the cutoff rule (README: counts before the packet below both limits) over the truth. */
function expectCutoff(truth: TrafficTruth, bytes: number, packets: number): Expected {
  const n = truth.packets;
  const flows = truth.flows.count;
  const seenP = new Float64Array(flows);
  const seenB = new Float64Array(flows);
  const cutAt = new Float64Array(flows);
  const stored = new Uint8Array(n);
  const nth = new Uint32Array(n);
  for (let p = 0; p < n; p++) {
    const f = truth.flowOfPacket[p];
    const ok = (packets === 0 || seenP[f] < packets) && (bytes === 0 || seenB[f] < bytes);
    stored[p] = ok ? 1 : 0;
    if (!ok && cutAt[f] === 0) cutAt[f] = seenP[f] + 1;
    seenP[f]++;
    seenB[f] += truth.wireLen[p];
    nth[p] = seenP[f];
  }
  return { stored, nth, cutAt };
}

for (const cutoff of [{ bytes: 20000, packets: 0 }, { bytes: 0, packets: 12 }]) {
  Deno.test(`flow records: totals per file and cut point equal the truth (cutoff ${JSON.stringify(cutoff)})`, async () => {
    const work = await Deno.makeTempDir({ prefix: "cutcap-records-" });
    try {
      const truth = await writeTrafficPcap(`${work}/in.pcap`, {
        seed: 23,
        packets: 40000,
        ipv6Share: 0.3,
        vlanShare: 0.2,
        nonIpShare: 0.03,
        startTs: 1_760_000_000,
      });
      const r = await cutcap([
        "--read",
        `${work}/in.pcap`,
        "--out",
        `${work}/out`,
        "--listen",
        "off",
        "--byte-cutoff",
        String(cutoff.bytes),
        "--packet-cutoff",
        String(cutoff.packets),
        "--rotate-size",
        "400KB",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const exp = expectCutoff(truth, cutoff.bytes, cutoff.packets);
      const flowOfKey = new Map<string, number>();
      for (let f = 0; f < truth.flows.count; f++) flowOfKey.set(truthKey(truth, f), f);

      // Input index of each stored packet, in order: files hold them in that order.
      const storedInput: number[] = [];
      for (let p = 0; p < truth.packets; p++) if (exp.stored[p]) storedInput.push(p);
      const files = archiveFiles(`${work}/out`).map((f) => readFileIndex(`${f}.idx`));
      assert.ok(files.length >= 4, `${files.length} files`);
      let storedSoFar = 0;
      let checked = 0;
      let spanning = 0;
      let cutFlows = 0;
      const filesOfFlow = new Map<number, number>();
      for (const index of files) {
        storedSoFar += index.header.packetCount;
        // Totals count every packet before the next file's first stored packet.
        const boundary = storedSoFar < storedInput.length
          ? storedInput[storedSoFar]
          : truth.packets;
        const totals = runningTotals(truth, boundary);
        for (let flow = 0; flow < index.header.flowCount; flow++) {
          const key = index.keys.slice(flow * KEY_WORDS, (flow + 1) * KEY_WORDS).join(",");
          const f = flowOfKey.get(key);
          assert.ok(f !== undefined, `flow ${key} is a truth flow`);
          const at = `flow ${f} in ${index.header.pcapName}`;
          assert.equal(index.totalPackets[flow], totals.packets[f], `${at}: total packets`);
          assert.equal(index.totalBytes[flow], totals.bytes[f], `${at}: total bytes`);
          const cut = exp.cutAt[f] !== 0 && exp.cutAt[f] <= totals.packets[f] ? exp.cutAt[f] : 0;
          assert.equal(index.cutPacket[flow], cut, `${at}: cut packet`);
          if (cut !== 0) cutFlows++;
          filesOfFlow.set(f, (filesOfFlow.get(f) ?? 0) + 1);
          if (filesOfFlow.get(f) === 2) spanning++;
          checked++;
        }
      }
      assert.ok(checked > 500, `${checked} records checked`);
      assert.ok(spanning > 20, `${spanning} flows span files`);
      assert.ok(cutFlows > 50, `${cutFlows} cut records`);
      checkTermsAgainstRecords(files);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  });
}

/** Per truth flow: packets and bytes among input packets [0, end). */
function runningTotals(
  truth: TrafficTruth,
  end: number,
): { packets: Float64Array; bytes: Float64Array } {
  const packets = new Float64Array(truth.flows.count);
  const bytes = new Float64Array(truth.flows.count);
  for (let p = 0; p < end; p++) {
    packets[truth.flowOfPacket[p]]++;
    bytes[truth.flowOfPacket[p]] += truth.wireLen[p];
  }
  return { packets, bytes };
}

/** `cut`, `cut=0`, `bytes > N`, `packets >= N` select exactly the packets of the flows they name. */
function checkTermsAgainstRecords(files: FileIndex[]): void {
  const cases: [string, (i: FileIndex, f: number) => boolean][] = [
    ["cut", (i, f) => i.cutPacket[f] !== 0],
    ["cut=1", (i, f) => i.cutPacket[f] !== 0],
    ["cut=0", (i, f) => i.cutPacket[f] === 0],
    ["bytes > 100KB", (i, f) => i.totalBytes[f] > 100_000],
    [
      "packets >= 30 and tcp",
      (i, f) => i.totalPackets[f] >= 30 && ((i.keys[f * 10 + 9] >>> 16) & 0xff) === 6,
    ],
    ["not packets > 5", (i, f) => !(i.totalPackets[f] > 5)],
  ];
  for (const [text, want] of cases) {
    const q = parseQuery(text);
    let selected = 0;
    for (const index of files) {
      const expected: number[] = [];
      for (let f = 0; f < index.header.flowCount; f++) {
        if (!want(index, f)) continue;
        for (let p = index.pktStart[f]; p < index.pktStart[f] + index.pktCount[f]; p++) {
          expected.push(index.offsets[p]);
        }
      }
      expected.sort((a, b) => a - b);
      assert.deepEqual([...selectPackets(index, q).offsets], expected, text);
      selected += expected.length;
    }
    assert.ok(selected > 0, `${text} selects packets`);
  }
}

Deno.test("flow records: end reasons fin, rst, idle, evicted, open from the flow table", () => {
  const table = new FlowTable({ maxFlows: 4, flowTimeout: 10, closeLinger: 1, seed: 1 });
  const builder = IndexBuilder.forFlowTable(table);
  const key = (port: number, proto = 6): Uint32Array => {
    const k = new Uint32Array(KEY_WORDS);
    k[0] = 0xc6120001;
    k[4] = 0xc6130001;
    k[8] = ((port << 16) | 443) >>> 0;
    k[9] = ((4 << 28) | (proto << 16)) >>> 0;
    return k;
  };
  const reversed = (k: Uint32Array): Uint32Array => {
    const r = k.slice();
    r.set(k.subarray(4, 8), 0);
    r.set(k.subarray(0, 4), 4);
    r[8] = ((k[8] << 16) | (k[8] >>> 16)) >>> 0;
    return r;
  };
  let offset = 24;
  const packet = (k: Uint32Array, ts: number, flags: number): void => {
    const id = table.observe(k, ts, 100, flags);
    builder.record(id, ts, offset, 100);
    offset += 116;
  };
  packet(key(1000), 1, 0x02); // fin: FIN from both ends, then linger over
  packet(reversed(key(1000)), 1.1, 0x11);
  packet(key(1000), 1.2, 0x11);
  packet(key(2000), 1, 0x02); // rst
  packet(reversed(key(2000)), 1.5, 0x04);
  packet(key(3000, 17), 1, 0); // idle
  packet(reversed(key(4000, 17)), 5, 0); // evicted later; first packet from end B
  packet(key(5000, 17), 12.5, 0); // the fin/rst/idle flows go (linger, timeout) as time moves on
  for (let p = 6000; p < 6004; p++) packet(key(p, 17), 12.6, 0); // a full table evicts
  const index = decode(builder.encode({
    pcapName: "t.pcap",
    linkType: 1,
    snaplen: 65535,
    nanosecond: false,
    compress: "none",
    iface: "t",
    worker: 0,
    dataSize: offset,
  }));
  const ends = new Map<string, string>();
  for (let f = 0; f < index.header.flowCount; f++) {
    const r = flowRecord(index, f, "t.pcap", 0);
    ends.set(`${r.proto}/${r.srcPort === 443 ? r.dstPort : r.srcPort}`, r.endReason);
    if (r.srcPort === 443) assert.equal(r.src, "198.19.0.1", "src is the first packet's sender");
  }
  assert.equal(ends.get("6/1000"), "fin");
  assert.equal(ends.get("6/2000"), "rst");
  assert.equal(ends.get("17/3000"), "idle");
  assert.equal(ends.get("17/4000"), "evicted", "the least recently seen flow left for a new one");
  assert.equal(ends.get("17/6003"), "open");
  assert.equal(table.endOf(table.observe(key(6003, 17), 12.7, 100, 0)), FlowEnd.Open);
});

function decode(bytes: Uint8Array): FileIndex {
  const path = Deno.makeTempFileSync({ suffix: ".idx" });
  try {
    Deno.writeFileSync(path, bytes);
    return readFileIndex(path);
  } finally {
    Deno.removeSync(path);
  }
}

Deno.test("an index of format 1 still reads: totals = stored counts, no cut, end unknown", () => {
  const dir = new URL("./corpus/index_v1/", import.meta.url).pathname;
  const index = readFileIndex(`${dir}/gen400.pcap.idx`);
  assert.equal(index.header.version, 1);
  assert.equal(index.header.flowCount, 42);
  assert.equal(index.cidPrefix, null);
  let packets = 0;
  for (let f = 0; f < index.header.flowCount; f++) {
    assert.equal(index.totalPackets[f], index.pktCount[f]);
    assert.equal(index.totalBytes[f], index.bytes[f]);
    const r = flowRecord(index, f, "gen400.pcap", 0);
    assert.equal(r.endReason, "unknown");
    assert.equal(r.cut, false);
    packets += index.pktCount[f];
  }
  assert.equal(packets, 400);
  // Record terms work on it: `cut` selects nothing, `cut=0` everything, a TCP flow's ID finds it.
  assert.equal(selectPackets(index, parseQuery("cut")).offsets.length, 0);
  assert.equal(selectPackets(index, parseQuery("cut=0")).offsets.length, 400);
  const tcp = [...Array(index.header.flowCount).keys()].find((f) =>
    ((index.keys[f * 10 + 9] >>> 16) & 0xff) === 6
  )!;
  const id = flowRecord(index, tcp, "gen400.pcap", 0).communityId;
  assert.equal(selectPackets(index, parseQuery(`cid=${id}`)).offsets.length, index.pktCount[tcp]);
});
