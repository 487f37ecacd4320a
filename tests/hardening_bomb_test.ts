/**
 * Decompression bombs (issue 18, point 3): a 1.2 MB gzip and an 8 KB zstd pcap that inflate to
 * 256 MiB each (one member / one frame). They are stream-decompressed with bounded buffers, and
 * `cutcap index` refuses them at their first record (wire length 0: garbage, not a packet), its
 * peak RSS staying under 200 MB (the unbounded reader took 594 MB and wrote a 134 MB index);
 * `cutcap serve` over an archive holding them skips them at start, stays under 250 MB and answers
 * every packet of the good files.
 *
 * Foreign files compressed as one stream larger than a block (`tcpdump -w - | gzip`): ~204 MB of
 * generated traffic as one gzip member and one zstd frame are indexed with a peak RSS under
 * 130 MB (measured 84-93), and a query of them (stream-decompressed from the start, answering
 * the hosts of the first and the last packet) equals tcpdump's selection of the plain file
 * packet for packet, serve's peak RSS staying under 150 MB (measured 88-89).
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { cutcap, parseTcpdumpHex, run, tcpdumpPackets } from "./support/oracle.ts";
import { rssMb } from "./support/robustness.ts";
import { startServe } from "./support/process.ts";

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
          assert.match(
            r.stderr,
            new RegExp(`Cannot index \\S*${name}: record 1 has wire length 0`),
          );
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
        const server = await startServe(out);
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
          assert.ok(server.lines.some((l) => /skipping .*bomb\.pcap\.gz.*wire length 0/.test(l)));
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

/** Peak resident set size of process `pid` in MB (10^6 bytes), from /proc. */
function peakRssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024 / 1e6;
}

Deno.test({
  name: "one gzip/zstd stream larger than a block: indexed and queried with bounded memory",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "cc-stream-" });
    try {
      const plain = `${dir}/big.pcap`;
      await writeTrafficPcap(plain, { seed: 7, packets: 250_000 });
      const size = Deno.statSync(plain).size;
      assert.ok(size > 180e6, `${size} bytes of traffic`);
      await run("sh", ["-c", `gzip -1 -c '${plain}' > '${dir}/big.pcap.gz'`]);
      await run("sh", ["-c", `zstd -q -3 -c '${plain}' > '${dir}/big.pcap.zst'`]);
      // The hosts of the first and the last packet: the answer spans the whole stream.
      const ips = /IP (\d+\.\d+\.\d+\.\d+)/g;
      const lines = (await run("tcpdump", ["-r", plain, "-nn", "ip"])).trimEnd().split("\n");
      const hosts = [lines[0], lines.at(-1)!].map((l) => new RegExp(ips).exec(l)![1]);
      const filter = hosts.map((h) => `host ${h}`).join(" or ");
      // cutcap's host terms see through VLAN tags (802.1Q, and QinQ whose outer tag is 0x88a8,
      // which tcpdump's vlan keyword does not take here): tcpdump needs them spelled out, the
      // byte offsets before any `vlan` (which moves the offsets of what follows it).
      const hex = (ip: string) =>
        "0x" + ip.split(".").map((b) => Number(b).toString(16).padStart(2, "0")).join("");
      const qinq = "ether[12:2]=0x88a8 and ether[16:2]=0x8100 and ether[20:2]=0x0800 and (" +
        hosts.map((h) => `ether[34:4]=${hex(h)} or ether[38:4]=${hex(h)}`).join(" or ") + ")";
      const oracle = await tcpdumpPackets(plain, {
        filter: `(${filter}) or (${qinq}) or (vlan and (${filter})) or ` +
          `(vlan and vlan and (${filter}))`,
      });
      assert.ok(oracle.length > 0);

      for (const name of ["big.pcap.gz", "big.pcap.zst"]) {
        await t.step(`${name}: indexed under 130 MB, a query equals tcpdump`, async () => {
          const archive = `${dir}/archive-${name}`;
          const r = await measured(["index", "--out", archive, `${dir}/${name}`]);
          assert.equal(r.code, 0, r.stderr);
          assert.ok(r.peakMb < 130, `${name}: index peak RSS ${r.peakMb.toFixed(0)} MB`);
          const server = await startServe(archive);
          try {
            const url = `${server.url}/query?q=${encodeURIComponent(filter)}`;
            const answer = new Uint8Array(await (await fetch(url)).arrayBuffer());
            const text = await run("tcpdump", ["-r", "-", "-tt", "-nn", "-xx", "-K"], answer);
            const got = parseTcpdumpHex(text);
            assert.equal(got.length, oracle.length, "packets");
            assert.deepEqual(got, oracle);
            const peak = peakRssMb(server.pid);
            assert.ok(peak < 150, `${name}: serve peak RSS ${peak.toFixed(0)} MB`);
            console.log(
              `${name}: index peak ${r.peakMb.toFixed(0)} MB, ${got.length} packets queried, ` +
                `serve peak ${peak.toFixed(0)} MB (uncompressed ${(size / 1e6).toFixed(0)} MB)`,
            );
          } finally {
            await server.stop();
          }
        });
      }

      for (const name of ["big.pcap.gz", "big.pcap.zst"]) {
        await t.step(`${name} cut off halfway: its complete records stay queryable`, async () => {
          const cut = `${dir}/cut-${name}`;
          const whole = await Deno.readFile(`${dir}/${name}`);
          await Deno.writeFile(cut, whole.subarray(0, Math.floor(whole.length / 2)));
          const archive = `${dir}/archive-cut-${name}`;
          const r = await cutcap(["index", "--out", archive, cut]);
          assert.equal(r.code, 0, r.stderr);
          const kept = Number(/[:,] (\d+) packets, /.exec(r.stdout)?.[1]);
          assert.match(r.stdout, /stopped early: truncated (gzip|zstd) data at byte \d+/);
          assert.ok(kept > 1000, r.stdout);
          const server = await startServe(archive);
          try {
            const url = `${server.url}/query?q=${encodeURIComponent("after 2000-01-01")}`;
            const answer = new Uint8Array(await (await fetch(url)).arrayBuffer());
            // The first `kept` records of the plain file, byte for byte (after the file header).
            const oracle = await new Deno.Command("tcpdump", {
              args: ["-r", plain, "-c", String(kept), "-w", "-"],
              stdout: "piped",
              stderr: "null",
            }).output();
            assert.equal(answer.length, oracle.stdout.length);
            assert.deepEqual(answer.subarray(24), oracle.stdout.subarray(24));
            console.log(`${name} cut in half: ${kept} packets kept and answered`);
          } finally {
            await server.stop();
          }
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
