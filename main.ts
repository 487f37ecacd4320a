/**
 * cutcap: full packet capture with flow cutoff, rolling pcap archive, index and query server.
 *
 *   cutcap [capture] [options]      capture (the default command)
 *   cutcap serve --out DIR           serve an existing archive without capturing
 *   cutcap fleet --clickhouse URL    one API over many sensors (flow records in ClickHouse)
 *   cutcap query QUERY               packets matching QUERY as pcap (stdout or -w FILE)
 *   cutcap flows QUERY               flows matching QUERY as a table
 *   cutcap index FILE...             index existing pcap files so they can be queried in place
 *   cutcap interfaces                list capture interfaces
 *   cutcap version                   versions of cutcap, Deno and libpcap
 */
import { VERSION } from "./src/version.ts";
import { HELP } from "./src/help.ts";

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  capture: async (args) => {
    // The first capture worker loads its modules (~50 ms) while this thread loads its own and
    // checks the configuration; capture hands it its setup once it knows what to capture.
    const spare = new Worker(new URL("./src/worker.ts", import.meta.url), { type: "module" });
    const { parseCaptureArgs } = await import("./src/config.ts");
    const { runCapture } = await import("./src/sensor/capture.ts");
    return runCapture(parseCaptureArgs(args), { spareWorker: spare });
  },
  serve: async (args) => (await import("./src/cli/serve.ts")).runServeCommand(args),
  fleet: async (args) => (await import("./src/fleet/mod.ts")).runFleetCommand(args),
  query: async (args) => (await import("./src/cli/query_client.ts")).runQueryCommand(args),
  flows: async (args) => (await import("./src/cli/query_client.ts")).runFlowsCommand(args),
  index: async (args) => (await import("./src/cli/index_files.ts")).runIndexCommand(args),
  interfaces: async () => {
    const { findAllDevs, loadLibpcap } = await import("./ffi/libpcap.ts");
    loadLibpcap(Deno.env.get("CUTCAP_LIBPCAP"));
    for (const dev of findAllDevs()) {
      const flags = [
        dev.up ? "up" : "down",
        dev.running ? "running" : "",
        dev.loopback ? "loopback" : "",
      ]
        .filter((f) => f !== "").join(",");
      console.log(`${dev.name}\t${flags}\t${dev.addresses.join(" ")}\t${dev.description}`);
    }
    return 0;
  },
  version: async () => {
    console.log(`cutcap ${VERSION}`);
    console.log(
      `deno ${Deno.version.deno} (v8 ${Deno.version.v8}, typescript ${Deno.version.typescript})`,
    );
    try {
      const { libpcapVersion, loadLibpcap } = await import("./ffi/libpcap.ts");
      loadLibpcap(Deno.env.get("CUTCAP_LIBPCAP"));
      console.log(libpcapVersion());
    } catch (error) {
      console.log(`libpcap: not loaded (${error instanceof Error ? error.message : error})`);
    }
    return 0;
  },
  help: () => {
    console.log(HELP);
    return Promise.resolve(0);
  },
};

async function main(args: string[]): Promise<number> {
  const first = args[0];
  const named = first !== undefined && !first.startsWith("-") ? COMMANDS[first] : undefined;
  if (first === "--help" || first === "-h") return COMMANDS.help([]);
  if (first === "--version") return COMMANDS.version([]);
  if (first !== undefined && !first.startsWith("-") && named === undefined) {
    console.error(
      `Unknown command "${first}": expected one of ${Object.keys(COMMANDS).join(", ")}`,
    );
    return 2;
  }
  const command = named ?? COMMANDS.capture;
  try {
    return await command(named ? args.slice(1) : args);
  } catch (error) {
    console.error(`cutcap: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
