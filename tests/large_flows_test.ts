import assert from "node:assert/strict";
import { crossedLevel, largeFlowLevel } from "../src/flow/large_flows.ts";

Deno.test("large flows: levels double from the threshold", () => {
  assert.equal(largeFlowLevel(999, 1000), -1);
  assert.equal(largeFlowLevel(1000, 1000), 0);
  assert.equal(largeFlowLevel(1999, 1000), 0);
  assert.equal(largeFlowLevel(2000, 1000), 1);
  assert.equal(largeFlowLevel(4000, 1000), 2);
  assert.equal(largeFlowLevel(7999, 1000), 2);
});

Deno.test("large flows: a crossing is reported once per level, also when a packet jumps levels", () => {
  assert.equal(crossedLevel(900, 1100, 1000), 0);
  assert.equal(crossedLevel(1100, 1500, 1000), -1);
  assert.equal(crossedLevel(1900, 2100, 1000), 1);
  assert.equal(crossedLevel(1500, 9000, 1000), 3);
  let reports = 0;
  for (let bytes = 0; bytes < 1_000_000; bytes += 1500) {
    if (crossedLevel(bytes, bytes + 1500, 10_000) >= 0) reports++;
  }
  // 10k, 20k, 40k, 80k, 160k, 320k, 640k
  assert.equal(reports, 7);
});

Deno.test("large flows: logged and handed to --large-flow-command with the flow in its environment", async () => {
  const { cutcap } = await import("./support/oracle.ts");
  const { generateTrafficBytes } = await import("../bench/gen/mod.ts");
  const { pcap, truth } = generateTrafficBytes({ seed: 11, packets: 20000 });
  const dir = await Deno.makeTempDir({ prefix: "cutcap-large-" });
  try {
    await Deno.writeFile(`${dir}/in.pcap`, pcap);
    const threshold = 500_000;
    const result = await cutcap([
      ...["--read", `${dir}/in.pcap`, "--out", `${dir}/out`, "--listen", "off"],
      ...["--large-flow-threshold", String(threshold)],
      ...[
        "--large-flow-command",
        `echo "$CUTCAP_FLOW_PROTO $CUTCAP_FLOW_BYTES" >> ${dir}/hook.txt`,
      ],
    ]);
    assert.equal(result.code, 0, result.stderr);
    // Expected crossings from the generator's truth: each flow reports T, 2T, 4T, ... up to its size.
    let expected = 0;
    for (let f = 0; f < truth.flows.count; f++) {
      const bytes = truth.flows.bytes[f];
      if (bytes >= threshold) expected += Math.floor(Math.log2(bytes / threshold)) + 1;
    }
    assert.ok(expected > 0, "the traffic has large flows");
    const logged = result.stderr.split("\n").filter((l) => l.includes("Large flow"));
    assert.equal(logged.length, expected);
    for (let i = 0; i < 50; i++) {
      const text = await Deno.readTextFile(`${dir}/hook.txt`).catch(() => "");
      if (text.trim().split("\n").length === expected) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const lines = (await Deno.readTextFile(`${dir}/hook.txt`)).trim().split("\n");
    assert.equal(lines.length, expected);
    for (const line of lines) {
      const [proto, bytes] = line.split(" ").map(Number);
      assert.ok(proto > 0 && bytes >= threshold, line);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
