/**
 * Faults during a live capture in a network namespace:
 * (a) the output file system fills up (a small tmpfs), then gets room again;
 * (b) the output directory is deleted, and the file system turns read-only, then writable again;
 * (c) the capture interface is deleted and made again (the worker reopens it with back-off), and
 *     goes down and up.
 * In each case write errors or reopen attempts are counted in /metrics and logged, capture keeps
 * running and resumes, and every finalized file is whole: tcpdump reads it without complaint and
 * its index counts the same packets.
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { readFileIndex } from "../src/index/index_reader.ts";
import { archiveFiles } from "./support/oracle.ts";
import { metricSum } from "./support/robustness.ts";
import { createVeth, type Veth } from "./support/netns.ts";
import { rootOnly } from "./support/root.ts";
import { type CutcapProcess, freePort, sh, startCutcap } from "./support/process.ts";

/** A capture on a fresh veth pair, with its metrics one call away. */
interface Rig {
  dir: string;
  out: string;
  veth: Veth;
  sensor: CutcapProcess;
  metric(name: string): Promise<number>;
  /** Sends `packets` generated packets (seed `seed`) at 20k/s from inside the namespace. */
  send(seed: number, packets: number): Promise<number>;
  /** Waits until the sensor has seen `count` packets in all. */
  seen(count: number): Promise<void>;
}

/**
 * Runs `body` (which resolves to the packets it sent) against a capture into `out` (a tmpfs of size
 * `tmpfs` when given), then checks the finalized files: whole, and holding every packet sent unless
 * `lossExpected`.
 */
function faultTest(
  name: string,
  tag: string,
  options: { tmpfs?: string; lossExpected: boolean; args?: string[] },
  body: (rig: Rig) => Promise<{ sent: number; lost?: number }>,
) {
  const { tmpfs, lossExpected, args = [] } = options;
  Deno.test(rootOnly("fault injection on a veth and a tmpfs", {
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: `cc-fault-${tag}-` });
      const out = `${dir}/out`;
      await Deno.mkdir(out);
      let mounted = false;
      let veth: Veth | undefined;
      let sensor: CutcapProcess | undefined;
      try {
        if (tmpfs) {
          await sh("mount", ["-t", "tmpfs", "-o", `size=${tmpfs}`, `cc-${tag}`, out]);
          mounted = true;
        }
        veth = await createVeth(tag);
        const port = freePort();
        sensor = startCutcap([
          ...["--interface", veth.outside, "--out", out, "--listen", `127.0.0.1:${port}`],
          ...["--rotate-interval", "1s", "--byte-cutoff", "0", "--stats-interval", "0"],
          ...args,
        ]);
        await sensor.waitFor(/Capturing on/);
        const url = `http://127.0.0.1:${port}/metrics`;
        const metric = async (name: string) => metricSum(await (await fetch(url)).text(), name);
        const v = veth;
        const rig: Rig = {
          dir,
          out,
          veth: v,
          sensor,
          metric,
          async send(seed: number, packets: number): Promise<number> {
            const file = `${dir}/traffic-${seed}.pcap`;
            await writeTrafficPcap(file, { seed, packets, snaplen: 1500 });
            await v.replay(file, { pps: 20_000 });
            return packets;
          },
          async seen(count: number): Promise<void> {
            for (let i = 0; i < 100; i++) {
              if (await metric("cutcap_packets_seen_total") >= count) return;
              await new Promise((r) => setTimeout(r, 100));
            }
            assert.equal(await metric("cutcap_packets_seen_total"), count, "packets seen");
          },
        };
        const { sent, lost } = await body(rig);
        const code = await sensor.stop();
        assert.equal(code, 0, sensor.lines.join("\n"));
        const { files, packets } = await assertFilesWhole(out);
        if (lossExpected) assert.ok(packets < sent, "some packets were lost to the fault");
        else assert.equal(packets, sent, "every packet sent is in a file");
        // The loss the log reports is exactly what is missing from the files.
        if (lost !== undefined) assert.equal(packets + lost, sent, "files + reported loss = sent");
        console.log(
          `  ${files} finalized files, all whole, hold ${packets} of ${sent} packets` +
            (lost === undefined ? "" : `; the log reported ${lost} lost`),
        );
      } finally {
        if (sensor) await sensor.stop();
        if (veth) await veth.remove();
        if (mounted) await sh("umount", ["-l", out]).catch(() => "");
        await Deno.remove(dir, { recursive: true });
      }
    },
  }));
}

/** Every finalized file: tcpdump reads it to the end without complaint, and its index agrees. */
async function assertFilesWhole(out: string): Promise<{ files: number; packets: number }> {
  let files = 0;
  let total = 0;
  for (const file of archiveFiles(out)) {
    const child = await new Deno.Command("tcpdump", {
      args: ["-r", file, "-nn", "-q", "-#"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(child.stderr);
    assert.ok(child.success, `${file}: tcpdump failed: ${stderr}`);
    assert.doesNotMatch(stderr, /truncated|invalid|bogus/i, `${file}: ${stderr}`);
    const packets = new TextDecoder().decode(child.stdout).split("\n")
      .filter((l) => /^ *\d+ {2}/.test(l)).length;
    assert.equal(readFileIndex(`${file}.idx`).header.packetCount, packets, `${file}: index`);
    files++;
    total += packets;
  }
  return { files, packets: total };
}

/** The last line matching `pattern`, once one comes after every line matching `after`. */
async function waitForLast(lines: string[], pattern: RegExp, after: RegExp): Promise<string> {
  let found = "";
  await waitUntil(`${pattern} after the last ${after}`, () => {
    const last = lines.findLastIndex((l) => pattern.test(l));
    found = last >= 0 ? lines[last] : "";
    return Promise.resolve(last > lines.findLastIndex((l) => after.test(l)));
  });
  return found;
}

async function waitUntil(what: string, test: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await test()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

faultTest(
  "faults: a full output file system counts write errors, keeps capturing and resumes",
  "fa",
  { tmpfs: "4m", lossExpected: true },
  async (rig) => {
    let sent = await rig.send(1, 40_000); // ~ 30 MB into a 4 MiB tmpfs
    await rig.seen(sent);
    await waitUntil("write errors", async () => await rig.metric("cutcap_write_errors_total") > 0);
    const line = await rig.sensor.waitFor(/Writing to .* failed: .*(No space|space left|ENOSPC)/i);
    const errors = await rig.metric("cutcap_write_errors_total");
    const filesBefore = await rig.metric("cutcap_output_files_total");
    // Room again: the same file system grows; capture goes on into new files.
    await sh("mount", ["-o", "remount,size=256m", rig.out]);
    sent += await rig.send(2, 10_000);
    await rig.seen(sent);
    await waitUntil(
      "files after the disk had room",
      async () => await rig.metric("cutcap_output_files_total") > filesBefore,
    );
    // A partial block that happens to fit in a full disk makes writing resume for a moment, so
    // several "again" lines can come; the loss is the one logged after the last failure.
    const again = await waitForLast(
      rig.sensor.lines,
      /Writing to .* again after \d+ write errors/,
      / failed: /,
    );
    const lost = Number(/\((\d+) packets lost\)/.exec(again)![1]);
    await waitUntil(
      `cutcap_packets_lost_total = ${lost}, the loss logged`,
      async () => await rig.metric("cutcap_packets_lost_total") === lost,
    );
    console.log(
      `faults (disk full): ${sent} packets sent, ${errors} write errors counted; log: ` +
        `"${line.replace(/^\S+ \S+ /, "").slice(0, 140)}"; writing resumed, ${lost} lost`,
    );
    return { sent, lost };
  },
);

faultTest(
  "faults: the output directory deleted, then read-only: errors counted, capture resumes",
  "fb",
  { tmpfs: "256m", lossExpected: true },
  async (rig) => {
    let sent = await rig.send(3, 10_000);
    await rig.seen(sent);
    await rig.sensor.waitFor(/moved .*packets=/);
    // (1) Everything under --out disappears, the directory itself included.
    await sh("sh", ["-c", `rm -rf ${rig.out}/* ${rig.out}/.??* 2>/dev/null; true`]);
    sent += await rig.send(4, 10_000);
    await rig.seen(sent);
    const filesAfterDelete = await rig.metric("cutcap_output_files_total");
    await waitUntil(
      "a file written after the delete",
      () => Promise.resolve(archiveFiles(rig.out).length > 0),
    );
    // (2) The file system turns read-only under the capture.
    await sh("mount", ["-o", "remount,ro", rig.out]);
    sent += await rig.send(5, 10_000);
    await rig.seen(sent);
    await waitUntil("write errors", async () => await rig.metric("cutcap_write_errors_total") > 0);
    await rig.sensor.waitFor(/Writing to .* failed: .*(read-only|Read-only|EROFS)/);
    const errors = await rig.metric("cutcap_write_errors_total");
    await sh("mount", ["-o", "remount,rw", rig.out]);
    const filesBefore = await rig.metric("cutcap_output_files_total");
    sent += await rig.send(6, 10_000);
    await rig.seen(sent);
    await rig.sensor.waitFor(/Writing to .* again/);
    await waitUntil(
      "files after the file system is writable again",
      async () => await rig.metric("cutcap_output_files_total") > filesBefore,
    );
    console.log(
      `faults (dir deleted, read-only): ${sent} packets sent; ${filesAfterDelete} files by the ` +
        `delete, ${errors} write errors while read-only; resumed`,
    );
    return { sent };
  },
);

// Both capture methods: libpcap says "The interface disappeared" itself, the afpacket ring the same.
for (const method of ["afpacket", "libpcap"]) {
  faultTest(
    `faults, ${method}: the capture interface deleted and made again is reopened with back-off`,
    `fc${method[0]}`,
    { lossExpected: false, args: ["--capture-method", method] },
    async (rig) => {
      let sent = await rig.send(7, 5000);
      await rig.seen(sent);
      // Down and up: the socket stays, capture goes on without a reopen.
      await sh("ip", ["link", "set", rig.veth.outside, "down"]);
      await new Promise((r) => setTimeout(r, 300));
      await sh("ip", ["link", "set", rig.veth.outside, "up"]);
      await new Promise((r) => setTimeout(r, 300));
      sent += await rig.send(8, 5000);
      await rig.seen(sent);
      // Deleted: "The interface disappeared"; the worker closes the handle and retries with back-off.
      await sh("ip", ["link", "del", rig.veth.outside]);
      const failed = await rig.sensor.waitFor(/Capture on .* failed: .*; reopening it/);
      await rig.sensor.waitFor(/Reopening .* failed \(attempt 1\)/);
      await waitUntil(
        "reopen attempts in /metrics",
        async () => await rig.metric("cutcap_reopen_attempts_total") >= 2,
      );
      await rig.veth.recreate();
      const reopened = await rig.sensor.waitFor(/Reopened capture on .* after \d+ attempt/, 20_000);
      const attempts = await rig.metric("cutcap_reopen_attempts_total");
      sent += await rig.send(9, 5000);
      await rig.seen(sent);
      const dropped = await rig.metric("cutcap_pcap_dropped_total");
      assert.equal(dropped, 0);
      console.log(
        `faults (interface): down/up kept capturing; delete → "${
          failed.replace(/^\S+ \S+ /, "")
        }"; ` +
          `${attempts} reopen attempts; "${reopened.replace(/^\S+ \S+ /, "")}"; ${sent} packets ` +
          `seen in all, ${dropped} dropped`,
      );
      return { sent };
    },
  );
}
