/**
 * The sensor process's life: signals finish files and exit 0, a second signal exits at once, an offline
 * replay ends by itself, `cutcap version`, JSON logs, /healthz while capturing, `--user` dropping root
 * after the handles are open, and systemd's READY=1 / STOPPING=1. Live parts capture on a veth end while
 * tcpreplay sends from a namespace; outputs are read with tcpdump. Needs root.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { rootTest, TEST_NETS, type Veth } from "./support/netns.ts";
import { archiveFiles, cutcap, run, tcpdumpPackets } from "./support/oracle.ts";

/** Writes a small generated capture (no ARP, no VLAN: everything matches TEST_NETS). */
async function smallCapture(path: string, packets: number, seed = 5): Promise<void> {
  const { pcap } = generateTrafficBytes({ seed, packets, vlanShare: 0, nonIpShare: 0 });
  await Deno.writeFile(path, pcap);
}

async function packetsIn(out: string): Promise<number> {
  let n = 0;
  for (const file of archiveFiles(out)) n += (await tcpdumpPackets(file)).length;
  return n;
}

function liveArgs(veth: Veth, out: string, extra: string[] = []): string[] {
  return [
    ...["--interface", veth.outside, "--out", out, "--filter", TEST_NETS],
    ...["--byte-cutoff", "0", "--rotate-interval", "1m", "--listen", "off"],
    ...extra,
  ];
}

rootTest("SIGINT and SIGTERM finish the open file and exit 0", async ({ dir, veth }) => {
  await smallCapture(`${dir}/in.pcap`, 3000);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const out = `${dir}/out-${signal}`;
    const sensor = startCutcap(liveArgs(veth!, out));
    try {
      await sensor.waitFor(/Capturing on/);
      const sent = await veth!.replay(`${dir}/in.pcap`);
      // The packets sit in a temporary file (no rotation within a minute) until the signal.
      const deadline = Date.now() + 10_000;
      while (tempFiles(out).length === 0 && Date.now() < deadline) await sleep(100);
      assert.equal(tempFiles(out).length, 1, "a file is being written");
      sensor.kill(signal);
      const exit = await sensor.exited;
      assert.equal(exit.code, 0, exit.stderr);
      assert.match(exit.stderr, /Signal received: finishing files/);
      assert.deepEqual(tempFiles(out), [], "no temporary file left");
      assert.equal(archiveFiles(out).length, 1);
      assert.equal(await packetsIn(out), sent, `${signal}: every packet in the finished file`);
    } finally {
      sensor.kill("SIGKILL");
      await sensor.exited;
    }
  }
}, { veth: "s" });

rootTest("a second signal exits at once, without finishing", async ({ dir, veth }) => {
  // A 10 s read timeout keeps the worker in poll(2) on the quiet link: the first signal alone would
  // need up to 10 s to finish, the second must not wait for it.
  const sensor = startCutcap(liveArgs(veth!, `${dir}/out`, ["--pcap-timeout", "10s"]));
  try {
    await sensor.waitFor(/Capturing on/);
    sensor.kill("SIGINT");
    sensor.kill("SIGTERM");
    const sentAt = Date.now();
    const exit = await sensor.exited;
    const took = Date.now() - sentAt;
    assert.equal(exit.code, 130, exit.stderr);
    assert.match(exit.stderr, /Second signal: exiting without finishing files/);
    assert.doesNotMatch(exit.stderr, /Capture finished/);
    assert.ok(took < 3000, `exited ${took} ms after the second signal`);
  } finally {
    sensor.kill("SIGKILL");
    await sensor.exited;
  }
}, { veth: "d" });

Deno.test("cutcap version names cutcap, Deno and the libpcap that tcpdump also reports", async () => {
  const result = await cutcap(["version"]);
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trim().split("\n");
  assert.match(lines[0], /^cutcap \d+\.\d+\.\d+/);
  assert.ok(lines[1].startsWith(`deno ${Deno.version.deno} `), lines[1]);
  const tcpdump = await run("tcpdump", ["--version"]);
  const libpcap = tcpdump.split("\n").find((l) => l.startsWith("libpcap version"));
  assert.equal(lines[2], libpcap);
});

Deno.test("an offline --read run exits by itself, with its server, every packet stored", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-offline-" });
  try {
    await smallCapture(`${dir}/in.pcap`, 2000);
    const started = Date.now();
    const result = await cutcap([
      ...["--read", `${dir}/in.pcap`, "--out", `${dir}/out`, "--byte-cutoff", "0"],
      ...["--listen", `127.0.0.1:${freePort()}`, "--stats-interval", "1s"],
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(Date.now() - started < 20_000);
    assert.match(result.stderr, /Capture finished/);
    assert.equal(await packetsIn(`${dir}/out`), 2000);
    assert.deepEqual(tempFiles(`${dir}/out`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

rootTest(
  "--log-format json: every log line is a JSON object; /healthz and /readyz answer while capturing",
  async ({ dir, veth }) => {
    await smallCapture(`${dir}/in.pcap`, 500);
    const port = freePort();
    const sensor = startCutcap([
      ...liveArgs(veth!, `${dir}/out`),
      ...["--log-format", "json", "--stats-interval", "1s", "--listen", `127.0.0.1:${port}`],
    ]);
    try {
      await sensor.waitFor(/Capturing on/);
      const healthz = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(healthz.status, 200);
      assert.equal(await healthz.text(), "ok\n");
      const readyz = await fetch(`http://127.0.0.1:${port}/readyz`);
      assert.equal(readyz.status, 200);
      assert.equal(await readyz.text(), "ready\n");
      const sent = await veth!.replay(`${dir}/in.pcap`);
      await sensor.waitFor(new RegExp(`"recvd":${sent}\\b`));
      sensor.kill("SIGTERM");
      const exit = await sensor.exited;
      assert.equal(exit.code, 0, exit.stderr);
      const lines = exit.stderr.trim().split("\n");
      const records = lines.map((line) => {
        const record = JSON.parse(line) as Record<string, unknown>;
        assert.equal(typeof record.time, "string", line);
        assert.ok(!Number.isNaN(Date.parse(record.time as string)), line);
        assert.ok(["info", "warn", "error"].includes(record.level as string), line);
        assert.equal(typeof record.msg, "string", line);
        return record;
      });
      assert.ok(records.some((r) => /^Capturing on /.test(r.msg as string)));
      const stats = records.filter((r) => r.if === veth!.outside);
      assert.ok(stats.length > 0, "stats lines as JSON");
      assert.equal(stats.at(-1)!.recvd, sent, "numbers stay numbers");
      assert.equal(stats.at(-1)!.W, "00");
      assert.ok(stats.every((r) => r.msg === "stats"), "stats lines say what they are");
      const moved = records.filter((r) => r.msg === "moved");
      assert.ok(moved.some((r) => r.packets === sent), "the moved line's facts are fields");
      assert.ok(
        moved.every((r) => typeof r.path === "string" && (r.path as string).endsWith(".pcap")),
      );
    } finally {
      sensor.kill("SIGKILL");
      await sensor.exited;
    }
  },
  { veth: "j" },
);

/** uid and gid (real, effective, saved, filesystem) of every thread of a process. */
async function threadIds(pid: number): Promise<string[]> {
  const ids: string[] = [];
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    const status = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/status`);
    const uid = /^Uid:\s+(.*)$/m.exec(status)![1].split(/\s+/).join(",");
    const gid = /^Gid:\s+(.*)$/m.exec(status)![1].split(/\s+/).join(",");
    ids.push(`${uid}/${gid}`);
  }
  return ids;
}

rootTest(
  "--user nobody drops root in every thread once the handles are open; capture goes on",
  async ({ dir, veth }) => {
    await smallCapture(`${dir}/in.pcap`, 1000);
    // nobody must reach and write the output directory.
    await Deno.chmod(dir, 0o755);
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    await Deno.chown(out, 65534, 65534);
    const nobody = (await sh("id", ["-u", "nobody"])).trim();
    const nogroup = (await sh("id", ["-g", "nobody"])).trim();
    const sensor = startCutcap(liveArgs(veth!, out, ["--user", "nobody", "--workers", "2"]));
    try {
      await sensor.waitFor(/Capturing on/);
      const want = `${[nobody, nobody, nobody, nobody]}/${[nogroup, nogroup, nogroup, nogroup]}`;
      const deadline = Date.now() + 10_000;
      let ids = await threadIds(sensor.pid);
      while (ids.some((id) => id !== want) && Date.now() < deadline) {
        await sleep(100);
        ids = await threadIds(sensor.pid);
      }
      assert.ok(ids.length > 3, "main thread and workers");
      assert.deepEqual(new Set(ids), new Set([want]), "every thread runs as nobody");
      const sent = await veth!.replay(`${dir}/in.pcap`);
      sensor.kill("SIGTERM");
      const exit = await sensor.exited;
      assert.equal(exit.code, 0, exit.stderr);
      assert.doesNotMatch(exit.stderr, /error|cannot|failed/i);
      assert.equal(await packetsIn(out), sent, "the handles opened as root keep capturing");
      for (const file of archiveFiles(out)) {
        assert.equal(Deno.statSync(file).uid, 65534, `${file} written by nobody`);
      }
    } finally {
      sensor.kill("SIGKILL");
      await sensor.exited;
    }
  },
  { veth: "u" },
);

Deno.test("--user naming no account stops before capturing, with one clear line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-user-" });
  try {
    await smallCapture(`${dir}/in.pcap`, 50);
    const result = await cutcap([
      ...["--read", `${dir}/in.pcap`, "--out", `${dir}/out`, "--listen", "off"],
      ...["--user", "cc-no-such-user"],
    ]);
    assert.equal(result.code, 2, "a usage mistake");
    assert.equal(
      result.stderr,
      'cutcap: Unknown --user "cc-no-such-user": expected an account in the password database\n',
    );
    assert.deepEqual(archiveFiles(`${dir}/out`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

rootTest(
  "--user whose account cannot write --out fails at once instead of losing packets",
  async ({ dir }) => {
    await smallCapture(`${dir}/in.pcap`, 50);
    await Deno.chmod(dir, 0o755);
    const out = `${dir}/out`;
    await Deno.mkdir(out, { mode: 0o755 }); // root's, nobody may not write
    const result = await cutcap([
      ...["--read", `${dir}/in.pcap`, "--out", out, "--listen", "off", "--user", "nobody"],
    ]);
    assert.equal(result.code, 1, result.stderr);
    // Found before anything starts, with the command that fixes it.
    assert.equal(
      result.stderr,
      `cutcap: Output directory ${out} is not writable by nobody: run chown -R nobody: ${out}, ` +
        "or give --out a directory nobody can write\n",
    );
    assert.doesNotMatch(result.stderr, /Capturing on/);
    assert.deepEqual(archiveFiles(out), []);
  },
);

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
print(json.dumps("bound"), flush=True)
while True:
    try:
        data = s.recv(4096)
    except socket.timeout:
        break
    print(json.dumps(data.decode()), flush=True)
`;
import { freePort, sh, sleep, startCutcap } from "./support/process.ts";
import { tempFiles } from "./support/files.ts";

/** A systemd stand-in: python3 bound to a unix datagram socket, collecting notifications. */
async function notifyReceiver(path: string): Promise<{
  messages: string[];
  waitFor(prefix: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}> {
  const child = new Deno.Command("python3", {
    args: ["-c", RECEIVER, path],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const messages: string[] = [];
  const reading = (async () => {
    let buffered = "";
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += text;
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) messages.push(JSON.parse(line));
    }
  })();
  const waitFor = async (prefix: string, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!messages.some((m) => m.startsWith(prefix))) {
      if (Date.now() > deadline) throw new Error(`No ${prefix} notification: got ${messages}`);
      await sleep(10);
    }
  };
  await waitFor("bound", 10_000);
  messages.shift();
  return {
    messages,
    waitFor,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // gone
      }
      await child.status;
      await reading;
    },
  };
}

rootTest(
  "sd_notify: READY=1 once every worker captures (packets sent right then are stored), STOPPING=1 on SIGTERM",
  async ({ dir, veth }) => {
    await smallCapture(`${dir}/in.pcap`, 1000);
    const socketPath = `${dir}/notify.sock`;
    const systemd = await notifyReceiver(socketPath);
    const out = `${dir}/out`;
    const sensor = startCutcap(liveArgs(veth!, out, ["--workers", "2"]), {
      env: { NOTIFY_SOCKET: socketPath },
    });
    try {
      await systemd.waitFor("READY=1");
      // Right at READY=1: every packet sent now must be captured, by one of the two workers.
      const sent = await veth!.replay(`${dir}/in.pcap`);
      assert.match(sensor.log(), /Capturing on \S+ with 2 workers/);
      assert.equal(systemd.messages.length, 1, `only READY so far: ${systemd.messages}`);
      assert.match(systemd.messages[0], /^READY=1\nSTATUS=Capturing on /);
      await sleep(500);
      sensor.kill("SIGTERM");
      await systemd.waitFor("STOPPING=1");
      const exit = await sensor.exited;
      assert.equal(exit.code, 0, exit.stderr);
      assert.deepEqual(systemd.messages.map((m) => m.split("\n")[0]), ["READY=1", "STOPPING=1"]);
      assert.equal(await packetsIn(out), sent);
    } finally {
      sensor.kill("SIGKILL");
      await sensor.exited;
      await systemd.stop();
    }
  },
  { veth: "n" },
);
