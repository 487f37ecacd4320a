/**
 * Export of flow records to ClickHouse (`--export-clickhouse`), against a real clickhouse-server
 * started once for this file: rows equal the sensor's own `/flows` records (the index), with
 * credentials; ClickHouse stopped during a capture and restarted: after catch-up the rows equal
 * the index exactly (nothing lost, nothing doubled) and the capture stored every packet; the same
 * files exported again are skipped (idempotent per file); the backlog metric while ClickHouse is
 * down; option errors.
 */
import assert from "node:assert/strict";
import { writeTrafficPcap } from "../bench/gen/mod.ts";
import { Catalog } from "../src/archive/catalog.ts";
import { matchingFlows } from "../src/query/flows.ts";
import { parseQuery } from "../src/query/parse.ts";
import { type FlowRow, rowRecord, TABLES } from "../src/export/schema.ts";
import { ClickHouse } from "../src/export/clickhouse.ts";
import { Exporter } from "../src/export/exporter.ts";
import { SPOOL_DIR } from "../src/archive/naming.ts";
import { registerExportMetrics } from "../src/export/metrics.ts";
import { Registry } from "prom-client";
import { cutcap } from "./support/oracle.ts";
import { rootOnly } from "./support/root.ts";
import { makeCertificates } from "./support/robustness.ts";
import {
  exportReplayArgs,
  startClickHouse,
  TEST_USER,
  type TestClickHouse,
} from "./support/clickhouse.ts";
import { freePort } from "./support/process.ts";

const FIELDS =
  "sensor, file, kind, src, dst, src_port, dst_port, proto, vlan, ether_type, first_us, last_us, packets, bytes" +
  ", community_id, total_packets, total_bytes, cut_packet, end_reason";

/** Every flow record of an archive as its own /flows gives them (the index), with the sensor. */
async function sensorRecords(outDir: string, sensor: string): Promise<string[]> {
  const catalog = Catalog.open(outDir);
  const all = await Array.fromAsync(matchingFlows(catalog, parseQuery("ip or not ip"), Infinity));
  return all.map((r) => JSON.stringify({ ...r, sensor })).sort();
}

/** The rows ClickHouse holds for a sensor, as /flows records. */
async function clickHouseRecords(ch: TestClickHouse, sensor: string): Promise<string[]> {
  const text = await ch.sql(
    `SELECT ${FIELDS} FROM ${TABLES.flows} WHERE sensor = '${sensor}' FORMAT JSONEachRow`,
  );
  return text.split("\n").filter((l) => l !== "").map((l) =>
    JSON.stringify(rowRecord(JSON.parse(l) as FlowRow))
  ).sort();
}

/** The same record text whatever the key order of the object it was made from. */
function canonical(lines: string[]): string[] {
  return lines.map((l) => {
    const o = JSON.parse(l) as Record<string, unknown>;
    return JSON.stringify(Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]])));
  }).sort();
}

function replay(
  input: string,
  outDir: string,
  ch: TestClickHouse,
  sensor: string,
  extra: string[] = [],
  url = ch.url,
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../main.ts", import.meta.url).pathname,
      ...exportReplayArgs(input, outDir, url, sensor, extra),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function finished(child: Deno.ChildProcess): Promise<string> {
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `the replay exits 0: ${stderr}`);
  return stderr;
}

Deno.test({
  name:
    "export: flow records in ClickHouse equal the sensors' indexes, through outages and retries",
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const work = await Deno.makeTempDir({ prefix: "cutcap-export-" });
  const certs = await makeCertificates(work);
  const ch = await startClickHouse({ tls: certs });
  try {
    const input = `${work}/in.pcap`;
    const truth = await writeTrafficPcap(input, { seed: 41, packets: 20_000, rate: 2000 });
    const credentials = `${work}/credentials`;
    await Deno.writeTextFile(credentials, `${TEST_USER.user}:${TEST_USER.password}\n`);

    await t.step("a replay's rows equal its /flows records (with credentials)", async () => {
      const out = `${work}/a`;
      await finished(
        replay(input, out, ch, "alpha", ["--export-clickhouse-credentials", credentials]),
      );
      const expected = await sensorRecords(out, "alpha");
      assert.ok(expected.length > 500, `enough flows: ${expected.length}`);
      assert.deepEqual(canonical(await clickHouseRecords(ch, "alpha")), canonical(expected));
      const files = await ch.sql(
        `SELECT uniqExact(file) FROM ${TABLES.flows} WHERE sensor = 'alpha'`,
      );
      assert.equal(Number(files), Catalog.open(out).entries().length);
      assert.deepEqual([...Deno.readDirSync(`${out}/${SPOOL_DIR}`)], [], "the spool is empty");
    });

    await t.step("over HTTPS with --export-ca; without it the certificate is refused", async () => {
      const refused = `${work}/tls-refused`;
      const stderr = await finished(replay(input, refused, ch, "tls", [], ch.httpsUrl));
      assert.match(stderr, /not reachable: .*(certificate|UnknownIssuer)/i);
      assert.ok(spoolSize(refused) > 0, "the batches wait in the spool");
      const out = `${work}/tls`;
      await finished(replay(input, out, ch, "tls", ["--export-ca", certs.ca], ch.httpsUrl));
      assert.deepEqual(
        canonical(await clickHouseRecords(ch, "tls")),
        canonical(await sensorRecords(out, "tls")),
      );
    });

    await t.step("a wrong password is refused and the batches stay spooled", async () => {
      const bad = `${work}/bad-credentials`;
      await Deno.writeTextFile(bad, `${TEST_USER.user}:wrong\n`);
      const out = `${work}/refused`;
      const stderr = await finished(
        replay(input, out, ch, "refused", [
          "--export-clickhouse-credentials",
          bad,
          "--metrics-file",
          `${work}/refused.prom`,
        ]),
      );
      assert.match(stderr, /refused the statement \(HTTP 516\)|Wrong password|password/i);
      const spooled = [...Deno.readDirSync(`${out}/${SPOOL_DIR}`)].length;
      assert.equal(spooled, Catalog.open(out).entries().length, "one batch per file waits");
    });

    await t.step(
      "ClickHouse down during capture, restarted: exact rows, all packets stored",
      async () => {
        await ch.stop();
        const out = `${work}/b`;
        const child = replay(input, out, ch, "bravo");
        // Wait until batches pile up in the spool, then bring ClickHouse back.
        const deadline = Date.now() + 30_000;
        while (spoolSize(out) < 3 && Date.now() < deadline) await sleep(100);
        assert.ok(spoolSize(out) >= 3, "batches wait in the spool while ClickHouse is down");
        await sleep(1500);
        await ch.start();
        const stderr = await finished(child);
        assert.match(stderr, /not reachable/);
        assert.match(stderr, /ClickHouse takes batches again/);
        assert.equal(spoolSize(out), 0, "the spool drained");
        assert.deepEqual(
          canonical(await clickHouseRecords(ch, "bravo")),
          canonical(await sensorRecords(out, "bravo")),
        );
        const stored = await ch.sql(
          `SELECT sum(packets) FROM ${TABLES.flows} WHERE sensor = 'bravo'`,
        );
        assert.equal(Number(stored), truth.packets, "every packet stored and counted once");
      },
    );

    await t.step("the same files exported again are skipped, not doubled", async () => {
      const out = `${work}/c`;
      const metrics = `${work}/c.prom`;
      await finished(replay(input, out, ch, "bravo", ["--metrics-file", metrics]));
      const count = await ch.sql(`SELECT count() FROM ${TABLES.flows} WHERE sensor = 'bravo'`);
      assert.equal(Number(count), (await sensorRecords(out, "bravo")).length);
      const text = await Deno.readTextFile(metrics);
      const files = Catalog.open(out).entries().length;
      assert.match(text, new RegExp(`^cutcap_export_batches_skipped_total ${files}$`, "m"));
      assert.match(text, /^cutcap_export_rows_total 0$/m);
      assert.match(text, /^cutcap_export_backlog_batches 0$/m);
    });

    await t.step("the backlog metric counts spooled batches while ClickHouse is away", async () => {
      const out = `${work}/a`;
      const exporter = new Exporter({
        clickhouse: new ClickHouse({ url: `http://127.0.0.1:${freePort()}/`, timeoutMs: 500 }),
        sensor: "offline",
        advertiseUrl: () => "",
        outDir: `${work}/offline`,
        minBackoffMs: 50,
        maxBackoffMs: 100,
      });
      const registry = new Registry();
      registerExportMetrics(registry, () => exporter.stats());
      exporter.start();
      const entries = Catalog.open(out).entries();
      await Deno.mkdir(`${work}/offline`, { recursive: true });
      // Its index is read from the archive the rows come from.
      for (const e of entries) {
        const dir = `${work}/offline/${e.path.slice(0, e.path.lastIndexOf("/"))}`;
        await Deno.mkdir(dir, { recursive: true });
        await Deno.copyFile(`${out}/${e.path}.idx`, `${work}/offline/${e.path}.idx`);
        exporter.fileFinalized(e.path, e);
      }
      exporter.fileDeleted(entries[0].path);
      await sleep(300);
      const text = await registry.metrics();
      assert.match(text, new RegExp(`^cutcap_export_backlog_batches ${entries.length + 1}$`, "m"));
      assert.ok(exporter.stats().errors >= 1);
      await exporter.close();
    });

    await t.step(rootOnly("dropping privileges with --user", {
      name: "--user: the spool is the user's, batches go out after root is dropped",
      fn: async () => {
        await Deno.chmod(work, 0o755);
        const out = `${work}/user`;
        const stderr = await finished(replay(input, out, ch, "charlie", ["--user", "nobody"]));
        assert.match(stderr, /Dropped privileges to nobody/);
        assert.doesNotMatch(stderr, /cannot spool/);
        assert.equal(spoolSize(out), 0);
        assert.equal(Deno.statSync(`${out}/${SPOOL_DIR}`).uid, Deno.statSync(out).uid);
        assert.deepEqual(
          canonical(await clickHouseRecords(ch, "charlie")),
          canonical(await sensorRecords(out, "charlie")),
        );
      },
    }));

    await t.step("option errors name the option", async () => {
      const noUrl = await cutcap(["--read", input, "--export-ca", "x.pem"]);
      assert.equal(noUrl.code, 2);
      assert.match(noUrl.stderr, /Option --export-ca needs --export-clickhouse URL/);
      const badUrl = await cutcap(["--read", input, "--export-clickhouse", "ch1:8123"]);
      assert.match(badUrl.stderr, /Invalid --export-clickhouse "ch1:8123": expected http/);
      const badName = await cutcap([
        "--read",
        input,
        "--export-clickhouse",
        ch.url,
        "--sensor-name",
        "a b",
      ]);
      assert.match(badName.stderr, /Invalid --sensor-name "a b"/);
    });
  } finally {
    await ch.remove();
    await Deno.remove(work, { recursive: true });
  }
});

function spoolSize(out: string): number {
  try {
    return [...Deno.readDirSync(`${out}/${SPOOL_DIR}`)].filter((e) => e.name.endsWith(".json"))
      .length;
  } catch {
    return 0;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
