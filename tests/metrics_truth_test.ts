/**
 * Metrics that tell the truth under the permissions cutcap ships with: the process_* series equal
 * what the kernel says about the process (read here from /proc with -A), not 0.
 */
import assert from "node:assert/strict";
import { freePort, startCutcap } from "./support/robustness.ts";
import { parseExposition } from "./support/fake_sensor.ts";

const ROOT_DIR = new URL("..", import.meta.url).pathname;
const tasks = JSON.parse(await Deno.readTextFile(`${ROOT_DIR}deno.json`)).tasks as Record<
  string,
  string
>;

/** The permission flags of the `cutcap` task (what `deno task cutcap` and the binary run with). */
const TASK_FLAGS = tasks.cutcap.split(/\s+/).filter((w) => w.startsWith("--allow-"));

Deno.test({
  name: "process_* metrics are real under the shipped task's permissions; no nodejs_* series",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    assert.ok(!TASK_FLAGS.includes("--allow-all"));
    const out = await Deno.makeTempDir({ prefix: "cc-proc-" });
    const port = freePort();
    const serve = startCutcap(["serve", "--out", out, "--listen", `127.0.0.1:${port}`], {
      denoArgs: ["run", ...TASK_FLAGS],
    });
    try {
      await serve.waitFor(/Serving /);
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const values = parseExposition(text);
      const status = await Deno.readTextFile(`/proc/${serve.pid}/status`);
      const kib = (field: string) =>
        Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
      const near = (name: string, truth: number, within: number) => {
        const value = values.get(name);
        assert.ok(value !== undefined && value > 0, `${name} = ${value}`);
        assert.ok(Math.abs(value - truth) <= within, `${name} ${value} vs /proc ${truth}`);
      };
      near("process_resident_memory_bytes", kib("VmRSS"), 32 * 2 ** 20);
      near("process_virtual_memory_bytes", kib("VmSize"), 256 * 2 ** 20);
      near("process_heap_bytes", kib("VmData"), 256 * 2 ** 20);
      const fds = [...Deno.readDirSync(`/proc/${serve.pid}/fd`)].length;
      near("process_open_fds", fds, 4);
      const limits = await Deno.readTextFile(`/proc/${serve.pid}/limits`);
      const maxFds = Number(/^Max open files\s+(\d+)/m.exec(limits)![1]);
      assert.equal(values.get("process_max_fds"), maxFds);
      assert.ok((values.get("process_cpu_seconds_total") ?? 0) > 0);
      const started = values.get("process_start_time_seconds")!;
      assert.ok(Math.abs(started - Date.now() / 1000) < 120, `start time ${started}`);
      assert.doesNotMatch(text, /^nodejs_/m, "no nodejs_* series");
      assert.doesNotMatch(serve.lines.join("\n"), /NotCapable|Requires .* access/);
    } finally {
      await serve.stop();
      await Deno.remove(out, { recursive: true });
    }
  },
});
