/**
 * Export of open files (issue 14): a live sensor in a namespace with a long --rotate-interval and
 * a real ClickHouse. Packets sent are in the fleet's /flows and /query within seconds, while their
 * file is still open (tcpdump reads what was sent); more packets to the same open file replace its
 * rows, never add to them; after SIGHUP finalizes the file, the fleet's /flows equals the sensor's
 * /flows of the finalized file exactly, each flow once, and its open rows are purged. A file a
 * kill -9 left open is recovered at the next start and exported the same way (also when its name
 * was taken meanwhile, and when ClickHouse is down at that start). Needs root.
 */
import assert from "node:assert/strict";
import { generateTrafficBytes } from "../bench/gen/mod.ts";
import { rootTest, TEST_NETS } from "./support/netns.ts";
import { parseTcpdumpHex, run, tcpdumpPackets } from "./support/oracle.ts";
import { startClickHouse } from "./support/clickhouse.ts";
import { TABLES } from "../src/export/schema.ts";
import { SPOOL_DIR } from "../src/archive/naming.ts";
import { freePort, sleep, startCutcap, startServer } from "./support/process.ts";

/** Open files are exported every 5 s, flushed every 1 s: seen by the fleet well within this. */
const FRESH_MS = 15_000;

/** A `/flows` record as both the sensor and the fleet answer it. */
interface Flow {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  proto: number;
  first: number;
  last: number;
  packets: number;
  bytes: number;
  totalPackets: number;
  endReason: string;
  file: string;
  sensor?: string;
}

async function flows(url: string): Promise<Flow[]> {
  const response = await fetch(`${url}/flows?q=${encodeURIComponent(TEST_NETS)}`);
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return JSON.parse(text) as Flow[];
}

/** The records without the sensor's name, sorted: what must be equal. */
function canonical(records: Flow[]): string[] {
  return records.map(({ sensor: _, ...r }) => JSON.stringify(r, Object.keys(r).sort())).sort();
}

const packetsOf = (records: Flow[]) => records.reduce((n, f) => n + f.packets, 0);

async function queryFrames(url: string): Promise<string[]> {
  const response = await fetch(`${url}/query`, { method: "POST", body: TEST_NETS });
  const body = new Uint8Array(await response.arrayBuffer());
  assert.equal(response.status, 200, new TextDecoder().decode(body));
  return parseTcpdumpHex(await run("tcpdump", ["-r", "-", "-tt", "-nn", "-xx", "-K"], body))
    .map((p) => p.hex);
}

/** Polls the fleet's /flows until it counts `packets`; the records and the wait in ms. */
async function fleetSees(url: string, packets: number, since: number) {
  for (;;) {
    const records = await flows(url);
    if (packetsOf(records) === packets) return { records, ms: Date.now() - since };
    assert.ok(
      Date.now() - since < FRESH_MS,
      `the fleet counts ${packetsOf(records)} of ${packets} packets`,
    );
    await sleep(250);
  }
}

rootTest(
  "fleet: a sensor's open file is exported every few seconds, replaced, then finalized once",
  async ({ dir, veth }) => {
    const first = generateTrafficBytes({ seed: 71, packets: 60, vlanShare: 0, nonIpShare: 0 });
    const second = generateTrafficBytes({ seed: 72, packets: 40, vlanShare: 0, nonIpShare: 0 });
    await Deno.writeFile(`${dir}/first.pcap`, first.pcap);
    await Deno.writeFile(`${dir}/second.pcap`, second.pcap);
    const firstFrames = (await tcpdumpPackets(`${dir}/first.pcap`)).map((p) => p.hex);
    const secondFrames = (await tcpdumpPackets(`${dir}/second.pcap`)).map((p) => p.hex);
    const clickhouse = await startClickHouse();
    const port = freePort();
    const sensorUrl = `http://127.0.0.1:${port}`;
    const sensor = startCutcap([
      ...["--interface", veth!.outside, "--out", `${dir}/out`, "--workers", "1"],
      ...["--byte-cutoff", "0", "--packet-cutoff", "0", "--filter", TEST_NETS],
      ...["--listen", `127.0.0.1:${port}`, "--flush-interval", "1s", "--rotate-interval", "1h"],
      ...["--export-clickhouse", clickhouse.url, "--sensor-name", "live"],
      ...["--advertise-url", sensorUrl],
    ]);
    let fleet: Awaited<ReturnType<typeof startServer>> | undefined;
    try {
      await sensor.waitFor(/Capturing on/);
      fleet = await startServer(["fleet", "--clickhouse", clickhouse.url]);

      assert.equal(await veth!.replay(`${dir}/first.pcap`, { pps: 300 }), firstFrames.length);
      const open = await fleetSees(fleet.url, firstFrames.length, Date.now());
      console.log(`open file in the fleet's /flows ${open.ms} ms after the last packet`);
      assert.ok(open.records.every((r) => r.sensor === "live"));
      assert.deepEqual(await queryFrames(fleet.url), firstFrames, "fleet /query: every packet");
      assert.doesNotMatch(sensor.log(), / moved /, "the file is still open");
      // The same flows as the sensor's own /flows of its open file (which names it by its
      // temporary name; the fleet by the name it will have).
      const own = await flows(sensorUrl);
      const withoutFile = (records: Flow[]) => records.map((r) => ({ ...r, file: "" }));
      assert.deepEqual(canonical(withoutFile(open.records)), canonical(withoutFile(own)));

      // More packets into the same open file: its rows are replaced, not added to.
      assert.equal(await veth!.replay(`${dir}/second.pcap`, { pps: 300 }), secondFrames.length);
      const all = firstFrames.length + secondFrames.length;
      const grown = await fleetSees(fleet.url, all, Date.now());
      const ownGrown = await flows(sensorUrl);
      assert.deepEqual(canonical(withoutFile(grown.records)), canonical(withoutFile(ownGrown)));
      assert.equal((await queryFrames(fleet.url)).length, all, "fleet /query after the second");

      // Finalized: the fleet's records are the finalized file's, each flow once.
      sensor.kill("SIGHUP");
      await sensor.waitFor(/SIGHUP: finalizing the open files of 1 workers?/);
      const deadline = Date.now() + FRESH_MS;
      for (;;) {
        const fleetFlows = await flows(fleet.url);
        const ownFinal = await flows(sensorUrl);
        const exported = await clickhouse.sql(
          `SELECT count() FROM ${TABLES.flows} WHERE sensor = 'live' FORMAT TabSeparated`,
        );
        if (Number(exported) > 0) {
          assert.deepEqual(canonical(fleetFlows), canonical(ownFinal));
          assert.equal(packetsOf(fleetFlows), all);
          assert.equal(Number(exported), ownFinal.length, "finalized rows");
          break;
        }
        assert.ok(Date.now() < deadline, `finalized rows in ClickHouse: ${exported}`);
        await sleep(250);
      }
      assert.deepEqual((await queryFrames(fleet.url)).length, all, "fleet /query once finalized");
      // The finalized file's open rows are deleted (a mutation, done in the background).
      await openRowsPurged(
        clickhouse.sql,
        `WHERE file IN (SELECT file FROM ${TABLES.flows})`,
        "after finalization",
      );
    } finally {
      await fleet?.stop();
      sensor.kill("SIGTERM");
      await sensor.exited;
      await clickhouse.remove();
    }
  },
  { veth: "fo" },
);

rootTest(
  "fleet: a file a crash left open is recovered at the next start and exported once, finalized",
  async ({ dir, veth }) => {
    const traffic = generateTrafficBytes({ seed: 73, packets: 60, vlanShare: 0, nonIpShare: 0 });
    await Deno.writeFile(`${dir}/traffic.pcap`, traffic.pcap);
    const frames = (await tcpdumpPackets(`${dir}/traffic.pcap`)).map((p) => p.hex);
    const clickhouse = await startClickHouse();
    const port = freePort();
    const sensorUrl = `http://127.0.0.1:${port}`;
    const args = [
      ...["--interface", veth!.outside, "--out", `${dir}/out`, "--workers", "1"],
      ...["--byte-cutoff", "0", "--packet-cutoff", "0", "--filter", TEST_NETS],
      ...["--listen", `127.0.0.1:${port}`, "--flush-interval", "1s", "--rotate-interval", "1h"],
      ...["--export-clickhouse", clickhouse.url, "--sensor-name", "live"],
      ...["--advertise-url", sensorUrl],
    ];
    let sensor = startCutcap(args);
    let fleet: Awaited<ReturnType<typeof startServer>> | undefined;
    const finalized = new Set<string>();
    let finalizedRows = 0;
    try {
      await sensor.waitFor(/Capturing on/);
      fleet = await startServer(["fleet", "--clickhouse", clickhouse.url]);
      // Second round: a file already holds the open file's name, so recovery picks another; the
      // rows the open exports sent under the first name are closed all the same.
      for (const taken of [false, true]) {
        assert.equal(await veth!.replay(`${dir}/traffic.pcap`, { pps: 300 }), frames.length);
        const all = frames.length * (finalized.size + 1);
        const open = await fleetSees(fleet.url, all, Date.now());
        const openFile = open.records.find((r) => !finalized.has(r.file))!.file;
        sensor.kill("SIGKILL");
        await sensor.exited;
        assert.equal(
          await exportedRows(clickhouse.sql),
          finalizedRows,
          "nothing more finalized before the restart",
        );
        if (taken) {
          await Deno.copyFile(`${dir}/traffic.pcap`, `${dir}/out/${openFile}`);
          await clickhouse.stop(); // down at the start: the recovered file's batch waits spooled
        }

        // The next start repairs the file, and exports it like a finalized one.
        sensor = startCutcap(args);
        await sensor.waitFor(/Capturing on/);
        assert.match(sensor.log(), /Recovered 1 file\(s\) after a crash/);
        if (taken) {
          await sleep(500);
          const spooled = [...Deno.readDirSync(`${dir}/out/${SPOOL_DIR}`)];
          assert.equal(spooled.filter((e) => e.name.endsWith(".json")).length, 1, "spooled");
          await clickhouse.start();
        }
        const ownAll = await flows(sensorUrl);
        const recovered = taken
          ? ownAll.find((r) => !finalized.has(r.file) && r.file !== openFile)!.file
          : openFile;
        finalized.add(recovered);
        const own = ownAll.filter((r) => finalized.has(r.file));
        assert.equal(packetsOf(own), all, "the recovered file keeps every packet");
        const deadline = Date.now() + 2 * FRESH_MS; // the sender may be backing off
        while (await exportedRows(clickhouse.sql) !== own.length) {
          assert.ok(Date.now() < deadline, "the recovered file's rows reach ClickHouse");
          await sleep(250);
        }
        finalizedRows = own.length;
        const files = await clickhouse.sql(
          `SELECT uniqExact(file) FROM ${TABLES.flows} FORMAT TabSeparated`,
        );
        assert.equal(Number(files), finalized.size, "finalized rows: the files' /flows, once");
        const fleetFlows = await flows(fleet.url);
        assert.deepEqual(canonical(fleetFlows), canonical(own), "the fleet: finalized rows only");
        assert.equal((await queryFrames(fleet.url)).length, all, "fleet /query: each packet once");
        await openRowsPurged(clickhouse.sql, "", "of the crashed file");
      }
    } finally {
      await fleet?.stop();
      sensor.kill("SIGTERM");
      await sensor.exited;
      await clickhouse.remove();
    }
  },
  { veth: "fc" },
);

async function exportedRows(sql: (query: string) => Promise<string>): Promise<number> {
  return Number(
    await sql(`SELECT count() FROM ${TABLES.flows} WHERE sensor = 'live' FORMAT TabSeparated`),
  );
}

/** Waits until no open row matching `where` is left (a mutation deletes them in the background). */
async function openRowsPurged(
  sql: (query: string) => Promise<string>,
  where: string,
  what: string,
): Promise<void> {
  const deadline = Date.now() + FRESH_MS;
  for (;;) {
    const left = Number(
      await sql(`SELECT count() FROM ${TABLES.openFlows} ${where} FORMAT TabSeparated`),
    );
    if (left === 0) return;
    assert.ok(Date.now() < deadline, `${left} open rows left ${what}`);
    await sleep(250);
  }
}
