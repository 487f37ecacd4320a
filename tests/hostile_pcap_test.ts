/**
 * Hostile pcap files for `cutcap --read` and `cutcap index`: broken global headers, absurd caplen
 * and snaplen values, records longer than the snaplen, files ending mid-record, damaged compressed
 * files. Each must give a clear one-line message, never a crash (exit code 0 or 1, no stack trace),
 * and keep every good record before the damage: what cutcap writes or indexes is compared with
 * tcpdump's reading of the same file.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { archiveFiles, cutcap, fileBytes, run } from "./support/oracle.ts";
import { readFileIndex } from "../src/index/index_reader.ts";
import { exists } from "./support/files.ts";

/** A hostile file and what cutcap must make of it. */
interface Case {
  name: string;
  bytes: Uint8Array;
  /** Refused outright (exit 1, no output), with a message matching this. */
  refused?: RegExp;
  /** Read up to damage: the warning `--read` logs. */
  damage?: RegExp;
  /** Frames (by number) a reader must return, in order; default 0-11. */
  keep?: number[];
  /** Snapshot length the frames are cut to. */
  snaplen?: number;
}

function globalHeader(o: { magic?: number; snaplen?: number; linkType?: number } = {}): number[] {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setUint32(0, o.magic ?? 0xa1b2c3d4, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, o.snaplen ?? 65535, true);
  v.setUint32(20, o.linkType ?? 1, true);
  return [...b];
}

/** Ethernet + IPv4 + UDP frame number `i` (198.18.0.0/15), 42 + i bytes. */
function frame(i: number): number[] {
  const udp = [0x9c, 0x40 + i, 0, 53, 0, 8 + i, 0, 0, ...new Array(i).fill(i)];
  const ip = [0x45, 0, 0, 20 + udp.length, 0, i, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2];
  return [2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 8, 0, ...ip, ...udp];
}

function record(i: number, data: number[], o: { caplen?: number; len?: number } = {}): number[] {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, 1_700_000_000 + i, true);
  v.setUint32(4, i * 1000, true);
  v.setUint32(8, o.caplen ?? data.length, true);
  v.setUint32(12, o.len ?? data.length, true);
  return [...h, ...data];
}

function records(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) out.push(...record(i, frame(i)));
  return out;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

const good = [...globalHeader(), ...records(0, 12)];

const CASES: Case[] = [
  { name: "empty", bytes: new Uint8Array(0), refused: /empty|0 bytes|truncated/ },
  {
    name: "short-global-header",
    bytes: Uint8Array.from(good.slice(0, 13)),
    refused: /truncated|header/,
  },
  {
    name: "wrong-magic",
    bytes: Uint8Array.from([0x12, 0x34, 0x56, 0x78, ...good.slice(4)]),
    refused: /unknown file format|magic/,
  },
  {
    name: "absurd-caplen",
    bytes: Uint8Array.from([
      ...globalHeader(),
      ...records(0, 5),
      ...record(5, frame(5), { caplen: 0x7fffffff }),
      ...records(6, 12),
    ]),
    damage: /invalid packet capture length 2147483647/,
    keep: range(5),
  },
  {
    name: "caplen-above-max",
    bytes: Uint8Array.from([
      ...globalHeader({ snaplen: 262144 }),
      ...records(0, 7),
      ...record(7, frame(7), { caplen: 262145 }),
    ]),
    damage: /capture length 262145/,
    keep: range(7),
  },
  {
    name: "record-longer-than-snaplen",
    bytes: Uint8Array.from([...globalHeader({ snaplen: 40 }), ...records(0, 12)]),
    snaplen: 40,
  },
  {
    name: "absurd-snaplen",
    bytes: Uint8Array.from([...globalHeader({ snaplen: 0xffffffff }), ...records(0, 12)]),
  },
  {
    name: "zero-snaplen",
    bytes: Uint8Array.from([...globalHeader({ snaplen: 0 }), ...records(0, 12)]),
  },
  {
    name: "len-below-caplen",
    bytes: Uint8Array.from([
      ...globalHeader(),
      ...records(0, 3),
      ...record(3, frame(3), { len: 1 }),
      ...records(4, 12),
    ]),
  },
  {
    name: "ends-mid-record",
    bytes: Uint8Array.from(good.slice(0, good.length - 7)),
    damage: /truncated dump file/,
    keep: range(11),
  },
  {
    name: "ends-mid-record-header",
    bytes: Uint8Array.from([...good, ...record(12, frame(12)).slice(0, 9)]),
    damage: /truncated dump file/,
  },
  {
    name: "header-only",
    bytes: Uint8Array.from(globalHeader()),
    keep: [],
  },
];

/**
 * tcpdump's reading (-# numbers every record, so decoders' extra lines never count): time and hex per
 * record; a record tcpdump shows as "[Invalid header: ...]" has hex "invalid".
 */
async function tcpdumpRecords(path: string): Promise<{ ts: string; hex: string }[]> {
  const text = await run(
    "tcpdump",
    ["-r", "-", "-#", "-tt", "-nn", "-xx", "-K"],
    await fileBytes(path),
    { allowFailure: true },
  );
  const out: { ts: string; hex: string }[] = [];
  for (const line of text.split("\n")) {
    const hex = /^\s+0x([0-9a-f]+):\s+(.*)$/.exec(line);
    if (hex && out.length > 0) {
      out[out.length - 1].hex += hex[2].replace(/\s+/g, "");
      continue;
    }
    const head = /^ *(\d+) {2}(?:(\d+\.\d{6}) |(\[Invalid header))/.exec(line);
    if (head && Number(head[1]) === out.length + 1) {
      out.push({ ts: head[2] ?? "", hex: head[3] ? "invalid" : "" });
    }
  }
  return out;
}

/** The records a correct reader returns for a case, built from the frames themselves. */
function expectedRecords(c: Case): { ts: string; hex: string }[] {
  return (c.keep ?? range(12)).map((i) => ({
    ts: `${1_700_000_000 + i}.${String(i * 1000).padStart(6, "0")}`,
    hex: frame(i).slice(0, c.snaplen ?? Infinity).map((b) => b.toString(16).padStart(2, "0"))
      .join(""),
  }));
}

/** Messages must be one clear line: no stack traces, no "Uncaught". */
function assertClean(stderr: string, what: string): void {
  assert.doesNotMatch(
    stderr,
    /Uncaught|^\s+at .*:\d+:\d+\)?$|panicked|RUST_BACKTRACE/m,
    `${what}: crash`,
  );
}

Deno.test("hostile pcap: --read refuses unreadable files and keeps every good record before damage", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-hostile-read-" });
  const summary: string[] = [];
  try {
    // Two at a time: each run is a Deno process; the machine has two cores.
    for (let i = 0; i < CASES.length; i += 2) {
      await Promise.all(
        CASES.slice(i, i + 2).map(async (c) => {
          const input = `${dir}/${c.name}.pcap`;
          const out = `${dir}/out-${c.name}`;
          await Deno.writeFile(input, c.bytes);
          const result = await cutcap([
            ...["--read", input, "--out", out, "--listen", "off", "--stats-interval", "0"],
          ]);
          assertClean(result.stderr, c.name);
          if (c.refused) {
            assert.equal(result.code, 1, `${c.name}: exit code; ${result.stderr}`);
            assert.match(result.stderr, c.refused, c.name);
            assert.equal(result.stderr.trim().split("\n").length, 1, `${c.name}: one line`);
            assert.ok(
              !exists(out) || archiveFiles(out).length === 0,
              `${c.name}: nothing written`,
            );
            summary.push(`${c.name}: refused`);
            return;
          }
          assert.equal(result.code, 0, `${c.name}: exit code; ${result.stderr}`);
          if (c.damage) {
            assert.match(result.stderr, c.damage, c.name);
            assert.match(result.stderr, /keeping the packets before it/, c.name);
          }
          // tcpdump reads the input up to the damage; what cutcap wrote is exactly those records.
          const expected = expectedRecords(c);
          const input_ = await tcpdumpRecords(input);
          assert.equal(input_.length, expected.length, `${c.name}: tcpdump's reading of the input`);
          const written = [];
          for (const file of archiveFiles(out)) written.push(...await tcpdumpRecords(file));
          // Records are kept as read: tcpdump reads the same from the archive as from the input,
          // a length lie (len < caplen, which tcpdump prints as "[Invalid header]") included.
          assert.deepEqual(written, input_, `${c.name}: written records`);
          for (let i = 0; i < input_.length; i++) {
            if (input_[i].hex !== "invalid") assert.deepEqual(input_[i], expected[i], c.name);
          }
          summary.push(`${c.name}: kept ${written.length}`);
        }),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log(`hostile --read: ${summary.join(", ")}; lost 0 good records`);
});

Deno.test("hostile pcap: cutcap index names the damage and indexes exactly the records tcpdump reads", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-hostile-index-" });
  const summary: string[] = [];
  try {
    const cases: Case[] = [
      ...CASES,
      // Compressed files cut short: the readable part must still be indexed (or refused clearly).
      {
        name: "gzip-cut",
        bytes: gzipSync(Uint8Array.from(good)).subarray(0, 300),
        refused: /truncated gzip member/,
      },
      {
        // Two gzip members (as cutcap writes blocks), the second cut short: the first is kept.
        name: "gzip-second-member-cut",
        bytes: Uint8Array.from([
          ...gzipSync(Uint8Array.from([...globalHeader(), ...records(0, 6)])),
          ...gzipSync(Uint8Array.from(records(6, 12))).subarray(0, 40),
        ]),
        keep: range(6),
      },
    ];
    const paths = cases.map((c) =>
      `${dir}/${c.name}.pcap${c.name.startsWith("gzip") ? ".gz" : ""}`
    );
    for (let i = 0; i < cases.length; i++) await Deno.writeFile(paths[i], cases[i].bytes);
    // One process indexes them all: a failure on one file must not stop the others.
    const result = await cutcap(["index", "--json", ...paths]);
    assertClean(result.stderr, "index");
    assert.equal(result.code, 1, "some files are unreadable: exit 1");
    const lines = result.stdout.trim().split("\n");
    for (let i = 0; i < cases.length; i++) {
      const c = cases[i];
      const path = paths[i];
      const line = lines.find((l) => l.startsWith(`{"file":${JSON.stringify(path)},`));
      if (c.refused) {
        assert.equal(line, undefined, `${c.name}: refused, yet indexed`);
        const message = result.stderr.split("\n").find((l) => l.includes(path));
        assert.ok(message, `${c.name}: no message naming the file`);
        assert.match(message, /^cutcap: /);
        summary.push(`${c.name}: refused`);
        continue;
      }
      assert.ok(line, `${c.name}: not indexed; ${result.stderr}`);
      const reported = JSON.parse(line) as {
        packets: number;
        stopReason?: string;
      };
      const expected = expectedRecords(c);
      if (!path.endsWith(".gz")) {
        // (zcat hands tcpdump the readable part of a cut member too, so not for gzip.)
        const read = await tcpdumpRecords(path);
        assert.equal(read.length, expected.length, `${c.name}: tcpdump's reading`);
      }
      assert.equal(reported.packets, expected.length, `${c.name}: packets indexed vs tcpdump`);
      assert.equal(readFileIndex(`${path}.idx`).header.packetCount, expected.length, c.name);
      if (c.damage) assert.ok(reported.stopReason, `${c.name}: damage not reported`);
      summary.push(
        `${c.name}: ${reported.packets}${reported.stopReason ? ` (${reported.stopReason})` : ""}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log(`hostile index: ${summary.join("; ")}`);
});
