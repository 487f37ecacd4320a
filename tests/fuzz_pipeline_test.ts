/**
 * A million mutated corpus frames through the whole per-packet pipeline (decode → flow → cutoff off →
 * rotating output → index, tests/support/pipeline_fuzz.ts), run by `deno task fuzz`'s script in a
 * child process with a deadline, so a hang fails the test instead of stalling CI. Every frame must
 * come back unchanged (PcapReader on every file, inside the script) and tcpdump must read sample
 * files exactly as the frames went in.
 */
import assert from "node:assert/strict";
import { fileBytes, run } from "./support/oracle.ts";
import { expectedFrames, type PipelineFuzzSummary } from "./support/pipeline_fuzz.ts";

const FRAMES = 1_000_000;
const SEED = 0x0c0ffee;
const DEADLINE_MS = 50_000;
const SCRIPT = new URL("../bench/fuzz.ts", import.meta.url).pathname;

/**
 * tcpdump's reading of a file (-# numbers every record): per record its time ("" when tcpdump cannot
 * convert it) and hex, or "invalid" where it prints "[Invalid header: ...]" instead of the packet.
 */
async function tcpdumpRecords(path: string): Promise<{ head: string; hex: string }[]> {
  const text = await run(
    "tcpdump",
    ["-r", "-", "-#", "-tt", "-nn", "-xx", "-K"],
    await fileBytes(path),
  );
  const records: { head: string; hex: string }[] = [];
  let current: { head: string; hex: string } | undefined;
  for (const line of text.split("\n")) {
    const hexLine = /^\s+0x([0-9a-f]+):\s+(.*)$/.exec(line);
    if (hexLine && current) {
      // Some decoders dump a payload of their own before -xx dumps the whole frame: keep the last.
      if (Number.parseInt(hexLine[1], 16) === 0) current.hex = "";
      current.hex += hexLine[2].replace(/\s+/g, "");
      continue;
    }
    // A record starts with its number; decoders' extra lines (tunnels, notes) never do.
    const head = /^ *(\d+) {2}(?:(\d+\.\d{6}) |(\[Error converting time\])|(\[Invalid header))/
      .exec(line);
    if (head && Number(head[1]) === records.length + 1) {
      current = { head: head[2] ?? (head[3] ? "" : "invalid"), hex: "" };
      records.push(current);
    }
  }
  return records;
}

Deno.test("fuzz pipeline: 1M mutated frames through decode, flow, write and index come back unchanged", async () => {
  const out = await Deno.makeTempDir({ prefix: "cc-fuzzpipe-" });
  try {
    const started = performance.now();
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", SCRIPT, "--frames", String(FRAMES), "--seed", String(SEED)]
        .concat(["--out", out, "--keep", "--json"]),
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(DEADLINE_MS),
    }).output();
    const seconds = (performance.now() - started) / 1000;
    const stderr = new TextDecoder().decode(child.stderr);
    assert.ok(child.signal === null, `fuzz run hung: killed after ${seconds.toFixed(1)} s`);
    const summary = JSON.parse(new TextDecoder().decode(child.stdout)) as PipelineFuzzSummary;
    assert.deepEqual(summary.firstMismatches, [], stderr);
    assert.equal(child.code, 0, stderr);
    assert.equal(summary.frames, FRAMES);
    assert.equal(summary.refused, 0, "cutoffs are off: nothing may be refused");
    assert.equal(summary.dropped, 0, "no write may fail on a healthy disk");
    assert.equal(summary.indexed, FRAMES);
    assert.equal(summary.readBack, FRAMES);
    assert.equal(summary.mismatches, 0);
    assert.equal(summary.indexMismatches, 0);
    assert.equal(summary.files.reduce((n, f) => n + f.packets, 0), FRAMES);
    for (const kind of ["none", "gzip", "zstd"]) {
      assert.ok(summary.files.some((f) => f.compress === kind), `no ${kind} file written`);
    }
    assert.ok(summary.flowsEvicted > 0, "the flow table never filled: eviction untested");

    // Independent oracle: tcpdump reads an Ethernet file of each compression as the frames went in.
    let compared = 0;
    let invalid = 0;
    for (const kind of ["none", "zstd"]) {
      const file = summary.files.find((f) => f.linkType === 1 && f.compress === kind);
      assert.ok(file, `no Ethernet ${kind} file to show tcpdump`);
      const expected = expectedFrames(SEED, file.firstFrame, file.packets);
      const got = await tcpdumpRecords(file.path);
      assert.equal(got.length, expected.length, `${file.path}: tcpdump record count`);
      for (let i = 0; i < got.length; i++) {
        const e = expected[i];
        if (got[i].head === "invalid") {
          // tcpdump refuses to print a record whose length lies beyond 262144, whose caplen is 0,
          // or whose caplen exceeds its length (kept as read since caplen > len is stored as is).
          assert.ok(
            e.caplen === 0 || e.wireLen > 262144 || e.caplen > e.wireLen,
            `${file.path} #${i + 1}: invalid?`,
          );
          invalid++;
          continue;
        }
        if (got[i].head !== "") assert.equal(got[i].head, e.ts, `${file.path} #${i + 1}: time`);
        assert.equal(got[i].hex, e.hex, `${file.path} #${i + 1}: bytes`);
        compared++;
      }
    }
    console.log(
      `fuzz pipeline: ${FRAMES} mutated frames (${
        Object.entries(summary.mutations).map(([k, v]) => `${k}=${v}`).join(" ")
      }) → ${summary.files.length} files, ${summary.bytesWritten} bytes, in ${
        seconds.toFixed(1)
      } s; ` +
        `lost 0, changed 0; tcpdump compared ${compared} records byte for byte (+${invalid} it ` +
        `calls invalid headers, as written)`,
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
