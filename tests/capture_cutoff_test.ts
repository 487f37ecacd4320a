/**
 * Offline replay of a generated capture: with a packet cutoff K every flow keeps exactly its first K
 * packets, and with a byte cutoff exactly the packets the documented rule selects — byte for byte, and
 * nothing else. The generator knows the ground truth and writes pcap without cutcap's code.
 */
import assert from "node:assert/strict";
import { expectedCutoff, generateTrafficBytes } from "../bench/gen/mod.ts";
import { archiveFiles, cutcap, tcpdumpPackets } from "./support/oracle.ts";

const { pcap, truth } = generateTrafficBytes({
  seed: 7,
  packets: 30000,
  vlanShare: 0.2,
  ipv6Share: 0.3,
});
const input = await Deno.makeTempFile({ prefix: "cutcap-gen-", suffix: ".pcap" });
await Deno.writeFile(input, pcap);
const inputPackets = await tcpdumpPackets(input);

async function replayAndRead(
  extra: string[],
): Promise<{ stderr: string; packets: typeof inputPackets }> {
  const out = await Deno.makeTempDir({ prefix: "cutcap-cut-" });
  try {
    const result = await cutcap(["--read", input, "--out", out, "--listen", "off", ...extra]);
    assert.equal(result.code, 0, result.stderr);
    const packets = [];
    for (const file of archiveFiles(out)) packets.push(...await tcpdumpPackets(file));
    return { stderr: result.stderr, packets };
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

function expectedPackets(keep: Uint8Array): typeof inputPackets {
  return inputPackets.filter((_, i) => keep[i] === 1);
}

Deno.test("packet cutoff: every flow keeps exactly its first K packets", async () => {
  for (const k of [1, 5, 20]) {
    const keep = expectedCutoff(truth, { packetCutoff: k });
    const { packets } = await replayAndRead(["--packet-cutoff", String(k), "--byte-cutoff", "0"]);
    const expected = expectedPackets(keep);
    assert.equal(packets.length, expected.length, `K=${k}: packet count`);
    assert.deepEqual(packets, expected, `K=${k}: same packets, same bytes, same order`);
  }
});

Deno.test("byte cutoff: the packet that crosses the cutoff is the last one stored", async () => {
  for (const bytes of [1000, 65536]) {
    const keep = expectedCutoff(truth, { byteCutoff: bytes });
    const { packets } = await replayAndRead([
      "--byte-cutoff",
      String(bytes),
      "--packet-cutoff",
      "0",
    ]);
    const expected = expectedPackets(keep);
    assert.ok(expected.length < inputPackets.length, "the cutoff removes something");
    assert.equal(packets.length, expected.length, `cutoff ${bytes}: packet count`);
    assert.deepEqual(packets, expected);
  }
});

Deno.test("both cutoffs together: a packet is stored only when both allow it", async () => {
  const keep = expectedCutoff(truth, { byteCutoff: 4096, packetCutoff: 6 });
  const { packets } = await replayAndRead(["--byte-cutoff", "4KiB", "--packet-cutoff", "6"]);
  assert.deepEqual(packets, expectedPackets(keep));
});

Deno.test("no cutoff: the output is the input", async () => {
  const { packets } = await replayAndRead(["--byte-cutoff", "0", "--packet-cutoff", "0"]);
  assert.deepEqual(packets, inputPackets);
});

Deno.test("rotation by size and by packet time splits the output; together the files hold every packet", async () => {
  for (const extra of [["--rotate-size", "512KiB"], ["--rotate-interval", "5s"]]) {
    const out = await Deno.makeTempDir({ prefix: "cutcap-rot-" });
    try {
      const result = await cutcap([
        "--read",
        input,
        "--out",
        out,
        "--listen",
        "off",
        "--byte-cutoff",
        "0",
        ...extra,
      ]);
      assert.equal(result.code, 0, result.stderr);
      const files = archiveFiles(out);
      assert.ok(files.length >= 3, `${extra.join(" ")}: several files (${files.length})`);
      const packets = [];
      for (const file of files) {
        const inFile = await tcpdumpPackets(file);
        assert.ok(inFile.length > 0, `${file} reads cleanly and is not empty`);
        packets.push(...inFile);
      }
      assert.deepEqual(packets, inputPackets);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  }
});

Deno.test("gzip and zstd output read back with zcat/zstdcat | tcpdump", async () => {
  for (const compress of ["gzip", "zstd"]) {
    const out = await Deno.makeTempDir({ prefix: `cutcap-${compress}-` });
    try {
      const result = await cutcap([
        "--read",
        input,
        "--out",
        out,
        "--listen",
        "off",
        "--compress",
        compress,
        "--packet-cutoff",
        "10",
        "--byte-cutoff",
        "0",
        "--rotate-size",
        "256KiB",
      ]);
      assert.equal(result.code, 0, result.stderr);
      const files = archiveFiles(out);
      assert.ok(
        files.length >= 2 && files.every((f) => f.endsWith(compress === "gzip" ? ".gz" : ".zst")),
      );
      const packets = [];
      for (const file of files) packets.push(...await tcpdumpPackets(file));
      assert.deepEqual(packets, expectedPackets(expectedCutoff(truth, { packetCutoff: 10 })));
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  }
});
