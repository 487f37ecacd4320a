/**
 * Answers are in time order even when the archive's files are not (issue 13, point 8): input whose
 * timestamps go back (tcpdump's corpus has such captures; a generated capture is reordered here),
 * and a `--read` file older than the one before it, appended to the same archive file. tcpdump
 * reads the inputs (the oracle for which packets match) and the answers (their order). Files whose
 * times never go back are marked so in their index and are read in file order, never sorted.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { type FileIndex, readIndexHeader } from "../src/index/index_reader.ts";
import { timesGoBack } from "../src/query/select.ts";
import { archiveFiles, type OraclePacket, tcpdumpPackets } from "./support/oracle.ts";
import { CORPUS_DIR } from "./support/corpus.ts";
import { bpfFor, postQuery, replayFiles, tsToUs } from "./support/query_server.ts";
import { type CraftedRecord, pcapFile } from "./support/pcap_craft.ts";
import { startServe } from "./support/process.ts";

const T0 = 1_800_000_000;

/** The records of a little-endian microsecond pcap. */
function records(pcap: Uint8Array): CraftedRecord[] {
  const view = new DataView(pcap.buffer, pcap.byteOffset, pcap.byteLength);
  const out: CraftedRecord[] = [];
  for (let at = 24; at + 16 <= pcap.length;) {
    const caplen = view.getUint32(at + 8, true);
    const wire = view.getUint32(at + 12, true);
    const frame = new Uint8Array(wire);
    frame.set(pcap.subarray(at + 16, at + 16 + caplen));
    out.push({ us: view.getUint32(at, true) * 1e6 + view.getUint32(at + 4, true), frame, caplen });
    at += 16 + caplen;
  }
  return out;
}

/** Packets sorted by time then bytes: the same set compares equal whatever its order. */
function canonical(packets: OraclePacket[]): string[] {
  return packets.map((p) => `${tsToUs(p.ts)} ${p.hex}`).sort();
}

Deno.test("answers are in time order over files whose times go back", async (t) => {
  const work = await Deno.makeTempDir({ prefix: "cutcap-qorder-" });
  const out = `${work}/archive`;
  try {
    // A capture with every 40th packet moved 25 places later (times go back there).
    const { pcap } = generateTrafficBytes({ packets: 3000, seed: 41, startTs: T0 + 100 });
    const recs = records(pcap);
    const moved: CraftedRecord[] = [];
    const late = new Map<number, CraftedRecord[]>();
    recs.forEach((r, i) => {
      if (i % 40 === 5) late.set(i + 25, [...(late.get(i + 25) ?? []), r]);
      else moved.push(r);
      moved.push(...(late.get(i) ?? []));
      late.delete(i);
    });
    const inputs = {
      reordered: `${work}/reordered.pcap`,
      newer: `${work}/newer.pcap`,
      older: `${work}/older.pcap`,
      inOrder: `${work}/in_order.pcap`,
    };
    await Deno.writeFile(inputs.reordered, pcapFile(1, 65535, moved));
    // Two in-order captures read newer first: the older one's packets follow in the same file.
    await Deno.writeFile(
      inputs.newer,
      generateTrafficBytes({ packets: 800, seed: 42, startTs: T0 + 200 }).pcap,
    );
    await Deno.writeFile(
      inputs.older,
      generateTrafficBytes({ packets: 800, seed: 43, startTs: T0 + 150 }).pcap,
    );
    await Deno.writeFile(
      inputs.inOrder,
      generateTrafficBytes({ packets: 1500, seed: 44, startTs: T0 + 120 }).pcap,
    );
    const corpus = [`${CORPUS_DIR}of10_pf5240.pcap`, `${CORPUS_DIR}3560_CDP.pcap`];
    const replays: [string[], string][] = [
      [[inputs.reordered, inputs.newer, inputs.older, ...corpus], "zstd"],
      [[inputs.inOrder], "none"],
    ];
    for (const [files, compress] of replays) {
      await replayFiles(files, out, ["--compress", compress, "--rotate-size", "300KB"]);
    }

    await t.step("indexes say which files go back in time", () => {
      const orders = archiveFiles(out).map((f) => readIndexHeader(`${f}.idx`).timeOrder);
      assert.ok(orders.includes("unordered"), orders.join(" "));
      assert.ok(orders.includes("ordered"), orders.join(" "));
      assert.ok(!orders.includes("unknown"));
    });

    const server = await startServe(out);
    try {
      const inputsAll = [...Object.values(inputs).filter((f) => f !== inputs.inOrder), ...corpus];
      for (const query of ["ip or not ip", "tcp", "udp and ip6", "port 53", "not ip"]) {
        await t.step(query, async () => {
          const answer = `${work}/answer.pcap`;
          const { status, text } = await postQuery(server.url, query, answer);
          assert.equal(status, 200, text);
          // postQuery has checked the answer's time order; here: exactly tcpdump's selection.
          const got = await tcpdumpPackets(answer);
          const filter = query === "ip or not ip" ? "" : bpfFor(query);
          const expected: OraclePacket[] = [];
          for (const f of [...inputsAll, inputs.inOrder]) {
            expected.push(...await tcpdumpPackets(f, { filter, allowFailure: true }));
          }
          assert.ok(expected.length > 0);
          assert.deepEqual(canonical(got), canonical(expected), query);
        });
      }
    } finally {
      assert.equal(await server.stop(), 0, server.log());
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("an index from before the time-order flag is checked once, by its packets' file order", () => {
  // Packets grouped by flow: flow 0 holds offsets 24 and 200, flow 1 offset 100.
  const make = (times: number[]) =>
    ({
      header: { timeOrder: "unknown" },
      offsets: Float64Array.of(24, 200, 100),
      times: Float64Array.from(times),
    }) as unknown as FileIndex;
  // In file order (24, 100, 200) the times are 1, 2, 3: in order, though not in index order.
  assert.equal(timesGoBack(make([1, 3, 2])), false);
  // In file order 1, 3, 2: back in time.
  assert.equal(timesGoBack(make([1, 2, 3])), true);
  const flagged = { header: { timeOrder: "unordered" } } as unknown as FileIndex;
  assert.equal(timesGoBack(flagged), true);
});
