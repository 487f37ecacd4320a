/**
 * The planner's per-file step (src/query/select.ts) on crafted, indexed files: which record offsets
 * a query selects, in which order, and which packets are left for the frame to decide.
 */
import assert from "node:assert/strict";
import { readFileIndex } from "../../src/index/index_reader.ts";
import { indexPathFor } from "../../src/archive/naming.ts";
import { parseQuery } from "../../src/query/parse.ts";
import { frameDecider, indexTime, selectPackets, timesGoBack } from "../../src/query/select.ts";
import { placeFile } from "../support/archive_craft.ts";
import { ethernet, ipv4, tcp, udp } from "../support/pcap_craft.ts";

const T0 = 1_700_000_000_000_000; // µs

/** An Ethernet/IPv4 UDP frame. */
function udpFrame(src: string, dst: string, sport: number, dport: number): Uint8Array {
  return ethernet(0x0800, ipv4(src, dst, 17, udp(sport, dport)));
}

/** An Ethernet/IPv4 TCP frame. */
function tcpFrame(src: string, dst: string, sport: number, dport: number): Uint8Array {
  return ethernet(0x0800, ipv4(src, dst, 6, tcp(sport, dport)));
}

/** Runs `body` with a fresh archive directory, removed afterwards. */
function withDir(body: (dir: string) => void): () => void {
  return () => {
    const dir = Deno.makeTempDirSync({ prefix: "cc-unit-select-" });
    try {
      body(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

// Ten packets, one a second: DNS from .1 (0, 2, 9 and the answers 1, 3), web from .3 (4-7), and
// DNS from .5 (8).
const RECORDS = [
  { us: T0, frame: udpFrame("198.18.0.1", "198.18.0.2", 1000, 53) },
  { us: T0 + 1e6, frame: udpFrame("198.18.0.2", "198.18.0.1", 53, 1000) },
  { us: T0 + 2e6, frame: udpFrame("198.18.0.1", "198.18.0.2", 1000, 53) },
  { us: T0 + 3e6, frame: udpFrame("198.18.0.2", "198.18.0.1", 53, 1000) },
  { us: T0 + 4e6, frame: tcpFrame("198.18.0.3", "198.18.0.4", 40000, 80) },
  { us: T0 + 5e6, frame: tcpFrame("198.18.0.4", "198.18.0.3", 80, 40000) },
  { us: T0 + 6e6, frame: tcpFrame("198.18.0.3", "198.18.0.4", 40000, 80) },
  { us: T0 + 7e6, frame: tcpFrame("198.18.0.4", "198.18.0.3", 80, 40000) },
  { us: T0 + 8e6, frame: udpFrame("198.18.0.5", "198.18.0.2", 2000, 53) },
  { us: T0 + 9e6, frame: udpFrame("198.18.0.1", "198.18.0.2", 1000, 53) },
];

/** Offsets of records `which` of a placed file, as a plain array. */
function at(offsets: number[], which: number[]): number[] {
  return which.map((i) => offsets[i]);
}

Deno.test(
  "select: key predicates pick whole flows, offsets ascending in file order",
  withDir((dir) => {
    const file = placeFile(dir, { records: RECORDS });
    const index = readFileIndex(indexPathFor(file.absPath));
    assert.equal(index.header.flowCount, 3);
    assert.equal(index.header.timeOrder, "ordered");
    const pick = (q: string) => [...selectPackets(index, parseQuery(q)).offsets];
    assert.deepEqual(pick("port 53"), at(file.offsets, [0, 1, 2, 3, 8, 9]));
    assert.deepEqual(pick("host 198.18.0.1"), at(file.offsets, [0, 1, 2, 3, 9]));
    assert.deepEqual(pick("tcp"), at(file.offsets, [4, 5, 6, 7]));
    assert.deepEqual(pick("host 198.18.0.5 or port 80"), at(file.offsets, [4, 5, 6, 7, 8]));
    assert.deepEqual(pick("icmp"), []);
    assert.equal(selectPackets(index, parseQuery("udp")).check, undefined);
  }),
);

Deno.test(
  "select: time predicates decide packet by packet inside a flow, bounds exact to the µs",
  withDir((dir) => {
    const file = placeFile(dir, { records: RECORDS });
    const index = readFileIndex(indexPathFor(file.absPath));
    const iso = (us: number) => new Date(us / 1000).toISOString();
    const pick = (q: string) => [...selectPackets(index, parseQuery(q)).offsets];
    // `after` includes a packet exactly at the bound, `before` excludes it.
    assert.deepEqual(pick(`port 53 and after ${iso(T0 + 2e6)}`), at(file.offsets, [2, 3, 8, 9]));
    assert.deepEqual(pick(`tcp and before ${iso(T0 + 6e6)}`), at(file.offsets, [4, 5]));
    assert.deepEqual(
      pick(`after ${iso(T0 + 3e6)} and before ${iso(T0 + 8e6)}`),
      at(file.offsets, [3, 4, 5, 6, 7]),
    );
    for (let p = 0; p < RECORDS.length; p++) {
      const t = indexTime(index.times, p);
      assert.ok(RECORDS.some((r) => r.us / 1e6 === t), `packet ${p}: ${t} is a record's time`);
    }
  }),
);

Deno.test(
  "select: a file whose times go back is read in time order, ties in file order",
  withDir((dir) => {
    // File order: t=5, t=3, t=3, t=1, t=4 (the two at t=3 keep their file order).
    const times = [5, 3, 3, 1, 4];
    const records = times.map((s, i) => ({
      us: T0 + s * 1e6,
      frame: udpFrame("198.18.1.1", "198.18.1.2", 3000 + (i % 2), 53),
    }));
    const file = placeFile(dir, { records });
    const index = readFileIndex(indexPathFor(file.absPath));
    assert.equal(index.header.timeOrder, "unordered");
    assert.equal(timesGoBack(index), true);
    const selection = selectPackets(index, parseQuery("udp"));
    assert.deepEqual([...selection.offsets], at(file.offsets, [3, 1, 2, 4, 0]));
    // One flow only: port 3000's packets (0, 2, 4) in time order.
    const one = selectPackets(index, parseQuery("port 3000"));
    assert.deepEqual([...one.offsets], at(file.offsets, [2, 4, 0]));
  }),
);

Deno.test(
  "select: vlan over a flow with different inner tags leaves those packets to the frame",
  withDir((dir) => {
    // One UDP flow under outer VLAN 100; inner VLAN 20 on packets 0 and 2, 30 on packet 1.
    const inner = (vid: number) =>
      ethernet(0x0800, ipv4("198.18.2.1", "198.18.2.2", 17, udp(5000, 53)), [
        [0x8100, 100],
        [0x8100, vid],
      ]);
    const records = [20, 30, 20].map((vid, i) => ({ us: T0 + i * 1e6, frame: inner(vid) }));
    const file = placeFile(dir, { records });
    const index = readFileIndex(indexPathFor(file.absPath));
    const q = parseQuery("vlan 100 and vlan 30");
    const selection = selectPackets(index, q);
    assert.deepEqual([...selection.offsets], file.offsets);
    assert.ok(selection.check !== undefined, "the flow's tags differ: the frames decide");
    const decides = frameDecider(index, q, selection.check);
    const verdicts = file.offsets.map((offset, i) => {
      const caplen = records[i].frame.length;
      return decides(i, file.bytes, offset, caplen);
    });
    assert.deepEqual(verdicts, [false, true, false]);
    // vlan 100 alone holds for the whole flow: nothing left to decide.
    const outer = selectPackets(index, parseQuery("vlan 100"));
    assert.deepEqual([...outer.offsets], file.offsets);
    assert.equal(outer.check, undefined);
  }),
);
