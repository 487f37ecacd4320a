/**
 * With cutoffs disabled, every packet of every corpus file libpcap opens comes out unchanged (timestamps,
 * lengths, bytes), as tcpdump reads it; every file libpcap refuses gets one clear line and a non-zero exit.
 */
import assert from "node:assert/strict";
import { archiveFiles, cutcap, run, tcpdumpPackets, tsharkLengths } from "./support/oracle.ts";
import { CORPUS_DIR } from "./support/corpus.ts";

const CORPUS = CORPUS_DIR;

/** Corpus files split by whether libpcap (through tcpdump) opens them. */
async function classify(): Promise<{ opens: string[]; refused: string[] }> {
  const opens: string[] = [];
  const refused: string[] = [];
  const names = [...Deno.readDirSync(CORPUS)].filter((e) => e.isFile).map((e) => e.name).sort();
  for (const name of names) {
    const out = await new Deno.Command("tcpdump", {
      args: ["-r", CORPUS + name, "-c", "1", "-nn"],
      stdout: "null",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    // tcpdump exits 1 also for a file that opens but ends mid-record; only a failed open counts as refused.
    if (/reading from file/.test(stderr) || out.success) opens.push(CORPUS + name);
    else refused.push(CORPUS + name);
  }
  return { opens, refused };
}

const corpus = await classify();

Deno.test("corpus: every packet of every readable file is written back unchanged", async () => {
  const out = await Deno.makeTempDir({ prefix: "cutcap-corpus-" });
  try {
    const result = await cutcap([
      "--read",
      ...corpus.opens,
      "--out",
      out,
      "--byte-cutoff",
      "0",
      "--packet-cutoff",
      "0",
      "--rotate-interval",
      "0",
      "--listen",
      "off",
      "--stats-interval",
      "0",
    ]);
    assert.equal(result.code, 0, result.stderr);
    const expected = [];
    for (const file of corpus.opens) {
      expected.push(...await tcpdumpPackets(file, { nanosecond: false, allowFailure: true }));
    }
    // Files are finalized in replay order; their names sort by first-packet time, so follow the log.
    const order = [...result.stderr.matchAll(/moved (\S+)/g)].map((m) => m[1]);
    assert.deepEqual([...order].sort(), archiveFiles(out));
    const actual = [];
    for (const file of order) actual.push(...await tcpdumpPackets(file));
    assert.equal(actual.length, expected.length, "packet count");
    for (let i = 0; i < expected.length; i++) {
      assert.deepEqual(actual[i], expected[i], `packet ${i}`);
    }
    console.log(
      `${corpus.opens.length} files, ${expected.length} packets compared, ${order.length} output files`,
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("corpus: wire lengths survive (tshark frame.len)", async () => {
  const out = await Deno.makeTempDir({ prefix: "cutcap-corpus-len-" });
  try {
    // tshark reads fewer link types than libpcap: compare on the files it reads.
    const sample = [];
    for (const file of corpus.opens.filter((_, i) => i % 20 === 0)) {
      const probe = await new Deno.Command("tshark", {
        args: ["-r", file, "-c", "1"],
        stdout: "null",
        stderr: "null",
      })
        .output();
      if (probe.success) sample.push(file);
    }
    const result = await cutcap([
      "--read",
      ...sample,
      "--out",
      out,
      "--byte-cutoff",
      "0",
      "--listen",
      "off",
    ]);
    assert.equal(result.code, 0, result.stderr);
    const expected: number[] = [];
    for (const file of sample) {
      const text = await run("tshark", ["-r", file, "-T", "fields", "-e", "frame.len"], undefined, {
        allowFailure: true,
      });
      expected.push(...text.split("\n").filter((l) => l !== "").map(Number));
    }
    const order = [...result.stderr.matchAll(/moved (\S+)/g)].map((m) => m[1]);
    const actual: number[] = [];
    for (const file of order) actual.push(...await tsharkLengths(file));
    assert.deepEqual(actual, expected);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("corpus: files libpcap refuses get one clear line and a non-zero exit", async () => {
  assert.ok(corpus.refused.length > 0, "the corpus has files libpcap refuses");
  const out = await Deno.makeTempDir({ prefix: "cutcap-refused-" });
  try {
    for (const file of corpus.refused) {
      const result = await cutcap(["--read", file, "--out", out, "--listen", "off"]);
      assert.notEqual(result.code, 0, file);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `one line for ${file}: ${result.stderr}`);
      assert.match(lines[0], new RegExp(file.replace(/[.+]/g, "\\$&")));
    }
    assert.deepEqual(archiveFiles(out), [], "nothing written");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
