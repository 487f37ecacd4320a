/**
 * ClickHouse for the export and fleet tests: Debian's `clickhouse-server` run as an ordinary
 * process with its own config, data directory (a temp dir) and free loopback ports, stopped and
 * removed afterwards. `startClickHouse` gives one server; `startCluster` two shards of one
 * `remote_servers` cluster (each server also knows the other's TCP port) for Distributed tables.
 * Under CI=true a server that cannot start fails the test; elsewhere too — never skipped.
 */
import { freePort } from "./process.ts";

const SERVER = "/usr/sbin/clickhouse-server";

/** A running (or stopped) test ClickHouse server. */
export interface TestClickHouse {
  /** HTTP URL with the test database, e.g. http://127.0.0.1:41234/?database=cutcap */
  url: string;
  httpPort: number;
  tcpPort: number;
  /** The same over HTTPS, when started with `tls`. */
  httpsUrl?: string;
  /** Runs one statement and returns the answer text. */
  sql(statement: string): Promise<string>;
  /** Kills the server (the data directory stays, so `start` brings it back with its data). */
  stop(): Promise<void>;
  /** Starts it again after `stop`. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  remove(): Promise<void>;
}

/** A user with a password every test server knows (for --export-clickhouse-credentials). */
export const TEST_USER = { user: "exporter", password: "s3cret-pass" };

/** Name of the cluster `startCluster` configures. */
export const TEST_CLUSTER = "cutcap_test";

/** Options of startClickHouse. */
export interface ClickHouseTestOptions {
  /** Database created at start (default "cutcap"). */
  database?: string;
  /** TCP ports of the shards of `TEST_CLUSTER` (one replica each). */
  clusterTcpPorts?: number[];
  /** Use these ports instead of free ones. */
  httpPort?: number;
  tcpPort?: number;
  /** Also serve HTTPS with this certificate and key (PEM files). */
  tls?: { cert: string; key: string };
}

/** Starts one server in a new temp directory and creates the database. */
export async function startClickHouse(
  options: ClickHouseTestOptions = {},
): Promise<TestClickHouse> {
  const dir = await Deno.makeTempDir({ prefix: "cutcap-ch-" });
  const httpPort = options.httpPort ?? freePort();
  const tcpPort = options.tcpPort ?? freePort();
  const database = options.database ?? "cutcap";
  const httpsPort = options.tls === undefined ? undefined : freePort();
  await Deno.writeTextFile(
    `${dir}/config.xml`,
    configXml(dir, { httpPort, tcpPort, httpsPort }, options),
  );
  await Deno.writeTextFile(`${dir}/users.xml`, USERS_XML);
  let child: Deno.ChildProcess | undefined;
  let log = "";
  const base = `http://127.0.0.1:${httpPort}/`;
  const sql = async (statement: string, db = database): Promise<string> => {
    const response = await fetch(`${base}?database=${db}`, { method: "POST", body: statement });
    const text = await response.text();
    if (!response.ok) throw new Error(`ClickHouse refused ${statement.slice(0, 80)}: ${text}`);
    return text;
  };
  const start = async () => {
    child = new Deno.Command(SERVER, {
      args: [`--config-file=${dir}/config.xml`],
      cwd: dir,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const running = child;
    (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of running.stderr) log += decoder.decode(chunk, { stream: true });
    })();
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const response = await fetch(`${base}ping`);
        await response.body?.cancel();
        if (response.ok) break;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) {
        running.kill("SIGKILL");
        throw new Error(`clickhouse-server did not answer on ${httpPort} within 30 s: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const stop = async () => {
    if (child === undefined) return;
    const running = child;
    child = undefined;
    running.kill("SIGKILL");
    await running.status;
  };
  try {
    await start();
    await sql(`CREATE DATABASE IF NOT EXISTS ${database}`, "default");
  } catch (error) {
    await stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    url: `${base}?database=${database}`,
    httpsUrl: httpsPort === undefined
      ? undefined
      : `https://127.0.0.1:${httpsPort}/?database=${database}`,
    httpPort,
    tcpPort,
    sql: (statement) => sql(statement),
    stop,
    start,
    async remove() {
      await stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Arguments of `cutcap --read INPUT` into OUT that stores every packet (no cutoff), rotates every
 * 2 s of packet time (several files) and exports to `clickhouse` as `sensor`.
 */
export function exportReplayArgs(
  input: string,
  out: string,
  clickhouse: string,
  sensor: string,
  extra: string[] = [],
): string[] {
  return [
    "--read",
    input,
    "--out",
    out,
    "--listen",
    "off",
    "--byte-cutoff",
    "0",
    "--rotate-interval",
    "2s",
    "--export-clickhouse",
    clickhouse,
    "--sensor-name",
    sensor,
    ...extra,
  ];
}

/** Two servers forming the two shards of TEST_CLUSTER. */
export async function startCluster(
  options: { database?: string } = {},
): Promise<TestClickHouse[]> {
  const tcpPorts = [freePort(), freePort()];
  const servers: TestClickHouse[] = [];
  try {
    for (const tcpPort of tcpPorts) {
      servers.push(await startClickHouse({ ...options, tcpPort, clusterTcpPorts: tcpPorts }));
    }
  } catch (error) {
    for (const s of servers) await s.remove();
    throw error;
  }
  return servers;
}

function configXml(
  dir: string,
  ports: { httpPort: number; tcpPort: number; httpsPort?: number },
  options: ClickHouseTestOptions,
): string {
  const tls = options.tls === undefined ? "" : `<https_port>${ports.httpsPort}</https_port>
  <openSSL><server><certificateFile>${options.tls.cert}</certificateFile>
    <privateKeyFile>${options.tls.key}</privateKeyFile><verificationMode>none</verificationMode>
    <loadDefaultCAFile>false</loadDefaultCAFile></server></openSSL>`;
  const shards = (options.clusterTcpPorts ?? []).map((port) =>
    `<shard><replica><host>127.0.0.1</host><port>${port}</port></replica></shard>`
  ).join("");
  return `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>${ports.httpPort}</http_port>
  <tcp_port>${ports.tcpPort}</tcp_port>
  ${tls}
  <listen_host>127.0.0.1</listen_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <timezone>UTC</timezone>
  <remote_servers><${TEST_CLUSTER}>${shards}</${TEST_CLUSTER}></remote_servers>
</yandex>
`;
}

const USERS_XML = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <${TEST_USER.user}>
      <password>${TEST_USER.password}</password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </${TEST_USER.user}>
  </users>
  <quotas><default/></quotas>
</yandex>
`;
