/**
 * `deno task fuzz [--frames N] [--seed S] [--out DIR] [--keep] [--json]`: pushes mutated corpus
 * frames through decode → flow → write → index (tests/support/pipeline_fuzz.ts) with cutoffs off,
 * reads every file back and compares. Exit 0 when nothing was lost or changed, 1 otherwise.
 * Default: 20 million frames (a few minutes); tests/fuzz_pipeline_test.ts runs one million.
 */
import { parseArgs } from "node:util";
import { runPipelineFuzz } from "../tests/support/pipeline_fuzz.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    frames: { type: "string", default: "20000000" },
    seed: { type: "string" },
    out: { type: "string" },
    keep: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});

const frames = Number(values.frames);
if (!Number.isSafeInteger(frames) || frames < 1) {
  console.error(`Invalid --frames "${values.frames}": expected a whole number above 0`);
  Deno.exit(2);
}
const seed = values.seed === undefined ? (Date.now() & 0x7fffffff) : Number(values.seed);
const outDir = values.out ?? await Deno.makeTempDir({ prefix: "cutcap-fuzz-" });
await Deno.mkdir(outDir, { recursive: true });
try {
  const summary = runPipelineFuzz({
    frames,
    seed,
    outDir,
    compressions: ["none", "gzip", "zstd"],
    maxFlows: 16384,
    progress: values.json ? undefined : (n) => console.error(`fuzz: ${n} frames written`),
  });
  const lost = summary.refused + summary.dropped + (summary.frames - summary.readBack);
  if (values.json) console.log(JSON.stringify(summary));
  else {
    const mutations = Object.entries(summary.mutations).map(([k, v]) => `${k}=${v}`).join(" ");
    console.log(
      `fuzz: seed ${seed}: ${summary.frames} mutated frames (${mutations}) through decode → flow → ` +
        `write → index into ${summary.files.length} files (${summary.bytesWritten} bytes) in ` +
        `${summary.writeSeconds.toFixed(1)} s; read back ${summary.readBack} in ` +
        `${summary.verifySeconds.toFixed(1)} s; lost ${lost}, changed ${summary.mismatches}, ` +
        `index disagreements ${summary.indexMismatches}`,
    );
    for (const line of summary.firstMismatches) console.log(`  ${line}`);
  }
  if (lost > 0 || summary.mismatches > 0 || summary.indexMismatches > 0) Deno.exitCode = 1;
} finally {
  if (!values.keep) await Deno.remove(outDir, { recursive: true });
}
