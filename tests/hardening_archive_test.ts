/**
 * The archive directory (issue 18, points 8 and 10): a running capture holds an exclusive lock on
 * --out, so a second capture (live or --read) is refused with a clear message and never "recovers"
 * the running sensor's open file, while `serve` shares the archive; and the half-written index and
 * catalog files a crash leaves are removed at the next start.
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { cutcap, run } from "./support/oracle.ts";
import { rootOnly } from "./support/root.ts";
import { freePort, startCutcap, startServe } from "./support/process.ts";
import { exists } from "./support/files.ts";

Deno.test(rootOnly("a live capture on lo", {
  name: "a second capture on the same --out is refused; serve shares it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-archive-lock-" });
    const out = `${dir}/out`;
    const input = `${dir}/traffic.pcap`;
    await writeTrafficPcap(input, { seed: 8, packets: 2_000 });
    const sensor = startCutcap([
      ...["-i", "lo", "--out", out, "--listen", "off", "--stats-interval", "0"],
      ...["--rotate-interval", "0"],
    ]);
    try {
      await sensor.waitFor(/Capturing on lo/);
      // SYN and RST on lo, three times: an open file in --out.
      const port = freePort();
      for (let i = 0; i < 3; i++) {
        await Deno.connect({ hostname: "127.0.0.1", port }).then((c) => c.close(), () => {});
      }
      await new Promise((r) => setTimeout(r, 500));
      const second = await cutcap(["--read", input, "--out", out, "--listen", "off"]);
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, /Archive .* is in use by another cutcap capture/);
      assert.doesNotMatch(second.stderr, /Recover/);
      const live = await cutcap(["-i", "lo", "--out", out, "--listen", "off"]);
      assert.equal(live.code, 1, live.stderr);
      assert.match(live.stderr, /in use by another cutcap capture/);

      const server = await startServe(out);
      const health = await fetch(`${server.url}/healthz`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
      assert.equal(await server.stop(), 0);

      assert.equal(await sensor.stop(), 0, sensor.lines.join("\n"));
      const tcpdump = await run("tcpdump", ["-r", archivePcap(out), "-nn", `tcp port ${port}`]);
      assert.equal(tcpdump.trim().split("\n").length, 6, tcpdump);
      // The lock is gone with the sensor: a new capture may start.
      const after = await cutcap(["--read", input, "--out", out, "--listen", "off"]);
      assert.equal(after.code, 0, after.stderr);
    } finally {
      await sensor.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

/** The one finalized pcap of a run in `out`. */
function archivePcap(out: string): string {
  const found = archivePcaps(out);
  assert.equal(found.length, 1, found.join(" "));
  return found[0];
}

Deno.test("half-written index and catalog files from a crash are removed at start", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-archive-temps-" });
  try {
    const out = `${dir}/out`;
    const input = `${dir}/traffic.pcap`;
    await writeTrafficPcap(input, { seed: 9, packets: 500 });
    const first = await cutcap(["--read", input, "--out", out, "--listen", "off"]);
    assert.equal(first.code, 0, first.stderr);
    const day = `${out}/${archivePcap(out).slice(out.length + 1).split("/").slice(0, 3).join("/")}`;
    const leaks = [
      `${day}/.x.pcap.idx.${crypto.randomUUID()}.tmp`,
      `${day}/.x.pcap.idx.4242.tmp`,
      `${out}/.catalog.json.${crypto.randomUUID()}.tmp`,
    ];
    for (const leak of leaks) Deno.writeFileSync(leak, new Uint8Array(70_000));
    const second = await cutcap(["--read", input, "--out", out, "--listen", "off"]);
    assert.equal(second.code, 0, second.stderr);
    for (const leak of leaks) assert.ok(!exists(leak), `${leak} removed`);
    assert.equal(second.stderr.split("\n").filter((l) => /Recovery removed/.test(l)).length, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "serve sees files another process adds and forgets files it deletes",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-archive-rescan-" });
    const out = `${dir}/out`;
    const inputs = [`${dir}/a.pcap`, `${dir}/b.pcap`];
    const first = await writeTrafficPcap(inputs[0], {
      seed: 1,
      packets: 800,
      startTs: 1_800_000_000,
    });
    await writeTrafficPcap(inputs[1], { seed: 2, packets: 600, startTs: 1_800_100_000 });
    const replay = (input: string) =>
      cutcap(["--read", input, "--out", out, "--listen", "off", "--byte-cutoff", "0"]);
    assert.equal((await replay(inputs[0])).code, 0);
    const server = await startServe(out);
    const packets = async (): Promise<number> => {
      const r = await fetch(`${server.url}/query?q=${encodeURIComponent("after 2000-01-01")}`);
      assert.equal(r.status, 200);
      const text = await run(
        "tcpdump",
        ["-r", "-", "-nn", "-q"],
        new Uint8Array(await r.arrayBuffer()),
      );
      return text.trim() === "" ? 0 : text.trim().split("\n").length;
    };
    const waitFor = async (want: number): Promise<number> => {
      let got = -1;
      for (let i = 0; i < 40 && got !== want; i++) {
        got = await packets();
        if (got !== want) await new Promise((r) => setTimeout(r, 250));
      }
      return got;
    };
    try {
      assert.equal(await packets(), 800);
      assert.equal((await replay(inputs[1])).code, 0);
      assert.equal(await waitFor(1400), 1400, "the new file is seen within 10 s");
      const second = archivePcaps(out).find((p) => p.includes("/2027/01/16/"))!; // b.pcap
      Deno.removeSync(second);
      Deno.removeSync(`${second}.idx`);
      assert.equal(await packets(), 800, "a vanished file is skipped at once");
      const flows = await fetch(`${server.url}/flows?q=ip`);
      assert.equal(flows.status, 200);
      // Only a.pcap's flows are left: its IPv4 flows, as the generator made them.
      const ipv4Flows = first.flows.kind.filter((k) => k === 4).length;
      assert.equal((await flows.json() as unknown[]).length, ipv4Flows);
      await server.waitFor(/Catalog: 0 file\(s\) added, 1 removed/, 10_000);
      assert.equal(await packets(), 800);
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Every finalized pcap in `out`. */
function archivePcaps(out: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      if (e.isDirectory) walk(`${d}/${e.name}`);
      else if (/^[^.].*\.pcap$/.test(e.name)) found.push(`${d}/${e.name}`);
    }
  };
  walk(out);
  return found;
}

Deno.test(rootOnly("chown to another group", {
  name: "archive files are 0640 and folders 0750; --group gives one group read access",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-archive-modes-" });
    try {
      await Deno.chmod(dir, 0o755);
      const input = `${dir}/traffic.pcap`;
      await writeTrafficPcap(input, { seed: 6, packets: 300 });
      const daemonGid = Number((await run("getent", ["group", "daemon"])).split(":")[2]);
      for (const group of [undefined, "daemon"]) {
        const out = `${dir}/out-${group ?? "default"}`;
        const args = ["--read", input, "--out", out, "--listen", "off"];
        const r = await cutcap(group ? [...args, "--group", group] : args);
        assert.equal(r.code, 0, r.stderr);
        const pcap = archivePcap(out);
        for (const file of [pcap, `${pcap}.idx`, `${out}/catalog.json`]) {
          const info = Deno.statSync(file);
          assert.equal((info.mode ?? 0) & 0o7777, 0o640, `${file} mode`);
          if (group) assert.equal(info.gid, daemonGid, `${file} group`);
        }
        for (let d = pcap.slice(0, pcap.lastIndexOf("/")); d.length >= out.length;) {
          const info = Deno.statSync(d);
          assert.equal((info.mode ?? 0) & 0o7777, group ? 0o2750 : 0o750, `${d} mode`);
          if (group) assert.equal(info.gid, daemonGid, `${d} group`);
          d = d.slice(0, d.lastIndexOf("/"));
        }
        // Another local account (nobody, not in the group) cannot read captured traffic.
        const read = await new Deno.Command("setpriv", {
          args: ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", pcap],
          stdout: "null",
          stderr: "piped",
        }).output();
        assert.equal(read.success, false);
        assert.match(new TextDecoder().decode(read.stderr), /Permission denied/);
      }
      const bad = await cutcap(["--read", input, "--out", `${dir}/x`, "--group", "no-such-grp"]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /Unknown --group "no-such-grp"/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

Deno.test(rootOnly("a live capture on lo", {
  name: "without --user, CAP_NET_RAW/CAP_NET_ADMIN are off in the main and worker threads",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-caps-" });
    const sensor = startCutcap([
      ...["-i", "lo", "--out", `${dir}/out`, "--listen", "off", "--stats-interval", "0"],
      ...["--workers", "2"],
    ]);
    try {
      await sensor.waitFor(/CAP_NET_RAW and CAP_NET_ADMIN are off/);
      const capture = (1n << 12n) | (1n << 13n);
      const threads: { name: string; effective: bigint }[] = [];
      for (const task of Deno.readDirSync(`/proc/${sensor.pid}/task`)) {
        const base = `/proc/${sensor.pid}/task/${task.name}`;
        const status = Deno.readTextFileSync(`${base}/status`);
        threads.push({
          name: task.name === String(sensor.pid)
            ? "main"
            : Deno.readTextFileSync(`${base}/comm`).trim(),
          effective: BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(status)![1]}`),
        });
      }
      const checked = threads.filter((t) => t.name === "main" || t.name.startsWith("worker-"));
      assert.equal(checked.length, 3, JSON.stringify(threads.map((t) => t.name)));
      for (const t of checked) assert.equal(t.effective & capture, 0n, `${t.name} keeps them`);
      // Still permitted: the capture goes on (a worker turns them on to reopen its interface).
      const port = freePort();
      await Deno.connect({ hostname: "127.0.0.1", port }).then((c) => c.close(), () => {});
      assert.equal(await sensor.stop(), 0, sensor.lines.join("\n"));
    } finally {
      await sensor.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
