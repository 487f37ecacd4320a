/**
 * The small hardening points of issue 18 (Low): timestamps from 2038 on stay unsigned through
 * `--read` (point 12), on cutcap's direct reader and on libpcap's path alike; an index holding an
 * impossible time is refused as damaged (and rebuilt) instead of breaking the status page (16);
 * the loopback rule checks addresses, and the address actually bound (14); a replay that lost
 * packets to a full disk exits 1 and says how many (11); a file holds at most 2 × --max-flows
 * distinct flows, so the index builder's memory and one index stay bounded (17); a pcap cut short
 * behind its valid index ends only its own part of an answer (15).
 */
import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { writeManyFlowsPcap } from "../bench/memory.ts";
import { readIndexHeader } from "../src/index/index_reader.ts";
import { archiveFiles, cutcap, run } from "./support/oracle.ts";
import { fakeSensor } from "./support/fake_sensor.ts";
import { pcapFile } from "./support/pcap_craft.ts";
import { isLoopback } from "../src/config.ts";
import { checkBoundAddress } from "../src/server/auth.ts";
import { startServer } from "../src/server/mod.ts";
import { rootOnly } from "./support/root.ts";
import { startServe } from "./support/process.ts";

/** Seconds of 2038-01-19T03:14:08Z (2^31), a little later, and 2106-02-07T06:28:15Z (2^32 - 1). */
const LATE = [2 ** 31, 2 ** 31 + 86_400 * 30, 2 ** 32 - 1];

/** A little-endian µs pcap of UDP frames 198.18.0.1 → 198.18.0.2, one per time in `seconds`. */
function latePcap(path: string, seconds: number[]): void {
  const records = seconds.map((sec, i) => {
    const frame = new Uint8Array(60);
    const dv = new DataView(frame.buffer);
    frame.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    dv.setUint16(12, 0x0800);
    frame[14] = 0x45;
    dv.setUint16(16, 46);
    frame[22] = 64;
    frame[23] = 17;
    dv.setUint32(26, 0xc6120001);
    dv.setUint32(30, 0xc6120002);
    dv.setUint16(34, 1000 + i);
    dv.setUint16(36, 53);
    dv.setUint16(38, 26);
    return { us: sec * 1e6 + 250_000, frame };
  });
  Deno.writeFileSync(path, pcapFile(1, 262144, records));
}

Deno.test("--read keeps timestamps of 2038 and 2106 unsigned (direct reader and libpcap)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-late-ts-" });
  try {
    const input = `${dir}/late.pcap`;
    latePcap(input, LATE);
    for (const [label, extra] of [["direct", []], ["libpcap (filter)", ["--filter", "udp"]]]) {
      const out = `${dir}/out-${extra.length}`;
      const r = await cutcap(["--read", input, "--out", out, "--listen", "off", ...extra]);
      assert.equal(r.code, 0, `${label}: ${r.stderr}`);
      const days = ["2038/01/19", "2038/02/18", "2106/02/07"];
      for (const day of days) {
        const files = [...Deno.readDirSync(`${out}/${day}`)].filter((e) =>
          e.name.endsWith(".pcap")
        );
        assert.equal(files.length, 1, `${label}: one file in ${day}`);
        // tshark reads the seconds unsigned (tcpdump goes through libpcap, which does not).
        const tt = await run("tshark", [
          ...["-r", `${out}/${day}/${files[0].name}`, "-T", "fields", "-e", "frame.time_epoch"],
        ]);
        const sec = Number(tt.trim().split(".")[0]);
        assert.ok(LATE.includes(sec), `${label}: ${day} holds ${tt}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "an index with an impossible time is refused and rebuilt; GET / and /status answer",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-bad-time-" });
    try {
      const input = `${dir}/late.pcap`;
      latePcap(input, [1_800_000_000, 1_800_000_001, 1_800_200_000]);
      const out = `${dir}/out`;
      const r = await cutcap(["--read", input, "--out", out, "--listen", "off"]);
      assert.equal(r.code, 0, r.stderr);
      const day = `${out}/2027/01/15`;
      const pcap = [...Deno.readDirSync(day)].find((e) => e.name.endsWith(".pcap"))!.name;
      // firstTs (offset 32) far beyond any pcap time, header checksum recomputed.
      const idx = Deno.readFileSync(`${day}/${pcap}.idx`);
      const dv = new DataView(idx.buffer);
      dv.setFloat64(32, 1e300, true);
      const headerLen = dv.getUint16(6, true);
      dv.setUint32(92, crc32(idx.subarray(96, headerLen), crc32(idx.subarray(0, 92))), true);
      Deno.writeFileSync(`${day}/${pcap}.idx`, idx);
      Deno.removeSync(`${out}/catalog.json`);
      const server = await startServe(out);
      try {
        for (const path of ["/", "/status"]) {
          const page = await fetch(`${server.url}${path}`);
          assert.equal(page.status, 200, path);
          await page.body?.cancel();
        }
        // Refused as damaged, the index is rebuilt from the pcap: every flow is back.
        assert.ok(server.lines.some((l) => /indexing .*impossible time range/.test(l)));
        const flows = await fetch(`${server.url}/flows?q=udp`);
        assert.equal((await flows.json() as unknown[]).length, 3);
      } finally {
        await server.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("loopback means a 127.0.0.0/8 or ::1 address, not a name that starts with 127.", () => {
  for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "::ffff:127.0.0.9"]) {
    assert.ok(isLoopback(host), host);
  }
  for (
    const host of ["127.example.com", "127.0.0.1.nip.io", "1270.0.0.1", "127.0.0.256", "0.0.0.0"]
  ) {
    assert.ok(!isLoopback(host), host);
  }
  assert.throws(() => checkBoundAddress("198.18.0.1", { tls: false, token: false }), /exposes/);
  assert.throws(() => checkBoundAddress("198.18.0.1", { tls: true, token: false }), /exposes/);
  checkBoundAddress("198.18.0.1", { tls: true, token: true });
  checkBoundAddress("198.18.0.1", { tls: false, token: false, insecure: true });
  checkBoundAddress("127.0.0.1", { tls: false, token: false });
});

Deno.test({
  name: "a server whose --listen name bound a non-loopback address without TLS/token stops",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // As if "127.evil.example" had resolved to 0.0.0.0: the bound address is what is checked.
    assert.throws(
      () => startServer(fakeSensor(), { host: "0.0.0.0", port: 0 }),
      /Listening on 0\.0\.0\.0 exposes captured traffic/,
    );
    const server = startServer(fakeSensor(), { host: "0.0.0.0", port: 0, insecure: true });
    await server.shutdown();
  },
});

Deno.test(rootOnly("a tmpfs mount", {
  name: "--read on a full disk exits 1 and says how many packets were lost",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-read-full-" });
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    try {
      const input = `${dir}/traffic.pcap`;
      await writeTrafficPcap(input, { seed: 11, packets: 20_000 });
      await run("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", out]);
      const r = await cutcap([
        ...["--read", input, "--out", out, "--listen", "off", "--byte-cutoff", "0"],
        ...["--rotate-size", "512KiB"],
      ]);
      assert.equal(r.code, 1, r.stderr);
      const m = /Lost (\d+) of 20000 packets to \d+ write error/.exec(r.stderr);
      assert.ok(m, r.stderr);
      let stored = 0;
      for (const file of archiveFiles(out)) {
        const text = await run("tcpdump", ["-r", file, "-nn", "-q"]);
        stored += text.trim() === "" ? 0 : text.trim().split("\n").length;
      }
      assert.equal(Number(m[1]), 20_000 - stored, `${stored} stored`);
    } finally {
      await run("umount", [out]).catch(() => "");
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

Deno.test("a file holds at most twice --max-flows distinct flows: index and memory stay bounded", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-file-flows-" });
  try {
    const input = `${dir}/many.pcap`;
    // 10000 distinct flows, one packet each in the first pass and one in the second.
    writeManyFlowsPcap(input, 10_000);
    const out = `${dir}/out`;
    const r = await cutcap([
      ...["--read", input, "--out", out, "--listen", "off", "--byte-cutoff", "0"],
      ...["--max-flows", "1000", "--flow-timeout", "1h"],
    ]);
    assert.equal(r.code, 0, r.stderr);
    const files = archiveFiles(out);
    let packets = 0;
    for (const file of files) {
      const header = readIndexHeader(`${file}.idx`);
      // Checked between batches of 4096 packets: 2 × 1000 flows plus at most one batch.
      assert.ok(header.flowCount <= 2000 + 4096, `${file}: ${header.flowCount} flows`);
      packets += header.packetCount;
    }
    assert.ok(files.length >= 4, `${files.length} files for 20000 flow records`);
    assert.equal(packets, 20_000, "every packet in some file");
    let tcpdump = 0;
    for (const file of files) {
      tcpdump += (await run("tcpdump", ["-r", file, "-nn", "-q"])).trim().split("\n").length;
    }
    assert.equal(tcpdump, 20_000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "a damaged pcap behind a valid index is skipped and reported; the answer goes on",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "cc-damaged-" });
    try {
      const out = `${dir}/out`;
      const inputs = [`${dir}/a.pcap`, `${dir}/b.pcap`];
      await writeTrafficPcap(inputs[0], { seed: 21, packets: 3000, startTs: 1_800_000_000 });
      await writeTrafficPcap(inputs[1], { seed: 22, packets: 2000, startTs: 1_800_100_000 });
      for (const input of inputs) {
        const r = await cutcap(["--read", input, "--out", out, "--listen", "off"]);
        assert.equal(r.code, 0, r.stderr);
      }
      // The first file loses its second half: its index still points there.
      const [first] = archiveFiles(out).sort();
      const size = Deno.statSync(first).size;
      Deno.truncateSync(first, Math.floor(size / 2));
      const server = await startServe(out);
      try {
        const r = await fetch(`${server.url}/query?q=${encodeURIComponent("after 2000-01-01")}`);
        assert.equal(r.status, 200);
        const answer = new Uint8Array(await r.arrayBuffer());
        const count = (text: string) => text.trim() === "" ? 0 : text.trim().split("\n").length;
        const got = count(await run("tcpdump", ["-r", "-", "-nn", "-q"], answer));
        // tcpdump's count of every file, the cut one included (it stops at the cut, as cutcap).
        let expected = 0;
        for (const file of archiveFiles(out)) {
          const text = await run("tcpdump", ["-r", file, "-nn", "-q"], undefined, {
            allowFailure: true,
          });
          expected += count(text);
        }
        assert.equal(got, expected, "the readable part of the cut file and all of the others");
        await server.waitFor(/\/query skipped .*: .*cut short|\/query skipped/);
      } finally {
        await server.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
