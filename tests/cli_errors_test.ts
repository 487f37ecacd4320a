/**
 * Mistakes get one clear line naming what was wrong, a non-zero exit, and nothing written where it
 * should not be.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { archiveFiles, cutcap } from "./support/oracle.ts";
import { rootOnly } from "./support/root.ts";

const { pcap } = generateTrafficBytes({ seed: 3, packets: 200 });
const input = await Deno.makeTempFile({ prefix: "cutcap-cli-", suffix: ".pcap" });
await Deno.writeFile(input, pcap);

/** Runs cutcap expecting failure; returns its single stderr line. */
async function failure(args: string[]): Promise<string> {
  const result = await cutcap(args);
  assert.notEqual(result.code, 0, `should fail: ${args.join(" ")}`);
  const lines = result.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line for ${args.join(" ")}:\n${result.stderr}`);
  return lines[0];
}

const CASES: [string[], RegExp][] = [
  [["--bogus"], /Unknown option --bogus/],
  [["--workers", "0"], /Invalid --workers "0": expected a whole number 1-64/],
  [["--workers", "two"], /Invalid --workers "two"/],
  [["--byte-cutoff", "12XB"], /Invalid --byte-cutoff "12XB"/],
  [["--packet-cutoff", "-1"], /Invalid --packet-cutoff|Bad arguments/],
  [["--flow-timeout", "soon"], /Invalid --flow-timeout "soon"/],
  [["--rotate-interval", "5 minutes"], /Invalid --rotate-interval/],
  [["--compress", "lz4"], /Invalid --compress "lz4": expected none, gzip or zstd/],
  [["--listen", "nowhere"], /Invalid --listen "nowhere"/],
  [["--listen", "0.0.0.0:9102"], /--tls-cert.*--token-file.*--insecure/],
  [["--log-format", "xml"], /Invalid --log-format "xml"/],
  [["--interface", "eth0", "--read", "x.pcap"], /exclude each other/],
  [["frobnicate"], /Unknown command "frobnicate"/],
];

Deno.test("bad flags: one clear line each, non-zero exit", async () => {
  for (const [args, pattern] of CASES) {
    assert.match(await failure(args), pattern, args.join(" "));
  }
});

Deno.test("a bad BPF filter shows libpcap's message and writes nothing", async () => {
  const out = await Deno.makeTempDir();
  try {
    const line = await failure([
      "--read",
      input,
      "--out",
      out,
      "--listen",
      "off",
      "--filter",
      "tcp portt 80",
    ]);
    assert.match(line, /filter/i);
    assert.match(line, /syntax error/);
    assert.deepEqual(archiveFiles(out), []);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test(rootOnly("a live capture", {
  name: "an unknown interface is named, with the hint to list interfaces",
  async fn() {
    const out = await Deno.makeTempDir();
    try {
      const line = await failure([
        "--interface",
        "cc-nonexistent0",
        "--out",
        out,
        "--listen",
        "off",
      ]);
      assert.match(line, /Interface cc-nonexistent0 not found \(cutcap interfaces lists them\)/);
      assert.deepEqual([...Deno.readDirSync(out)], []);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
}));

Deno.test("a missing read file and an unwritable output directory are named", async () => {
  assert.match(
    await failure(["--read", "/nonexistent/x.pcap", "--listen", "off"]),
    /\/nonexistent\/x\.pcap/,
  );
  const file = await Deno.makeTempFile();
  try {
    // A path below a regular file can never be created, even by root.
    const line = await failure(["--read", input, "--out", `${file}/out`, "--listen", "off"]);
    assert.match(line, new RegExp(`Output directory ${file}/out is not writable`));
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("a missing libpcap given with --libpcap is one clear line", async () => {
  const line = await failure([
    "--read",
    input,
    "--listen",
    "off",
    "--libpcap",
    "/nonexistent/libpcap.so",
  ]);
  assert.match(line, /libpcap/);
  assert.match(line, /\/nonexistent\/libpcap\.so/);
});
