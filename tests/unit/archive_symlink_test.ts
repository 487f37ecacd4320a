/**
 * Symlinks planted in the archive never redirect a write (issue 18, point 4): the writability probe,
 * the readiness probe and every file written through a temporary name are created exclusively under
 * random names, so a link at the name the old code predicted (`<pid>`) is left alone, and so is the
 * root-only file it points at.
 */
import assert from "node:assert/strict";
import { writeFileDurably } from "../../src/index/mod.ts";
import { ensureWritableDir } from "../../src/archive/output_dir.ts";
import { createTempFile } from "../../src/store/pcap_file_writer.ts";

const SECRET = "root-only secret\n";

/** A 0600 file outside the archive and an archive holding links to it at `names`. */
function plant(names: string[]): { dir: string; victim: string } {
  const dir = Deno.makeTempDirSync({ prefix: "cc-symlink-" });
  const victim = `${dir}/victim`;
  Deno.writeTextFileSync(victim, SECRET, { mode: 0o600 });
  Deno.mkdirSync(`${dir}/out`);
  for (const name of names) Deno.symlinkSync(victim, `${dir}/out/${name}`);
  return { dir, victim };
}

Deno.test("the --out writability check does not write through a planted link", () => {
  const { dir, victim } = plant([`.cutcap-write-test-${Deno.pid}`]);
  try {
    ensureWritableDir(`${dir}/out`);
    assert.equal(Deno.readTextFileSync(victim), SECRET);
    const left = [...Deno.readDirSync(`${dir}/out`)].map((e) => e.name);
    assert.deepEqual(left, [`.cutcap-write-test-${Deno.pid}`], "only the planted link remains");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("files written durably (indexes, catalog) never follow a planted temporary link", () => {
  const { dir, victim } = plant([`.catalog.json.${Deno.pid}.tmp`]);
  try {
    writeFileDurably(`${dir}/out/catalog.json`, new TextEncoder().encode("{}"));
    assert.equal(Deno.readTextFileSync(victim), SECRET);
    assert.equal(Deno.readTextFileSync(`${dir}/out/catalog.json`), "{}");
    assert.ok(Deno.lstatSync(`${dir}/out/catalog.json`).isFile, "a regular file, not a link");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("createTempFile refuses an existing name instead of following it", () => {
  const { dir, victim } = plant([]);
  try {
    const names = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const { path, file } = createTempFile(`${dir}/out`, ".x.", ".tmp");
      file.close();
      names.add(path);
    }
    assert.equal(names.size, 50, "every name is new");
    // The O_EXCL open itself: a link at the name fails with AlreadyExists.
    Deno.symlinkSync(victim, `${dir}/out/link`);
    assert.throws(
      () => Deno.openSync(`${dir}/out/link`, { write: true, createNew: true }),
      Deno.errors.AlreadyExists,
    );
    assert.equal(Deno.readTextFileSync(victim), SECRET);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
