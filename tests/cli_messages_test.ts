/**
 * Messages an operator meets in the first hour, checked word for word with their exit codes: the
 * configuration is validated before the server binds, a busy --listen names the address, paths are
 * named once, a start that fails says only why, the start line says where things go, --user works
 * on a fresh directory (or says which chown to run), and an interface given twice is refused.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { archiveFiles, cutcap } from "./support/oracle.ts";
import { rootOnly } from "./support/root.ts";
import { freePort, sh, startCutcap } from "./support/process.ts";
import { rootTest } from "./support/netns.ts";

const STAMP = String.raw`\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}`;
const { pcap } = generateTrafficBytes({ seed: 7, packets: 300 });
const input = await Deno.makeTempFile({ prefix: "cc-msg-", suffix: ".pcap" });
await Deno.writeFile(input, pcap);

/** Runs cutcap; returns exit code and output. */
async function outcome(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await cutcap(args);
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

Deno.test("a busy --listen is named; a bad filter is reported before anything binds", async (t) => {
  const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (holder.addr as Deno.NetAddr).port;
  const out = await Deno.makeTempDir({ prefix: "cc-msg-busy-" });
  try {
    assert.deepEqual(
      await outcome(["--read", input, "--out", out, "--listen", `127.0.0.1:${port}`]),
      {
        code: 1,
        stdout: "",
        stderr: `cutcap: Cannot listen on 127.0.0.1:${port} (--listen): the address is in use ` +
          "by another program; stop it or give another --listen\n",
      },
    );
    assert.deepEqual(await outcome(["serve", "--out", out, "--listen", `127.0.0.1:${port}`]), {
      code: 1,
      stdout: "",
      stderr: `cutcap: Cannot listen on 127.0.0.1:${port} (--listen): the address is in use ` +
        "by another program; stop it or give another --listen\n",
    });
    const badFilter = ["--out", out, "--listen", `127.0.0.1:${port}`, "-f", "tcp portt 80"];
    const replay = await outcome(["--read", input, ...badFilter]);
    assert.equal(replay.code, 1);
    assert.match(replay.stderr, /^cutcap: Bad BPF filter "tcp portt 80": .*syntax error\n$/);
    await t.step(rootOnly("a live capture on lo", {
      name: "the same for a live capture",
      async fn() {
        const live = await outcome(["--interface", "lo", ...badFilter]);
        assert.deepEqual(live, { ...replay, stderr: live.stderr });
        assert.match(live.stderr, /^cutcap: Bad BPF filter "tcp portt 80": .*syntax error\n$/);
        assert.deepEqual(archiveFiles(out), []);
      },
    }));
  } finally {
    holder.close();
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("paths are named once, with what to do", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-msg-paths-" });
  try {
    assert.deepEqual(await outcome(["serve", "--out", `${dir}/nonexistent`]), {
      code: 1,
      stdout: "",
      stderr: `cutcap: Archive directory ${dir}/nonexistent does not exist: give --out the ` +
        "directory a capture writes to\n",
    });
    assert.deepEqual(await outcome(["--read", `${dir}/nonexistent.pcap`, "--listen", "off"]), {
      code: 1,
      stdout: "",
      stderr: `cutcap: ${dir}/nonexistent.pcap: No such file or directory\n`,
    });
    assert.deepEqual(await outcome(["flows", ""]), {
      code: 2,
      stdout: "",
      stderr: "cutcap: Missing query: e.g. cutcap flows 'host 198.18.0.1 and after 1h ago'\n",
    });
    assert.deepEqual(await outcome(["-i", "vb,vb", "--listen", "off"]), {
      code: 2,
      stdout: "",
      stderr: "cutcap: Interface vb is given twice in --interface: each interface is captured " +
        "once (--workers N spreads one over N workers)\n",
    });
    assert.deepEqual(await outcome(["-i", "vb", "-i", "vb", "--listen", "off"]), {
      code: 2,
      stdout: "",
      stderr: "cutcap: Interface vb is given twice in --interface: each interface is captured " +
        "once (--workers N spreads one over N workers)\n",
    });
    assert.deepEqual(await outcome(["--buffer-size", "4GiB"]), {
      code: 2,
      stdout: "",
      stderr: 'cutcap: Invalid --buffer-size "4GiB": expected at most 2GiB - 1 (2147483647)\n',
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the start line names source, workers, output, cutoff and server; JSON lines carry fields", async () => {
  const out = await Deno.makeTempDir({ prefix: "cc-msg-start-" });
  const port = freePort();
  try {
    const text = await outcome([
      ...["--read", input, "--out", out, "--listen", `127.0.0.1:${port}`],
      ...["--byte-cutoff", "1000", "--packet-cutoff", "7", "--stats-interval", "1h"],
    ]);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stderr.trimEnd().split("\n");
    assert.match(lines[0], new RegExp(`^${STAMP} Started worker 0 on cc-msg-\\S+$`));
    assert.equal(
      lines[1].slice(20),
      `Capturing on 1 file with 1 worker out=${out} byte_cutoff=1000 packet_cutoff=7 ` +
        `listen=http://127.0.0.1:${port}`,
    );
    const file = archiveFiles(out)[0];
    assert.match(lines[2], new RegExp(`^${STAMP} moved ${file} packets=\\d+$`));
    assert.match(lines[3], new RegExp(`^${STAMP} if=cc-msg-\\S+ W=00 flows=0 removed=\\d+ `));
    assert.match(lines[4], new RegExp(`^${STAMP} Capture finished$`));
    assert.equal(lines.length, 5, text.stderr);

    const json = await outcome([
      ...["--read", input, "--out", out, "--listen", "off", "--log-format", "json"],
      ...["--stats-interval", "1h"],
    ]);
    assert.equal(json.code, 0, json.stderr);
    const records = json.stderr.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(records.map((r) => r.msg), [
      "Started worker 0 on " + records[0].msg.slice(20),
      "Capturing on 1 file with 1 worker",
      "moved",
      "stats",
      "Capture finished",
    ]);
    assert.equal(records[1].out, out);
    assert.equal(records[1].byte_cutoff, 65536);
    assert.equal(records[1].listen, undefined);
    assert.equal(typeof records[2].path, "string");
    assert.equal(records[2].packets, 300);
    assert.equal(records[3].pkts, 300);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("cutcap serve says why it stops", async () => {
  const out = await Deno.makeTempDir({ prefix: "cc-msg-serve-" });
  try {
    const serve = startCutcap(["serve", "--out", out, "--listen", "127.0.0.1:0"]);
    await serve.waitFor(/Serving /);
    serve.kill("SIGTERM");
    const exit = await serve.exited;
    assert.equal(exit.code, 0);
    const lines = exit.stderr.trimEnd().split("\n").map((l) => l.slice(20));
    assert.deepEqual(
      lines.slice(-2),
      ["SIGTERM received: stopping the server", "Server stopped"],
      exit.stderr,
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

rootTest(
  "a start that fails says only why: no zeroed stats line, no 'Capture finished'",
  async ({ dir, veth }) => {
    const name = veth!.outside;
    await sh("ip", ["link", "set", name, "down"]);
    const r = await outcome([
      "-i",
      name,
      "--out",
      `${dir}/out`,
      "--listen",
      "off",
      "--stats-interval",
      "1s",
    ]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `^${STAMP} Interface ${name} is down: bring it up first \\(ip link set ${name} up\\)\n$`,
      ),
    );
  },
  { veth: "dn", why: "a capture on a veth that is down" },
);

Deno.test(rootOnly("--user (dropping privileges)", {
  name: "--user: a directory cutcap creates is the user's; one it cannot use gets the chown",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "cc-msg-user-" });
    try {
      await Deno.chmod(dir, 0o755);
      const fresh = `${dir}/fresh/out`;
      const ok = await outcome([
        ...["--read", input, "--out", fresh, "--listen", "off", "--user", "nobody"],
        ...["--stats-interval", "0"],
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      const nobody = Number(
        new TextDecoder().decode(
          (await new Deno.Command("id", { args: ["-u", "nobody"] }).output()).stdout,
        ),
      );
      assert.equal((await Deno.stat(fresh)).uid, nobody);
      const files = archiveFiles(fresh);
      assert.equal(files.length, 1);
      assert.equal((await Deno.stat(files[0])).uid, nobody, "written as nobody");

      const rootOwned = `${dir}/root-owned`;
      await Deno.mkdir(rootOwned, { mode: 0o755 });
      assert.deepEqual(
        await outcome(["--read", input, "--out", rootOwned, "--listen", "off", "--user", "nobody"]),
        {
          code: 1,
          stdout: "",
          stderr: `cutcap: Output directory ${rootOwned} is not writable by nobody: run chown -R ` +
            `nobody: ${rootOwned}, or give --out a directory nobody can write\n`,
        },
      );
      const closed = `${dir}/closed`;
      await Deno.mkdir(closed, { mode: 0o700 });
      await Deno.chmod(closed, 0o700);
      assert.deepEqual(
        await outcome([
          "--read",
          input,
          "--out",
          `${closed}/out`,
          "--listen",
          "off",
          "--user",
          "nobody",
        ]),
        {
          code: 1,
          stdout: "",
          stderr: `cutcap: Output directory ${closed}/out cannot be reached by nobody: ${await Deno
            .realPath(closed)} is not searchable (chmod o+x ${await Deno.realPath(
              closed,
            )}, or give --out a directory elsewhere)\n`,
        },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
