/**
 * `cutcap index FILE...` makes captures other tools wrote queryable in place: a plain pcap written by
 * `tcpdump -w`, and copies compressed whole by the gzip and zstd command-line tools, are put in an
 * archive directory layout, indexed, served, and queried; the answers equal tcpdump's selection from
 * the original capture. Files it cannot index (pcapng, missing, not a capture) fail with exit 1 and
 * a message, without stopping the others.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { cutcap, run, tcpdumpPackets } from "./support/oracle.ts";

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}
import {
  assertSamePackets,
  bpfFor,
  firstPacketUs,
  postQuery,
  tsToUs,
} from "./support/query_server.ts";
import { startServe } from "./support/process.ts";
import { archivePathFor } from "./support/archive_craft.ts";

Deno.test("cutcap index makes tcpdump-written captures queryable, answers equal tcpdump's", async () => {
  const work = await Deno.makeTempDir({ prefix: "cutcap-index-" });
  try {
    const original = `${work}/gen.pcap`;
    await Deno.writeFile(
      original,
      generateTrafficBytes({ seed: 41, packets: 6000, startTs: 1_760_000_000, vlanShare: 0.2 })
        .pcap,
    );
    const out = `${work}/archive`;
    // The same capture written by tcpdump, three ways: plain, gzip'd and zstd'd whole (one stream).
    const copy = `${work}/copy.pcap`;
    await run("tcpdump", ["-r", original, "-w", copy]);
    const first = await firstPacketUs(copy);
    const targets: string[] = [];
    for (const [worker, compress] of [[0, ""], [1, "gzip"], [2, "zstd"]] as const) {
      const plain = `${out}/${archivePathFor(first, "tcpdump", worker)}`;
      await Deno.mkdir(plain.slice(0, plain.lastIndexOf("/")), { recursive: true });
      await Deno.copyFile(copy, plain);
      if (compress === "gzip") await run("gzip", ["-q", plain]);
      if (compress === "zstd") await run("zstd", ["-q", "--rm", plain]);
      targets.push(plain + (compress === "gzip" ? ".gz" : compress === "zstd" ? ".zst" : ""));
    }
    const indexed = await cutcap(["index", ...targets]);
    assert.equal(indexed.code, 0, indexed.stderr);
    const summaries = indexed.stdout.trimEnd().split("\n");
    assert.equal(summaries.length, 3, indexed.stdout);
    for (const [i, target] of targets.entries()) {
      assert.match(
        summaries[i],
        new RegExp(`^${target}: indexed in place, 6000 packets, \\d+ flows, \\S+Z to \\S+Z$`),
      );
      assert.ok((await Deno.stat(`${target}.idx`)).size > 0, "index written beside the file");
    }

    const server = await startServe(out);
    try {
      for (const query of ["host 198.19.0.1", "udp and not port 53", "vlan 10 or icmp6", "tcp"]) {
        const answer = `${work}/answer.pcap`;
        const response = await postQuery(server.url, query, answer);
        assert.equal(response.status, 200, response.text);
        const once = await tcpdumpPackets(original, { filter: bpfFor(query) });
        assert.ok(once.length > 0, `${query} selects something`);
        // Three identical files: the merge takes equal times file by file (the files are in
        // catalog order), so the oracle is the three answers concatenated and stable-sorted by time.
        const expected = [...once, ...once, ...once].sort((a, b) => tsToUs(a.ts) - tsToUs(b.ts));
        assertSamePackets(await tcpdumpPackets(answer), expected, query);
      }
    } finally {
      assert.equal(await server.stop(), 0);
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("cutcap index fails per file with a message and exit 1, indexing the rest", async () => {
  const work = await Deno.makeTempDir({ prefix: "cutcap-index-bad-" });
  try {
    const good = `${work}/good.pcap`;
    await Deno.writeFile(good, generateTrafficBytes({ seed: 42, packets: 200 }).pcap);
    const ng = `${work}/capture.pcapng`;
    await run("tcpdump", ["-r", good, "-w", `${work}/tmp.pcap`]);
    await run("editcap", ["-F", "pcapng", `${work}/tmp.pcap`, ng]);
    const text = `${work}/notes.pcap`;
    await Deno.writeTextFile(text, "this is not a capture\n".repeat(10));
    const missing = `${work}/missing.pcap`;
    const out = `${work}/archive`;
    const result = await cutcap(["index", "--out", out, ng, good, text, missing, work]);
    assert.equal(result.code, 1);
    const filed = new RegExp(
      `^${good} → (${out}/\\d{4}/\\d{2}/\\d{2}/\\S+Z_good_w00\\.pcap): 200 packets, `,
      "m",
    );
    assert.match(result.stdout, filed);
    const inArchive = filed.exec(result.stdout)![1];
    const errors = result.stderr.trimEnd().split("\n");
    assert.equal(errors.length, 4, result.stderr);
    assert.match(errors[0], /pcapng/i);
    assert.match(errors[1], /notes\.pcap/);
    assert.equal(errors[2], `cutcap: ${missing}: no such file`);
    assert.equal(
      errors[3],
      `cutcap: ${work} is a directory: give the pcap files in it (${work}/*.pcap)`,
    );
    // Linked into the archive (the same file, no copy), indexed there, the original left alone.
    assert.equal((await Deno.stat(inArchive)).ino, (await Deno.stat(good)).ino);
    assert.ok((await Deno.stat(`${inArchive}.idx`)).isFile);
    assert.equal(await exists(`${good}.idx`), false);
    // `cutcap serve --out` sees what `cutcap index --out` filed, and answers from it.
    const server = await startServe(out);
    try {
      const answer = `${work}/answer.pcap`;
      const response = await postQuery(server.url, "ip or ip6", answer);
      assert.equal(response.status, 200, response.text);
      assert.equal(
        (await tcpdumpPackets(answer)).length,
        (await tcpdumpPackets(good, { filter: bpfFor("ip or ip6") })).length,
      );
    } finally {
      await server.stop();
    }
    // Filing it again is idempotent: the same name, indexed again.
    const again = await cutcap(["index", "--out", out, good]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, filed);
    const none = await cutcap(["index"]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /Missing files: cutcap index FILE/);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
