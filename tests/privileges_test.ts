/**
 * Least privilege: the shipped `start` and `compile` tasks grant named permissions only (no -A,
 * environment variables, sys calls and programs listed one by one), and those permissions are enough
 * for a whole live capture that drops root with --user, serves queries and runs a
 * --large-flow-command; the README tells how to give the compiled binary capture rights instead.
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { archiveFiles, tcpdumpPackets } from "./support/oracle.ts";
import { metricSum } from "./support/robustness.ts";
import { createVeth } from "./support/netns.ts";
import { rootOnly } from "./support/root.ts";
import { freePort, sh, startCutcap } from "./support/process.ts";

const ROOT_DIR = new URL("..", import.meta.url).pathname;
const tasks = JSON.parse(await Deno.readTextFile(`${ROOT_DIR}deno.json`)).tasks as Record<
  string,
  string
>;

/** The permission flags of a task's cutcap command (compile: of `deno compile`, after its check). */
function permissionFlags(task: string): string[] {
  const command = task.split("&&").at(-1)!;
  return command.split(/\s+/).filter((w) => w.startsWith("--allow-") || w === "-A");
}

Deno.test("privileges: start and compile grant named permissions only, the same set", () => {
  const start = permissionFlags(tasks.start);
  const compile = permissionFlags(tasks.compile);
  assert.deepEqual(start, compile, "the binary gets what `deno task start` gets");
  assert.deepEqual(start, permissionFlags(tasks.cutcap), "`deno task cutcap` gets the same");
  assert.ok(!start.includes("-A") && !start.includes("--allow-all"));
  const byName = new Map(start.map((f) => {
    const [name, list] = f.split("=");
    return [name, list === undefined ? "*" : list];
  }));
  // Every variable, system call and program is named; reads and writes cannot be (--out is an
  // argument), nor FFI (the libpcap path is found at run time) and the listen address.
  assert.deepEqual(
    byName.get("--allow-env")!.split(",").sort(),
    [
      "CUTCAP_LIBPCAP",
      "CUTCAP_TOKEN",
      "NOTIFY_SOCKET",
      "SNF_NUM_RINGS",
      "WATCHDOG_PID",
      "WATCHDOG_USEC",
    ],
  );
  assert.equal(byName.get("--allow-sys"), "uid,hostname");
  assert.deepEqual(byName.get("--allow-run")!.split(",").sort(), ["apt-get", "sh"]);
  assert.deepEqual([...byName.keys()].sort(), [
    "--allow-env",
    "--allow-ffi",
    "--allow-net",
    "--allow-read",
    "--allow-run",
    "--allow-sys",
    "--allow-write",
  ]);
  const readme = Deno.readTextFileSync(`${ROOT_DIR}README.md`);
  assert.match(readme, /setcap cap_net_raw,cap_net_admin=eip \.\/cutcap/);
});

Deno.test(rootOnly("dropping privileges during a live capture", {
  name:
    "privileges: a live capture with the start task's permissions drops to nobody and keeps capturing",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-priv-" });
    const veth = await createVeth("pv");
    const port = freePort();
    const nobody = Number((await sh("id", ["-u", "nobody"])).trim());
    const nogroup = Number((await sh("id", ["-g", "nobody"])).trim());
    let sensor;
    try {
      await Deno.chmod(dir, 0o755);
      const out = `${dir}/out`;
      await Deno.mkdir(out);
      await Deno.chown(out, nobody, nogroup);
      const marker = `${dir}/large-flow-ran`;
      await Deno.writeTextFile(marker, "");
      await Deno.chmod(marker, 0o666);
      const before = `${dir}/before.pcap`;
      const after = `${dir}/after.pcap`;
      const a = await writeTrafficPcap(before, { seed: 11, packets: 5000, snaplen: 1500 });
      const b = await writeTrafficPcap(after, { seed: 12, packets: 20_000, snaplen: 1500 });
      // The start task's own flags, with the module path made absolute.
      const flags = permissionFlags(tasks.start);
      sensor = startCutcap(
        [
          "capture",
          ...["--interface", veth.outside, "--out", out, "--listen", `127.0.0.1:${port}`],
          ...["--user", "nobody", "--rotate-interval", "1s", "--byte-cutoff", "0"],
          ...["--stats-interval", "0", "--large-flow-threshold", "64KiB"],
          ...["--large-flow-command", `echo "$CUTCAP_FLOW_SRC $CUTCAP_FLOW_BYTES" >> ${marker}`],
        ],
        { denoArgs: ["run", ...flags] },
      );
      await sensor.waitFor(/Dropped privileges to nobody/);
      await sensor.waitFor(/Capturing on/);
      await veth.replay(before, { pps: 20_000 });
      // Every thread runs as nobody (real, effective, saved and filesystem ids) with no groups left.
      const ids = new Set<string>();
      for (const task of Deno.readDirSync(`/proc/${sensor.pid}/task`)) {
        const status = await Deno.readTextFile(`/proc/${sensor.pid}/task/${task.name}/status`);
        ids.add(/^Uid:\s+(.*)$/m.exec(status)![1].trim().split(/\s+/).join(","));
        ids.add(/^Gid:\s+(.*)$/m.exec(status)![1].trim().split(/\s+/).join(",") + " gid");
        assert.match(/^Groups:\s*(.*)$/m.exec(status)![1].trim(), new RegExp(`^(${nogroup})?$`));
      }
      assert.deepEqual(
        ids,
        new Set([
          `${nobody},${nobody},${nobody},${nobody}`,
          `${nogroup},${nogroup},${nogroup},${nogroup} gid`,
        ]),
      );
      // Capture continues after the drop: a second batch, queried over HTTP.
      await veth.replay(after, { pps: 20_000 });
      await sensor.waitFor(/moved .*packets=/);
      const url = `http://127.0.0.1:${port}`;
      let seen = 0;
      for (let i = 0; i < 50 && seen < a.packets + b.packets; i++) {
        seen = metricSum(await (await fetch(`${url}/metrics`)).text(), "cutcap_packets_seen_total");
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(seen, a.packets + b.packets, "every packet seen, before and after the drop");
      const code = await sensor.stop();
      assert.equal(code, 0, sensor.lines.join("\n"));
      assert.doesNotMatch(
        sensor.lines.join("\n"),
        /NotCapable|PermissionDenied|Requires .* access/,
      );
      let written = 0;
      for (const file of archiveFiles(out)) {
        assert.equal((await Deno.stat(file)).uid, nobody, `${file} written as nobody`);
        written += (await tcpdumpPackets(file)).length;
      }
      assert.equal(written, a.packets + b.packets, "tcpdump reads every packet from the files");
      const flowsReported = (await Deno.readTextFile(marker)).trim().split("\n").filter((l) => l);
      assert.ok(flowsReported.length > 0, "--large-flow-command ran under --allow-run=sh");
      console.log(
        `privileges: start-task permissions (${
          flags.join(" ")
        }); dropped to nobody (uid ${nobody}) ` +
          `in every thread; ${a.packets} + ${b.packets} packets before/after the drop all written ` +
          `as nobody (tcpdump: ${written}); ${flowsReported.length} large-flow commands ran; exit 0`,
      );
    } finally {
      if (sensor) await sensor.stop();
      await veth.remove();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
