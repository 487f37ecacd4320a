/**
 * The codec table (src/pcap/codecs.ts): every codec's entry agrees with itself and with the tools
 * that read its files (gzip, zstd), so a new codec file plugged into the table is checked by the
 * same loop.
 */
import assert from "node:assert/strict";
import {
  codec,
  COMPRESSED_SUFFIXES,
  compressionFromCode,
  compressionFromSuffix,
  COMPRESSIONS,
  detectCompression,
  isCompression,
} from "../src/pcap/codecs.ts";
import {
  type BlockMeasure,
  compressBlock,
  decompressBlock,
  decompressBlockRange,
  MEASURE_OK,
  measureBlock,
} from "../src/pcap/block_format.ts";
import { outputFileName, parseOutputFileName } from "../src/archive/naming.ts";

/** Tools that decompress each codec's files, as the operator would. */
const TOOLS: Record<string, string[]> = { gzip: ["gzip", "-dc"], zstd: ["zstd", "-dcq"] };

/** 100 kB of pcap-like bytes: a global header's magic and repeating, slightly varying records. */
function sample(): Uint8Array {
  const bytes = new Uint8Array(100_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + (i >> 7)) & 0xff;
  new DataView(bytes.buffer).setUint32(0, 0xa1b2c3d4, true);
  return bytes;
}

Deno.test("codec table: names, index codes and suffixes map both ways, none listed first", () => {
  assert.deepEqual(COMPRESSIONS, ["none", "gzip", "zstd"]);
  assert.deepEqual(COMPRESSED_SUFFIXES, ["gz", "zst", "zstd"]);
  const codes = new Set<number>();
  for (const name of COMPRESSIONS) {
    const c = codec(name);
    assert.equal(c.name, name);
    assert.ok(isCompression(name));
    assert.equal(compressionFromCode(c.indexCode), name);
    assert.equal(compressionFromSuffix(c.suffix), name);
    codes.add(c.indexCode);
  }
  assert.equal(codes.size, COMPRESSIONS.length, "index codes are distinct");
  assert.ok(!isCompression("lz4"));
  assert.equal(compressionFromSuffix(".lz4"), null);
  assert.throws(() => compressionFromCode(3), /Invalid compression code 3: expected 0, 1 or 2/);
});

Deno.test("codec table: output file names carry each codec's suffix and parse back", () => {
  for (const compress of COMPRESSIONS) {
    const rel = outputFileName(1714566896, 123456, { iface: "eth0", worker: 3, compress });
    assert.ok(rel.endsWith(`.pcap${codec(compress).suffix}`), rel);
    const parsed = parseOutputFileName(rel.split("/").at(-1)!);
    assert.deepEqual(parsed, {
      startSec: 1714566896,
      startMicros: 123456,
      iface: "eth0",
      worker: 3,
      compress,
    });
  }
});

for (const name of COMPRESSIONS.filter((c) => c !== "none")) {
  Deno.test(`codec ${name}: a block is detected, measured, decoded, and read by ${TOOLS[name][0]}`, async () => {
    const data = sample();
    const c = codec(name);
    const block = compressBlock(data, name, c.defaultLevel);
    assert.equal(detectCompression(block.subarray(0, 4)), name);
    const m: BlockMeasure = { compressedLength: 0, uncompressedLength: -1, skippable: false };
    assert.equal(measureBlock(block, 0, block.length, name, m), MEASURE_OK);
    assert.equal(m.compressedLength, block.length);
    assert.equal(m.uncompressedLength, data.length);
    assert.deepEqual(decompressBlock(block, name, false), data);
    // Two blocks back to back are one range of a foreign file's block table.
    const two = new Uint8Array(block.length * 2);
    two.set(block);
    two.set(block, block.length);
    const both = decompressBlockRange(two, name);
    assert.equal(both.length, data.length * 2);
    assert.deepEqual(both.subarray(data.length), data);
    // The operator's tool reads the two blocks as one stream.
    const [tool, ...args] = TOOLS[name];
    const child = new Deno.Command(tool, { args, stdin: "piped", stdout: "piped" }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(two);
    await writer.close();
    const out = await child.output();
    assert.equal(out.code, 0);
    assert.equal(out.stdout.length, data.length * 2);
    assert.deepEqual(out.stdout.subarray(0, data.length), data);
  });
}

Deno.test("codec none: detection falls to it, blocks pass through", () => {
  const data = sample();
  assert.equal(detectCompression(data.subarray(0, 4)), "none");
  assert.equal(detectCompression(new Uint8Array(0)), "none");
  assert.equal(compressBlock(data, "none", 0), data);
  assert.equal(decompressBlockRange(data, "none"), data);
});
