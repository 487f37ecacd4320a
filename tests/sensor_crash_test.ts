/**
 * A crash mid-write, end to end: a live capture that keeps writing (tcpreplay in a loop) is SIGKILLed,
 * leaving its hidden temporary file. The next start of cutcap in the same --out repairs it: the file is
 * finalized under its final name with an index, keeps every record tcpdump can read from a copy taken
 * before the restart, no finished file changes, and `cutcap serve` + `cutcap query` find its packets.
 * For --compress none, gzip and zstd. Needs root.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { rootTest, TEST_NETS } from "./support/netns.ts";
import {
  archiveFiles,
  cutcap,
  type OraclePacket,
  parseTcpdumpHex,
  run,
  tcpdumpPackets,
} from "./support/oracle.ts";
import { freePort, sleep, startCutcap } from "./support/process.ts";
import { exists, tempFiles } from "./support/files.ts";

/**
 * Every file under `dir` with its SHA-256, except the catalog (which a restart rewrites) and the
 * open files' states in `.open/` (a restart removes those of the crashed run).
 */
async function hashTree(dir: string): Promise<Map<string, string>> {
  const hashes = new Map<string, string>();
  const walk = async (at: string) => {
    for (const entry of Deno.readDirSync(at)) {
      const path = `${at}/${entry.name}`;
      if (entry.isDirectory) {
        if (entry.name !== ".open") await walk(path);
      } else if (entry.name !== "catalog.json" && !entry.name.endsWith(".tmp")) {
        const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
        hashes.set(path, Array.from(new Uint8Array(digest), (b) => b.toString(16)).join(""));
      }
    }
  };
  await walk(dir);
  return hashes;
}

/**
 * The records tcpdump reads from a damaged file, the way an operator would get them: zcat/zstdcat
 * write out what they can decode before they complain, tcpdump reads up to the truncation.
 */
async function readableRecords(path: string): Promise<OraclePacket[]> {
  let bytes = await Deno.readFile(path);
  const tool = path.includes(".pcap.gz.") ? "zcat" : path.includes(".pcap.zst.") ? "zstdcat" : "";
  if (tool !== "") {
    const child = new Deno.Command(tool, {
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const writer = child.stdin.getWriter();
    const fed = writer.write(bytes).then(() => writer.close()).catch(() => {});
    bytes = (await child.output()).stdout;
    await fed;
  }
  const text = await run("tcpdump", ["-r", "-", "-tt", "-nn", "-xx", "-K"], bytes, {
    allowFailure: true,
  });
  return parseTcpdumpHex(text);
}

/** tcpdump's "1700000000.123456" as whole microseconds. */
function micros(ts: string): number {
  const [sec, frac] = ts.split(".");
  return Number(sec) * 1e6 + Number(frac.padEnd(6, "0").slice(0, 6));
}

/** RFC 3339 with microseconds, for the query language. */
function rfc3339(us: number): string {
  const sec = Math.floor(us / 1e6);
  const frac = String(us - sec * 1e6).padStart(6, "0");
  return `${new Date(sec * 1000).toISOString().slice(0, 19)}.${frac}Z`;
}

for (const compress of ["none", "gzip", "zstd"] as const) {
  rootTest(
    `crash (${compress}): after SIGKILL mid-write the restart repairs, indexes and serves the temporary file`,
    async ({ dir, veth }) => {
      const { pcap } = generateTrafficBytes({
        seed: 21,
        packets: 20000,
        vlanShare: 0,
        nonIpShare: 0,
      });
      await Deno.writeFile(`${dir}/loop.pcap`, pcap);
      const tiny = generateTrafficBytes({ seed: 22, packets: 10, startTs: 1600000000 });
      await Deno.writeFile(`${dir}/tiny.pcap`, tiny.pcap);
      const out = `${dir}/out`;

      const sensor = startCutcap([
        ...["--interface", veth!.outside, "--out", out, "--compress", compress],
        ...["--rotate-size", "4MiB", "--byte-cutoff", "0", "--packet-cutoff", "0"],
        ...["--listen", "off", "--filter", TEST_NETS],
      ]);
      const traffic = veth!.replayForever(`${dir}/loop.pcap`, { pps: 20000 });
      let copy = "";
      let tmp = "";
      try {
        await sensor.waitFor(/Capturing on/);
        await sensor.waitFor(/ moved \S+ packets=\d+/, 20_000);
        // Wait for a temporary file with blocks on disk, then kill without warning.
        const deadline = Date.now() + 20_000;
        for (;;) {
          const sized = tempFiles(out).filter((p) => Deno.statSync(p).size > 100_000);
          if (sized.length > 0) {
            sensor.kill("SIGKILL");
            break;
          }
          if (Date.now() > deadline) throw new Error(`No temporary file grew:\n${sensor.log()}`);
          await sleep(20);
        }
        const exit = await sensor.exited;
        assert.equal(exit.signal, "SIGKILL");
      } finally {
        sensor.kill("SIGKILL");
        await sensor.exited;
        await traffic.stop();
      }
      const temps = tempFiles(out);
      assert.equal(temps.length, 1, `one hidden temporary file after the crash: ${temps}`);
      tmp = temps[0];
      assert.match(tmp, /\/\.[^/]+\.pcap(\.gz|\.zst)?\.tmp$/);
      copy = `${dir}/crashed-copy${tmp.slice(tmp.indexOf(".pcap"))}`;
      await Deno.copyFile(tmp, copy);
      const survivors = await readableRecords(copy);
      assert.ok(survivors.length > 0, "the temporary file holds complete records");
      const before = await hashTree(out);
      assert.ok(
        [...before.keys()].some((p) => /\.pcap(\.gz|\.zst)?$/.test(p)),
        "finished files exist before the restart",
      );

      // Restart: any capture run repairs first; a short --read keeps it quick.
      const restart = await cutcap([
        ...["--read", `${dir}/tiny.pcap`, "--out", out, "--compress", compress],
        ...["--listen", "off"],
      ]);
      assert.equal(restart.code, 0, restart.stderr);
      assert.match(restart.stderr, /Recovered 1 file\(s\) after a crash/);
      assert.deepEqual(tempFiles(out), [], "no temporary file after the restart");
      assert.equal(
        exists(`${out}/.open`),
        false,
        "the crashed run's open-file states are gone",
      );
      const repaired = tmp.replace(/\/\.([^/]+)\.tmp$/, "/$1");
      const after = await hashTree(out);
      for (const [path, hash] of before) {
        assert.equal(after.get(path), hash, `${path} unchanged by the restart`);
      }
      const added = [...after.keys()].filter((p) => !before.has(p)).sort();
      assert.deepEqual(
        added.filter((p) => p.startsWith(repaired)),
        [repaired, `${repaired}.idx`],
        "the temporary file is finalized under its final name, with its index",
      );
      assert.equal(
        added.length,
        4,
        `only the repaired file and the --read output are new: ${added}`,
      );
      const kept = await tcpdumpPackets(repaired, { allowFailure: false });
      assert.equal(kept.length, survivors.length, "every complete record is kept");
      assert.deepEqual(kept, survivors, "same records, same bytes, same times");

      // Queryable: the repaired file's time range through serve + query, against tcpdump over
      // every file of the archive restricted to the same range.
      const from = micros(kept[0].ts);
      const to = micros(kept.at(-1)!.ts) + 1;
      const expected: OraclePacket[] = [];
      for (const file of archiveFiles(out)) {
        for (const p of await tcpdumpPackets(file)) {
          if (micros(p.ts) >= from && micros(p.ts) < to) expected.push(p);
        }
      }
      const port = freePort();
      const server = startCutcap(["serve", "--out", out, "--listen", `127.0.0.1:${port}`]);
      try {
        await server.waitFor(/Serving /);
        const result = `${dir}/query.pcap`;
        const query = await cutcap([
          ...["query", "--server", `http://127.0.0.1:${port}`, "-w", result],
          `after ${rfc3339(from)} and before ${rfc3339(to)}`,
        ]);
        assert.equal(query.code, 0, query.stderr);
        const answered = await tcpdumpPackets(result);
        assert.ok(answered.length >= kept.length);
        assert.deepEqual(answered, expected, "the query returns the repaired file's packets");
      } finally {
        server.kill("SIGTERM");
        await server.exited;
      }
    },
    { veth: "c" },
  );
}
