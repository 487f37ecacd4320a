/**
 * Query execution (src/query/execute.ts) over small crafted archives: the answer's exact bytes (a
 * pcap header written by hand here, then the stored records in time order), the limits, the
 * link-type rules of pcap and pcapng answers, files that cannot be read, and cancellation.
 */
import assert from "node:assert/strict";
import { Catalog } from "../../src/archive/catalog.ts";
import { indexPathFor } from "../../src/archive/naming.ts";
import { parseQuery } from "../../src/query/parse.ts";
import {
  candidateLinkTypes,
  queryPcapStream,
  type QueryResult,
  type QueryStreamOptions,
} from "../../src/query/execute.ts";
import { answerHeader, type PlacedFile, placeFile, recordBytes } from "../support/archive_craft.ts";
import { bytes, ethernet, ipv4, sll, udp } from "../support/pcap_craft.ts";

const T0 = 1_700_000_000_000_000; // µs
const NO_LIMIT = { limit: Infinity, maxBytes: Infinity };

/** A UDP frame from 198.18.<net>.1:<sport> to 198.18.<net>.2:53 with `size` payload bytes. */
function frame(net: number, sport: number, size = 8): Uint8Array {
  return ethernet(
    0x0800,
    ipv4(`198.18.${net}.1`, `198.18.${net}.2`, 17, udp(sport, 53, new Uint8Array(size))),
  );
}

/** Runs a query to its end; the answer's bytes and the result onFinish reported. */
async function answer(
  outDir: string,
  query: string,
  options: Partial<QueryStreamOptions> = {},
): Promise<{ bytes: Uint8Array; result: QueryResult }> {
  let result: QueryResult | undefined;
  const stream = queryPcapStream(Catalog.open(outDir), parseQuery(query), {
    ...NO_LIMIT,
    ...options,
    onFinish: (r) => result = r,
  });
  const body = new Uint8Array(await new Response(stream).arrayBuffer());
  assert.ok(result !== undefined, "onFinish was called");
  return { bytes: body, result };
}

/** Two workers' files with interleaved times and one exact tie. */
function twoWorkers(dir: string): { a: PlacedFile; b: PlacedFile } {
  const a = placeFile(dir, {
    worker: 0,
    records: [0, 2, 4, 6].map((s, i) => ({ us: T0 + s * 1e6, frame: frame(0, 1000 + i) })),
  });
  const b = placeFile(dir, {
    worker: 1,
    records: [1, 2, 5].map((s, i) => ({ us: T0 + s * 1e6 + 500, frame: frame(1, 2000 + i, 20) })),
  });
  // b's second packet (t=2.0005) comes after a's (t=2.0): time, not file order, decides.
  return { a, b };
}

/** Runs `body` with a fresh archive directory, removed afterwards. */
function withDir(body: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "cc-unit-execute-" });
    try {
      await body(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

Deno.test(
  "execute: the answer is the header and every selected record, merged by time",
  withDir(async (dir) => {
    const { a, b } = twoWorkers(dir);
    const { bytes: got, result } = await answer(dir, "udp");
    const order: [PlacedFile, number][] = [
      [a, 0],
      [b, 0],
      [a, 1],
      [b, 1],
      [a, 2],
      [b, 2],
      [a, 3],
    ];
    const expected = bytes(answerHeader(1), ...order.map(([f, i]) => recordBytes(f, i)));
    assert.deepEqual(got, expected);
    assert.deepEqual(result, {
      outcome: "complete",
      packets: 7,
      bytes: expected.length,
      files: 2,
      format: "pcap",
      skippedFiles: 0,
      unreadable: [],
    });
    const one = await answer(dir, "host 198.18.1.1");
    assert.deepEqual(
      one.bytes,
      bytes(answerHeader(1), recordBytes(b, 0), recordBytes(b, 1), recordBytes(b, 2)),
    );
    assert.equal(one.result.files, 1, "a's file selects nothing and is never read");
  }),
);

Deno.test(
  "execute: equal times keep the files' plan order (first packet), not the order of names",
  withDir(async (dir) => {
    // Worker 1's file starts earlier; both hold a packet at exactly T0 + 5 s.
    const late = placeFile(dir, {
      worker: 0,
      records: [{ us: T0 + 1e6, frame: frame(0, 1) }, { us: T0 + 5e6, frame: frame(0, 2) }],
    });
    const early = placeFile(dir, {
      worker: 1,
      records: [{ us: T0, frame: frame(1, 1) }, { us: T0 + 5e6, frame: frame(1, 2) }],
    });
    const { bytes: got } = await answer(dir, "udp");
    assert.deepEqual(
      got,
      bytes(
        answerHeader(1),
        recordBytes(early, 0),
        recordBytes(late, 0),
        recordBytes(early, 1),
        recordBytes(late, 1),
      ),
    );
  }),
);

Deno.test(
  "execute: limit and maxBytes stop the answer exactly and say it was limited",
  withDir(async (dir) => {
    const { a, b } = twoWorkers(dir);
    const three = await answer(dir, "udp", { limit: 3 });
    assert.deepEqual(
      three.bytes,
      bytes(answerHeader(1), recordBytes(a, 0), recordBytes(b, 0), recordBytes(a, 1)),
    );
    assert.equal(three.result.outcome, "limited");
    assert.equal(three.result.packets, 3);
    // Room for the header and two records, one byte short of the third.
    const room = 24 + recordBytes(a, 0).length + recordBytes(b, 0).length +
      recordBytes(a, 1).length - 1;
    const capped = await answer(dir, "udp", { maxBytes: room });
    assert.deepEqual(capped.bytes, bytes(answerHeader(1), recordBytes(a, 0), recordBytes(b, 0)));
    assert.equal(capped.result.outcome, "limited");
    assert.equal(capped.result.packets, 2);
    assert.equal(capped.result.bytes, room - recordBytes(a, 1).length + 1);
    const exact = await answer(dir, "udp", { limit: 7 });
    assert.equal(exact.result.outcome, "complete", "a limit the answer meets exactly");
  }),
);

Deno.test(
  "execute: a pcap answer keeps the first link type and counts other files as skipped",
  withDir(async (dir) => {
    const { a, b } = twoWorkers(dir);
    const cooked = placeFile(dir, {
      iface: "any",
      linkType: 113,
      records: [{
        us: T0 + 3e6,
        frame: sll(0x0800, ipv4("198.18.2.1", "198.18.2.2", 17, udp(9, 53))),
      }],
    });
    const catalog = Catalog.open(dir);
    assert.deepEqual(candidateLinkTypes(catalog, parseQuery("udp")), [1, 113]);
    const pcap = await answer(dir, "udp");
    assert.equal(pcap.result.packets, 7);
    assert.equal(pcap.result.skippedFiles, 1);
    assert.equal(pcap.result.files, 2);
    assert.equal(
      pcap.bytes.length,
      24 + [0, 1, 2, 3].reduce((n, i) => n + recordBytes(a, i).length, 0) +
        [0, 1, 2].reduce((n, i) => n + recordBytes(b, i).length, 0),
    );

    // pcapng: one interface per link type, announced before its first packet.
    const ng = await answer(dir, "udp", { format: "pcapng" });
    assert.equal(ng.result.format, "pcapng");
    assert.equal(ng.result.packets, 8);
    assert.equal(ng.result.skippedFiles, 0);
    const blocks = pcapngBlocks(ng.bytes);
    assert.deepEqual(
      blocks.map((x) => x.summary),
      [
        "SHB",
        "IDB link 1",
        "EPB if 0",
        "EPB if 0",
        "EPB if 0",
        "EPB if 0",
        "IDB link 113",
        "EPB if 1",
        "EPB if 0",
        "EPB if 0",
        "EPB if 0",
      ],
    );
    const cookedBlock = blocks[7];
    assert.deepEqual(cookedBlock.data, recordBytes(cooked, 0).subarray(16));
    assert.equal(cookedBlock.ts, (T0 + 3e6) / 1e6);
  }),
);

/** Blocks of a little-endian pcapng answer: type, interface or link type, EPB data and time. */
function pcapngBlocks(
  file: Uint8Array,
): { summary: string; data?: Uint8Array; ts?: number }[] {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const out: { summary: string; data?: Uint8Array; ts?: number }[] = [];
  for (let at = 0; at < file.length;) {
    const type = view.getUint32(at, true);
    const length = view.getUint32(at + 4, true);
    assert.equal(view.getUint32(at + length - 4, true), length, `block at ${at}: trailing length`);
    if (type === 0x0a0d0d0a) out.push({ summary: "SHB" });
    else if (type === 1) out.push({ summary: `IDB link ${view.getUint16(at + 8, true)}` });
    else if (type === 6) {
      const caplen = view.getUint32(at + 20, true);
      const units = view.getUint32(at + 12, true) * 2 ** 32 + view.getUint32(at + 16, true);
      out.push({
        summary: `EPB if ${view.getUint32(at + 8, true)}`,
        data: file.subarray(at + 28, at + 28 + caplen),
        ts: units / 1e6,
      });
    } else out.push({ summary: `type ${type}` });
    at += length;
  }
  return out;
}

Deno.test(
  "execute: files that cannot be read are named with why, and the answer goes on",
  withDir(async (dir) => {
    const { a, b } = twoWorkers(dir);
    const catalog = Catalog.open(dir);
    Deno.removeSync(indexPathFor(b.absPath));
    let result: QueryResult | undefined;
    const stream = queryPcapStream(catalog, parseQuery("udp"), {
      ...NO_LIMIT,
      onFinish: (r) => result = r,
    });
    const got = new Uint8Array(await new Response(stream).arrayBuffer());
    assert.deepEqual(got, bytes(answerHeader(1), ...[0, 1, 2, 3].map((i) => recordBytes(a, i))));
    assert.equal(result?.outcome, "complete");
    assert.equal(result?.files, 1);
    assert.equal(result?.unreadable.length, 1);
    assert.equal(result?.unreadable[0].file, b.path);
    assert.match(result?.unreadable[0].reason ?? "", /^No such file or directory/);
  }),
);

Deno.test(
  "execute: a record cut short ends that file's part of the answer, reported, not thrown",
  withDir(async (dir) => {
    const { a, b } = twoWorkers(dir);
    const catalog = Catalog.open(dir);
    // Cut a's last record in half: its index still lists it.
    Deno.truncateSync(a.absPath, a.offsets[3] + 20);
    let result: QueryResult | undefined;
    const stream = queryPcapStream(catalog, parseQuery("udp"), {
      ...NO_LIMIT,
      onFinish: (r) => result = r,
    });
    const got = new Uint8Array(await new Response(stream).arrayBuffer());
    const kept: [PlacedFile, number][] = [[a, 0], [b, 0], [a, 1], [b, 1], [a, 2], [b, 2]];
    assert.deepEqual(got, bytes(answerHeader(1), ...kept.map(([f, i]) => recordBytes(f, i))));
    assert.equal(result?.packets, 6);
    assert.deepEqual(result?.unreadable, [{
      file: a.path,
      reason: `${a.absPath}: record at offset ${
        a.offsets[3]
      } is cut short (file damaged or truncated)`,
    }]);
  }),
);

Deno.test(
  "execute: cancelling the stream reports a cancelled query and closes every file",
  withDir(async (dir) => {
    // Enough packets that the answer takes more than one chunk (256 KiB).
    const records = Array.from(
      { length: 400 },
      (_, i) => ({ us: T0 + i * 1000, frame: frame(0, i, 1400) }),
    );
    placeFile(dir, { worker: 0, records });
    placeFile(dir, { worker: 1, records: records.map((r) => ({ ...r, us: r.us + 500 })) });
    const whole = (await answer(dir, "udp")).bytes;
    assert.equal(whole.length, 24 + 800 * 1458);
    const finished: QueryResult[] = [];
    const stream = queryPcapStream(Catalog.open(dir), parseQuery("udp"), {
      ...NO_LIMIT,
      onFinish: (r) => finished.push(r),
    });
    const reader = stream.getReader();
    const received: Uint8Array[] = [];
    while (received.reduce((n, c) => n + c.length, 0) < 256 * 1024) {
      const chunk = await reader.read();
      assert.equal(chunk.done, false);
      received.push(chunk.value!);
    }
    assert.equal(finished.length, 0, "still running after 256 KiB");
    await reader.cancel();
    const got = bytes(...received);
    assert.deepEqual(got, whole.subarray(0, got.length), "what came is the answer's beginning");
    assert.equal(finished.length, 1);
    assert.equal(finished[0].outcome, "cancelled");
    const came = (got.length - 24) / 1458;
    // What was produced: what came, and at most one chunk pulled ahead (highWaterMark 1).
    assert.ok(
      finished[0].packets >= came && finished[0].packets < 800,
      `${finished[0].packets}`,
    );
    assert.equal(finished[0].files, 2);
    // Deno.test's resource sanitizer fails this test if either file were still open.
  }),
);
