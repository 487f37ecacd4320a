/**
 * Retention: oldest files go first with their .idx and catalog entry, files being written (.tmp) and
 * newer files stay, emptied date folders disappear, and on a real small tmpfs the free-space floor
 * holds as df reports it.
 */
import assert from "node:assert/strict";
import { Catalog, type CatalogEntry } from "../src/archive/catalog.ts";
import { diskSpace, Retention } from "../src/archive/retention.ts";
import { rootOnly } from "./support/root.ts";
import { exists } from "./support/files.ts";

const DAY = 86400;
const NOW = 1_717_243_200; // 2024-06-01T12:00:00Z

interface FakeFile {
  path: string;
  firstTs: number;
  lastTs: number;
  pcapBytes: number;
  indexBytes?: number;
}

/** Writes each file (and its .idx) with its size and adds it to a fresh catalog of `dir`. */
function makeArchive(dir: string, files: FakeFile[]): Catalog {
  const catalog = Catalog.open(dir);
  for (const f of files) {
    const indexBytes = f.indexBytes ?? 100;
    Deno.mkdirSync(`${dir}/${f.path.slice(0, f.path.lastIndexOf("/"))}`, { recursive: true });
    Deno.writeFileSync(`${dir}/${f.path}`, new Uint8Array(f.pcapBytes));
    Deno.writeFileSync(`${dir}/${f.path}.idx`, new Uint8Array(indexBytes));
    // Written when its last packet was seen, as by a live capture.
    Deno.utimeSync(`${dir}/${f.path}`, f.lastTs, f.lastTs);
    const entry: CatalogEntry = {
      path: f.path,
      iface: "eth0",
      worker: 0,
      firstTs: f.firstTs,
      lastTs: f.lastTs,
      packets: f.lastTs === 0 ? 0 : 10,
      flows: 1,
      bytesOnDisk: f.pcapBytes + indexBytes,
      pcapBytes: f.pcapBytes,
      indexBytes,
      linkType: 1,
      compress: "none",
    };
    catalog.add(entry);
  }
  catalog.save();
  return catalog;
}

function paths(catalog: Catalog): string[] {
  return catalog.entries().map((e) => e.path);
}

/** The catalog on disk agrees with the tree: reopening loads it without reindexing anything. */
function assertCatalogMatchesTree(dir: string, expected: string[]): void {
  const reopened = Catalog.open(dir, { log: (line) => assert.fail(line) });
  assert.equal(reopened.source, "loaded");
  assert.deepEqual(paths(reopened), expected);
}

function withTempDir(fn: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = Deno.makeTempDirSync({ prefix: "cutcap-retention-" });
    try {
      await fn(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

Deno.test(
  "max-bytes deletes the oldest files first with their .idx, keeps .tmp files, removes empty folders",
  withTempDir((dir) => {
    const catalog = makeArchive(dir, [
      {
        path: "2024/05/30/2024-05-30T00-00-00.000000Z_a_w00.pcap",
        firstTs: NOW - 2 * DAY,
        lastTs: NOW - 2 * DAY + 60,
        pcapBytes: 1000,
      },
      {
        path: "2024/05/30/2024-05-30T00-00-00.000000Z_b_w00.pcap",
        firstTs: NOW - 2 * DAY + 60,
        lastTs: NOW - 2 * DAY + 120,
        pcapBytes: 1000,
      },
      {
        path: "2024/05/31/2024-05-31T00-00-00.000000Z_c_w00.pcap",
        firstTs: NOW - DAY,
        lastTs: NOW - DAY + 60,
        pcapBytes: 1000,
      },
      {
        path: "2024/05/31/2024-05-31T00-00-00.000000Z_d_w00.pcap",
        firstTs: NOW - DAY + 60,
        lastTs: NOW - DAY + 120,
        pcapBytes: 1000,
      },
      {
        path: "2024/06/01/2024-06-01T00-00-00.000000Z_e_w00.pcap",
        firstTs: NOW - 60,
        lastTs: NOW,
        pcapBytes: 1000,
      },
    ]);
    // A file being written in the oldest folder and one in the newest: neither may go.
    Deno.writeFileSync(`${dir}/2024/05/31/.f.pcap.tmp`, new Uint8Array(5000));
    Deno.writeFileSync(`${dir}/2024/06/01/.g.pcap.tmp`, new Uint8Array(5000));
    const retention = new Retention({ outDir: dir, maxBytes: 2500, now: () => NOW });

    const result = retention.run(catalog);

    assert.deepEqual(result, { deletedFiles: 3, deletedBytes: 3300 });
    assert.deepEqual(retention.totals(), result);
    assert.deepEqual(paths(catalog), [
      "2024/05/31/2024-05-31T00-00-00.000000Z_d_w00.pcap",
      "2024/06/01/2024-06-01T00-00-00.000000Z_e_w00.pcap",
    ]);
    assert.equal(catalog.totalBytes(), 2200);
    for (
      const gone of [
        "2024/05/30/2024-05-30T00-00-00.000000Z_a_w00.pcap",
        "2024/05/30/2024-05-30T00-00-00.000000Z_b_w00.pcap",
        "2024/05/31/2024-05-31T00-00-00.000000Z_c_w00.pcap",
      ]
    ) {
      assert.equal(exists(`${dir}/${gone}`), false, gone);
      assert.equal(exists(`${dir}/${gone}.idx`), false, `${gone}.idx`);
    }
    for (
      const kept of [
        "2024/05/31/2024-05-31T00-00-00.000000Z_d_w00.pcap",
        "2024/06/01/2024-06-01T00-00-00.000000Z_e_w00.pcap",
      ]
    ) {
      assert.ok(exists(`${dir}/${kept}`) && exists(`${dir}/${kept}.idx`), kept);
    }
    assert.ok(exists(`${dir}/2024/05/31/.f.pcap.tmp`));
    assert.ok(exists(`${dir}/2024/06/01/.g.pcap.tmp`));
    assert.equal(exists(`${dir}/2024/05/30`), false, "emptied day folder removed");
    assert.ok(exists(`${dir}/2024/05`), "month folder still holds 31");
    assertCatalogMatchesTree(dir, [
      "2024/05/31/2024-05-31T00-00-00.000000Z_d_w00.pcap",
      "2024/06/01/2024-06-01T00-00-00.000000Z_e_w00.pcap",
    ]);

    // Within the limit now: a second run deletes nothing.
    assert.deepEqual(retention.run(catalog), { deletedFiles: 0, deletedBytes: 0 });
  }),
);

Deno.test(
  "max-age deletes files whose packets are all older, across overlapping workers",
  withTempDir((dir) => {
    const catalog = makeArchive(dir, [
      {
        path: "1970/01/01/1970-01-01T00-00-00.000000Z_empty_w00.pcap",
        firstTs: 0,
        lastTs: 0,
        pcapBytes: 24,
      },
      // Worker 0's long file started earliest but still has recent packets: it stays.
      {
        path: "2024/05/20/2024-05-20T00-00-00.000000Z_w0_w00.pcap",
        firstTs: NOW - 12 * DAY,
        lastTs: NOW - DAY,
        pcapBytes: 500,
      },
      {
        path: "2024/05/21/2024-05-21T00-00-00.000000Z_w1-old_w00.pcap",
        firstTs: NOW - 11 * DAY,
        lastTs: NOW - 10 * DAY,
        pcapBytes: 500,
      },
      {
        path: "2024/05/28/2024-05-28T00-00-00.000000Z_w1-mid_w00.pcap",
        firstTs: NOW - 4 * DAY,
        lastTs: NOW - 3 * DAY,
        pcapBytes: 500,
      },
      {
        path: "2024/06/01/2024-06-01T00-00-00.000000Z_w1-new_w00.pcap",
        firstTs: NOW - 3600,
        lastTs: NOW - 60,
        pcapBytes: 500,
      },
    ]);
    const retention = new Retention({ outDir: dir, maxAge: 2 * DAY, now: () => NOW });

    const result = retention.run(catalog);

    assert.deepEqual(result, { deletedFiles: 3, deletedBytes: 124 + 600 + 600 });
    assert.deepEqual(paths(catalog), [
      "2024/05/20/2024-05-20T00-00-00.000000Z_w0_w00.pcap",
      "2024/06/01/2024-06-01T00-00-00.000000Z_w1-new_w00.pcap",
    ]);
    assert.equal(exists(`${dir}/1970`), false);
    assert.equal(exists(`${dir}/2024/05/21`), false);
    assert.equal(exists(`${dir}/2024/05/28`), false);
    assertCatalogMatchesTree(dir, [
      "2024/05/20/2024-05-20T00-00-00.000000Z_w0_w00.pcap",
      "2024/06/01/2024-06-01T00-00-00.000000Z_w1-new_w00.pcap",
    ]);
  }),
);

Deno.test(
  "min-free counts deleted bytes against one statvfs, by size and by percent",
  withTempDir((dir) => {
    const files = [0, 1, 2, 3, 4].map((i) => ({
      path: `2024/06/01/2024-06-01T00-00-00.000000Z_f${i}_w00.pcap`,
      firstTs: NOW - 1000 + i * 100,
      lastTs: NOW - 950 + i * 100,
      pcapBytes: 900,
    }));
    let calls = 0;
    // The filesystem does not report the space back at once (a query holds the files open).
    const space = () => {
      calls++;
      return { free: 1000, size: 10_000 };
    };
    const catalog = makeArchive(dir, files);
    const bySize = new Retention({ outDir: dir, minFree: { bytes: 3000 }, diskSpace: space });
    assert.deepEqual(bySize.run(catalog), { deletedFiles: 2, deletedBytes: 2000 });
    assert.equal(calls, 1);
    assert.deepEqual(paths(catalog), [
      "2024/06/01/2024-06-01T00-00-00.000000Z_f2_w00.pcap",
      "2024/06/01/2024-06-01T00-00-00.000000Z_f3_w00.pcap",
      "2024/06/01/2024-06-01T00-00-00.000000Z_f4_w00.pcap",
    ]);

    const byPercent = new Retention({ outDir: dir, minFree: { percent: 25 }, diskSpace: space });
    assert.deepEqual(byPercent.run(catalog), { deletedFiles: 2, deletedBytes: 2000 });
    assert.deepEqual(paths(catalog), ["2024/06/01/2024-06-01T00-00-00.000000Z_f4_w00.pcap"]);
    assertCatalogMatchesTree(dir, ["2024/06/01/2024-06-01T00-00-00.000000Z_f4_w00.pcap"]);

    const off = new Retention({ outDir: dir, minFree: { percent: 0 }, diskSpace: space });
    assert.equal(off.enabled, false);
    assert.deepEqual(off.run(catalog), { deletedFiles: 0, deletedBytes: 0 });
  }),
);

Deno.test(
  "a file that cannot be deleted is skipped, logged once, and the next one goes",
  withTempDir((dir) => {
    const catalog = makeArchive(dir, [
      {
        path: "2024/06/01/2024-06-01T00-00-00.000000Z_stuck_w00.pcap",
        firstTs: NOW - 300,
        lastTs: NOW - 200,
        pcapBytes: 1000,
      },
      {
        path: "2024/06/01/2024-06-01T00-00-00.000000Z_next_w00.pcap",
        firstTs: NOW - 200,
        lastTs: NOW - 100,
        pcapBytes: 1000,
      },
      {
        path: "2024/06/01/2024-06-01T00-00-00.000000Z_new_w00.pcap",
        firstTs: NOW - 100,
        lastTs: NOW,
        pcapBytes: 1000,
      },
    ]);
    // A non-empty directory under the file's name makes its removal fail even for root.
    Deno.removeSync(`${dir}/2024/06/01/2024-06-01T00-00-00.000000Z_stuck_w00.pcap`);
    Deno.mkdirSync(`${dir}/2024/06/01/2024-06-01T00-00-00.000000Z_stuck_w00.pcap`);
    Deno.writeFileSync(
      `${dir}/2024/06/01/2024-06-01T00-00-00.000000Z_stuck_w00.pcap/x`,
      new Uint8Array(1),
    );
    const retention = new Retention({ outDir: dir, maxBytes: 2300 });
    assert.deepEqual(retention.run(catalog), { deletedFiles: 1, deletedBytes: 1100 });
    assert.deepEqual(paths(catalog), [
      "2024/06/01/2024-06-01T00-00-00.000000Z_stuck_w00.pcap",
      "2024/06/01/2024-06-01T00-00-00.000000Z_new_w00.pcap",
    ]);
    assert.deepEqual(retention.run(catalog), { deletedFiles: 0, deletedBytes: 0 });
  }),
);

Deno.test("diskSpace agrees with df", async () => {
  const out = await new Deno.Command("df", {
    args: ["-B1", "--output=avail,size", "/tmp"],
    stdout: "piped",
  }).output();
  const [avail, size] = new TextDecoder().decode(out.stdout).trim().split("\n")[1].trim().split(
    /\s+/,
  )
    .map(Number);
  const ours = diskSpace("/tmp");
  assert.equal(ours.size, size);
  // Free space moves while other tests write: allow 64 MiB of drift.
  assert.ok(Math.abs(ours.free - avail) < 64 * 2 ** 20, `${ours.free} vs df ${avail}`);
  assert.throws(() => diskSpace("/nonexistent/cutcap"), Deno.errors.NotFound);
});

Deno.test(rootOnly("a tmpfs mount", {
  name: "min-free holds the floor on a real 8 MiB tmpfs",
  fn: withTempDir(async (dir) => {
    await run("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", dir]);
    try {
      const MiB = 2 ** 20;
      const files = [0, 1, 2, 3, 4, 5].map((i) => ({
        path: `2024/06/0${i + 1}/2024-06-0${i + 1}T00-00-00.000000Z_f${i}_w00.pcap`,
        firstTs: NOW - 6 * DAY + i * DAY,
        lastTs: NOW - 6 * DAY + i * DAY + 60,
        pcapBytes: MiB,
        indexBytes: 4096,
      }));
      const catalog = makeArchive(dir, files);
      const before = await dfAvail(dir);
      assert.ok(before < 2 * MiB, `tmpfs should be nearly full, ${before} bytes free`);

      const bySize = new Retention({ outDir: dir, minFree: { bytes: 4 * MiB } });
      const first = bySize.run(catalog);
      assert.ok(first.deletedFiles >= 2 && first.deletedFiles <= 3, JSON.stringify(first));
      assert.ok(await dfAvail(dir) >= 4 * MiB, "floor holds by df");
      assert.deepEqual(paths(catalog), files.slice(first.deletedFiles).map((f) => f.path));
      assert.deepEqual(bySize.run(catalog), { deletedFiles: 0, deletedBytes: 0 }, "stable");

      const byPercent = new Retention({ outDir: dir, minFree: { percent: 75 } });
      byPercent.run(catalog);
      assert.ok(await dfAvail(dir) >= 6 * MiB, "75% of 8 MiB free by df");
      assert.ok(catalog.size >= 1, "the newest file fits and stays");
      assert.equal(paths(catalog).at(-1), files.at(-1)!.path);
      for (const f of files) {
        const kept = catalog.get(f.path) !== undefined;
        assert.equal(exists(`${dir}/${f.path}`), kept, f.path);
        assert.equal(exists(`${dir}/${f.path}.idx`), kept, `${f.path}.idx`);
      }
      assertCatalogMatchesTree(dir, paths(catalog));
    } finally {
      await run("umount", [dir]);
    }
  }),
}));

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

async function dfAvail(dir: string): Promise<number> {
  const text = await run("df", ["-B1", "--output=avail", dir]);
  return Number(text.trim().split("\n")[1]);
}

Deno.test(
  "retention owns only cutcap's files, and --max-age counts from when a file was written",
  withTempDir((dir) => {
    const catalog = makeArchive(dir, [
      {
        path: "2024/05/01/2024-05-01T00-00-00.000000Z_eth0_w00.pcap",
        firstTs: NOW - 31 * DAY,
        lastTs: NOW - 31 * DAY + 60,
        pcapBytes: 1000,
      },
      // Copied in by hand: queried like the others, never deleted.
      {
        path: "2024/05/01/evidence-case42.pcap",
        firstTs: NOW - 31 * DAY,
        lastTs: NOW - 31 * DAY + 60,
        pcapBytes: 1000,
      },
      // A replay of month-old traffic written just now.
      {
        path: "2024/05/02/2024-05-02T00-00-00.000000Z_replay_w00.pcap",
        firstTs: NOW - 30 * DAY,
        lastTs: NOW - 30 * DAY + 60,
        pcapBytes: 1000,
      },
    ]);
    Deno.utimeSync(`${dir}/2024/05/02/2024-05-02T00-00-00.000000Z_replay_w00.pcap`, NOW, NOW);
    const byAge = new Retention({ outDir: dir, maxAge: DAY, now: () => NOW });
    assert.deepEqual(byAge.run(catalog), { deletedFiles: 1, deletedBytes: 1100 });
    assert.deepEqual(paths(catalog), [
      "2024/05/01/evidence-case42.pcap",
      "2024/05/02/2024-05-02T00-00-00.000000Z_replay_w00.pcap",
    ]);
    // Down to a 1-byte budget: cutcap's replay goes, the evidence stays.
    const bySize = new Retention({ outDir: dir, maxBytes: 1, now: () => NOW });
    assert.deepEqual(bySize.run(catalog), { deletedFiles: 1, deletedBytes: 1100 });
    assert.deepEqual(paths(catalog), ["2024/05/01/evidence-case42.pcap"]);
    assert.ok(exists(`${dir}/2024/05/01/evidence-case42.pcap`));
  }),
);
