/**
 * The fast tier (`deno task test:unit`, tests/unit/) stays what README.md promises: it runs without
 * root, subprocesses, FFI or system information (so no namespace, tcpdump, ClickHouse, Chromium or
 * root guard can creep in: asking for any of them throws there), and it passes. The full suite runs
 * tests/unit/ too, with every permission; this test runs it once more the way developers do.
 */
import assert from "node:assert/strict";

const ROOT_DIR = new URL("..", import.meta.url).pathname;
const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT_DIR}deno.json`)).tasks as Record<
  string,
  string
>;

Deno.test("test:unit: tests/unit/ with read, write and net permissions only", () => {
  assert.equal(
    tasks["test:unit"],
    "deno test --allow-read --allow-write --allow-net --parallel tests/unit/",
  );
  assert.equal(tasks.test, ".ci/deps && deno test --allow-all --parallel tests/");
  const readme = Deno.readTextFileSync(`${ROOT_DIR}README.md`);
  assert.match(readme, /^deno task test:unit +# /m);
});

Deno.test("test:unit: no unit test imports the root guard or a subprocess helper", () => {
  const refused =
    /support\/(root|process|netns|oracle|query_server|clickhouse|browser|prometheus)\.ts"/;
  for (const entry of Deno.readDirSync(`${ROOT_DIR}tests/unit`)) {
    const text = Deno.readTextFileSync(`${ROOT_DIR}tests/unit/${entry.name}`);
    assert.doesNotMatch(text, refused, `tests/unit/${entry.name}`);
  }
});

Deno.test({
  name: "test:unit: the fast tier passes under its own permissions",
  sanitizeResources: false,
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "test:unit"],
      cwd: ROOT_DIR,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    // Every test passed: none failed for want of a permission, none was ignored or filtered out.
    assert.match(text, /^ok \| [1-9]\d* passed( \(\d+ steps?\))? \| 0 failed \(/m, text);
  },
});
