/**
 * Flow records in the index (format 2) and /flows: totals seen by the end of each file, cut point
 * and end reason, against the generator's truth, for every flow that sent during the file (a cut
 * flow that goes on has a record without packets in each later file); `cut`, `bytes >`,
 * `packets >` query terms; an index of format 1 still reads.
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
import { fileFlows, flowRecord, matchingFlows } from "../src/query/flows.ts";
import { Catalog } from "../src/archive/catalog.ts";

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
      let unstored = 0;
      let previousBoundary = 0;
      const filesOfFlow = new Map<number, number>();
      for (const index of files) {
        storedSoFar += index.header.packetCount;
        // A file spans the input packets up to the next file's first stored packet.
        const boundary = storedSoFar < storedInput.length
          ? storedInput[storedSoFar]
          : truth.packets;
        const totals = runningTotals(truth, boundary);
        // Every flow that sent during the file, stored or not, has exactly one record.
        const active = new Set<number>();
        for (let p = previousBoundary; p < boundary; p++) active.add(truth.flowOfPacket[p]);
        previousBoundary = boundary;
        const recorded = new Set<number>();
        for (let flow = 0; flow < index.header.flowCount; flow++) {
          const key = index.keys.slice(flow * KEY_WORDS, (flow + 1) * KEY_WORDS).join(",");
          const f = flowOfKey.get(key);
          assert.ok(f !== undefined, `flow ${key} is a truth flow`);
          const at = `flow ${f} in ${index.header.pcapName}`;
          assert.ok(active.has(f), `${at}: sent during the file`);
          assert.ok(!recorded.has(f), `${at}: one record`);
          recorded.add(f);
          if (index.pktCount[flow] === 0) {
            // Nothing stored: cut off before, or at, its first packet of the file.
            assert.ok(exp.cutAt[f] !== 0 && exp.cutAt[f] <= totals.packets[f], `${at}: cut`);
            assert.equal(index.bytes[flow], 0, `${at}: stored bytes`);
            assert.equal(index.firstTs[flow], index.lastTs[flow], `${at}: seen time`);
            assert.equal(
              Math.round(index.lastTs[flow] * 1e6),
              lastTimeBefore(truth, f, boundary),
              `${at}: last packet time`,
            );
            unstored++;
          }
          assert.equal(index.totalPackets[flow], totals.packets[f], `${at}: total packets`);
          assert.equal(index.totalBytes[flow], totals.bytes[f], `${at}: total bytes`);
          const cut = exp.cutAt[f] !== 0 && exp.cutAt[f] <= totals.packets[f] ? exp.cutAt[f] : 0;
          assert.equal(index.cutPacket[flow], cut, `${at}: cut packet`);
          if (cut !== 0) cutFlows++;
          filesOfFlow.set(f, (filesOfFlow.get(f) ?? 0) + 1);
          if (filesOfFlow.get(f) === 2) spanning++;
          checked++;
        }
        assert.equal(recorded.size, active.size, `${index.header.pcapName}: flows that sent`);
        for (let f = 1; f < index.header.flowCount; f++) {
          assert.ok(index.firstTs[f - 1] <= index.firstTs[f], "flows in order of first time");
        }
        assert.equal([...fileFlows(index, "f")].length, index.header.flowCount, "all exported");
      }
      assert.ok(checked > 500, `${checked} records checked`);
      assert.ok(spanning > 20, `${spanning} flows span files`);
      assert.ok(cutFlows > 50, `${cutFlows} cut records`);
      assert.ok(unstored > 50, `${unstored} records of cut flows without stored packets`);
      checkTermsAgainstRecords(files);
      await checkUnstoredInFlows(`${work}/out`, files);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  });
}

/** Time (µs) of the last packet of truth flow `f` among input packets [0, end). */
function lastTimeBefore(truth: TrafficTruth, f: number, end: number): number {
  for (let p = end - 1; p >= 0; p--) if (truth.flowOfPacket[p] === f) return truth.tsUs[p];
  return NaN;
}

/**
 * /flows (matchingFlows) lists the records without stored packets: `cut` lists every cut record
 * of every file, those with 0 packets and 0 bytes included; a 5-tuple finds one such flow in
 * every file where it sent.
 */
async function checkUnstoredInFlows(outDir: string, files: FileIndex[]): Promise<void> {
  const catalog = Catalog.open(outDir);
  const listed = await Array.fromAsync(matchingFlows(catalog, parseQuery("cut"), Infinity));
  let cutRecords = 0;
  let unstored = 0;
  for (const index of files) {
    for (let f = 0; f < index.header.flowCount; f++) {
      if (index.cutPacket[f] !== 0) cutRecords++;
      if (index.pktCount[f] === 0) unstored++;
    }
  }
  assert.equal(listed.length, cutRecords, "every cut record listed");
  assert.equal(listed.filter((r) => r.packets === 0 && r.bytes === 0).length, unstored);
  const quiet = listed.find((r) => r.packets === 0 && r.kind === "ipv4" && r.proto === 6)!;
  assert.ok(quiet !== undefined, "a TCP flow went on unstored");
  const q = parseQuery(
    `host ${quiet.src} and host ${quiet.dst} and port ${quiet.srcPort} and port ${quiet.dstPort} and tcp`,
  );
  const records = await Array.fromAsync(matchingFlows(catalog, q, Infinity));
  const withKey = files.filter((index) =>
    [...Array(index.header.flowCount).keys()].some((f) =>
      flowRecord(index, f, "", 0).communityId === quiet.communityId
    )
  );
  assert.equal(records.length, withKey.length, "one record per file where the flow sent");
  for (let i = 1; i < records.length; i++) {
    assert.ok(records[i].totalPackets > records[i - 1].totalPackets, "running totals grow");
  }
  // No stored packet: a query for it reads nothing from those files.
  for (const index of files) {
    const selected = selectPackets(index, q).offsets.length;
    const stored = [...Array(index.header.flowCount).keys()]
      .filter((f) => flowRecord(index, f, "", 0).communityId === quiet.communityId)
      .reduce((n, f) => n + index.pktCount[f], 0);
    assert.equal(selected, stored);
  }
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

Deno.test("flow records: a cut flow that goes on has a record in each later file, with its end", () => {
  const table = new FlowTable({ maxFlows: 16, flowTimeout: 10, closeLinger: 1, seed: 2 });
  const builder = IndexBuilder.forFlowTable(table);
  const key = (port: number): Uint32Array => {
    const k = new Uint32Array(KEY_WORDS);
    k[0] = 0xc6120001;
    k[4] = 0xc6130001;
    k[8] = ((port << 16) | 443) >>> 0;
    k[9] = ((4 << 28) | (6 << 16)) >>> 0;
    return k;
  };
  let offset = 24;
  // Stores a flow's first two packets, refuses the rest (a packet cutoff of 2).
  const packet = (port: number, ts: number, flags = 0x10, back = false): void => {
    const k = key(port);
    if (back) k.set([...k.subarray(4, 8), ...k.subarray(0, 4), (443 << 16) | port], 0);
    const id = table.observe(k, ts, 100, flags);
    if (table.packetsBefore >= 2) return table.markCut(id, 3);
    builder.record(id, ts, offset, 100);
    offset += 116;
  };
  const file = (): FileIndex => {
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
    builder.reset();
    return index;
  };
  const records = (index: FileIndex) =>
    new Map([...fileFlows(index, "t.pcap")].map((r) => [r.srcPort, r]));
  for (const port of [1000, 2000, 3000]) for (let i = 0; i < 3; i++) packet(port, 1 + i * 0.1);
  const first = records(file());
  assert.deepEqual([...first.keys()].sort(), [1000, 2000, 3000]);
  assert.equal(first.get(1000)!.packets, 2);
  assert.equal(first.get(1000)!.totalPackets, 3);
  // File 2: flow 1000 goes on and closes (FIN both ways, then the linger), 2000 goes on, 3000 is
  // quiet; 4000 is new and stored.
  packet(1000, 2, 0x11);
  packet(2000, 2.1);
  packet(4000, 2.2);
  packet(1000, 2.3);
  packet(1000, 2.4, 0x11, true); // the FIN back: closed
  packet(4000, 5); // the closed flow's linger is over: the sweep removes it
  const second = file();
  const byPort = records(second);
  assert.deepEqual([...byPort.keys()].sort(), [1000, 2000, 4000], "the quiet cut flow has none");
  const closed = byPort.get(1000)!;
  assert.equal(closed.packets, 0);
  assert.equal(closed.bytes, 0);
  assert.equal(closed.totalPackets, 6);
  assert.equal(closed.cutPacket, 3);
  assert.equal(closed.endReason, "fin");
  assert.equal(closed.first, 2.4);
  const going = byPort.get(2000)!;
  assert.deepEqual([going.packets, going.totalPackets, going.endReason], [0, 4, "open"]);
  assert.equal(going.last, 2.1);
  assert.equal(byPort.get(4000)!.packets, 2);
  for (let f = 1; f < second.header.flowCount; f++) {
    assert.ok(second.firstTs[f - 1] <= second.firstTs[f], "flows in order of first time");
  }
  assert.equal(selectPackets(second, parseQuery("port 1000 or port 2000")).offsets.length, 0);
  // File 3: nothing from the cut flows, so no record of them.
  packet(4000, 6);
  assert.deepEqual([...records(file()).keys()], [4000]);
});
