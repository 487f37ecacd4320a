/**
 * Decompression bombs (issue 18, point 3): a 1.2 MB gzip and an 8 KB zstd pcap that inflate to
 * 256 MiB each (one member / one frame). `cutcap index` refuses them with a message naming the
 * bound, its peak RSS staying under 200 MB (the unbounded reader took 594 MB and wrote a 134 MB
 * index); `cutcap serve` over an archive holding them skips them at start, stays under 250 MB and
 * answers every packet of the good files.
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { cutcap, run } from "./support/oracle.ts";
import { rssMb, startServe } from "./support/robustness.ts";

const INFLATED = "256M";

/** A pcap header followed by INFLATED zero bytes (empty records), compressed by `tool`. */
async function bomb(path: string, tool: "gzip -1" | "zstd -q -19"): Promise<void> {
  await run("sh", [
    "-c",
    `{ printf '\\324\\303\\262\\241\\002\\000\\004\\000\\000\\000\\000\\000\\000\\000\\000\\000` +
    `\\000\\000\\004\\000\\001\\000\\000\\000'; head -c ${INFLATED} /dev/zero; } | ${tool} > '${path}'`,
  ]);
}

/** Peak RSS (MB) and result of a cutcap command run under GNU time. */
async function measured(args: string[]): Promise<{ code: number; stderr: string; peakMb: number }> {
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "maxrss=%M", Deno.execPath(), "run", "-A", "main.ts", ...args],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "null",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  const kb = Number(/maxrss=(\d+)/.exec(stderr)?.[1]);
  return { code: out.code, stderr, peakMb: kb * 1024 / 1e6 };
}

Deno.test({
  name: "decompression bombs: refused with bounded memory by index and serve",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "cc-bomb-" });
    try {
      await bomb(`${dir}/bomb.pcap.gz`, "gzip -1");
      await bomb(`${dir}/bomb.pcap.zst`, "zstd -q -19");

      await t.step("cutcap index refuses them under 200 MB", async () => {
        for (const name of ["bomb.pcap.gz", "bomb.pcap.zst"]) {
          const r = await measured(["index", `${dir}/${name}`]);
          assert.equal(r.code, 1, r.stderr);
          assert.match(r.stderr, /decompresses to more than 64 MiB/);
          assert.ok(r.peakMb < 200, `${name}: peak RSS ${r.peakMb.toFixed(0)} MB`);
          console.log(`${name}: refused, peak RSS ${r.peakMb.toFixed(0)} MB`);
        }
      });

      await t.step("serve skips them in its archive and answers the good files", async () => {
        const input = `${dir}/traffic.pcap`;
        await writeTrafficPcap(input, { seed: 3, packets: 5_000 });
        const out = `${dir}/archive`;
        const replay = await cutcap([
          ...["--read", input, "--out", out, "--listen", "off", "--stats-interval", "0"],
          ...["--byte-cutoff", "0", "--compress", "gzip"],
        ]);
        assert.equal(replay.code, 0, replay.stderr);
        const day = [...Deno.readDirSync(out)].find((e) => /^\d{4}$/.test(e.name))!.name;
        const month = [...Deno.readDirSync(`${out}/${day}`)][0].name;
        const date = [...Deno.readDirSync(`${out}/${day}/${month}`)][0].name;
        for (const name of ["bomb.pcap.gz", "bomb.pcap.zst"]) {
          await Deno.copyFile(`${dir}/${name}`, `${out}/${day}/${month}/${date}/${name}`);
        }
        Deno.removeSync(`${out}/catalog.json`);
        const server = await startServe(["--out", out]);
        try {
          const answer = new Uint8Array(
            await (await fetch(`${server.url}/query?q=${encodeURIComponent("after 2000-01-01")}`))
              .arrayBuffer(),
          );
          const tcpdump = await run("tcpdump", ["-r", "-", "-nn", "-q", "-#"], answer);
          const oracle = await run("tcpdump", ["-r", input, "-nn", "-q", "-#"]);
          const count = (text: string) =>
            text.split("\n").filter((l) => /^ *\d+ {2}/.test(l)).length;
          assert.equal(count(tcpdump), count(oracle), "every packet of the good files");
          const rss = rssMb(server.pid);
          assert.ok(rss < 250, `serve RSS ${rss.toFixed(0)} MB`);
          assert.ok(server.lines.some((l) => /skipping .*bomb\.pcap\.gz.*64 MiB/.test(l)));
          console.log(`serve with two bombs in the archive: RSS ${rss.toFixed(0)} MB`);
        } finally {
          await server.stop();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
